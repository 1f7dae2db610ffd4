package demo

import (
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// indexHTML (a string, so it cannot be modified) is the whole demo page: HTML, CSS and JS in one file, no build
// step and no external assets (the demo must work on a closed network).
//
//go:embed spa/index.html
var indexHTML string

// SPAHandler serves the demo page for GET and HEAD on every path, so the
// gateway can route its mount's "/" here (a `token: none` route) and the page
// survives a reload on any client-side path. The page finds its mount from its
// bff-mount meta tag or else from the first segment of its own path, and then
// talks only to the gateway: M/bff/login, M/bff/user, M/api/orders/...,
// M/api/reports/... and the logout_url from /bff/user.
//
// Its Content-Security-Policy admits exactly the page's own inline script and
// style (by hash) and same-origin fetches.
func SPAHandler() http.Handler {
	page := indexHTML
	csp := strings.Join([]string{
		"default-src 'none'",
		"script-src " + inlineHash(page, "<script>", "</script>"),
		"style-src " + inlineHash(page, "<style>", "</style>"),
		"connect-src 'self'",
		"img-src 'self' data:",
		"base-uri 'none'",
		"form-action 'self'",
		"frame-ancestors 'none'",
	}, "; ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Length", strconv.Itoa(len(indexHTML)))
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = io.WriteString(w, indexHTML)
		}
	})
}

// inlineHash returns the CSP source for the first inline element between open
// and closing tags: its content's SHA-256, as browsers hash it.
func inlineHash(page, open, closing string) string {
	_, rest, ok := strings.Cut(page, open)
	if !ok {
		return "'none'"
	}
	body, _, _ := strings.Cut(rest, closing)
	sum := sha256.Sum256([]byte(body))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}
