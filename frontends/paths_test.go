package frontends

import (
	"net/url"
	"path"
	"strings"
	"testing"
)

func TestCheckPathRefusesAmbiguousSpellings(t *testing.T) {
	cases := []struct {
		target string
		ok     bool
	}{
		{"/web/api/orders/7", true},
		{"/web/api/orders/", true},
		{"/", true},
		{"/web/.well-known/x", true},
		{"/web/v1.2/my%20file.txt", true},
		{"/web/100%25", true},
		{"/web/%C3%A9t%C3%A9", true},
		{"/web/../admin", false},
		{"/web/%2e%2e/admin", false},
		{"/web/./x", false},
		{"/web/a%2fb", false},
		{"/web/a%5cb", false},
		{"/web/admin;x/users", false},
		{"/web/admin%3bx/users", false},
		{"/web/..;/admin", false},
		{"/web//admin", false},
		{"//web/admin", false},
		{"/web/admin./x", false},
		{"/web/admin%20/x", false},
		{"/web/admin%2e", false},
		{"/web/admin%09x", false},
		{"/web/admin%00", false},
		{"/web/admin%7f", false},
		{"/web/%2561dmin", false},
		{"/web/%25%36%31dmin", false},
		{"*", false},
	}
	for _, c := range cases {
		u, err := url.ParseRequestURI(c.target)
		if err != nil {
			t.Fatalf("%s: %v", c.target, err)
		}
		if got := checkPath(u) == nil; got != c.ok {
			t.Errorf("%s: accepted = %v, want %v", c.target, got, c.ok)
		}
	}
}

func TestShadowedByCaseInsensitiveRoute(t *testing.T) {
	rs := newRouteSet([]string{"/web/api/v1", "/web/api/v1/admin", "/web/api/v1/ro", "/web/café"})
	cases := []struct {
		path     string
		shadowed bool
	}{
		{"/web/api/v1/admin/users", false},
		{"/web/api/v1/items", false},
		{"/web/api/v1/Items", false},
		{"/web/api/v1/admins", false},
		{"/web/other", false},
		{"/web/api/v1/Admin/users", true},
		{"/web/api/v1/ADMIN", true},
		{"/web/api/v1/RO/7", true},
		{"/web/API/v1/x", true},                 // the /api/v1 route itself, misspelt
		{"/web/api/v1/\u212Aadmin", false},      // Kelvin sign, not an "a" route
		{"/web/api/v1/ro/\u017F", false},        // inside the right route already
		{"/web/api/v1/r\u00D8", false},          // Ø is no o
		{"/web/api/v1/adm\u0131n/x", true},      // dotless i
		{"/web/api/v1/adm\u0130n/x", true},      // dotted capital I
		{"/web/CAF\u00C9/x", true},              // É folds to é
		{"/web/api/v1/\u212A/\u017F/ro", false}, // not at a route boundary
	}
	for _, c := range cases {
		if got := rs.shadowed(c.path); got != c.shadowed {
			t.Errorf("%q: shadowed = %v, want %v", c.path, got, c.shadowed)
		}
	}
}

// FuzzCheckPath: whatever the request target, checkPath never panics, and a
// path it accepts means the same to every server: already clean, no
// parameters, no trailing dots or spaces, no control characters, and
// unchanged by a second decoding hop after the proxy re-encodes it.
func FuzzCheckPath(f *testing.F) {
	for _, s := range []string{"/web/api/orders/7", "/web/api/v1/admin;x/users", "/web//x", "/web/%2561dmin", "/web/a%20", "/web/x/", "/web/100%25"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, target string) {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return
		}
		if checkPath(u) != nil {
			return
		}
		p := u.Path
		clean := path.Clean(p)
		if clean != p && clean+"/" != p {
			t.Fatalf("accepted %q: not clean (%q)", target, clean)
		}
		if strings.ContainsAny(p, ";\\") {
			t.Fatalf("accepted %q: path %q has ';' or '\\'", target, p)
		}
		for _, seg := range strings.Split(p, "/") {
			if strings.HasSuffix(seg, ".") || strings.HasSuffix(seg, " ") {
				t.Fatalf("accepted %q: segment %q ends in '.' or space", target, seg)
			}
			for _, r := range seg {
				if r < 0x20 || r == 0x7f {
					t.Fatalf("accepted %q: control character in %q", target, seg)
				}
			}
		}
		forwarded := (&url.URL{Path: p}).EscapedPath()
		once, err := url.PathUnescape(forwarded)
		if err != nil || once != p {
			t.Fatalf("accepted %q: forwarded as %q, decodes to %q (%v)", target, forwarded, once, err)
		}
		if twice, err := url.PathUnescape(once); err == nil && twice != p {
			t.Fatalf("accepted %q: a second decoding hop reads %q", target, twice)
		}
	})
}

// lenientRoute is the route an upstream picks that decodes twice, drops
// ";" parameters, merges "//", trims trailing dots and spaces and compares
// without regard to case (Java's equalsIgnoreCase: upper, then lower).
func lenientRoute(prefixes []string, escaped string) int {
	norm := func(p string) string {
		for range 2 {
			if d, err := url.PathUnescape(p); err == nil {
				p = d
			}
		}
		var segs []string
		for _, s := range strings.Split(p, "/") {
			s, _, _ = strings.Cut(s, ";")
			s = strings.TrimRight(s, ". \t")
			if s != "" {
				segs = append(segs, strings.ToLower(strings.ToUpper(s)))
			}
		}
		return "/" + strings.Join(segs, "/")
	}
	p := norm(escaped)
	best, bestLen := -1, -1
	for i, pre := range prefixes {
		n := norm(pre)
		if (p == n || strings.HasPrefix(p, n+"/")) && len(n) > bestLen {
			best, bestLen = i, len(n)
		}
	}
	return best
}

// FuzzRouteMatch: for every path the router lets through, an upstream that
// routes leniently (Tomcat, IIS, Express, a second decoding hop) picks the
// same route as the gateway, whose checks ran.
func FuzzRouteMatch(f *testing.F) {
	for _, s := range []string{"/web/api/v1/admin/users", "/web/api/v1/Admin/users", "/web/api/v1/ro;x/7", "/web/api/v1/%2561dmin",
		"/web/api/v1/adm%C4%B1n", "/web/caf%C3%89/x", "/web/api/v1/items/", "/web/api/orders/7"} {
		f.Add(s)
	}
	prefixes := []string{"/web/api/v1", "/web/api/v1/admin", "/web/api/v1/ro", "/web/api/orders", "/web/café", "/web/api/v1/k"}
	rs := newRouteSet(prefixes)
	f.Fuzz(func(t *testing.T, target string) {
		u, err := url.ParseRequestURI(target)
		if err != nil || checkPath(u) != nil || rs.shadowed(u.Path) {
			return
		}
		ours := longest(prefixes, u.Path)
		theirs := lenientRoute(prefixes, (&url.URL{Path: u.Path}).EscapedPath())
		if ours != theirs {
			name := func(i int) string {
				if i < 0 {
					return "no route"
				}
				return prefixes[i]
			}
			t.Fatalf("%q: the gateway routes to %s, a lenient upstream to %s", target, name(ours), name(theirs))
		}
	})
}
