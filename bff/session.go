package bff

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"

	"github.com/bffgate/bffgate/bff/httperr"
	"github.com/bffgate/bffgate/config"
	"github.com/bffgate/bffgate/sessions"
)

var (
	errNoSession = httperr.New(http.StatusUnauthorized, httperr.CodeUnauthenticated, "no live session: log in first")
	errCSRF      = httperr.New(http.StatusUnauthorized, httperr.CodeCSRFRequired, "this request needs the header X-CSRF: 1")
)

// loadedSession keeps the ref (cookie or handle) a session came from with
// it.
type loadedSession struct {
	*sessions.Session
	ref string
}

// credential returns the session reference the client sent: the cookie for
// a spa, the bearer handle for a mobile app. Each kind accepts only its own.
func (b *BFF) credential(r *http.Request) string {
	if b.fe.Kind == config.KindMobile {
		h := r.Header.Get("Authorization")
		if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
			return strings.TrimSpace(h[7:])
		}
		return ""
	}
	c, err := r.Cookie(b.fe.Cookie.Name)
	if err != nil {
		return ""
	}
	return c.Value
}

// requireSession loads the caller's live session or returns the error to answer.
// Cookie sessions also need X-CSRF: 1, which a cross-site form cannot send
// and a cross-origin script can only send after a CORS preflight we refuse.
// Each handler calls it once per request, so nothing is kept on the echo
// context (whose store is a map made per request).
func (b *BFF) requireSession(c echo.Context) (*loadedSession, error) {
	r := c.Request()
	ref := b.credential(r)
	if ref == "" {
		return nil, errNoSession
	}
	if b.fe.Kind != config.KindMobile && r.Header.Get("X-CSRF") != "1" && !b.trustedUpgrade(r) {
		return nil, errCSRF
	}
	s, err := b.loadRef(c, ref)
	if err != nil {
		return nil, err
	}
	return &loadedSession{Session: s, ref: ref}, nil
}

// loadRef opens ref and maps the store's answers to client errors; a store
// failure is a 503, never "logged out".
func (b *BFF) loadRef(c echo.Context, ref string) (*sessions.Session, error) {
	ctx, span := b.startSpan(c.Request().Context(), SpanSessionLoad)
	var src *sessions.Source
	if span.s.IsRecording() {
		// Allocated only here, so a request that is not traced pays nothing.
		src = new(sessions.Source)
		ctx = sessions.WithSourceReport(ctx, src)
	}
	s, err := b.deps.Sessions.Load(ctx, b.binding, ref)
	if src != nil && *src != sessions.SourceUnknown {
		span.s.SetAttributes(attribute.String(AttrSessionSource, src.String()))
	}
	span.end(err)
	switch {
	case err == nil:
		return s, nil
	case errors.Is(err, sessions.ErrNotFound), errors.Is(err, sessions.ErrInvalidRef):
		b.clearSessionCookie(c)
		return nil, errNoSession
	default:
		return nil, storeDown(err)
	}
}

func storeDown(err error) *httperr.Error {
	return httperr.Wrap(http.StatusServiceUnavailable, httperr.CodeStoreUnavailable, "the session store is unavailable; try again shortly", err)
}

func (b *BFF) sameSite() http.SameSite {
	if b.fe.Cookie.SameSite == "lax" {
		return http.SameSiteLaxMode
	}
	return http.SameSiteStrictMode
}

func (b *BFF) setSessionCookie(c echo.Context, ref string) {
	c.SetCookie(&http.Cookie{
		Name: b.fe.Cookie.Name, Value: ref, Path: "/",
		HttpOnly: true, Secure: b.secure, SameSite: b.sameSite(),
	})
}

func (b *BFF) clearSessionCookie(c echo.Context) {
	if b.fe.Kind == config.KindMobile {
		return
	}
	if _, err := c.Request().Cookie(b.fe.Cookie.Name); err != nil {
		return
	}
	c.SetCookie(&http.Cookie{
		Name: b.fe.Cookie.Name, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: b.secure, SameSite: b.sameSite(),
	})
}

// logoutSID is the value a GET logout must present. It is derived from the
// session id so the page can build the link without learning the id itself.
func logoutSID(s *sessions.Session) string {
	sum := sha256.Sum256([]byte("bffgate-logout\x00" + s.ID()))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// checkClaims enforces a route's require.claims against the ID token claims:
// every listed claim must hold one of its values.
func checkClaims(raw json.RawMessage, want map[string][]string) error {
	if len(want) == 0 {
		return nil
	}
	var claims map[string]any
	if err := json.Unmarshal(raw, &claims); err != nil {
		return httperr.Wrap(http.StatusForbidden, httperr.CodeForbidden, "the session's claims cannot be read", err)
	}
	for name, accepted := range want {
		if !claimMatches(lookupClaim(claims, name), accepted) {
			return httperr.New(http.StatusForbidden, httperr.CodeForbidden,
				fmt.Sprintf("this route requires the claim %q to be one of %v", name, accepted))
		}
	}
	return nil
}

// lookupClaim follows a dotted name into nested objects; an exact top-level
// key wins (some providers use dots or URLs in claim names).
func lookupClaim(claims map[string]any, name string) any {
	if v, ok := claims[name]; ok {
		return v
	}
	parts := strings.Split(name, ".")
	var cur any = claims
	for _, p := range parts {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		if cur, ok = m[p]; !ok {
			return nil
		}
	}
	return cur
}

func claimMatches(v any, accepted []string) bool {
	switch t := v.(type) {
	case nil:
		return false
	case []any:
		for _, el := range t {
			if claimMatches(el, accepted) {
				return true
			}
		}
		return false
	case string:
		return slices.Contains(accepted, t)
	case bool:
		return slices.Contains(accepted, strconv.FormatBool(t))
	case float64:
		return slices.Contains(accepted, strconv.FormatFloat(t, 'f', -1, 64))
	}
	return false
}
