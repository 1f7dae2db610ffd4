package bff

import (
	"encoding/base64"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"
)

// A browser keeps cookies per host name: a login started on
// http://127.0.0.1:8080 leaves its login-state cookie there, while the
// provider brings the browser back to public_url's host (localhost), where
// that cookie is not sent, and the login fails. This file keeps the browser
// on public_url's host where that is safe, and names the cause where not.

// publicHost is the host[:port] of this frontend's public origin.
func (b *BFF) publicHost() string {
	u, err := url.Parse(b.deps.PublicURL)
	if err != nil {
		return ""
	}
	return u.Host
}

// isLoopbackName reports whether host (without port) names this machine:
// localhost, *.localhost or a loopback IP.
func isLoopbackName(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}

// canonicalHost sends a browser that opened the login or a page on another
// loopback name than public_url's (127.0.0.1 for localhost, say) to the
// same path on public_url's origin, before any cookie is set on the wrong
// host.
//
// Only loopback names on both sides: behind a reverse proxy the Host header
// is often the proxy's upstream address (nginx sends 127.0.0.1:8080 by
// default), and redirecting that to public_url would loop forever. There
// the callback's error names the mismatch instead (noPendingLoginMessage).
//
// echo applies its middleware anew on every request, so what depends only on
// the configuration is worked out once, here, and not in the returned
// function.
func (b *BFF) canonicalHost() echo.MiddlewareFunc {
	pub := b.publicHost()
	if !isLoopbackName(hostOnly(pub)) {
		return func(next echo.HandlerFunc) echo.HandlerFunc { return next }
	}
	login := b.base + "/bff/login"
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			if (r.Method != http.MethodGet && r.Method != http.MethodHead) || strings.EqualFold(r.Host, pub) ||
				!isLoopbackName(hostOnly(r.Host)) {
				return next(c)
			}
			// The login, and page navigations (not API calls, which carry no
			// text/html in Accept, nor the other /bff endpoints).
			page := strings.Contains(r.Header.Get("Accept"), "text/html") && !strings.HasPrefix(r.URL.Path, b.base+"/bff/")
			if r.URL.Path != login && !page {
				return next(c)
			}
			return c.Redirect(http.StatusFound, b.deps.PublicURL+r.URL.RequestURI())
		}
	}
}

// newState is a login's state: random, plus, when the login was started on
// another host than public_url's, that host, so that the callback (where the
// login cookie is then missing) can say why.
func (b *BFF) newState(r *http.Request) string {
	s := randomString(32)
	if r.Host != "" && !strings.EqualFold(r.Host, b.publicHost()) {
		s += "." + base64.RawURLEncoding.EncodeToString([]byte(r.Host))
	}
	return s
}

// noPendingLoginMessage explains a callback that finds no pending login for
// its state; when a host mismatch is the likely cause it names both hosts.
func (b *BFF) noPendingLoginMessage(r *http.Request, state string) string {
	const generic = "no login is pending in this browser for this state (expired, already completed, or started elsewhere)"
	pub := b.publicHost()
	started := ""
	if i := strings.LastIndexByte(state, '.'); i >= 0 {
		if h, err := base64.RawURLEncoding.DecodeString(state[i+1:]); err == nil {
			started = string(h)
		}
	}
	switch {
	case started != "" && !strings.EqualFold(started, r.Host):
		return "no login is pending in this browser for this state: the login was started on " + started +
			" but public_url is " + b.deps.PublicURL + ", and the browser keeps the login cookie per host name; open " +
			b.deps.PublicURL + b.base + "/ instead of " + started
	case r.Host != "" && !strings.EqualFold(r.Host, pub):
		return "no login is pending in this browser for this state: this callback was opened on " + r.Host +
			" but public_url is " + b.deps.PublicURL + "; browse the gateway at public_url, or set server.public_url to the address you use"
	}
	return generic
}
