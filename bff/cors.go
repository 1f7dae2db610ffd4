package bff

import (
	"net/http"
	"slices"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
)

// corsMaxAge is how long (seconds) a browser may cache a preflight answer.
const corsMaxAge = 600

// corsHeaders are the request headers a listed origin may send: X-CSRF is
// what cookie sessions require; the rest are the usual content and tracing
// headers.
var corsHeaders = []string{
	echo.HeaderAccept, "Accept-Language", "Content-Language", echo.HeaderContentType,
	"X-CSRF", echo.HeaderXRequestID, "Traceparent", "Tracestate",
	"If-Match", "If-None-Match",
}

// cors answers preflights and marks answers for the frontend's
// cors.allowed_origins, compared exactly: no wildcard, no subdomain
// patterns. Credentials are allowed (the session cookie is the point).
// An unlisted origin gets no Access-Control-Allow-Origin, so the browser
// withholds the answer, and a preflight for X-CSRF fails: that is what keeps
// cross-origin scripts away from cookie sessions.
func (b *BFF) cors() echo.MiddlewareFunc {
	allowed := slices.Clone(b.fe.CORS.AllowedOrigins)
	return middleware.CORSWithConfig(middleware.CORSConfig{
		AllowOriginFunc: func(origin string) (bool, error) {
			return slices.Contains(allowed, origin), nil
		},
		AllowMethods: []string{
			http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
			http.MethodPatch, http.MethodDelete,
		},
		AllowHeaders:     corsHeaders,
		AllowCredentials: true,
		MaxAge:           corsMaxAge,
	})
}
