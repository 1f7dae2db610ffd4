package config

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
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
		w.httpURL(p+".upstream", r.Upstream)
		switch r.Token {
		case TokenUser, TokenClient, TokenNone, TokenUserOrNone, TokenUserOrClient, TokenExchange:
		default:
			w.errorf(p+".token", "must be user, client, none, user_or_none, user_or_client or exchange, not %s", w.q(p+".token", r.Token))
		}
		w.exchange(p, r)
		for j, m := range r.Methods {
			if !isToken(m) {
				mp := fmt.Sprintf("%s.methods[%d]", p, j)
				w.errorf(mp, "%s is not an HTTP method", w.q(mp, m))
			}
		}
		if r.Timeout <= 0 {
			w.errorf(p+".timeout", "must be positive")
		}
		if r.Token == TokenNone && r.Require.Any() {
			w.errorf(p+".require", "cannot be combined with token: none (an anonymous route has no session to check)")
			continue
		}
		if (r.Token == TokenUserOrNone || r.Token == TokenUserOrClient) && r.Require.Any() {
			w.errorf(p+".require", "cannot be combined with token: %s (a caller without a session is served too, so require would not hold for it)", r.Token)
			continue
		}
		stepUp(w, p+".require", r.Require)
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

// stepUp checks require.acr and require.max_age. Both reach the provider
// through the browser (the 401 body, then M/bff/login's acr_values and
// max_age), so they must pass the login's own checks of those parameters.
func stepUp(w where, p string, req Require) {
	if req.ACR != nil && len(req.ACR) == 0 {
		w.errorf(p+".acr", "needs at least one value; leave acr out to accept any")
	}
	for j, a := range req.ACR {
		key := fmt.Sprintf("%s.acr[%d]", p, j)
		switch {
		case a == "":
			w.errorf(key, "is empty")
		case strings.ContainsFunc(a, func(r rune) bool { return r < 0x21 || r > 0x7e }):
			w.errorf(key, "%s must be printable ASCII without spaces: acr_values is a space-separated list", w.q(key, a))
		}
	}
	if n := len(strings.Join(req.ACR, " ")); n > MaxACRValues {
		w.errorf(p+".acr", "is %d characters as acr_values; a login accepts at most %d", n, MaxACRValues)
	}
	switch d := req.MaxAge; {
	case d < 0:
		w.errorf(p+".max_age", "must not be negative")
	case d > 0 && d < time.Second, d%time.Second != 0:
		w.errorf(p+".max_age", "must be whole seconds, at least 1s: max_age goes to the provider in seconds")
	case d > MaxStepUpAge:
		w.errorf(p+".max_age", "must be at most %v, the largest max_age a login accepts", MaxStepUpAge)
	}
}

// exchange checks a route's exchange block: required with token: exchange
// (audience or resource, an RFC 8707 resource, scopes the provider can
// parse). With any other token it does nothing, which Warnings says: an
// error would refuse SPEC.md's own annotated example, which shows every
// route key on one route.
func (w where) exchange(p string, r Route) {
	x := r.Exchange
	switch {
	case r.Token != TokenExchange:
		return
	case x == nil:
		w.errorf(p+".exchange", "is required with token: exchange (exchange: {audience: A, resource: URI, scopes: [S]}, with audience or resource at least)")
		return
	case x.Audience == "" && x.Resource == "":
		w.errorf(p+".exchange", "needs audience or resource (or both): without a target the provider would issue the user's own token again")
	}
	if hasSpaceOrControl(x.Audience) {
		w.errorf(p+".exchange.audience", "must not contain spaces or control characters")
	}
	if x.Resource != "" {
		if msg := checkResource(x.Resource); msg != "" {
			w.errorf(p+".exchange.resource", "%s %s", w.q(p+".exchange.resource", x.Resource), msg)
		}
	}
	for i, sc := range x.Scopes {
		if sc == "" || hasSpaceOrControl(sc) || strings.ContainsAny(sc, `"\`) {
			sp := fmt.Sprintf("%s.exchange.scopes[%d]", p, i)
			w.errorf(sp, "%s is not a scope (one non-empty word without spaces, quotes or backslashes, RFC 6749 section 3.3)", w.q(sp, sc))
		}
	}
}

// checkResource returns why s is not an RFC 8707 resource indicator (an
// absolute URI without a fragment), "" when it is.
func checkResource(s string) string {
	u, err := url.Parse(s)
	switch {
	case err != nil || hasSpaceOrControl(s):
		return "is not a URI"
	case !u.IsAbs():
		return "must be an absolute URI with a scheme (RFC 8707), such as \"https://payments.internal/\""
	case u.Fragment != "" || strings.Contains(s, "#"):
		return "must not have a fragment (RFC 8707)"
	}
	return ""
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
			w.httpURL(pp+".upstream", part.Upstream)
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

// httpURL checks the issuer or upstream s at path, showing the offending
// value (unless it came from a variable or a file, or may hold credentials)
// and, for a URL missing its scheme, the likely fix. It reports whether s
// passed.
func (w where) httpURL(path, s string) bool {
	msg := checkHTTPURL(s)
	switch {
	case s == "":
		w.errorf(path, "is required")
	case msg == "":
		return true
	case msg == msgNotHTTPURL:
		hint := ""
		if fix := withScheme(s); fix != "" && !w.v.c.info(w.file).fromRef(w.prefix+path) {
			hint = fmt.Sprintf("; did you mean %q?", fix)
		}
		w.errorf(path, "%s is not an absolute http(s) URL%s", w.q(path, s), hint)
	case strings.Contains(s, "@"):
		w.errorf(path, "%s", msg) // may hold a password: never quoted
	default:
		w.errorf(path, "%s %s", w.q(path, s), msg)
	}
	return false
}

// withScheme guesses the URL meant by s when it lacks a scheme: http:// for
// a loopback host or a port other than 443 and 8443 (a local or in-cluster
// service), https:// otherwise; "" when s does not look like host[:port]/path
// or adding a scheme does not make it valid.
func withScheme(s string) string {
	if strings.Contains(s, "://") || strings.ContainsAny(s, " \t") || strings.HasPrefix(s, "/") {
		return ""
	}
	u, err := url.Parse("http://" + s)
	if err != nil || u.Hostname() == "" || (!strings.Contains(u.Host, ".") && !strings.Contains(u.Host, ":") && !isLoopback(u.Hostname())) {
		return ""
	}
	scheme := "https://"
	if p := u.Port(); isLoopback(u.Hostname()) || (p != "" && p != "443" && p != "8443") {
		scheme = "http://"
	}
	if checkHTTPURL(scheme+s) != "" {
		return ""
	}
	return scheme + s
}
