package bff

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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
	// clientTokenNoExpiry is how long a client token the provider gave no
	// expires_in for is reused.
	clientTokenNoExpiry = 5 * time.Minute
	// clientTokenMaxAge bounds how old a shared client token record may be
	// (its store TTL ends it much earlier in practice).
	clientTokenMaxAge = 24 * time.Hour
)

// clientTokens obtains and caches the access token of the frontend's own
// client (client-credentials grant) for `token: client` routes. The token
// is kept in this process until refresh_margin before it expires, and
// shared with the other instances through the store, sealed, with a TTL of
// its lifetime minus the margin; a store lock makes one instance fetch it.
type clientTokens struct {
	b    *BFF
	name string // shared value name: one per frontend and client

	mu sync.Mutex // one fetch at a time in this process
	// After a failed fetch, requests get the same error until retryAt
	// instead of each asking the provider again (backoff 1s doubling to 30s).
	retryAt time.Time
	backoff time.Duration
	lastErr error
	cached  sharedToken
	cmu     sync.RWMutex // guards cached
}

type sharedToken struct {
	AccessToken string    `json:"at"`
	Expiry      time.Time `json:"exp"`
}

func newClientTokens(b *BFF) *clientTokens {
	// The provider and client are part of the name: a reload that points
	// the frontend at another client must not reuse the old client's token.
	sum := sha256.Sum256([]byte(b.fe.OIDC.Issuer + "\x00" + b.fe.OIDC.ClientID))
	return &clientTokens{b: b, name: "client-token:" + b.fe.Name + ":" + hex.EncodeToString(sum[:8])}
}

// usable reports whether t can still be sent: outside the refresh margin.
func (c *clientTokens) usable(t sharedToken) bool {
	return t.AccessToken != "" && c.b.now().Add(c.b.deps.RefreshMargin).Before(t.Expiry)
}

func (c *clientTokens) local() (string, bool) {
	c.cmu.RLock()
	defer c.cmu.RUnlock()
	return c.cached.AccessToken, c.usable(c.cached)
}

func (c *clientTokens) keep(t sharedToken) {
	c.cmu.Lock()
	c.cached = t
	c.cmu.Unlock()
}

// token returns a usable client access token.
func (c *clientTokens) token(ctx context.Context) (string, error) {
	if tok, ok := c.local(); ok {
		return tok, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if tok, ok := c.local(); ok {
		return tok, nil
	}
	if c.b.now().Before(c.retryAt) {
		return "", c.lastErr
	}
	// The shared work must not die with the first caller's request.
	work, cancel := context.WithTimeout(context.WithoutCancel(ctx), refreshWait)
	defer cancel()
	t, err := c.acrossInstances(work)
	if err != nil {
		c.backoff = min(max(2*c.backoff, time.Second), 30*time.Second)
		c.retryAt, c.lastErr = c.b.now().Add(c.backoff), err
		return "", err
	}
	c.backoff, c.retryAt, c.lastErr = 0, time.Time{}, nil
	c.keep(t)
	return t.AccessToken, nil
}

// fromStore returns the token another instance (or this one) shared.
func (c *clientTokens) fromStore(ctx context.Context) (sharedToken, bool, error) {
	raw, _, err := c.b.deps.Sessions.GetShared(ctx, c.name, clientTokenMaxAge)
	if errors.Is(err, sessions.ErrNotFound) {
		return sharedToken{}, false, nil
	}
	if err != nil {
		return sharedToken{}, false, storeDown(err)
	}
	var t sharedToken
	if json.Unmarshal(raw, &t) != nil || !c.usable(t) {
		return sharedToken{}, false, nil
	}
	return t, true, nil
}

func (c *clientTokens) acrossInstances(ctx context.Context) (sharedToken, error) {
	if t, ok, err := c.fromStore(ctx); err != nil || ok {
		return t, err
	}
	locker := c.b.deps.Locker
	if locker == nil {
		return c.fetch(ctx)
	}
	key := c.b.deps.Sessions.SharedLockKey(c.name)
	lockToken := randomString(16)
	for {
		ok, err := locker.Acquire(ctx, key, lockToken, lockLease)
		if err != nil {
			return sharedToken{}, storeDown(err)
		}
		if ok {
			t, err := c.whileLocked(ctx)
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			if rerr := locker.Release(rctx, key, lockToken); rerr != nil {
				c.b.log.Warn("client token lock release failed; it expires by itself", "error", rerr)
			}
			cancel()
			return t, err
		}
		select {
		case <-time.After(pollEvery):
		case <-ctx.Done():
			return sharedToken{}, httperr.Wrap(http.StatusGatewayTimeout, httperr.CodeUpstreamTimeout,
				"timed out waiting for another instance to obtain the client token", ctx.Err())
		}
		if t, ok, err := c.fromStore(ctx); err != nil || ok {
			return t, err
		}
	}
}

func (c *clientTokens) whileLocked(ctx context.Context) (sharedToken, error) {
	// Another instance may have shared one between our read and the lock.
	if t, ok, err := c.fromStore(ctx); err != nil || ok {
		return t, err
	}
	return c.fetch(ctx)
}

// fetch asks the provider's token endpoint for a new token and shares it.
func (c *clientTokens) fetch(ctx context.Context) (sharedToken, error) {
	meta, err := c.b.provider.get(ctx)
	if err != nil {
		return sharedToken{}, c.b.providerDown(err)
	}
	tok, err := c.b.tokens.clientCredentials(ctx, meta, nil, nil)
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil {
			c.b.log.ErrorContext(ctx, "the provider refused the client credentials grant", "error_code", re.ErrorCode, "status", re.Response.StatusCode)
		}
		return sharedToken{}, httperr.Wrap(http.StatusBadGateway, httperr.CodeUpstreamUnavailable,
			"the identity provider did not issue this frontend's client token", err)
	}
	now := c.b.now()
	t := sharedToken{AccessToken: tok.AccessToken, Expiry: tok.Expiry}
	if t.Expiry.IsZero() {
		t.Expiry = now.Add(clientTokenNoExpiry + c.b.deps.RefreshMargin)
	}
	if ttl := t.Expiry.Sub(now) - c.b.deps.RefreshMargin; ttl > 0 {
		raw, _ := json.Marshal(t)
		if err := c.b.deps.Sessions.PutShared(ctx, c.name, raw, ttl); err != nil {
			// This instance can still use it; the others fetch their own.
			c.b.log.WarnContext(ctx, "could not share the client token", "error", err)
		}
	} else {
		// Shorter-lived than the margin: usable once, for this request.
		c.b.log.WarnContext(ctx, "the client token expires within refresh_margin; it is not cached", "expires_in", t.Expiry.Sub(now).String())
		return sharedToken{AccessToken: tok.AccessToken, Expiry: t.Expiry}, nil
	}
	return t, nil
}
