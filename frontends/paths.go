package frontends

import (
	"net/http"
	"net/url"
	"strings"
	"unicode"

	"github.com/bffgate/bffgate/bff/httperr"
)

// checkPath refuses request paths whose meaning differs between the
// gateway and an upstream framework, so that the upstream serves exactly
// the route whose checks ran. Rejecting beats cleaning: a cleaned path
// could land on a route the client did not name. u.Path is the decoded
// path the gateway routes on and forwards (re-encoded).
//
//   - dot-segments, also percent-encoded and as "..;x": every server
//     resolves them, after routing;
//   - encoded slashes and backslashes: some servers decode them to "/";
//   - ";" anywhere (also %3b): Tomcat, Jetty and Spring read ";x" as a path
//     parameter and drop it ("/admin;x/users" is "/admin/users" there);
//   - an empty segment ("//"): most servers merge it;
//   - a segment ending in "." or a space: IIS and Windows drop those;
//   - control characters;
//   - "%" followed by two hex digits in the decoded path (the client sent
//     "%25xx"): a service behind a second decoding hop reads "%2561dmin"
//     as "admin".
func checkPath(u *url.URL) *httperr.Error {
	p := u.Path
	if !strings.HasPrefix(p, "/") {
		return badPath("the request path must be absolute")
	}
	raw := strings.ToLower(u.RawPath)
	if strings.Contains(raw, "%2f") || strings.Contains(raw, "%5c") || strings.ContainsRune(p, '\\') {
		return badPath("encoded slashes and backslashes are not allowed in paths")
	}
	if strings.ContainsRune(p, ';') {
		return badPath("';' is not allowed in paths: servers read it as a path parameter")
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c < 0x20 || c == 0x7f {
			return badPath("control characters are not allowed in paths")
		}
		if c == '%' && i+2 < len(p) && isHex(p[i+1]) && isHex(p[i+2]) {
			return badPath("double percent-encoding is not allowed in paths")
		}
	}
	// Segment by segment with Cut rather than Split: every request passes
	// here, and Split allocates the slice of segments.
	for rest, more := p[1:], true; more; {
		var seg string
		seg, rest, more = strings.Cut(rest, "/")
		switch {
		case seg == "":
			if !more { // a trailing slash
				continue
			}
			return badPath("empty path segments (//) are not allowed")
		case seg == "." || seg == "..":
			return badPath("dot-segments are not allowed in paths")
		case strings.HasSuffix(seg, ".") || strings.HasSuffix(seg, " "):
			return badPath("a path segment may not end in '.' or a space")
		}
	}
	return nil
}

func badPath(msg string) *httperr.Error {
	return httperr.New(http.StatusBadRequest, httperr.CodeBadRequest, msg)
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// routeSet is one frontend's route prefixes (mount included, no trailing
// slash), exact and case-folded.
type routeSet struct {
	exact, folded []string
}

func newRouteSet(prefixes []string) routeSet {
	rs := routeSet{exact: prefixes, folded: make([]string, len(prefixes))}
	for i, p := range prefixes {
		rs.folded[i] = foldCase(p)
	}
	return rs
}

// longest returns the index of the longest prefix that p falls under on
// whole segments, or -1.
func longest(prefixes []string, p string) int {
	best := -1
	for i, pre := range prefixes {
		if underPrefix(p, pre) && (best < 0 || len(pre) > len(prefixes[best])) {
			best = i
		}
	}
	return best
}

func underPrefix(p, prefix string) bool {
	return strings.HasPrefix(p, prefix) && (len(p) == len(prefix) || p[len(prefix)] == '/' || strings.HasSuffix(prefix, "/"))
}

// shadowed reports whether p would fall under a more specific route when
// compared without regard to case than it does exactly: an upstream that
// routes case-insensitively (Express, ASP.NET, Spring with
// setCaseSensitive(false)) would serve "/api/v1/Admin" as the admin
// route the gateway did not check.
func (rs routeSet) shadowed(p string) bool {
	f := longest(rs.folded, foldCase(p))
	if f < 0 {
		return false
	}
	e := longest(rs.exact, p)
	return e < 0 || len(rs.folded[f]) > len(rs.folded[e])
}

// foldCase maps each letter to one representative of every letter that
// some server treats as its case variant: Unicode simple case folding
// (so the Kelvin sign folds with "k" and long s with "s", as Java's
// equalsIgnoreCase has it) and the dotted and dotless i of Turkish.
func foldCase(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x80 {
			if 'A' <= r && r <= 'Z' {
				return r + 'a' - 'A'
			}
			return r
		}
		if r == 'İ' || r == 'ı' {
			return 'i'
		}
		min := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if f < min {
				min = f
			}
		}
		if 'A' <= min && min <= 'Z' {
			min += 'a' - 'A'
		}
		return min
	}, s)
}

// allowedMethods is the Allow header of a refused TRACE: what routes may
// accept at all.
const allowedMethods = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"

// checkRequest refuses what no route may forward, whatever its
// configuration:
//
//   - TRACE and TRACK: an upstream that echoes them would show the
//     request as forwarded, bearer token included, to the page's script;
//   - an Upgrade to anything but websocket (h2c, for one): after the
//     101 the tunnel carries requests that the gateway never routes,
//     authenticates or checks.
func checkRequest(w http.ResponseWriter, r *http.Request) *httperr.Error {
	switch strings.ToUpper(r.Method) {
	case "TRACE", "TRACK":
		w.Header().Set("Allow", allowedMethods)
		return httperr.New(http.StatusMethodNotAllowed, httperr.CodeMethodNotAllowed, r.Method+" is not allowed")
	}
	for _, v := range r.Header.Values("Upgrade") {
		for _, tok := range strings.Split(v, ",") {
			if !strings.EqualFold(strings.TrimSpace(tok), "websocket") {
				return httperr.New(http.StatusBadRequest, httperr.CodeBadRequest, "only WebSocket upgrades are supported")
			}
		}
	}
	return nil
}
