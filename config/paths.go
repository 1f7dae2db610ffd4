package config

import (
	"fmt"
	"path/filepath"
)

// FrontendFile resolves p, a file path written in frontend f's configuration
// (such as oidc.private_key_file), and enforces SPEC section 4: a frontend
// file may name only files under <frontends_dir>/<name>/, checked as written
// and after following symbolic links. A relative p is relative to the folder
// of the file it appears in. An inline frontend (in the gateway file, the
// platform's) may name any file. The error names p and the allowed folder;
// call it from Validate for each such key and report the error at that key.
// It does not check that the file exists.
func (c *Config) FrontendFile(f *Frontend, p string) (string, error) {
	src := f.Source
	if src == "" {
		src = c.Path
	}
	full := p
	if !filepath.IsAbs(p) {
		full = filepath.Join(filepath.Dir(src), p)
	}
	if src == c.Path {
		return full, nil
	}
	root := filepath.Join(filepath.Dir(src), f.Name)
	if f.Name == "" || inside(root, full) != nil {
		return "", fmt.Errorf("%s is outside %s%c, the only folder frontend %q may read files from", full, root, filepath.Separator, f.Name)
	}
	return full, nil
}
