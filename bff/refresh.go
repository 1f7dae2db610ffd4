package bff

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"time"

	"golang.org/x/oauth2"

	"github.com/bffgate/bffgate/bff/httperr"
	"github.com/bffgate/bffgate/sessions"
)

var errSessionExpired = httperr.New(http.StatusUnauthorized, httperr.CodeSessionExpired, "the session has expired at the identity provider; log in again")

// errProviderUnavailable is the answer to a request whose access token has
// expired while the provider cannot renew it. The session is kept.
func errProviderUnavailable(cause error) *httperr.Error {
	return httperr.Wrap(http.StatusServiceUnavailable, httperr.CodeProviderUnavailable,
		"the access token has expired and the identity provider cannot be reached to renew it; the session is kept, try again shortly", cause)
}

// refresher renews access tokens so that a slow, hanging or absent
// provider never logs anyone out and never stalls a request that can be
// served (SPEC section 4):
//
//   - a request whose access token is still valid never waits: the refresh
//     runs beside it and the request goes on with the current token;
//   - the refresh runs detached from every request, once per session in
//     this process (flights) and once across instances (a store lock whose
//     lease is renewed while it runs), and once sent it is awaited up to
//     provider_timeout;
//   - a transient failure keeps the session and backs off 1s doubling to
//     30s, the state kept in the session record so that all instances
//     honour it;
//   - a refresh whose answer was lost is recorded before it is sent
//     (RefreshUnsure), so that the provider refusing the same token later
//     does not end a session whose access token still works.
type refresher struct {
	b       *BFF
	flights flights[*sessions.Session]
}

func newRefresher(b *BFF) *refresher { return &refresher{b: b} }

// margin is the effective refresh margin of s: refresh_margin, but at most
// half of the access token's lifetime, so that short-lived tokens are not
// refreshed on every request.
func (r *refresher) margin(s *sessions.Session) time.Duration {
	m := r.b.deps.RefreshMargin
	if !s.TokenObtainedAt.IsZero() && s.Expiry.After(s.TokenObtainedAt) {
		m = min(m, s.Expiry.Sub(s.TokenObtainedAt)/2)
	}
	return m
}

// due reports whether s's access token should be refreshed.
func (r *refresher) due(s *sessions.Session) bool {
	return !s.Expiry.IsZero() && !r.b.now().Add(r.margin(s)).Before(s.Expiry)
}

func (r *refresher) expired(s *sessions.Session) bool {
	return !s.Expiry.IsZero() && !r.b.now().Before(s.Expiry)
}

// ensureFresh returns a session whose access token may be sent. Only a
// request whose token has expired waits for the refresh, and at most
// expiredWait: then it is answered 503 provider_unavailable while the
// refresh goes on.
func (r *refresher) ensureFresh(ctx context.Context, ls *loadedSession) (*loadedSession, error) {
	s := ls.Session
	if !r.due(s) {
		return ls, nil
	}
	valid := !r.expired(s)
	switch {
	case s.RefreshToken == "":
		// Nothing to refresh with (none was issued, or the provider spent
		// it in an attempt whose answer was lost): the token serves until
		// it expires.
		if valid {
			return ls, nil
		}
		r.end(ctx, s, EndExpired)
		return nil, errSessionExpired
	case r.b.now().Before(s.RefreshRetryAt):
		// Backing off after a transient failure: no attempt, no waiting.
		if valid {
			return ls, nil
		}
		return nil, errProviderUnavailable(errors.New("token refresh backing off after a transient failure"))
	}
	f, started := r.flights.start(ls.ID(), func() (*sessions.Session, error) { return r.run(ctx, ls) })
	if !started {
		r.b.obs().TokenRefresh(r.b.fe.Name, RefreshJoined)
	}
	if valid {
		return ls, nil
	}
	cur, err, ok := f.wait(ctx, expiredWait)
	switch {
	case !ok && ctx.Err() != nil:
		return nil, ctx.Err()
	case !ok:
		return nil, errProviderUnavailable(errors.New("token refresh still running"))
	case err != nil:
		return nil, err
	case r.expired(cur) && cur.RefreshToken == "":
		r.end(ctx, cur, EndExpired)
		return nil, errSessionExpired
	case r.expired(cur):
		return nil, errProviderUnavailable(errors.New("token refresh did not renew the expired token"))
	}
	return &loadedSession{Session: cur, ref: ls.ref}, nil
}

// run refreshes ls's session once across instances. It runs detached from
// the request that started it: a refresh abandoned half-way may have spent
// the refresh token at the provider.
func (r *refresher) run(ctx context.Context, ls *loadedSession) (_ *sessions.Session, err error) {
	ctx, span := r.b.startSpan(context.WithoutCancel(ctx), SpanRefresh)
	defer func() { span.end(err) }()
	if !r.b.hasLocker() {
		return r.underLock(ctx, ls)
	}
	key := r.b.deps.Sessions.LockKey(ls.Session)
	// A live holder is done within provider_timeout and its writes; a dead
	// one's lock lapses within a lease. Waiting longer is pointless.
	maxWait := r.b.deps.ProviderTimeout + lockLease + saveTimeout
	start := time.Now()
	var pause time.Duration
	_, wait := r.b.startSpan(ctx, SpanRefreshLockWait)
	defer wait.end(nil)
	for {
		release, ok, err := r.b.holdLock(ctx, key)
		if err != nil {
			r.b.obs().TokenRefresh(r.b.fe.Name, RefreshError)
			return nil, storeDown(err)
		}
		if ok {
			wait.end(nil)
			defer release()
			return r.underLock(ctx, ls)
		}
		// Another instance is refreshing: watch the record for its outcome.
		pause = pollBackoff(pause)
		time.Sleep(pause)
		cur, err := r.reload(ctx, ls)
		if err != nil {
			return nil, err
		}
		switch {
		case !r.due(cur):
			r.b.obs().TokenRefresh(r.b.fe.Name, RefreshWaited)
			return cur, nil
		case cur.RefreshToken == "":
			return cur, nil
		case r.b.now().Before(cur.RefreshRetryAt):
			return nil, errProviderUnavailable(errors.New("another instance's token refresh failed; backing off"))
		case time.Since(start) > maxWait:
			return nil, errProviderUnavailable(errors.New("another instance holds the token refresh lock"))
		}
	}
}

// underLock refreshes the session as the store holds it now: another
// instance may have refreshed, failed or spent the token since ls was read.
func (r *refresher) underLock(ctx context.Context, ls *loadedSession) (*sessions.Session, error) {
	cur, err := r.reload(ctx, ls)
	if err != nil {
		return nil, err
	}
	switch {
	case !r.due(cur):
		r.b.obs().TokenRefresh(r.b.fe.Name, RefreshWaited)
		return cur, nil
	case cur.RefreshToken == "":
		return cur, nil
	case r.b.now().Before(cur.RefreshRetryAt):
		return nil, errProviderUnavailable(errors.New("token refresh backing off after a transient failure"))
	}
	meta, err := r.b.provider.get(ctx)
	if err != nil {
		return r.transient(ctx, cur, cur.RefreshUnsure, err)
	}
	// Written before the token is sent: should this instance die or the
	// answer be lost, whoever tries next knows the provider may have spent
	// the refresh token already.
	unsureBefore := cur.RefreshUnsure
	if !unsureBefore {
		cur.RefreshUnsure = true
		if err := r.save(ctx, cur); err != nil {
			return nil, err
		}
	}
	pctx, cancel := context.WithTimeout(ctx, r.b.deps.ProviderTimeout)
	tok, err := r.b.tokens.refresh(pctx, meta, cur.RefreshToken, r.b.sessionDPoPKey(ctx, cur))
	cancel()
	if err != nil {
		if code, rejected := refreshTokenRejected(err); rejected {
			return r.rejected(ctx, cur, unsureBefore, code)
		}
		return r.transient(ctx, cur, unsureBefore || !outcomeKnown(err), err)
	}
	now := r.b.now()
	cur.AccessToken = tok.AccessToken
	cur.Expiry = tok.Expiry
	cur.TokenObtainedAt = now
	cur.RefreshRetryAt, cur.RefreshBackoff, cur.RefreshUnsure = time.Time{}, 0, false
	if tok.TokenType != "" {
		cur.TokenType = tok.TokenType
	}
	if tok.RefreshToken != "" {
		cur.RefreshToken = tok.RefreshToken
	}
	if raw, _ := tok.Extra("id_token").(string); raw != "" {
		if idt, err := meta.verifier.Verify(r.b.providerCtx(ctx), raw); err == nil && idt.Subject == cur.Subject {
			cur.IDToken = raw
			var claims json.RawMessage
			if idt.Claims(&claims) == nil {
				cur.Claims = claims
			}
		}
	}
	if err := r.save(ctx, cur); err != nil {
		if errors.Is(err, errNoSession) {
			// Logged out while we refreshed: the new refresh token must
			// not outlive the session at the provider either.
			rctx, cancel := context.WithTimeout(ctx, saveTimeout)
			r.b.revoke(rctx, meta, cur)
			cancel()
		}
		return nil, err
	}
	r.b.obs().TokenRefresh(r.b.fe.Name, RefreshOK)
	// Exchanged for the token just replaced: the next call exchanges the
	// new one (any stored meanwhile no longer matches it either).
	r.b.exchange.drop(ctx, cur)
	return cur, nil
}

// transient keeps the session after a failure that may pass, and makes
// every instance wait the next back-off step before trying again.
func (r *refresher) transient(ctx context.Context, s *sessions.Session, unsure bool, cause error) (*sessions.Session, error) {
	r.b.obs().TokenRefresh(r.b.fe.Name, RefreshTransient)
	s.RefreshBackoff = nextBackoff(s.RefreshBackoff)
	s.RefreshRetryAt = r.b.now().Add(s.RefreshBackoff)
	s.RefreshUnsure = unsure
	r.b.log.WarnContext(ctx, "token refresh failed; the session is kept and the refresh retried after a back-off",
		"sub", s.Subject, "error", cause, "retry_in", s.RefreshBackoff.String(), "outcome_unknown", unsure)
	if err := r.save(ctx, s); err != nil {
		r.b.log.WarnContext(ctx, "could not record the token refresh back-off", "error", err)
	}
	return nil, errProviderUnavailable(cause)
}

// rejected handles the provider refusing the refresh token. After an
// attempt whose answer was lost, the refusal may only mean that attempt
// spent the token: the session then lasts while its access token does.
func (r *refresher) rejected(ctx context.Context, s *sessions.Session, unsureBefore bool, code string) (*sessions.Session, error) {
	r.b.obs().TokenRefresh(r.b.fe.Name, RefreshRejected)
	if unsureBefore && !r.expired(s) {
		r.b.log.WarnContext(ctx, "refresh token refused after an attempt whose answer was lost; the session lasts until its access token expires",
			"sub", s.Subject, "error_code", code, "expires_in", s.Expiry.Sub(r.b.now()).Round(time.Second).String())
		s.RefreshToken = ""
		s.RefreshRetryAt, s.RefreshBackoff, s.RefreshUnsure = time.Time{}, 0, false
		if err := r.save(ctx, s); err != nil {
			return nil, err
		}
		return s, nil
	}
	r.b.log.InfoContext(ctx, "refresh token rejected; session ended", "sub", s.Subject, "error_code", code)
	r.end(ctx, s, EndRefreshRejected)
	return nil, errSessionExpired
}

// save writes s with its own deadline and one retry: what it records (new
// tokens, a back-off, an attempt in flight) must not be lost to a request's
// nearly spent deadline. errNoSession when the session ended meanwhile.
func (r *refresher) save(ctx context.Context, s *sessions.Session) error {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), saveTimeout)
	defer cancel()
	err := r.b.deps.Sessions.Save(sctx, s)
	if err != nil && !errors.Is(err, sessions.ErrNotFound) {
		err = r.b.deps.Sessions.Save(sctx, s)
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sessions.ErrNotFound):
		return errNoSession
	default:
		r.b.obs().TokenRefresh(r.b.fe.Name, RefreshError)
		return storeDown(err)
	}
}

func (r *refresher) reload(ctx context.Context, ls *loadedSession) (*sessions.Session, error) {
	// From the store itself: the tokens the last lock holder wrote may not
	// have reached an in-process cache yet.
	cur, err := r.b.deps.Sessions.Load(sessions.FreshRead(ctx), r.b.binding, ls.ref)
	switch {
	case err == nil:
		return cur, nil
	case errors.Is(err, sessions.ErrNotFound), errors.Is(err, sessions.ErrInvalidRef):
		return nil, errNoSession
	default:
		r.b.obs().TokenRefresh(r.b.fe.Name, RefreshError)
		return nil, storeDown(err)
	}
}

// refreshTokenRejected tells an answer that ends the session from one that
// may pass: invalid_grant (revoked, expired or reused token) and Dex's
// invalid_request for a reused token. Throttling (429), invalid_client (a
// misconfigured secret) and 5xx must not log every user out.
func refreshTokenRejected(err error) (code string, rejected bool) {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response == nil || re.Response.StatusCode < 400 || re.Response.StatusCode >= 500 {
		return "", false
	}
	return re.ErrorCode, re.ErrorCode == "invalid_grant" || re.ErrorCode == "invalid_request"
}

// outcomeKnown reports whether a failed token request certainly did not
// spend the refresh token: the connection was never made, or the provider
// answered with a client error or 503 (not serving). A timeout, a reset
// connection or another 5xx (Dex answers a lost refresh race with 500; a
// proxy's 502 or 504 may follow a rotation) may have come after the
// provider rotated the token.
func outcomeKnown(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response == nil {
		return false
	}
	st := re.Response.StatusCode
	return (st >= 400 && st < 500) || st == http.StatusServiceUnavailable
}

func (r *refresher) end(ctx context.Context, s *sessions.Session, cause string) {
	if err := r.b.deps.Sessions.Delete(context.WithoutCancel(ctx), s); err != nil {
		r.b.log.WarnContext(ctx, "could not delete expired session", "error", err)
		return
	}
	r.b.sessionEnded(ctx, cause, s)
}
