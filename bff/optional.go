package bff

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/bffgate/bffgate/bff/proxy"
	"github.com/bffgate/bffgate/config"
)

// optionalSession is the caller's live session for a user_or_none or
// user_or_client route, or nil when the route serves the call as a
// caller without one: no cookie or handle, a cookie without X-CSRF: 1,
// or a session that has ended.
//
// A cookie alone never selects the user's token: a cross-site page can
// make the browser send it (a top-level navigation under SameSite=lax, a
// form post), so only a call that proves it comes from the frontend's own
// script (X-CSRF, which needs a CORS preflight cross-origin; or a
// WebSocket handshake from a trusted Origin) is served as the user.
// Errors that are not "no session" (the store is down) are returned: the
// caller sent a session and must not be silently served as someone else.
func (b *BFF) optionalSession(c echo.Context) (*loadedSession, error) {
	r := c.Request()
	if b.credential(r) == "" {
		return nil, nil
	}
	if b.fe.Kind != config.KindMobile && r.Header.Get("X-CSRF") != "1" && !b.trustedUpgrade(r) {
		return nil, nil
	}
	sess, err := b.requireSession(c)
	if err == errNoSession {
		return nil, nil
	}
	return sess, err
}

// optionalUserHandler serves a user_or_none or user_or_client route: the
// user's (refreshed) token for a live session, else nothing or the
// frontend's client-credentials token.
func (b *BFF) optionalUserHandler(rt config.Route, p http.Handler) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		sess, err := b.optionalSession(c)
		if err != nil {
			return err
		}
		ctx := r.Context()
		switch {
		case sess != nil:
			if sess, err = b.refresh.ensureFresh(ctx, sess); err != nil {
				return err
			}
			ctx = withDPoPKey(proxy.WithToken(ctx, sess.AccessToken), b.sessionDPoPKey(ctx, sess.Session))
		case rt.Token == config.TokenUserOrClient:
			if ctx, err = b.client.forward(ctx); err != nil {
				return err
			}
		}
		p.ServeHTTP(c.Response(), r.WithContext(ctx))
		return nil
	}
}
