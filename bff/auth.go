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
	"strconv"
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
	// nonceBytes makes the OIDC nonce 43 characters (base64url of 256
	// bits), within the 64 that profile fapi2 allows (FAPI 2.0 providers
	// need not accept longer ones), for every profile alike. auth_params
	// cannot replace it: config refuses auth_params.nonce.
	nonceBytes = 32
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
	// Prompt, ACRValues and MaxAge are what the login asked the provider
	// for; the callback holds the answer to them.
	Prompt    string `json:"p,omitempty"`
	ACRValues string `json:"acr,omitempty"`
	MaxAge    *int64 `json:"ma,omitempty"`
	// DPoPJKT is the thumbprint /login sent as dpop_jkt: the callback
	// makes the key again with whichever cookie key pair gives it, so a
	// login that spans a rotation of the first pair still ends with the
	// key its code is bound to.
	DPoPJKT string `json:"jkt,omitempty"`
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
		Nonce:    randomString(nonceBytes),
		Verifier: oauth2.GenerateVerifier(),
		ReturnTo: q.Get("returnTo"),
	}
	if p.ReturnTo == "" {
		// Duende BFF's name for it, so its SPAs work unchanged.
		p.ReturnTo = q.Get("returnUrl")
	}
	if len(p.ReturnTo) > maxReturnToLen {
		return badRequest(fmt.Sprintf("returnTo is %d characters long; at most %d are accepted", len(p.ReturnTo), maxReturnToLen))
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
	if err := p.readProviderParams(q); err != nil {
		return err
	}
	meta, err := b.provider.get(c.Request().Context())
	if err != nil {
		return b.providerDown(err)
	}
	// RFC 9449 section 10: the provider binds the code to the session's
	// key, so a stolen code is useless without it. With PAR it is pushed
	// with the rest.
	dpopKey, err := b.loginDPoPKey(p.State)
	if err != nil {
		return err
	}
	if dpopKey != nil {
		p.DPoPJKT = dpopKey.Thumbprint()
	}
	sealed, err := b.sealPending(p)
	if err != nil {
		return err
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
	// Asked for by this login: they override the frontend's defaults.
	if p.Prompt != "" {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", p.Prompt))
	}
	if p.ACRValues != "" {
		opts = append(opts, oauth2.SetAuthURLParam("acr_values", p.ACRValues))
	}
	if p.MaxAge != nil {
		opts = append(opts, oauth2.SetAuthURLParam("max_age", strconv.FormatInt(*p.MaxAge, 10)))
	}
	if p.DPoPJKT != "" {
		opts = append(opts, oauth2.SetAuthURLParam("dpop_jkt", p.DPoPJKT))
	}
	target, err := b.authorizeURL(c.Request().Context(), meta, meta.oauth.AuthCodeURL(p.State, opts...))
	if err != nil {
		return b.providerDown(err)
	}
	return c.Redirect(http.StatusFound, target)
}

// maxReturnToLen keeps the login-state cookie under the browsers' 4 KiB;
// past it the answer is a clear 400, not a cookie that cannot be sealed.
const maxReturnToLen = 2000

// promptValues are the OIDC Core 3.1.2.1 prompt values a login may ask for.
var promptValues = []string{"none", "login", "consent", "select_account"}

// readProviderParams takes the login's own prompt, acr_values and max_age
// (OIDC Core 3.1.2.1), refusing values the provider would reject anyway.
func (p *pendingLogin) readProviderParams(q url.Values) error {
	if v := q.Get("prompt"); v != "" {
		fields := strings.Fields(v)
		for _, f := range fields {
			if !slices.Contains(promptValues, f) {
				return badRequest("prompt must be none, login, consent or select_account")
			}
		}
		if slices.Contains(fields, "none") && len(fields) > 1 {
			return badRequest("prompt=none cannot be combined with other prompt values")
		}
		p.Prompt = strings.Join(fields, " ")
	}
	if v := q.Get("acr_values"); v != "" {
		if len(v) > config.MaxACRValues || strings.ContainsFunc(v, func(r rune) bool { return r < 0x21 && r != ' ' || r > 0x7e }) {
			return badRequest(fmt.Sprintf("acr_values must be space-separated printable ASCII values, at most %d characters", config.MaxACRValues))
		}
		p.ACRValues = strings.Join(strings.Fields(v), " ")
	}
	if v := q.Get("max_age"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 || n > int64(config.MaxStepUpAge/time.Second) {
			return badRequest("max_age must be a number of seconds")
		}
		p.MaxAge = &n
	}
	return nil
}

// sealPending seals p for the login-state cookie.
func (b *BFF) sealPending(p pendingLogin) (string, error) {
	var buf strings.Builder
	enc := json.NewEncoder(&buf)
	// "<" as \u003c would make a returnTo six times its size in the cookie.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(p); err != nil {
		return "", fmt.Errorf("login state: %w", err)
	}
	sealed, err := b.deps.Sessions.Seal(b.loginSeal(), []byte(buf.String()))
	if err != nil {
		// Within maxReturnToLen only characters JSON must escape get here.
		return "", httperr.Wrap(http.StatusBadRequest, httperr.CodeBadRequest, "returnTo is too long to keep for this login", err)
	}
	return sealed, nil
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

// callback completes the code flow. Every failure leaves no session behind
// and stores nothing but the single-use marker of a known login; see
// loginFailed for what the browser gets.
func (b *BFF) callback(c echo.Context) error {
	r := c.Request()
	ctx := r.Context()
	q := r.URL.Query()
	state := q.Get("state")
	if state == "" {
		return b.failLogin(c, nil, LoginInvalidState, "", badRequest("the callback has no state parameter"))
	}
	cookieName := b.loginCookieName(state)
	lc, err := r.Cookie(cookieName)
	if err != nil {
		return b.failLogin(c, nil, LoginInvalidState, "", badRequest(b.noPendingLoginMessage(r, state)))
	}
	// The login cookie is spent whatever happens next.
	c.SetCookie(&http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: b.secure, SameSite: http.SameSiteLaxMode})
	raw, err := b.deps.Sessions.Open(b.loginSeal(), lc.Value, loginTTL)
	if err != nil {
		return b.failLogin(c, nil, LoginInvalidState, "", badRequest("the login state cookie is invalid or expired"))
	}
	var p pendingLogin
	if err := json.Unmarshal(raw, &p); err != nil || subtle.ConstantTimeCompare([]byte(p.State), []byte(state)) != 1 {
		return b.failLogin(c, nil, LoginInvalidState, "", badRequest("the state parameter does not match this browser's pending login"))
	}
	// From here the pending login is this browser's: failures go back to it.
	if e := q.Get("error"); e != "" {
		// Before any store write: an error callback costs the store nothing.
		msg := "the identity provider refused the login: " + e
		if d := q.Get("error_description"); d != "" {
			msg += ": " + d
		}
		return b.failLogin(c, &p, LoginProviderError, p.providerErrorCode(e),
			httperr.New(http.StatusUnauthorized, httperr.CodeUnauthenticated, msg))
	}
	code := q.Get("code")
	if code == "" {
		return b.failLogin(c, &p, LoginInvalidResponse, "", badRequest("the callback has no code parameter"))
	}
	// Spent across all instances; kept as long as the cookie could still open.
	if err := b.deps.Sessions.PutOnce(ctx, "login-spent", state, []byte{1}, loginTTL+2*time.Minute); err != nil {
		if errors.Is(err, sessions.ErrExists) {
			return b.failLogin(c, &p, LoginInvalidState, "", badRequest("this login was already completed; start again"))
		}
		return b.failLogin(c, &p, LoginStoreUnavailable, "", storeDown(err))
	}
	meta, err := b.provider.get(ctx)
	if err != nil {
		return b.failLogin(c, &p, LoginProviderUnavailable, "", b.providerDown(err))
	}
	// RFC 9207: a provider that names itself must be the one we sent the user to.
	if q.Has("iss") && q.Get("iss") != meta.issuer {
		return b.failLogin(c, &p, LoginInvalidResponse, "", badRequest("the callback's iss parameter does not name this frontend's provider"))
	}
	if b.fe.OIDC.Profile == config.ProfileFAPI2 && !q.Has("iss") {
		return b.failLogin(c, &p, LoginInvalidResponse, "", badRequest("the callback has no iss parameter, which profile fapi2 requires (RFC 9207)"))
	}
	// DPoP: the session's own key, the one /login sent the thumbprint of,
	// kept with its tokens from now on.
	dpopKey, err := b.callbackDPoPKey(&p)
	if err != nil {
		return b.failLogin(c, &p, LoginInternal, "", httperr.Wrap(http.StatusInternalServerError, httperr.CodeInternal, "the session's DPoP key", err))
	}
	var dpopDER []byte
	if dpopKey != nil {
		if dpopDER, err = dpopKey.Marshal(); err != nil {
			return b.failLogin(c, &p, LoginInternal, "", httperr.Wrap(http.StatusInternalServerError, httperr.CodeInternal, "the session's DPoP key", err))
		}
	}
	tok, err := b.tokens.exchangeCode(ctx, meta, code, p.Verifier, dpopKey)
	if errors.Is(err, errBearerDowngrade) {
		return b.failLogin(c, &p, LoginInvalidResponse, "", httperr.Wrap(http.StatusUnauthorized, httperr.CodeUnauthenticated, "the identity provider did not bind the token to DPoP", err))
	}
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500 {
			return b.failLogin(c, &p, LoginCodeRejected, "", httperr.Wrap(http.StatusUnauthorized, httperr.CodeUnauthenticated, "the identity provider rejected the authorization code", err))
		}
		return b.failLogin(c, &p, LoginProviderUnavailable, "", b.providerDown(err))
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		return b.failLogin(c, &p, LoginInvalidIDToken, "", httperr.New(http.StatusUnauthorized, httperr.CodeUnauthenticated, "the identity provider returned no ID token"))
	}
	idt, err := meta.verifier.Verify(b.providerCtx(ctx), rawID)
	if err != nil {
		return b.failLogin(c, &p, LoginInvalidIDToken, "", httperr.Wrap(http.StatusUnauthorized, httperr.CodeUnauthenticated, "the ID token failed verification", err))
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(p.Nonce)) != 1 {
		return b.failLogin(c, &p, LoginInvalidIDToken, "", httperr.New(http.StatusUnauthorized, httperr.CodeUnauthenticated, "the ID token's nonce does not match this login"))
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			return b.failLogin(c, &p, LoginInvalidIDToken, "", httperr.Wrap(http.StatusUnauthorized, httperr.CodeUnauthenticated, "the access token does not match the ID token's at_hash", err))
		}
	}
	var claims json.RawMessage
	if err := idt.Claims(&claims); err != nil {
		return b.failLogin(c, &p, LoginInvalidIDToken, "", httperr.Wrap(http.StatusUnauthorized, httperr.CodeUnauthenticated, "the ID token's claims cannot be read", err))
	}
	var extra struct {
		SID      string `json:"sid"`
		ACR      string `json:"acr"`
		AuthTime *int64 `json:"auth_time"`
	}
	_ = json.Unmarshal(claims, &extra)
	if err := p.checkStepUp(extra.ACR, extra.AuthTime, b.now()); err != nil {
		return b.failLogin(c, &p, LoginInvalidIDToken, errStepUpFailed,
			httperr.Wrap(http.StatusUnauthorized, httperr.CodeUnauthenticated, "the login does not satisfy the requested acr_values or max_age", err))
	}
	// A new login in a browser that has a session of this frontend ends
	// that session (ASVS V7.2.4): a fixed or stolen old cookie dies with it.
	if err := b.endPreviousSession(c); err != nil {
		return b.failLogin(c, &p, LoginStoreUnavailable, "", storeDown(err))
	}

	now := b.now()
	s := &sessions.Session{
		Frontend:        b.fe.Name,
		Subject:         idt.Subject,
		ProviderSID:     extra.SID,
		Claims:          claims,
		IDToken:         rawID,
		AccessToken:     tok.AccessToken,
		RefreshToken:    tok.RefreshToken,
		TokenType:       tok.TokenType,
		DPoPKey:         dpopDER,
		Expiry:          tok.Expiry,
		TokenObtainedAt: now,
		CreatedAt:       now,
		AbsoluteExpiry:  now.Add(b.fe.Session.AbsoluteTimeout),
		IdleTimeout:     b.fe.Session.IdleTimeout,
	}
	if b.fe.Kind == config.KindMobile {
		// The session is created when the app redeems the code (mobile.go):
		// a code that is never redeemed leaves no session behind.
		if err := b.handoff(c, s, p); err != nil {
			// The app is still told, with its state, rather than left waiting.
			var he *httperr.Error
			if !errors.As(err, &he) {
				he = storeDown(err)
			}
			return b.failLogin(c, &p, LoginStoreUnavailable, "", he)
		}
		return nil
	}
	ref, err := b.deps.Sessions.Create(ctx, b.binding, s)
	if err != nil {
		return b.failLogin(c, &p, LoginStoreUnavailable, "", storeDown(err))
	}
	b.loggedIn(ctx, s)
	b.setSessionCookie(c, ref)
	return c.Redirect(http.StatusFound, p.ReturnTo)
}

// endPreviousSession deletes the session this browser's cookie names, if it
// is still live. A cookie that does not open is nothing to end.
func (b *BFF) endPreviousSession(c echo.Context) error {
	if b.fe.Kind == config.KindMobile {
		return nil // the system browser carries no handle
	}
	ref := b.credential(c.Request())
	if ref == "" {
		return nil
	}
	ctx := c.Request().Context()
	old, err := b.deps.Sessions.Load(ctx, b.binding, ref)
	switch {
	case errors.Is(err, sessions.ErrNotFound), errors.Is(err, sessions.ErrInvalidRef):
		return nil
	case err != nil:
		return err
	}
	if err := b.deps.Sessions.Delete(ctx, old); err != nil {
		return err
	}
	b.sessionEnded(ctx, EndLogout, old)
	return nil
}

// Error codes a failed login sends back to returnTo (error=...), besides
// the provider's own OAuth error codes.
const (
	errLoginFailed  = "login_failed"
	errStepUpFailed = "step_up_failed"
)

// providerErrorCode is the error code to send back for the provider's
// error=e: its OAuth code (RFC 6749 4.1.2.1), or login_required for every
// "the user must interact" answer to a silent login (prompt=none).
func (p *pendingLogin) providerErrorCode(e string) string {
	if p.Prompt == "none" {
		switch e {
		case "login_required", "interaction_required", "consent_required":
			return "login_required"
		}
	}
	if len(e) > 64 || strings.ContainsFunc(e, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_') }) {
		return errLoginFailed // not a code: do not echo it
	}
	return e
}

// checkStepUp holds the ID token's acr and auth_time to what this login
// asked for (OIDC Core 3.1.3.7 items 11 and 13).
func (p *pendingLogin) checkStepUp(acr string, authTime *int64, now time.Time) error {
	if p.ACRValues != "" && !slices.Contains(strings.Fields(p.ACRValues), acr) {
		return fmt.Errorf("acr %q is not one of %q", acr, p.ACRValues)
	}
	if p.MaxAge != nil {
		if authTime == nil {
			return errors.New("max_age was requested and the ID token has no auth_time")
		}
		age := now.Sub(time.Unix(*authTime, 0))
		if age > time.Duration(*p.MaxAge)*time.Second+clockSkew {
			return fmt.Errorf("auth_time is %v old, max_age is %ds", age.Round(time.Second), *p.MaxAge)
		}
	}
	return nil
}

// failLogin ends a failed callback. When the pending login is known
// (p != nil) the browser goes back to its returnTo (mobile: the app's
// redirect URI) with error=code (login_failed when code is empty);
// otherwise it gets a 400 naming the problem, as an HTML page for a browser
// and JSON for anything else. The returned error carries the reason and the
// cause: observeRoutes counts it and logs the login_failed audit event at
// warn. The answer is already written unless it is the JSON one.
func (b *BFF) failLogin(c echo.Context, p *pendingLogin, reason, code string, he *httperr.Error) error {
	if p != nil {
		if code == "" {
			code = errLoginFailed
		}
		params := url.Values{"error": {code}}
		if b.fe.Kind == config.KindMobile && p.AppState != "" {
			params.Set("state", p.AppState) // RFC 6749 4.1.2.1: the app matches it to its request
		}
		target, err := addQuery(p.ReturnTo, params)
		if err == nil {
			if err := c.Redirect(http.StatusFound, target); err != nil {
				return err
			}
			return loginFail(reason, he)
		}
	}
	bad := he
	if bad.Status != http.StatusBadRequest {
		bad = httperr.Wrap(http.StatusBadRequest, httperr.CodeBadRequest, he.Message, he.Err)
	}
	if prefersHTML(c.Request()) {
		if err := b.writeErrorPage(c, http.StatusBadRequest, bad.Message); err != nil {
			return err
		}
	}
	return loginFail(reason, bad)
}

// addQuery returns raw with params added to its query (existing ones kept).
func addQuery(raw string, params url.Values) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	q := u.Query()
	for k, vs := range params {
		q[k] = vs
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// providerCtx makes oauth2 and go-oidc use our client for provider calls.
func (b *BFF) providerCtx(ctx context.Context) context.Context {
	return oidc.ClientContext(context.WithValue(ctx, oauth2.HTTPClient, b.deps.HTTPClient), b.deps.HTTPClient)
}

// protocolClaims are ID token claims that only serve the login's checks.
var protocolClaims = []string{"nonce", "at_hash", "c_hash"}

func (b *BFF) user(c echo.Context) error {
	s, err := b.requireSession(c)
	if err != nil {
		return err
	}
	body := map[string]any{}
	if err := json.Unmarshal(s.Claims, &body); err != nil {
		return fmt.Errorf("session claims: %w", err)
	}
	// Protocol-only claims mean nothing to the page (Duende BFF drops them too).
	for _, k := range protocolClaims {
		delete(body, k)
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
