package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// maxSecretFile bounds what ${file:PATH} reads: secrets are small, and a
// path such as /dev/zero must not stall the load.
const maxSecretFile = 1 << 20

// expander expands ${NAME}, ${NAME:-default} and ${file:PATH} in the scalars
// of one file, enforcing what that file may read.
//
// The gateway file is the platform's and may read any variable and any
// file. A frontend file is its team's (SPEC section 4): it may read only
// variables named <NAME>_* (its frontend name upper-cased, dashes as
// underscores) or listed in the gateway file's frontend_env, and only files
// under <frontends_dir>/<name>/. Without that, a team could publish another
// team's secret or the cookie keys, for example in auth_params, which go to
// the browser in the login redirect.
type expander struct {
	lookup func(string) (string, bool)
	// readFile reads a ${file:} target; nil means readSecretFile.
	readFile func(string) ([]byte, error)
	// dir is the folder of the file being expanded.
	dir string

	// frontend is set for a frontend file; the fields below apply only then.
	frontend bool
	// name is the frontend's literal name key ("" when it has none).
	name string
	// shared lists the gateway file's frontend_env; mainFile names it.
	shared   []string
	mainFile string
	// root is <frontends_dir>/<name>.
	root string
}

// envPrefix is the variable prefix a frontend may use: "WEB_" for "web",
// "MY_SHOP_" for "my-shop".
func envPrefix(name string) string {
	return strings.ToUpper(strings.ReplaceAll(name, "-", "_")) + "_"
}

// expand replaces the references in s, one YAML scalar at key path, and
// returns every problem in s, not just the first. The syntax is the shell's,
// reduced to what a config file needs:
//   - ${NAME} is NAME's value; an unset NAME is a problem (a set but empty
//     NAME gives ""), so a forgotten secret fails at startup, not at login.
//   - ${NAME:-default} gives default when NAME is unset or empty. The default
//     is literal text and ends at the first "}".
//   - ${file:PATH} is the content of the file PATH, relative to the folder of
//     the file it appears in, with one trailing newline removed (secrets
//     mounted as files by Docker or Kubernetes).
//   - $$ is an escaped "$": write $${NAME} for the literal text ${NAME}.
//   - Any other "$" is kept as is, so values like "pa$word" need no escaping.
func (x *expander) expand(s, path string) (string, []string) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var (
		b        strings.Builder
		problems []string
	)
	for i := 0; i < len(s); {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			i++
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i += 2
		case '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				problems = append(problems, `unterminated "${" (write $$ for a literal "$")`)
				return s, problems
			}
			expr := s[i+2 : i+2+end]
			i += 2 + end + 1
			if p, ok := strings.CutPrefix(expr, "file:"); ok {
				val, problem := x.file(p)
				if problem != "" {
					problems = append(problems, problem)
				}
				b.WriteString(val)
				continue
			}
			name, def, hasDef := strings.Cut(expr, ":-")
			if !isEnvName(name) {
				problems = append(problems, fmt.Sprintf("invalid variable reference ${%s}: want ${NAME}, ${NAME:-default} or ${file:PATH}", expr))
				continue
			}
			if problem := x.mayRead(name); problem != "" {
				problems = append(problems, problem)
				continue
			}
			val, ok := x.lookup(name)
			switch {
			case hasDef && val == "":
				val = def
			case !ok:
				problems = append(problems, unsetHint(name, path))
			}
			b.WriteString(val)
		default:
			b.WriteByte('$')
			i++
		}
	}
	return b.String(), problems
}

// mayRead says why this file may not read variable name, or "".
func (x *expander) mayRead(name string) string {
	if !x.frontend {
		return ""
	}
	for _, s := range x.shared {
		if s == name {
			return ""
		}
	}
	if x.name != "" && strings.HasPrefix(name, envPrefix(x.name)) {
		return ""
	}
	mine := "its frontend name upper-cased followed by _ (the name key must be written literally)"
	if x.name != "" {
		mine = envPrefix(x.name)
	}
	return fmt.Sprintf("${%s}: a frontend file may read only variables starting with %s or listed in frontend_env of %s", name, mine, x.mainFile)
}

// file returns the content of the ${file:p} target, or a problem naming it.
func (x *expander) file(p string) (string, string) {
	if p == "" {
		return "", "${file:}: needs a path, such as ${file:client_secret}"
	}
	full := p
	if !filepath.IsAbs(p) {
		full = filepath.Join(x.dir, p)
	}
	if x.frontend {
		if x.name == "" {
			return "", fmt.Sprintf("${file:%s}: a frontend file may read files only under <frontends_dir>/<name>/, and this one has no literal name key", p)
		}
		if err := inside(x.root, full); err != nil {
			return "", fmt.Sprintf("${file:%s}: %s is outside %s%c, the only folder frontend %q may read files from", p, full, x.root, filepath.Separator, x.name)
		}
	}
	read := x.readFile
	if read == nil {
		read = readSecretFile
	}
	data, err := read(full)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return "", fmt.Sprintf("${file:%s}: cannot read %s: %v", p, full, err)
	}
	s := string(data)
	if strings.HasSuffix(s, "\n") {
		s = strings.TrimSuffix(strings.TrimSuffix(s, "\n"), "\r")
	}
	return s, ""
}

// readSecretFile reads a regular file of at most maxSecretFile bytes.
func readSecretFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxSecretFile {
		return nil, fmt.Errorf("larger than %d bytes", maxSecretFile)
	}
	return data, nil
}

// inside returns an error unless path lies under root, both as written
// (no ".." out of it) and after following symbolic links (no link out of
// it). Following links resolves a Kubernetes volume's "..data" indirection,
// which stays inside the mounted folder. A path that does not exist yet is
// judged as written.
func inside(root, path string) error {
	if !within(filepath.Clean(root), filepath.Clean(path)) {
		return errors.New("outside")
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil // nothing there yet: reading the file will say so
	}
	realPath, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil
	}
	if !within(realRoot, realPath) {
		return errors.New("links outside")
	}
	return nil
}

func within(root, path string) bool {
	rel, err := filepath.Rel(root, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// unsetHint is the problem for an unset variable. A default is the right
// advice for a port or a URL, and the wrong one for a secret: a default
// secret is a published one.
func unsetHint(name, path string) string {
	last := path[strings.LastIndexAny(path, ".]")+1:]
	switch {
	case strings.Contains(path, "cookie_keys"):
		return fmt.Sprintf("environment variable %s is not set: it holds a cookie key, so give it no default; make one and export it: export %s=\"$(openssl rand -base64 32)\"", name, name)
	case last == "client_secret":
		return fmt.Sprintf("environment variable %s is not set: export the client secret registered for this client at the provider: export %s=... (to make a new one for the registration: openssl rand -base64 32)", name, name)
	case looksSecret(name) || looksSecret(strings.ToUpper(last)):
		return fmt.Sprintf("environment variable %s is not set: it looks like a secret, so give it no default; export it (make a random one with: openssl rand -base64 32): export %s=...", name, name)
	}
	return fmt.Sprintf("environment variable %s is not set (write ${%s:-default} to give a default)", name, name)
}

func looksSecret(name string) bool {
	for _, w := range []string{"SECRET", "PASSWORD", "PASSWD", "TOKEN", "PRIVATE", "CREDENTIAL"} {
		if strings.Contains(name, w) {
			return true
		}
	}
	return strings.HasSuffix(name, "_KEY") || name == "KEY"
}

// isEnvName reports whether s is a portable environment variable name.
func isEnvName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		switch {
		case c == '_', c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
