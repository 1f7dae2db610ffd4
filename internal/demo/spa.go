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

// mobileHTML plays a native app against the mobile frontend (see MobilePage).
//
//go:embed spa/mobile.html
var mobileHTML string

// SPAHandler serves the demo page for GET and HEAD on every path, so the
// gateway can route its mount's "/" here (a `token: none` route) and the page
// survives a reload on any client-side path. The page finds its mount from its
// bff-mount meta tag or else from the first segment of its own path, and then
// talks only to the gateway: M/bff/login, M/bff/user, M/api/orders/...,
// M/api/reports/..., M/api/dashboard and the logout_url from /bff/user.
//
// The one exception is MobilePage ("/mobile.html"): a second page that plays
// a native app against the mobile frontend at AppMount (PKCE pair made in
// the page, login, one-time code on its own URL, redeemed for a session
// handle, API calls with the handle as a bearer token).
//
// Each page's Content-Security-Policy admits exactly its own inline script
// and style (by hash) and same-origin fetches.
func SPAHandler() http.Handler {
	index, mobile := newPage(indexHTML), newPage(mobileHTML)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		p := index
		if r.URL.Path == MobilePage {
			p = mobile
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		h.Set("Content-Security-Policy", p.csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Length", strconv.Itoa(len(p.html)))
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = io.WriteString(w, p.html)
		}
	})
}

type page struct{ html, csp string }

func newPage(html string) page {
	return page{html: html, csp: strings.Join([]string{
		"default-src 'none'",
		"script-src " + inlineHash(html, "<script>", "</script>"),
		"style-src " + inlineHash(html, "<style>", "</style>"),
		"connect-src 'self'",
		"img-src 'self' data:",
		"base-uri 'none'",
		"form-action 'self'",
		"frame-ancestors 'none'",
	}, "; ")}
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
