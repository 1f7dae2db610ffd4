package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
)

// Load reads the config file at path and every frontend it names, then
// applies defaults and validates, returning every problem found (each an
// *Error, joined) and no Config when there is any. Relative paths in the file
// are relative to its directory. Load is also the reload path: a SIGHUP
// handler calls it again and swaps in the new Frontends only when it succeeds.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse is Load with the main file's bytes already in hand; path still names
// it in messages and anchors frontends_dir, which is read from disk.
func Parse(path string, data []byte) (*Config, error) {
	return parse(path, data, os.LookupEnv, nil, nil)
}

// Reload is the reload path (SIGHUP, or a change in frontends_dir): it loads
// path again, which must be valid as a whole, and returns a Config whose
// frontends come from the files and whose server and sessions are running's:
// those need a restart, so frontend defaults (session timeouts, cookie
// names) keep deriving from what runs. ignored names the sections ("server",
// "sessions") whose new values were not applied.
func Reload(path string, running *Config) (next *Config, ignored []string, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	file, err := parse(path, data, os.LookupEnv, nil, nil)
	if err != nil {
		return nil, nil, err
	}
	if !reflect.DeepEqual(file.Server, running.Server) {
		ignored = append(ignored, "server")
	}
	if !reflect.DeepEqual(file.Sessions, running.Sessions) {
		ignored = append(ignored, "sessions")
	}
	if len(ignored) == 0 {
		return file, nil, nil
	}
	next, err = parse(path, data, os.LookupEnv, nil, running)
	if err != nil {
		return nil, nil, err
	}
	return next, ignored, nil
}

// parse is Parse with the environment and the reader of ${file:} targets
// given (nil: os.ReadFile with limits), so that tests and the fuzz target
// control both. A non-nil keep replaces the file's server and sessions
// before defaults and validation (Reload).
func parse(path string, data []byte, lookup func(string) (string, bool), readFile func(string) ([]byte, error), keep *Config) (*Config, error) {
	var c Config
	dir := filepath.Dir(path)
	main, errs, ok, _ := decodeYAML(path, data, &c, &expander{lookup: lookup, readFile: readFile, dir: dir})
	if !ok {
		return nil, errors.Join(errs...)
	}
	if keep != nil {
		c.Server, c.Sessions = keep.Server, keep.Sessions
	}
	c.Path = path
	c.src = map[string]*fileInfo{path: main}
	for i := range c.Frontends {
		c.Frontends[i].Source = path
	}

	lostFrontend := false
	if c.FrontendsDir != "" {
		// Frontend files are named by their path from here, like the main
		// file, so every path check prints can be opened as it is.
		fdir := c.FrontendsDir
		if !filepath.IsAbs(fdir) {
			fdir = filepath.Join(dir, fdir)
		}
		tmpl := expander{lookup: lookup, readFile: readFile, frontend: true, shared: c.FrontendEnv, mainFile: path}
		fronts, ferrs, dirErr := loadFrontendsDir(fdir, path, tmpl, c.src)
		if dirErr != nil {
			errs = append(errs, &Error{File: path, Path: "frontends_dir", Msg: dirErr.Error()})
			lostFrontend = true
		}
		errs = append(errs, ferrs.errs...)
		lostFrontend = lostFrontend || ferrs.dropped > 0
		c.Frontends = append(c.Frontends, fronts...)
	}

	// A key that failed to decode is left zero; Validate's complaints about
	// that zero, anything under it, or a missing frontend would only repeat
	// the first error.
	failed := map[[2]string]bool{}
	for _, e := range errs {
		if e, ok := e.(*Error); ok && e.Path != "" {
			failed[[2]string{e.File, e.Path}] = true
		}
	}
	c.ApplyDefaults()
	for _, e := range c.problems() {
		if underFailed(failed, e) || (lostFrontend && e.Msg == msgNoFrontends) {
			continue
		}
		// Validate sees only values; decoding saw where each key is.
		if e.Line == 0 {
			e.Line = c.info(e.File).lineOf(e.Path)
		}
		c.scrub(e)
		errs = append(errs, e)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return &c, nil
}

// LoadFrontendsDir decodes every frontend file in dir: each *.yaml and *.yml
// entry, in name order, not recursing, skipping dot-files (editor and
// ConfigMap leftovers). Each Frontend's Source is dir joined with the file
// name. It neither applies defaults nor validates: put the result in a Config
// and call ApplyDefaults and Validate. On any problem it returns no frontends.
//
// The files' references are limited as SPEC section 4 says: their own
// <NAME>_* variables and those in frontendEnv (the gateway file's
// frontend_env).
func LoadFrontendsDir(dir string, frontendEnv []string) ([]Frontend, error) {
	tmpl := expander{lookup: os.LookupEnv, frontend: true, shared: frontendEnv, mainFile: "the gateway file"}
	fronts, ferrs, err := loadFrontendsDir(dir, "", tmpl, map[string]*fileInfo{})
	if err != nil {
		return nil, err
	}
	if len(ferrs.errs) > 0 {
		return nil, errors.Join(ferrs.errs...)
	}
	return fronts, nil
}

// frontendErrs carries decode problems and how many files were left out
// entirely (unparseable or empty).
type frontendErrs struct {
	errs    []error
	dropped int
}

// loadFrontendsDir reads dir, skipping the file skip (the main config, when
// frontends_dir is its own directory), expanding each file with a copy of
// tmpl and recording what it learnt about each file in src. The returned
// error is about dir itself.
func loadFrontendsDir(dir, skip string, tmpl expander, src map[string]*fileInfo) ([]Frontend, frontendErrs, error) {
	var fe frontendErrs
	entries, err := os.ReadDir(dir)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fe, fmt.Errorf("cannot read directory %s: %w", dir, err)
	}
	skipAbs := ""
	if skip != "" {
		skipAbs, _ = filepath.Abs(skip)
	}
	var fronts []Frontend
	for _, e := range entries {
		name := e.Name()
		ext := filepath.Ext(name)
		if strings.HasPrefix(name, ".") || (ext != ".yaml" && ext != ".yml") {
			continue
		}
		full := filepath.Join(dir, name)
		source := full
		if abs, _ := filepath.Abs(full); skipAbs != "" && abs == skipAbs {
			continue
		}
		// Stat, not the DirEntry: ConfigMap volumes mount files as symlinks.
		if st, err := os.Stat(full); err != nil || !st.Mode().IsRegular() {
			continue
		}
		data, err := os.ReadFile(full)
		if err != nil {
			fe.errs = append(fe.errs, &Error{File: source, Msg: err.Error()})
			fe.dropped++
			continue
		}
		var f Frontend
		x := tmpl
		x.dir, x.root = dir, dir
		info, errs, ok, empty := decodeYAML(source, data, &f, &x)
		src[source] = info
		if empty {
			errs = append(errs, &Error{File: source, Msg: "file is empty; a frontend file holds one frontend"})
		}
		fe.errs = append(fe.errs, errs...)
		if !ok || empty {
			fe.dropped++
			continue
		}
		f.Source = source
		fronts = append(fronts, f)
	}
	return fronts, fe, nil
}

// underFailed reports whether e's key path is, or is under, one that failed
// to decode in the same file.
func underFailed(failed map[[2]string]bool, e *Error) bool {
	for p := e.Path; p != ""; {
		if failed[[2]string{e.File, p}] {
			return true
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return false
}
