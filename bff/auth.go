package bff

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/labstack/echo/v4"
	"golang.org/x/oauth2"

	"github.com/bffgate/bffgate/bff/httperr"
	"github.com/bffgate/bffgate/config"
	"github.com/bffgate/bffgate/sessions"
)

const (
	// loginTTL bounds how long a user may take at the provider.
	loginTTL = 10 * time.Minute
	// handoffTTL is the life of a mobile one-time handoff code (SPEC §3).
	handoffTTL = 60 * time.Second
)

// pendingLogin travels sealed in the login-state cookie between /login and
// /callback; a single-use marker in the store makes the state usable once
// across all instances.
type pendingLogin struct {
	State        string `json:"st"`
	Nonce        string `json:"n"`
	Verifier     string `json:"v"`
	ReturnTo     string `json:"r"`
	AppChallenge string `json:"ac,omitempty"`
	// AppState is the app's own OAuth state (mobile), given back unchanged
	// on the redirect to the app.
	AppState string `json:"as,omitempty"`
}

func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// loginCookieName is per login so two tabs logging in at once do not
// overwrite each other's pending state.
func (b *BFF) loginCookieName(state string) string {
	sum := sha256.Sum256([]byte(state))
	return b.loginCookiePrefix() + base64.RawURLEncoding.EncodeToString(sum[:6])
}

// loginCookiePrefix ends in "." which frontend names cannot contain, so
// one frontend's prefix never matches another's cookies.
func (b *BFF) loginCookiePrefix() string {
	if b.secure {
		return "__Host-bff-login-" + b.fe.Name + "."
	}
	return "bff-login-" + b.fe.Name + "."
}

// reservedCookie reports whether name is a cookie the gateway sets: any
// frontend's session cookie or any login-state cookie.
func (b *BFF) reservedCookie(name string) bool {
	n := strings.TrimPrefix(name, "__Host-")
	return name == b.fe.Cookie.Name || slices.Contains(b.deps.SessionCookies, name) || strings.HasPrefix(n, "bff-login-")
}

func badRequest(msg string) *httperr.Error {
	return httperr.New(http.StatusBadRequest, httperr.CodeBadRequest, msg)
}

func (b *BFF) providerDown(err error) *httperr.Error {
	return httperr.Wrap(http.StatusBadGateway, httperr.CodeUpstreamUnavailable, "the identity provider is unavailable", err)
}

func (b *BFF) login(c echo.Context) error {
	q := c.Request().URL.Query()
	p := pendingLogin{
		State:    b.newState(c.Request()),
		Nonce:    randomString(32),
		Verifier: oauth2.GenerateVerifier(),
		ReturnTo: q.Get("returnTo"),
	}
	if b.fe.Kind == config.KindMobile {
		if err := mobileLoginParams(q, b.fe.ReturnTo, &p); err != nil {
			return err
		}
	} else {
		if p.ReturnTo == "" {
			p.ReturnTo = b.fe.AfterLogin
		}
		if err := validSPAReturnTo(p.ReturnTo, b.fe.ReturnTo); err != nil {
			return badRequest("returnTo: " + err.Error())
		}
	}
	meta, err := b.provider.get(c.Request().Context())
	if err != nil {
		return b.providerDown(err)
	}
	payload, _ := json.Marshal(p)
	sealed, err := b.deps.Sessions.Seal(b.loginSeal(), payload)
	if err != nil {
		return fmt.Errorf("seal login state: %w", err)
	}
	// /login writes nothing to the store (an anonymous flood must not fill
	// it): the sealed cookie carries the state, and the callback marks it spent.
	b.dropExtraLoginCookies(c)
	c.SetCookie(&http.Cookie{
		Name: b.loginCookieName(p.State), Value: sealed, Path: "/",
		MaxAge: int(loginTTL / time.Second), HttpOnly: true, Secure: b.secure,
		// The provider's redirect back is a cross-site top-level navigation:
		// Strict would withhold this cookie from the callback.
		SameSite: http.SameSiteLaxMode,
	})
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(p.Verifier), oidc.Nonce(p.Nonce)}
	for k, v := range b.fe.OIDC.AuthParams {
		opts = append(opts, oauth2.SetAuthURLParam(k, v))
	}
	target, err := b.authorizeURL(c.Request().Context(), meta, meta.oauth.AuthCodeURL(p.State, opts...))
	if err != nil {
		return b.providerDown(err)
	}
	return c.Redirect(http.StatusFound, target)
}

func (b *BFF) loginSeal() string { return "login:" + b.fe.Name }

// maxPendingLogins bounds the login-state cookies one browser collects (one
// per started login, for parallel tabs); past it the older ones are dropped
// so repeated login clicks cannot grow the Cookie header without limit.
const maxPendingLogins = 3

func (b *BFF) dropExtraLoginCookies(c echo.Context) {
	prefix := b.loginCookiePrefix()
	var pending []string
	for _, ck := range c.Request().Cookies() {
		if strings.HasPrefix(ck.Name, prefix) {
			pending = append(pending, ck.Name)
		}
	}
	if len(pending) < maxPendingLogins {
		return
	}
	for _, name := range pending {
		c.SetCookie(&http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: b.secure, SameSite: http.SameSiteLaxMode})
	}
}

// callback completes the code flow. Every failure leaves no session behind.
func (b *BFF) callback(c echo.Context) error {
	r := c.Request()
	ctx := r.Context()
	q := r.URL.Query()
	state := q.Get("state")
	if state == "" {
		return loginFail(LoginInvalidState, badRequest("the callback has no state parameter"))
	}
	cookieName := b.loginCookieName(state)
	lc, err := r.Cookie(cookieName)
	if err != nil {
		return loginFail(LoginInvalidState, badRequest(b.noPendingLoginMessage(r, state)))
	}
	// The login cookie is spent whatever happens next.
	c.SetCookie(&http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: b.secure, SameSite: http.SameSiteLaxMode})
	raw, err := b.deps.Sessions.Open(b.loginSeal(), lc.Value, loginTTL)
	if err != nil {
		return loginFail(LoginInvalidState, badRequest("the login state cookie is invalid or expired"))
	}
	var p pendingLogin
	if err := json.Unmarshal(raw, &p); err != nil || subtle.ConstantTimeCompare([]byte(p.State), []byte(state)) != 1 {
		return loginFail(LoginInvalidState, badRequest("the state parameter does not match this browser's pending login"))
	}
	// Spent across all instances; kept as long as the cookie could still open.
	if err := b.deps.Sessions.PutOnce(ctx, "login-spent", state, []byte{1}, loginTTL+2*time.Minute); err != nil {
		if errors.Is(err, sessions.ErrExists) {
			return loginFail(LoginInvalidState, badRequest("this login was already completed; start again"))
		}
		return loginFail(LoginStoreUnavailable, storeDown(err))
	}
	if e := q.Get("error"); e != "" {
		msg := "the identity provider refused the login: " + e
		if d := q.Get("error_description"); d != "" {
			msg += ": " + d
		}
		return loginFail(LoginProviderError, httperr.New(http.StatusUnauthorized, httperr.CodeUnauthenticated, msg))
	}
	code := q.Get("code")
	if code == "" {
		return loginFail(LoginInvalidResponse, badRequest("the callback has no code parameter"))
	}
	meta, err := b.provider.get(ctx)
	if err != nil {
		return b.providerDown(err)
	}
	// RFC 9207: a provider that names itself must be the one we sent the user to.
	if q.Has("iss") && q.Get("iss") != meta.issuer {
		return loginFail(LoginInvalidResponse, badRequest("the callback's iss parameter does not name this frontend's provider"))
	}
	tok, err := b.tokens.exchangeCode(ctx, meta, code, p.Verifier, nil)
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500 {
			return loginFail(LoginCodeRejected, httperr.Wrap(http.StatusUnauthorized, httperr.CodeUnauthenticated, "the identity provider rejected the authorization code", err))
		}
		return b.providerDown(err)
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		return loginFail(LoginInvalidIDToken, httperr.New(http.StatusUnauthorized, httperr.CodeUnauthenticated, "the identity provider returned no ID token"))
	}
	idt, err := meta.verifier.Verify(b.providerCtx(ctx), rawID)
	if err != nil {
		return loginFail(LoginInvalidIDToken, httperr.Wrap(http.StatusUnauthorized, httperr.CodeUnauthenticated, "the ID token failed verification", err))
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(p.Nonce)) != 1 {
		return loginFail(LoginInvalidIDToken, httperr.New(http.StatusUnauthorized, httperr.CodeUnauthenticated, "the ID token's nonce does not match this login"))
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			return loginFail(LoginInvalidIDToken, httperr.Wrap(http.StatusUnauthorized, httperr.CodeUnauthenticated, "the access token does not match the ID token's at_hash", err))
		}
	}
	var claims json.RawMessage
	if err := idt.Claims(&claims); err != nil {
		return loginFail(LoginInvalidIDToken, httperr.Wrap(http.StatusUnauthorized, httperr.CodeUnauthenticated, "the ID token's claims cannot be read", err))
	}
	var sidClaim struct {
		SID string `json:"sid"`
	}
	_ = json.Unmarshal(claims, &sidClaim)

	now := b.now()
	s := &sessions.Session{
		Frontend:       b.fe.Name,
		Subject:        idt.Subject,
		ProviderSID:    sidClaim.SID,
		Claims:         claims,
		IDToken:        rawID,
		AccessToken:    tok.AccessToken,
		RefreshToken:   tok.RefreshToken,
		TokenType:      tok.TokenType,
		Expiry:         tok.Expiry,
		CreatedAt:      now,
		AbsoluteExpiry: now.Add(b.fe.Session.AbsoluteTimeout),
		IdleTimeout:    b.fe.Session.IdleTimeout,
	}
	if b.fe.Kind == config.KindMobile {
		// The session is created when the app redeems the code (mobile.go):
		// a code that is never redeemed leaves no session behind.
		return b.handoff(c, s, p)
	}
	ref, err := b.deps.Sessions.Create(ctx, b.binding, s)
	if err != nil {
		return storeDown(err)
	}
	b.loggedIn(ctx, s)
	b.setSessionCookie(c, ref)
	return c.Redirect(http.StatusFound, p.ReturnTo)
}

// providerCtx makes oauth2 and go-oidc use our client for provider calls.
func (b *BFF) providerCtx(ctx context.Context) context.Context {
	return oidc.ClientContext(context.WithValue(ctx, oauth2.HTTPClient, b.deps.HTTPClient), b.deps.HTTPClient)
}

func (b *BFF) user(c echo.Context) error {
	s, err := b.requireSession(c)
	if err != nil {
		return err
	}
	body := map[string]any{}
	if err := json.Unmarshal(s.Claims, &body); err != nil {
		return fmt.Errorf("session claims: %w", err)
	}
	expires := b.sessionExpiresIn(s.Session)
	body["bff"] = map[string]any{
		"sid":                logoutSID(s.Session),
		"session_expires_in": int64(expires / time.Second),
		"logout_url":         b.base + "/bff/logout?sid=" + url.QueryEscape(logoutSID(s.Session)),
	}
	return c.JSON(http.StatusOK, body)
}

// sessionExpiresIn is how long the session lives if it is not used again:
// the store's expiry as this request left it (idle window, capped by the
// absolute timeout).
func (b *BFF) sessionExpiresIn(s *sessions.Session) time.Duration {
	left := s.AbsoluteExpiry.Sub(b.now())
	if exp := s.ExpiresAt(); !exp.IsZero() {
		left = min(left, exp.Sub(b.now()))
	} else if s.IdleTimeout > 0 {
		left = min(left, s.IdleTimeout)
	}
	return max(left, 0)
}

func (b *BFF) logoutGet(c echo.Context) error {
	return b.logout(c, func(s *sessions.Session) error {
		// A bare link must not log users out (logout CSRF): it needs the
		// sid that only /bff/user hands to the page.
		got := c.QueryParam("sid")
		if subtle.ConstantTimeCompare([]byte(got), []byte(logoutSID(s))) != 1 {
			return badRequest("logout by GET needs the sid from /bff/user (bff.logout_url)")
		}
		return nil
	})
}

func (b *BFF) logoutPost(c echo.Context) error {
	if b.fe.Kind != config.KindMobile && b.credential(c.Request()) != "" && c.Request().Header.Get("X-CSRF") != "1" {
		return errCSRF
	}
	return b.logout(c, func(*sessions.Session) error { return nil })
}

// logout ends the caller's session once allowed says so. Without a live
// session there is nothing to end: the browser just goes to after_logout.
func (b *BFF) logout(c echo.Context, allowed func(*sessions.Session) error) error {
	ref := b.credential(c.Request())
	if ref == "" {
		return c.Redirect(http.StatusFound, b.fe.AfterLogout)
	}
	s, err := b.loadRef(c, ref)
	if errors.Is(err, errNoSession) {
		return c.Redirect(http.StatusFound, b.fe.AfterLogout)
	}
	if err != nil {
		return err
	}
	if err := allowed(s); err != nil {
		return err
	}
	return b.endSession(c, s)
}

// endSession deletes the session everywhere, revokes the refresh token and
// sends the browser to the provider's end-session endpoint.
func (b *BFF) endSession(c echo.Context, s *sessions.Session) error {
	ctx := c.Request().Context()
	if err := b.deps.Sessions.Delete(ctx, s); err != nil {
		return storeDown(err)
	}
	b.sessionEnded(ctx, EndLogout, s)
	b.clearSessionCookie(c)
	meta, err := b.provider.get(ctx)
	if err != nil {
		// Logged out here; the provider session outlives it, which the log says.
		b.log.WarnContext(ctx, "logout without provider round trip", "error", err)
		return c.Redirect(http.StatusFound, b.fe.AfterLogout)
	}
	b.revoke(ctx, meta, s)
	if meta.endSession == "" {
		return c.Redirect(http.StatusFound, b.fe.AfterLogout)
	}
	u, err := url.Parse(meta.endSession)
	if err != nil {
		return c.Redirect(http.StatusFound, b.fe.AfterLogout)
	}
	v := u.Query()
	v.Set("id_token_hint", s.IDToken)
	v.Set("client_id", b.fe.OIDC.ClientID)
	v.Set("post_logout_redirect_uri", b.afterLogoutURL())
	u.RawQuery = v.Encode()
	return c.Redirect(http.StatusFound, u.String())
}

func (b *BFF) afterLogoutURL() string {
	if strings.Contains(b.fe.AfterLogout, "://") {
		return b.fe.AfterLogout
	}
	return b.deps.PublicURL + b.fe.AfterLogout
}

// revoke tells the provider the refresh token is dead (RFC 7009). Failure
// is logged, not fatal: the local session is already gone.
func (b *BFF) revoke(ctx context.Context, meta *providerMeta, s *sessions.Session) {
	if meta.revocation == "" || s.RefreshToken == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := b.tokens.revoke(ctx, meta, s.RefreshToken, "refresh_token"); err != nil {
		b.log.WarnContext(ctx, "refresh token revocation failed", "error", err)
	}
}
