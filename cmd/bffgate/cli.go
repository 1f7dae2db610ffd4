package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/bffgate/bffgate/config"
)

const serveUsage = `usage:
  bffgate serve -config FILE
  bffgate -config FILE

Runs the gateway. SIGTERM/SIGINT drain in-flight requests, then exit 0.
SIGHUP, or a change in frontends_dir, reloads the frontend files.

flags:
  -config FILE   the gateway file (default bffgate.yaml)
`

const checkUsage = `usage:
  bffgate check -config FILE [-online]

Loads and validates the configuration and prints the resolved frontends and
routes (exit 0), or every problem with its file, line and key (exit 1).
Values that came from a variable or a file are never printed.

flags:
  -config FILE   the gateway file (default bffgate.yaml)
  -online        also reach each frontend's provider (discovery, JWKS) and the
                 session store, and report every failure (exit 1)
`

// newFlags returns cmd's flag set: errors and, after a usage error, cmd's
// usage go to stderr. Help flags never reach it (run answers them).
func newFlags(cmd, usageText string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, "\n", usageText) }
	return fs
}

// parseFlags parses args and refuses positional arguments, suggesting
// -config for one that looks like a config file. ok false means exit 2.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) bool {
	if err := fs.Parse(args); err != nil {
		return false
	}
	if fs.NArg() == 0 {
		return true
	}
	a := fs.Arg(0)
	hint := ""
	if looksLikeConfig(a) {
		hint = fmt.Sprintf("; did you mean -config %s?", a)
	}
	fmt.Fprintf(stderr, "bffgate %s: unexpected argument %q%s\n", fs.Name(), a, hint)
	return false
}

func looksLikeConfig(a string) bool {
	if ext := filepath.Ext(a); ext == ".yaml" || ext == ".yml" {
		return true
	}
	st, err := os.Stat(a)
	return err == nil && st.Mode().IsRegular()
}

// configFlag adds -config to fs; the returned func reports whether it was given.
func configFlag(fs *flag.FlagSet) (*string, func() bool) {
	path := fs.String("config", defaultCfg, "the gateway file")
	return path, func() bool {
		given := false
		fs.Visit(func(f *flag.Flag) { given = given || f.Name == "config" })
		return given
	}
}

// loadConfig loads path for cmd, printing every problem. A missing default
// file is explained rather than reported as a bare "open bffgate.yaml: no
// such file" (exit 2: the command needs -config); any other failure exits 1.
func loadConfig(cmd, path string, given bool, stderr io.Writer) (*config.Config, int) {
	cfg, err := config.Load(path)
	if err == nil {
		return cfg, exitOK
	}
	if errors.Is(err, fs.ErrNotExist) {
		if !given {
			fmt.Fprintf(stderr, "bffgate %s: no configuration file: %s is not in the current directory.\n"+
				"Give the gateway file with -config FILE (bffgate %s -config gateway.yaml),\n"+
				"or try everything embedded with: bffgate demo. See: bffgate help\n", cmd, path, cmd)
			return nil, exitUsage
		}
		fmt.Fprintf(stderr, "bffgate %s: cannot read the configuration: %s does not exist\n", cmd, path)
		return nil, exitFail
	}
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Path == path {
		fmt.Fprintf(stderr, "bffgate %s: cannot read the configuration %s: %v\n", cmd, path, pe.Err)
		return nil, exitFail
	}
	printProblems(stderr, err)
	return nil, exitFail
}

// printProblems writes each configuration problem on its own line.
func printProblems(w io.Writer, err error) {
	type multi interface{ Unwrap() []error }
	if m, ok := err.(multi); ok {
		for _, e := range m.Unwrap() {
			printProblems(w, e)
		}
		return
	}
	fmt.Fprintln(w, strings.TrimRight(err.Error(), "\n"))
}
