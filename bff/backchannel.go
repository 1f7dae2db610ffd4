package bff

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/labstack/echo/v4"

	"github.com/bffgate/bffgate/bff/httperr"
	"github.com/bffgate/bffgate/sessions"
)

const (
	backchannelEvent = "http://schemas.openid.net/event/backchannel-logout"
	// logoutTokenMaxAge bounds how old a logout token may be; the jti replay
	// cache keeps ids at least this long, so a replay is always caught.
	logoutTokenMaxAge = 10 * time.Minute
	clockSkew         = 2 * time.Minute
	// maxLogoutTokenBody caps what an anonymous caller can make us read; a
	// logout token is well under 2 KiB.
	maxLogoutTokenBody = 16 << 10
)

var (
	errLogoutBodyTooLarge = httperr.New(http.StatusRequestEntityTooLarge, httperr.CodeTooLarge,
		"a back-channel logout request is at most 16 KiB")
	// errInvalidLogoutToken is the one answer to every bad token.
	errInvalidLogoutToken = badRequest("invalid logout_token")
	errProviderMetadata   = errors.New("provider metadata unavailable")
)

// signingAlgs are the JWS algorithms a provider may sign logout tokens with.
var signingAlgs = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
}

type logoutClaims struct {
	Subject  string                     `json:"sub"`
	SID      string                     `json:"sid"`
	JTI      string                     `json:"jti"`
	IssuedAt *int64                     `json:"iat"`
	Expiry   *int64                     `json:"exp"`
	Events   map[string]json.RawMessage `json:"events"`
	Nonce    *json.RawMessage           `json:"nonce"`
}

// backchannelLogout is OpenID Connect Back-Channel Logout 1.0 §2.6: verify
// the logout token, then end every session of this frontend that it names.
func (b *BFF) backchannelLogout(c echo.Context) error {
	r := c.Request()
	// Anyone may post here: refuse a large body before reading it, and stop
	// reading a chunked one at the cap.
	if r.ContentLength > maxLogoutTokenBody {
		return errLogoutBodyTooLarge
	}
	r.Body = http.MaxBytesReader(c.Response(), r.Body, maxLogoutTokenBody)
	if err := r.ParseForm(); err != nil {
		if tooLarge := (*http.MaxBytesError)(nil); errors.As(err, &tooLarge) {
			return errLogoutBodyTooLarge
		}
		return badRequest("the body must be application/x-www-form-urlencoded with logout_token")
	}
	raw := r.PostForm.Get("logout_token")
	if raw == "" {
		return badRequest("logout_token is missing")
	}
	claims, err := b.verifyLogoutToken(c, raw)
	if err != nil {
		// The cause stays in the log: it may name the provider's address or
		// a network error, and it would teach a forger what to fix.
		b.log.WarnContext(r.Context(), "back-channel logout refused", "error", err)
		if errors.Is(err, errKeysUnavailable) || errors.Is(err, errProviderMetadata) {
			return httperr.New(http.StatusServiceUnavailable, httperr.CodeProviderUnavailable,
				"the logout token cannot be checked now: the identity provider's keys are unavailable; retry later")
		}
		return errInvalidLogoutToken
	}
	ctx := r.Context()
	// Remember the jti before acting so a concurrent replay on another
	// instance is refused too.
	if err := b.deps.Sessions.PutOnce(ctx, "jti:"+b.fe.Name, claims.JTI, []byte{1}, logoutTokenMaxAge+2*clockSkew); err != nil {
		if errors.Is(err, sessions.ErrExists) {
			b.log.WarnContext(ctx, "back-channel logout refused", "error", "jti already used")
			return errInvalidLogoutToken
		}
		return storeDown(err)
	}
	n, err := b.deps.Sessions.EndSessions(ctx, b.fe.Name, claims.SID, claims.Subject)
	if err != nil {
		// Forget the jti, or the provider's retry would be refused as a
		// replay and the sessions would never end.
		_, _ = b.deps.Sessions.TakeOnce(context.WithoutCancel(ctx), "jti:"+b.fe.Name, claims.JTI)
		return storeDown(err)
	}
	b.backchannelEnded(ctx, claims.Subject, claims.SID, n)
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.NoContent(http.StatusOK)
}

func (b *BFF) verifyLogoutToken(c echo.Context, raw string) (*logoutClaims, error) {
	if err := checkLogoutHeader(raw); err != nil {
		return nil, err
	}
	meta, err := b.provider.get(c.Request().Context())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errProviderMetadata, err)
	}
	// Signature, iss and aud as for an ID token; exp is checked below
	// because early drafts made it optional.
	tok, err := meta.logoutVerifier.Verify(b.providerCtx(c.Request().Context()), raw)
	if err != nil {
		return nil, err
	}
	var payload json.RawMessage
	if err := tok.Claims(&payload); err != nil {
		return nil, err
	}
	return checkLogoutClaims(payload, b.now())
}

// checkLogoutHeader refuses what is not one compact JWS with an accepted
// algorithm and, when a typ is present, the logout token's typ.
func checkLogoutHeader(raw string) error {
	jws, err := jose.ParseSignedCompact(raw, signingAlgs)
	if err != nil {
		return fmt.Errorf("not a signed JWT: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return errors.New("exactly one signature expected")
	}
	// Dex sends no typ; a present one must say what this is (RFC 8725 §3.11).
	if typ, ok := jws.Signatures[0].Protected.ExtraHeaders[jose.HeaderType].(string); ok &&
		!strings.EqualFold(typ, "logout+jwt") && !strings.EqualFold(typ, "application/logout+jwt") {
		return fmt.Errorf("typ %q is not logout+jwt", typ)
	}
	return nil
}

// checkLogoutClaims applies Back-Channel Logout 1.0 §2.6 steps 4-6 to a
// verified token's payload (iss and aud are the verifier's).
func checkLogoutClaims(payload []byte, now time.Time) (*logoutClaims, error) {
	var cl logoutClaims
	if err := json.Unmarshal(payload, &cl); err != nil {
		return nil, fmt.Errorf("claims: %w", err)
	}
	switch {
	case cl.IssuedAt == nil:
		return nil, errors.New("iat is missing")
	case time.Unix(*cl.IssuedAt, 0).After(now.Add(clockSkew)):
		return nil, errors.New("iat is in the future")
	case time.Unix(*cl.IssuedAt, 0).Before(now.Add(-logoutTokenMaxAge)):
		return nil, errors.New("iat is too old")
	case cl.Expiry != nil && time.Unix(*cl.Expiry, 0).Before(now.Add(-clockSkew)):
		return nil, errors.New("the token has expired")
	case cl.Nonce != nil:
		return nil, errors.New("a logout token must not contain a nonce")
	case cl.Events == nil:
		return nil, errors.New("the events claim is missing")
	case cl.SID == "" && cl.Subject == "":
		return nil, errors.New("neither sid nor sub is present")
	case cl.JTI == "":
		return nil, errors.New("jti is missing")
	}
	ev, ok := cl.Events[backchannelEvent]
	if !ok {
		return nil, errors.New("events lacks " + backchannelEvent)
	}
	var obj map[string]any
	if err := json.Unmarshal(ev, &obj); err != nil || obj == nil {
		return nil, errors.New("the back-channel logout event must be a JSON object")
	}
	return &cl, nil
}
