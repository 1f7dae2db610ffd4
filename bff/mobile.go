package bff

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/oauth2"

	"github.com/bffgate/bffgate/sessions"
)

// A mobile frontend is, for its app, a standard OAuth 2.0 authorization
// server (RFC 6749 code grant, RFC 7636 PKCE, RFC 8252 native apps, RFC 7009
// revocation, RFC 8414 metadata), so that AppAuth and other stock client
// libraries work unchanged: M/bff/login is the authorization endpoint,
// M/bff/session the token endpoint and M/bff/revoke the revocation endpoint.
// The "access token" the app gets is the session handle; the provider's
// tokens never leave the gateway.

const (
	// maxSessionRequest bounds the body of POST M/bff/session and /revoke.
	maxSessionRequest = 8 << 10
	// maxAppState bounds the app's state: it rides in the login-state
	// cookie, which browsers cap at 4 KiB.
	maxAppState = 1024
	// handoffKind is the single-use store kind of handoff codes.
	handoffKind = "handoff"
)

// mobileLoginParams reads the app's authorization request into p: the app
// redirect URI (returnTo, or redirect_uri as AppAuth sends it), its PKCE
// challenge and its state. client_id and scope are the app's business, not
// the provider's: they are ignored (the BFF asks the provider for its own).
func mobileLoginParams(q url.Values, allowed []string, p *pendingLogin) error {
	rt, ru := q.Get("returnTo"), q.Get("redirect_uri")
	switch {
	case rt == "":
		rt = ru
	case ru != "" && ru != rt:
		return badRequest("returnTo and redirect_uri differ: give one of them")
	}
	if rt == "" {
		return badRequest("returnTo (or redirect_uri) is required: the app redirect URI registered in return_to")
	}
	if !validAppReturnTo(rt, allowed) {
		return badRequest("returnTo is not one of this app's registered redirect URIs")
	}
	p.ReturnTo = rt
	if t := q.Get("response_type"); t != "" && t != "code" {
		return badRequest("response_type must be code")
	}
	p.AppState = q.Get("state")
	if len(p.AppState) > maxAppState {
		return badRequest(fmt.Sprintf("state is longer than %d characters", maxAppState))
	}
	p.AppChallenge = q.Get("code_challenge")
	if m := q.Get("code_challenge_method"); m != "" && m != "S256" {
		return badRequest("code_challenge_method must be S256")
	}
	if !validChallenge(p.AppChallenge) {
		return badRequest("code_challenge is required: base64url(SHA-256(code_verifier)), 43 characters")
	}
	return nil
}

// handoffRecord is what a one-time handoff code redeems to: the session
// still to be created, and what the redemption must prove. PutOnce encrypts
// it under a key derived from the code, which only the app's redirect
// carries, so the provider's tokens in it are no more readable from a dump
// of the store than a session's.
type handoffRecord struct {
	Session     *sessions.Session `json:"s"`
	Challenge   string            `json:"c"`
	RedirectURI string            `json:"r"`
}

// handoff ends a mobile login: the system browser goes back to the app with
// a short-lived code (and the app's state); only the app that started the
// login holds the PKCE verifier that redeems it. The session is created at
// redemption, not here: a code that is never redeemed, or redeemed with the
// wrong verifier, leaves nothing behind once the code is gone.
func (b *BFF) handoff(c echo.Context, s *sessions.Session, p pendingLogin) error {
	u, err := url.Parse(p.ReturnTo)
	if err != nil {
		return badRequest("returnTo is not a URI")
	}
	rec, err := json.Marshal(handoffRecord{Session: s, Challenge: p.AppChallenge, RedirectURI: p.ReturnTo})
	if err != nil {
		return fmt.Errorf("handoff record: %w", err)
	}
	code := randomString(32)
	if err := b.deps.Sessions.PutOnce(c.Request().Context(), handoffKind, code, rec, handoffTTL); err != nil {
		return storeDown(err)
	}
	q := u.Query()
	q.Set("code", code)
	if p.AppState != "" {
		q.Set("state", p.AppState)
	}
	u.RawQuery = q.Encode()
	return c.Redirect(http.StatusFound, u.String())
}

// sessionRequest is a parsed POST M/bff/session.
type sessionRequest struct {
	Code        string
	Verifier    string
	RedirectURI string // form only; checked against the login's when given
	// OAuth: the request was an RFC 6749 token request (form-encoded), so
	// the answer and the errors take RFC 6749's shape.
	OAuth bool
}

// oauthError is an RFC 6749 section 5.2 error.
type oauthError struct {
	Code        string
	Description string
}

func (e *oauthError) Error() string { return e.Code + ": " + e.Description }

func invalidRequest(desc string) *oauthError { return &oauthError{"invalid_request", desc} }
func invalidGrant(desc string) *oauthError   { return &oauthError{"invalid_grant", desc} }

// isForm reports whether contentType is application/x-www-form-urlencoded.
func isForm(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "application/x-www-form-urlencoded"
}

// parseSessionRequest reads the body of POST M/bff/session: the JSON
// {"code", "code_verifier"} of SPEC section 3, or, form-encoded, an RFC 6749
// token request (grant_type=authorization_code, code, code_verifier,
// redirect_uri; client_id and anything else ignored). A non-nil error is
// always an *oauthError; req.OAuth is set either way.
func parseSessionRequest(contentType string, body []byte) (req sessionRequest, err *oauthError) {
	if !isForm(contentType) {
		var j struct {
			Code     string `json:"code"`
			Verifier string `json:"code_verifier"`
		}
		if e := json.Unmarshal(body, &j); e != nil || j.Code == "" || j.Verifier == "" {
			return req, invalidRequest(`the body must be JSON {"code": "...", "code_verifier": "..."}, or a form-encoded token request`)
		}
		return sessionRequest{Code: j.Code, Verifier: j.Verifier}, nil
	}
	req.OAuth = true
	v, e := url.ParseQuery(string(body))
	if e != nil {
		return req, invalidRequest("the body is not valid application/x-www-form-urlencoded")
	}
	for k, vs := range v {
		if len(vs) > 1 {
			// RFC 6749 section 3.2: parameters must not be repeated.
			return req, invalidRequest("parameter " + k + " is repeated")
		}
	}
	switch gt := v.Get("grant_type"); gt {
	case "":
		return req, invalidRequest("grant_type is required")
	case "authorization_code":
	default:
		return req, &oauthError{"unsupported_grant_type", "only grant_type=authorization_code is supported"}
	}
	req.Code, req.Verifier, req.RedirectURI = v.Get("code"), v.Get("code_verifier"), v.Get("redirect_uri")
	switch {
	case req.Code == "":
		return req, invalidRequest("code is required")
	case req.Verifier == "":
		return req, invalidRequest("code_verifier is required")
	}
	return req, nil
}

// redeemHandoff is POST M/bff/session: the app trades the handoff code and
// its PKCE verifier for a session handle.
func (b *BFF) redeemHandoff(c echo.Context) error {
	r := c.Request()
	oauthReq := isForm(r.Header.Get("Content-Type"))
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), r.Body, maxSessionRequest))
	if err != nil {
		return b.sessionError(c, oauthReq, invalidRequest("the body is unreadable or larger than 8 KiB"))
	}
	req, perr := parseSessionRequest(r.Header.Get("Content-Type"), body)
	if perr != nil {
		return b.sessionError(c, req.OAuth, perr)
	}
	s, handle, err := b.redeem(r.Context(), req)
	if err != nil {
		return b.sessionError(c, req.OAuth, err)
	}
	expiresIn := int64(b.sessionExpiresIn(s) / time.Second)
	if req.OAuth {
		return c.JSON(http.StatusOK, map[string]any{"access_token": handle, "token_type": "Bearer", "expires_in": expiresIn})
	}
	return c.JSON(http.StatusOK, map[string]any{"session": handle, "expires_in": expiresIn, "token_type": "Bearer"})
}

// redeem takes the code (it is spent whatever follows: a guessed verifier
// gets one try), checks the verifier and redirect URI, and only then
// creates the session.
func (b *BFF) redeem(ctx context.Context, req sessionRequest) (*sessions.Session, string, error) {
	raw, err := b.deps.Sessions.TakeOnce(ctx, handoffKind, req.Code)
	switch {
	case errors.Is(err, sessions.ErrNotFound), errors.Is(err, sessions.ErrInvalidRef):
		return nil, "", invalidGrant("the code is unknown, expired or already used")
	case err != nil:
		return nil, "", storeDown(err)
	}
	var rec handoffRecord
	if err := json.Unmarshal(raw, &rec); err != nil || rec.Session == nil {
		return nil, "", fmt.Errorf("handoff record: %v", err)
	}
	if rec.Session.Frontend != b.fe.Name {
		return nil, "", invalidGrant("the code was issued by another frontend")
	}
	if subtle.ConstantTimeCompare([]byte(oauth2.S256ChallengeFromVerifier(req.Verifier)), []byte(rec.Challenge)) != 1 {
		return nil, "", invalidGrant("code_verifier does not match the code_challenge of this login")
	}
	if req.RedirectURI != "" && req.RedirectURI != rec.RedirectURI {
		return nil, "", invalidGrant("redirect_uri differs from the one of the authorization request")
	}
	handle, err := b.deps.Sessions.Create(ctx, b.binding, rec.Session)
	if err != nil {
		return nil, "", storeDown(err)
	}
	b.loggedIn(ctx, rec.Session)
	return rec.Session, handle, nil
}

// sessionError answers a failed /session or /revoke request: RFC 6749
// errors for an OAuth client, the gateway's own shape for the JSON form.
func (b *BFF) sessionError(c echo.Context, oauthReq bool, err error) error {
	var oe *oauthError
	if !errors.As(err, &oe) {
		return err
	}
	b.log.DebugContext(c.Request().Context(), "mobile session request refused", "error", oe.Code, "reason", oe.Description)
	if !oauthReq {
		return badRequest(oe.Description)
	}
	return c.JSON(http.StatusBadRequest, map[string]string{"error": oe.Code, "error_description": oe.Description})
}

// revokeHandle is POST M/bff/revoke (RFC 7009) with the form token=<handle>:
// it ends that session, as logout does, and revokes the refresh token at
// the provider. An unknown or invalid handle is 200 too: the client cannot
// act on the difference, and an attacker learns nothing from it.
func (b *BFF) revokeHandle(c echo.Context) error {
	r := c.Request()
	if !isForm(r.Header.Get("Content-Type")) {
		return b.sessionError(c, true, invalidRequest("the body must be application/x-www-form-urlencoded: token=<handle>"))
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), r.Body, maxSessionRequest))
	if err != nil {
		return b.sessionError(c, true, invalidRequest("the body is unreadable or larger than 8 KiB"))
	}
	v, err := url.ParseQuery(string(body))
	if err != nil || v.Get("token") == "" {
		return b.sessionError(c, true, invalidRequest("token is required"))
	}
	ctx := r.Context()
	s, err := b.deps.Sessions.Load(ctx, b.binding, v.Get("token"))
	switch {
	case errors.Is(err, sessions.ErrNotFound), errors.Is(err, sessions.ErrInvalidRef):
		return c.NoContent(http.StatusOK)
	case err != nil:
		return storeDown(err)
	}
	if err := b.deps.Sessions.Delete(ctx, s); err != nil {
		return storeDown(err)
	}
	// The app's revocation is its user's logout.
	b.sessionEnded(ctx, EndLogout, s)
	if meta, err := b.provider.get(ctx); err == nil {
		b.revoke(ctx, meta, s)
	}
	return c.NoContent(http.StatusOK)
}

// authServerMetadata is GET M/.well-known/oauth-authorization-server (RFC
// 8414): what an OAuth client library discovers to talk to this frontend.
// The issuer is the frontend's public base URL; the app is a public client
// (no client authentication), and only the code grant with S256 is offered.
func (b *BFF) authServerMetadata(c echo.Context) error {
	base := b.deps.PublicURL + b.base
	c.Response().Header().Set("X-Content-Type-Options", "nosniff")
	return c.JSON(http.StatusOK, map[string]any{
		"issuer":                                     base,
		"authorization_endpoint":                     base + "/bff/login",
		"token_endpoint":                             base + "/bff/session",
		"revocation_endpoint":                        base + "/bff/revoke",
		"response_types_supported":                   []string{"code"},
		"grant_types_supported":                      []string{"authorization_code"},
		"code_challenge_methods_supported":           []string{"S256"},
		"token_endpoint_auth_methods_supported":      []string{"none"},
		"revocation_endpoint_auth_methods_supported": []string{"none"},
	})
}
