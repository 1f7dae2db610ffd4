package bff

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/labstack/echo/v4"
	"golang.org/x/oauth2"

	"github.com/bffgate/bffgate/sessions"
)

// handoffRecord is what a one-time handoff code redeems to. It is stored
// sealed (the handle is a credential) under the hash of the code.
type handoffRecord struct {
	Handle    string `json:"h"`
	Challenge string `json:"c"`
	ExpiresIn int64  `json:"e"`
}

// handoff ends a mobile login: the system browser goes back to the app with
// a short-lived code; only the app that started the login holds the PKCE
// verifier that redeems it.
func (b *BFF) handoff(c echo.Context, handle string, p pendingLogin) error {
	code := randomString(32)
	rec, _ := json.Marshal(handoffRecord{Handle: handle, Challenge: p.AppChallenge,
		ExpiresIn: int64(b.fe.Session.IdleTimeout / time.Second)})
	sealed, err := b.deps.Sessions.Seal(b.handoffSeal(), rec)
	if err != nil {
		return err
	}
	if err := b.deps.Sessions.PutOnce(c.Request().Context(), "handoff", code, []byte(sealed), handoffTTL); err != nil {
		return storeDown(err)
	}
	u, err := url.Parse(p.ReturnTo)
	if err != nil {
		return badRequest("returnTo is not a URI")
	}
	q := u.Query()
	q.Set("code", code)
	u.RawQuery = q.Encode()
	return c.Redirect(http.StatusFound, u.String())
}

func (b *BFF) handoffSeal() string { return "handoff:" + b.fe.Name }

// redeemHandoff is POST M/bff/session {"code","code_verifier"}.
func (b *BFF) redeemHandoff(c echo.Context) error {
	var req struct {
		Code     string `json:"code"`
		Verifier string `json:"code_verifier"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(c.Response(), c.Request().Body, 8<<10))
	if err := dec.Decode(&req); err != nil || req.Code == "" || req.Verifier == "" {
		return badRequest(`the body must be JSON {"code": "...", "code_verifier": "..."}`)
	}
	ctx := c.Request().Context()
	sealed, err := b.deps.Sessions.TakeOnce(ctx, "handoff", req.Code)
	if err != nil {
		if errors.Is(err, sessions.ErrNotFound) {
			return badRequest("the handoff code is unknown, expired or already used")
		}
		return storeDown(err)
	}
	raw, err := b.deps.Sessions.Open(b.handoffSeal(), string(sealed), handoffTTL+5*time.Second)
	if err != nil {
		return badRequest("the handoff code is unknown, expired or already used")
	}
	var rec handoffRecord
	if err := json.Unmarshal(raw, &rec); err != nil {
		return err
	}
	if subtle.ConstantTimeCompare([]byte(oauth2.S256ChallengeFromVerifier(req.Verifier)), []byte(rec.Challenge)) != 1 {
		// The code is spent: a guessed verifier gets one try.
		return badRequest("code_verifier does not match the code_challenge of this login")
	}
	return c.JSON(http.StatusOK, map[string]any{"session": rec.Handle, "expires_in": rec.ExpiresIn, "token_type": "Bearer"})
}
