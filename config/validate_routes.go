package config

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
)

var partRE = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)

// mountedPath checks the path at key (a route prefix or an aggregate path):
// required, clean, clear of the gateway's /bff endpoints, and not already
// taken in seen, which maps each earlier path to its key. It reports whether
// the path passed and was added to seen.
func mountedPath(w where, f *Frontend, key, path string, seen map[string]string) bool {
	switch {
	case path == "":
		w.errorf(key, "is required")
	case checkCleanPath(path) != "":
		w.errorf(key, "%s", checkCleanPath(path))
	case under(path, "/bff"):
		w.errorf(key, "%s collides with the gateway's own endpoints under %s", path, f.MountPath("/bff"))
	case seen[path] != "":
		w.errorf(key, "%s is already %s", path, seen[path])
	default:
		seen[path] = key
		return true
	}
	return false
}

func (v *validator) routes(w where, f *Frontend) {
	seen := map[string]string{}
	for i, r := range f.Routes {
		p := fmt.Sprintf("routes[%d]", i)
		mountedPath(w, f, p+".prefix", r.Prefix, seen)
		if r.Upstream == "" {
			w.errorf(p+".upstream", "is required")
		} else if msg := checkHTTPURL(r.Upstream); msg != "" {
			w.errorf(p+".upstream", "%s", msg)
		}
		switch r.Token {
		case TokenUser, TokenClient, TokenNone:
		default:
			w.errorf(p+".token", "must be user, client or none, not %s", w.q(p+".token", r.Token))
		}
		for j, m := range r.Methods {
			if !isToken(m) {
				mp := fmt.Sprintf("%s.methods[%d]", p, j)
				w.errorf(mp, "%s is not an HTTP method", w.q(mp, m))
			}
		}
		if r.Timeout <= 0 {
			w.errorf(p+".timeout", "must be positive")
		}
		if r.Token == TokenNone && len(r.Require.Claims) > 0 {
			w.errorf(p+".require", "cannot be combined with token: none (an anonymous route has no session to check)")
			continue
		}
		for _, name := range sortedKeys(r.Require.Claims) {
			switch {
			case name == "":
				w.errorf(p+".require.claims", "has an empty claim name")
			case slices.Contains(strings.Split(name, "."), ""):
				w.errorf(p+".require.claims."+name, "has an empty segment in its dotted name")
			case len(r.Require.Claims[name]) == 0:
				w.errorf(p+".require.claims."+name, "needs at least one accepted value")
			}
		}
	}
}

func (v *validator) aggregates(w where, f *Frontend) {
	seen := map[string]string{}
	for i, a := range f.Aggregates {
		p := fmt.Sprintf("aggregates[%d]", i)
		if mountedPath(w, f, p+".path", a.Path, seen) {
			// A catch-all "/" route (the SPA's assets) leaves room for
			// aggregates; any other route owns everything under its prefix.
			for j, r := range f.Routes {
				if r.Prefix == a.Path || (r.Prefix != "/" && under(a.Path, r.Prefix)) {
					w.errorf(p+".path", "%s collides with routes[%d].prefix %s", a.Path, j, r.Prefix)
					break
				}
			}
		}
		if a.Timeout <= 0 {
			w.errorf(p+".timeout", "must be positive")
		}
		if len(a.Parts) == 0 {
			w.errorf(p+".parts", "needs at least one part")
		}
		for _, name := range sortedKeys(a.Parts) {
			pp, part := p+".parts."+name, a.Parts[name]
			if !partRE.MatchString(name) {
				w.errorf(pp, "part name must match [a-zA-Z0-9_-]+")
			}
			if part.Upstream == "" {
				w.errorf(pp+".upstream", "is required")
			} else if msg := checkHTTPURL(part.Upstream); msg != "" {
				w.errorf(pp+".upstream", "%s", msg)
			}
			switch {
			case part.Path == "":
				w.errorf(pp+".path", "is required")
			case !strings.HasPrefix(part.Path, "/") || strings.HasPrefix(part.Path, "//"):
				w.errorf(pp+".path", `must be a path starting with "/" (not "//")`)
			case strings.ContainsAny(part.Path, "\\#") || hasSpaceOrControl(part.Path):
				w.errorf(pp+".path", `must not contain "\", "#", spaces or control characters`)
			}
		}
	}
}
