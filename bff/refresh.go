package bff

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/bffgate/bffgate/bff/httperr"
	"github.com/bffgate/bffgate/sessions"
)

const (
	// lockLease is how long a refresh lock lives without renewal; renewed
	// every lockLease/3 while the provider call runs, so a slow provider
	// never lets a second instance in with the same (single-use) refresh token.
	lockLease = 10 * time.Second
	// refreshWait bounds how long a request waits for another instance's refresh.
	refreshWait = 15 * time.Second
	pollEvery   = 50 * time.Millisecond
)

var errSessionExpired = httperr.New(http.StatusUnauthorized, httperr.CodeSessionExpired, "the session has expired at the identity provider; log in again")

// refresher renews access tokens so that each session is refreshed at most
// once at a time: in this process by joining concurrent callers onto one
// call, across instances by a lock in the store.
type refresher struct {
	b *BFF

	mu       sync.Mutex
	inflight map[string]*refreshCall
}

type refreshCall struct {
	done chan struct{}
	s    *sessions.Session
	err  error
}

func newRefresher(b *BFF) *refresher {
	return &refresher{b: b, inflight: map[string]*refreshCall{}}
}

// due reports whether s's access token must be refreshed before use.
func (r *refresher) due(s *sessions.Session) bool {
	return !s.Expiry.IsZero() && !r.b.now().Add(r.b.deps.RefreshMargin).Before(s.Expiry)
}

func (r *refresher) expired(s *sessions.Session) bool {
	return !s.Expiry.IsZero() && !r.b.now().Before(s.Expiry)
}

// ensureFresh returns a session whose access token is usable.
func (r *refresher) ensureFresh(ctx context.Context, ls *loadedSession) (*loadedSession, error) {
	if !r.due(ls.Session) {
		return ls, nil
	}
	if ls.RefreshToken == "" {
		if r.expired(ls.Session) {
			r.end(ctx, ls.Session, EndExpired)
			return nil, errSessionExpired
		}
		return ls, nil // still valid for a moment, and nothing to refresh with
	}
	id := ls.ID()
	r.mu.Lock()
	call, joined := r.inflight[id]
	if !joined {
		call = &refreshCall{done: make(chan struct{})}
		r.inflight[id] = call
	}
	r.mu.Unlock()
	if !joined {
		// The shared work must not die with the first caller's request.
		work, cancel := context.WithTimeout(context.WithoutCancel(ctx), refreshWait)
		work, span := r.b.startSpan(work, SpanRefresh)
		call.s, call.err = r.acrossInstances(work, ls)
		span.end(call.err)
		cancel()
		r.mu.Lock()
		delete(r.inflight, id)
		r.mu.Unlock()
		close(call.done)
	} else {
		r.b.obs().TokenRefresh(r.b.fe.Name, RefreshJoined)
		select {
		case <-call.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if call.err != nil {
		return nil, call.err
	}
	return &loadedSession{Session: call.s, ref: ls.ref}, nil
}

// acrossInstances takes the store lock, or waits for the instance holding it
// and then uses the tokens it wrote. The old refresh token is never sent
// twice: whoever holds the lock re-reads the session before refreshing.
func (r *refresher) acrossInstances(ctx context.Context, ls *loadedSession) (*sessions.Session, error) {
	locker := r.b.deps.Locker
	if locker == nil {
		return r.refreshNow(ctx, ls.Session)
	}
	m := r.b.deps.Sessions
	key := m.LockKey(ls.Session)
	token := randomString(16)
	_, wait := r.b.startSpan(ctx, SpanRefreshLockWait)
	defer wait.end(nil)
	for {
		ok, err := locker.Acquire(ctx, key, token, lockLease)
		if err != nil {
			r.b.obs().TokenRefresh(r.b.fe.Name, RefreshError)
			return nil, storeDown(err)
		}
		if ok {
			wait.end(nil)
			return r.whileLocked(ctx, locker, key, token, ls)
		}
		select {
		case <-time.After(pollEvery):
		case <-ctx.Done():
			return r.fallback(ctx, ls.Session, ctx.Err())
		}
		cur, err := r.reload(ctx, ls)
		if err != nil {
			return nil, err
		}
		if !r.due(cur) {
			r.b.obs().TokenRefresh(r.b.fe.Name, RefreshWaited)
			return cur, nil
		}
	}
}

func (r *refresher) whileLocked(ctx context.Context, locker sessions.Locker, key, token string, ls *loadedSession) (*sessions.Session, error) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(lockLease / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if ok, err := locker.Renew(ctx, key, token, lockLease); err != nil || !ok {
					r.b.log.WarnContext(ctx, "refresh lock lease lost", "error", err)
				}
			}
		}
	}()
	defer func() {
		close(stop)
		wg.Wait()
		// Released even when the request's context is gone.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		if err := locker.Release(rctx, key, token); err != nil {
			r.b.log.WarnContext(rctx, "refresh lock release failed; it expires by itself", "error", err)
		}
	}()
	// Another instance may have refreshed between our read and the lock.
	cur, err := r.reload(ctx, ls)
	if err != nil {
		return nil, err
	}
	if !r.due(cur) {
		r.b.obs().TokenRefresh(r.b.fe.Name, RefreshWaited)
		return cur, nil
	}
	return r.refreshNow(ctx, cur)
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

// refreshNow spends the refresh token. An OAuth error answer (invalid_grant,
// or Dex's invalid_request for a reused token) ends the session; a network
// error or 5xx keeps it, since the token may still be good.
func (r *refresher) refreshNow(ctx context.Context, s *sessions.Session) (*sessions.Session, error) {
	meta, err := r.b.provider.get(ctx)
	if err != nil {
		return r.fallback(ctx, s, err)
	}
	tok, err := r.b.tokens.refresh(ctx, meta, s.RefreshToken, r.b.sessionDPoPKey(ctx, s))
	if err != nil {
		if code, rejected := refreshTokenRejected(err); rejected {
			r.b.log.InfoContext(ctx, "refresh token rejected; session ended", "sub", s.Subject, "error_code", code)
			r.b.obs().TokenRefresh(r.b.fe.Name, RefreshRejected)
			r.end(ctx, s, EndRefreshRejected)
			return nil, errSessionExpired
		}
		return r.fallback(ctx, s, err)
	}
	s.AccessToken = tok.AccessToken
	s.Expiry = tok.Expiry
	if tok.TokenType != "" {
		s.TokenType = tok.TokenType
	}
	if tok.RefreshToken != "" {
		s.RefreshToken = tok.RefreshToken
	}
	if raw, _ := tok.Extra("id_token").(string); raw != "" {
		if idt, err := meta.verifier.Verify(r.b.providerCtx(ctx), raw); err == nil && idt.Subject == s.Subject {
			s.IDToken = raw
			var claims json.RawMessage
			if idt.Claims(&claims) == nil {
				s.Claims = claims
			}
		}
	}
	// The provider has rotated the tokens: losing them now would end the
	// session at the next refresh. So the write gets its own deadline (the
	// request's may be nearly spent waiting for the lock) and one retry.
	saveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err = r.b.deps.Sessions.Save(saveCtx, s)
	if err != nil && !errors.Is(err, sessions.ErrNotFound) {
		err = r.b.deps.Sessions.Save(saveCtx, s)
	}
	if err != nil {
		if errors.Is(err, sessions.ErrNotFound) {
			// Logged out while we refreshed: the new refresh token must
			// not outlive the session at the provider either.
			r.b.revoke(saveCtx, meta, s)
			return nil, errNoSession
		}
		r.b.obs().TokenRefresh(r.b.fe.Name, RefreshError)
		return nil, storeDown(err)
	}
	r.b.obs().TokenRefresh(r.b.fe.Name, RefreshOK)
	return s, nil
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

// fallback keeps a still-valid access token when the refresh could not run.
func (r *refresher) fallback(ctx context.Context, s *sessions.Session, cause error) (*sessions.Session, error) {
	r.b.obs().TokenRefresh(r.b.fe.Name, RefreshTransient)
	if !r.expired(s) {
		r.b.log.WarnContext(ctx, "token refresh postponed; using the current access token", "error", cause)
		return s, nil
	}
	return nil, httperr.Wrap(http.StatusBadGateway, httperr.CodeUpstreamUnavailable,
		"the identity provider is unavailable to renew the session's token; the session is kept, try again shortly", cause)
}

func (r *refresher) end(ctx context.Context, s *sessions.Session, cause string) {
	if err := r.b.deps.Sessions.Delete(context.WithoutCancel(ctx), s); err != nil {
		r.b.log.WarnContext(ctx, "could not delete expired session", "error", err)
		return
	}
	r.b.sessionEnded(ctx, cause, s)
}
