package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// Warnings lists what is valid but probably not meant, each an *Error with
// file, line where known, and key path; `bffgate check` prints them (and
// still exits 0) and serve logs them at start. Like Validate it is pure.
// Call it on a loaded, valid Config.
func (c *Config) Warnings() []*Error {
	v := &validator{c: c}
	ws := make([]where, len(c.Frontends))
	for i := range c.Frontends {
		f := &c.Frontends[i]
		ws[i] = where{v: v, file: f.Source}
		if f.Source == "" || f.Source == c.Path {
			ws[i] = where{v: v, file: c.Path, prefix: fmt.Sprintf("frontends[%d].", i)}
		}
	}
	if c.Secure() {
		for i := range c.Frontends {
			v.plainUpstreams(ws[i], &c.Frontends[i])
		}
	}
	for i := range c.Frontends {
		ignoredExchange(ws[i], &c.Frontends[i])
	}
	v.shadowedRootRoutes(ws)
	for _, e := range v.errs {
		if e.Line == 0 {
			e.Line = c.info(e.File).lineOf(e.Path)
		}
		c.scrub(e)
	}
	return v.errs
}

// plainUpstreams warns about http:// upstreams behind an https public_url:
// the user's access token then crosses the network in clear. Loopback
// upstreams (a sidecar) do not leave the machine.
func (v *validator) plainUpstreams(w where, f *Frontend) {
	warn := func(path, upstream string) {
		u, err := url.Parse(upstream)
		if err != nil || u.Scheme != "http" || isLoopback(u.Hostname()) {
			return
		}
		w.errorf(path, "%s is plain http under an https server.public_url: the access token it receives crosses the network in clear; use https, or make sure the network encrypts (a service mesh with mTLS)", w.q(path, upstream))
	}
	for i, r := range f.Routes {
		if r.Token != TokenNone {
			warn(fmt.Sprintf("routes[%d].upstream", i), r.Upstream)
		}
	}
	for i, a := range f.Aggregates {
		for _, name := range sortedKeys(a.Parts) {
			warn(fmt.Sprintf("aggregates[%d].parts.%s.upstream", i, name), a.Parts[name].Upstream)
		}
	}
}

// shadowedRootRoutes warns about a mount nested inside another frontend's
// mount, on the same host or over a host-agnostic one, when the outer
// frontend has a "/" route (its catch-all, such as the SPA's files): the
// nested frontend takes that part of it, which Validate allows on purpose.
func (v *validator) shadowedRootRoutes(ws []where) {
	fs := v.c.Frontends
	for i := range fs {
		inner := &fs[i]
		for j := range fs {
			outer := &fs[j]
			if i == j || outer.Mount == inner.Mount || !under(inner.Mount, outer.Mount) ||
				(outer.Host != "" && !hostsOverlap(outer.Host, inner.Host)) {
				continue
			}
			k := slices.IndexFunc(outer.Routes, func(r Route) bool { return r.Prefix == "/" })
			if k < 0 {
				continue
			}
			ws[i].errorf("mount", "%s%s takes part of frontend %q's catch-all route (%s routes[%d], %s): requests under %s go to %q instead",
				inner.Mount, onHost(inner.Host), outer.Name, strings.TrimSpace(ws[j].String()), k, outer.MountPath("/"), inner.Mount, inner.Name)
		}
	}
}

// ignoredExchange warns about an exchange block on a route whose token is
// not exchange: the route forwards its own kind of token and the block does
// nothing, which is rarely what its author meant.
func ignoredExchange(w where, f *Frontend) {
	for i, r := range f.Routes {
		if r.Exchange != nil && r.Token != TokenExchange {
			w.errorf(fmt.Sprintf("routes[%d].exchange", i), "is ignored: it only applies to token: exchange, and this route has token: %s (remove it, or set token: exchange)", r.Token)
		}
	}
}
