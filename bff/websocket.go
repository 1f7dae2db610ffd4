package bff

import (
	"net/http"
	"slices"
	"strings"

	"github.com/labstack/echo/v4"
)

// trustedUpgrade reports whether r is a WebSocket handshake from a page of
// this gateway's own origin or of one of the frontend's cors.allowed_origins.
//
// Browsers cannot add headers such as X-CSRF to a WebSocket handshake, but
// they always send Origin on it and scripts cannot change it; checking it
// is the defence against cross-site WebSocket hijacking. So for handshakes
// a trusted Origin stands in for X-CSRF: 1. Ordinary requests still need
// the header.
func (b *BFF) trustedUpgrade(r *http.Request) bool {
	if !strings.EqualFold(r.Header.Get(echo.HeaderUpgrade), "websocket") ||
		!strings.Contains(strings.ToLower(r.Header.Get(echo.HeaderConnection)), "upgrade") {
		return false
	}
	origin := strings.ToLower(r.Header.Get(echo.HeaderOrigin))
	if origin == "" || origin == "null" {
		return false
	}
	return origin == strings.ToLower(b.deps.PublicURL) || slices.Contains(b.fe.CORS.AllowedOrigins, origin)
}
