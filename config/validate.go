package config

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// A validator method per concern lives in its own file: validate_server.go,
// validate_sessions.go, validate_frontend.go (frontend and oidc),
// validate_routes.go (routes, aggregates), validate_namespaces.go (names,
// hosts, mounts and cookies across frontends); checks.go holds the value checks
// they share.

// Validate reports every problem in c, each an *Error naming its file and key
// path, joined with errors.Join; nil when there is none. It is pure and fast
// (no network, no files), so a reload can run it before swapping anything in.
// It expects ApplyDefaults to have run, as Load does.
func (c *Config) Validate() error {
	ps := c.problems()
	errs := make([]error, len(ps))
	for i, p := range ps {
		errs[i] = p
	}
	return errors.Join(errs...)
}

func (c *Config) problems() []*Error {
	v := &validator{c: c}
	v.server()
	v.sessions()
	v.frontendEnv()
	v.frontends()
	return v.errs
}

type validator struct {
	c    *Config
	errs []*Error
}

func (v *validator) add(file, path, format string, args ...any) {
	v.errs = append(v.errs, &Error{File: file, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// where locates one frontend's keys: its file and, for a frontend written
// inline in the main config, the "frontends[i]." its keys are under there.
type where struct {
	v      *validator
	file   string
	prefix string
}

func (w where) errorf(path, format string, args ...any) {
	w.v.add(w.file, w.prefix+path, format, args...)
}

// q quotes the value at path (relative to the frontend) for a message,
// hiding it when it came from a variable or a file.
func (w where) q(path, value string) string {
	return w.v.q(w.file, w.prefix+path, value)
}

// q quotes the value at path in file for a message, hiding it when it came
// from a variable or a file.
func (v *validator) q(file, path, value string) string {
	return v.c.info(file).show(path, value)
}

// String names the frontend's location in messages about another frontend.
func (w where) String() string {
	if w.prefix == "" {
		return w.file
	}
	return strings.TrimSpace(w.file + " " + strings.TrimSuffix(w.prefix, "."))
}

func (v *validator) positive(file, path string, d time.Duration) {
	if d <= 0 {
		v.add(file, path, "must be positive")
	}
}
