package bff

import (
	"net/http"

	"github.com/labstack/echo/v4"
)

// Security headers of every answer the gateway writes itself (SPEC section
// 3): browsers must not sniff a JSON error or a /bff answer into HTML or
// script, and no page of the gateway may be framed (clickjacking of the
// login and logout pages, or of an HTML error page). JSON answers get the
// frame-ancestors policy too: it costs nothing, and a future HTML answer
// cannot forget it.
const (
	headerNoSniff = "X-Content-Type-Options"
	headerCSP     = "Content-Security-Policy"
	ownCSP        = "frame-ancestors 'none'"
)

// ownHeaders sets the security headers on every answer of this BFF's echo
// instance; forwardedAnswer takes them off again for what an upstream
// answers, whose own policy is its business.
func ownHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set(headerNoSniff, "nosniff")
		h.Set(headerCSP, ownCSP)
		return next(c)
	}
}

// forwardedAnswer wraps a route's proxy: the upstream's answer goes to the
// browser with the upstream's headers only (ReverseProxy adds to what is
// already set, so a gateway CSP would stack on the upstream's own).
func forwardedAnswer(p http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Del(headerNoSniff)
		h.Del(headerCSP)
		p.ServeHTTP(w, r)
	})
}
