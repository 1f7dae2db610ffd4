package bff

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"golang.org/x/oauth2"

	"github.com/bffgate/bffgate/bff/httperr"
	"github.com/bffgate/bffgate/bff/proxy"
	"github.com/bffgate/bffgate/dpop"
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
// client (client-credentials grant) for `token: client` routes, with the
// discipline of the user's refresh (flight.go): the token is kept in this
// process and shared with the other instances through the store, sealed,
// until it expires; once within the refresh margin a new one is fetched
// beside the requests, which go on with the current one; only a request
// with no usable token waits, at most expiredWait. One instance fetches at
// a time (store lock), and after a failure every instance backs off 1s
// doubling to 30s (a small shared record with that TTL).
type clientTokens struct {
	b       *BFF
	name    string // shared value name: one per frontend and client
	backoff string // shared name of the back-off record
	// key binds the client token (DPoP) and signs the proofs of every
	// call that sends it; nil without DPoP.
	key *dpop.Key

	flights flights[sharedToken]
	mu      sync.RWMutex // guards cached, retryAt and lastErr
	cached  sharedToken
	// retryAt and lastErr mirror the shared back-off in this process, so
	// that requests during a step cost no store round trip.
	retryAt time.Time
	lastErr error
}

type sharedToken struct {
	AccessToken string    `json:"at"`
	Expiry      time.Time `json:"exp"`
	Obtained    time.Time `json:"iat,omitzero"`
}

// clientBackoff is the shared record of the last failed fetch.
type clientBackoff struct {
	Step    time.Duration `json:"step"`
	RetryAt time.Time     `json:"retry_at"`
	Refused bool          `json:"refused"` // the provider answered and refused
}

func newClientTokens(b *BFF) (*clientTokens, error) {
	// The provider and client are part of the name: a reload that points
	// the frontend at another client must not reuse the old client's token.
	id := b.fe.OIDC.Issuer + "\x00" + b.fe.OIDC.ClientID
	c := &clientTokens{b: b}
	if b.fe.OIDC.UsesDPoP() {
		key, err := b.deriveDPoPKey("client\x00" + id)
		if err != nil {
			return nil, fmt.Errorf("the client DPoP key: %w", err)
		}
		c.key = key
		// The token is bound to the key: instances that derive another key
		// (cookie keys being rotated one instance at a time) must not take
		// each other's token, so each key has its own record.
		id += "\x00" + key.Thumbprint()
	}
	sum := sha256.Sum256([]byte(id))
	c.name = "client-token:" + b.fe.Name + ":" + hex.EncodeToString(sum[:8])
	c.backoff = c.name + ":backoff"
	return c, nil
}

// margin: refresh_margin, at most half the token's lifetime.
func (c *clientTokens) margin(t sharedToken) time.Duration {
	m := c.b.deps.RefreshMargin
	if !t.Obtained.IsZero() && t.Expiry.After(t.Obtained) {
		m = min(m, t.Expiry.Sub(t.Obtained)/2)
	}
	return m
}

func (c *clientTokens) valid(t sharedToken) bool {
	return t.AccessToken != "" && c.b.now().Before(t.Expiry)
}

func (c *clientTokens) fresh(t sharedToken) bool {
	return t.AccessToken != "" && c.b.now().Add(c.margin(t)).Before(t.Expiry)
}

func (c *clientTokens) local() (t sharedToken, retryAt time.Time, lastErr error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.cached, c.retryAt, c.lastErr
}

func (c *clientTokens) backOffLocally(until time.Time, err error) {
	c.mu.Lock()
	c.retryAt, c.lastErr = until, err
	c.mu.Unlock()
}

func (c *clientTokens) keep(t sharedToken) {
	c.mu.Lock()
	if t.Expiry.After(c.cached.Expiry) {
		c.cached = t
	}
	c.mu.Unlock()
}

// forward returns ctx with the client token to send upstream, and its DPoP
// key when the frontend uses DPoP.
func (c *clientTokens) forward(ctx context.Context) (context.Context, error) {
	token, err := c.token(ctx)
	if err != nil {
		return nil, err
	}
	return withDPoPKey(proxy.WithToken(ctx, token), c.key), nil
}

// token returns a client access token that may be sent.
func (c *clientTokens) token(ctx context.Context) (string, error) {
	cur, retryAt, lastErr := c.local()
	if c.fresh(cur) {
		return cur.AccessToken, nil
	}
	if c.b.now().Before(retryAt) {
		if c.valid(cur) {
			return cur.AccessToken, nil
		}
		return "", lastErr
	}
	f, _ := c.flights.start("", func() (sharedToken, error) { return c.renew(ctx) })
	if c.valid(cur) {
		return cur.AccessToken, nil // renewed beside this request
	}
	t, err, ok := f.wait(ctx, expiredWait)
	switch {
	case !ok && ctx.Err() != nil:
		return "", ctx.Err()
	case !ok:
		return "", errProviderUnavailable(errors.New("client token fetch still running"))
	case err != nil:
		return "", err
	case !c.valid(t):
		return "", errProviderUnavailable(errors.New("no valid client token"))
	}
	return t.AccessToken, nil
}

// renew runs detached from any request: it takes a token another instance
// shared, or fetches one under the store lock, honouring the back-off.
func (c *clientTokens) renew(ctx context.Context) (sharedToken, error) {
	ctx = context.WithoutCancel(ctx)
	if t, ok, err := c.fromStore(ctx); err != nil || ok {
		return t, err
	}
	if !c.b.hasLocker() {
		return c.underLock(ctx)
	}
	key := c.b.deps.Sessions.SharedLockKey(c.name)
	maxWait := c.b.deps.ProviderTimeout + lockLease + saveTimeout
	start := time.Now()
	var pause time.Duration
	for {
		release, ok, err := c.b.holdLock(ctx, key)
		if err != nil {
			return sharedToken{}, storeDown(err)
		}
		if ok {
			defer release()
			return c.underLock(ctx)
		}
		pause = pollBackoff(pause)
		time.Sleep(pause)
		if t, ok, err := c.fromStore(ctx); err != nil || ok {
			return t, err
		}
		if err := c.backingOff(ctx); err != nil {
			return sharedToken{}, err
		}
		if time.Since(start) > maxWait {
			return sharedToken{}, errProviderUnavailable(errors.New("another instance holds the client token lock"))
		}
	}
}

func (c *clientTokens) underLock(ctx context.Context) (sharedToken, error) {
	// Another instance may have shared one, or failed, since our read.
	if t, ok, err := c.fromStore(ctx); err != nil || ok {
		return t, err
	}
	if err := c.backingOff(ctx); err != nil {
		return sharedToken{}, err
	}
	t, refused, err := c.fetch(ctx)
	if err != nil {
		c.backOffLocally(c.recordFailure(ctx, refused, err), err)
		return sharedToken{}, err
	}
	c.backOffLocally(time.Time{}, nil)
	c.keep(t)
	_ = c.b.deps.Sessions.DeleteShared(ctx, c.backoff)
	return t, nil
}

// fromStore returns the token shared in the store when it is fresh (also
// keeping it in this process), ok=false otherwise.
func (c *clientTokens) fromStore(ctx context.Context) (sharedToken, bool, error) {
	raw, _, err := c.b.deps.Sessions.GetShared(ctx, c.name, clientTokenMaxAge)
	if errors.Is(err, sessions.ErrNotFound) {
		return sharedToken{}, false, nil
	}
	if err != nil {
		return sharedToken{}, false, storeDown(err)
	}
	var t sharedToken
	if json.Unmarshal(raw, &t) != nil || !c.valid(t) {
		return sharedToken{}, false, nil
	}
	c.keep(t)
	return t, c.fresh(t), nil
}

// readBackoff returns the shared back-off record (zero when none).
func (c *clientTokens) readBackoff(ctx context.Context) (clientBackoff, error) {
	var bo clientBackoff
	raw, _, err := c.b.deps.Sessions.GetShared(ctx, c.backoff, 2*maxBackoff)
	if errors.Is(err, sessions.ErrNotFound) {
		return bo, nil
	}
	if err != nil {
		return bo, storeDown(err)
	}
	_ = json.Unmarshal(raw, &bo) // unreadable: no back-off
	return bo, nil
}

// backingOff returns the answer for the running back-off step, nil when
// none runs.
func (c *clientTokens) backingOff(ctx context.Context) error {
	bo, err := c.readBackoff(ctx)
	if err != nil || !c.b.now().Before(bo.RetryAt) {
		return err
	}
	cause := errors.New("client token fetch backing off after a failure")
	var answer error = errProviderUnavailable(cause)
	if bo.Refused {
		answer = refusedClientToken(cause)
	}
	c.backOffLocally(bo.RetryAt, answer)
	return answer
}

// recordFailure starts the next back-off step for every instance. The
// record outlives its step, so that the next failure doubles it.
func (c *clientTokens) recordFailure(ctx context.Context, refused bool, cause error) (retryAt time.Time) {
	prev, err := c.readBackoff(ctx)
	if err != nil {
		c.b.log.WarnContext(ctx, "could not read the client token back-off", "error", err)
	}
	step := nextBackoff(prev.Step)
	retryAt = c.b.now().Add(step)
	raw, _ := json.Marshal(clientBackoff{Step: step, RetryAt: retryAt, Refused: refused})
	if err := c.b.deps.Sessions.PutShared(ctx, c.backoff, raw, step+maxBackoff); err != nil {
		c.b.log.WarnContext(ctx, "could not share the client token back-off", "error", err)
	}
	c.b.log.WarnContext(ctx, "client token fetch failed; retried after a back-off", "error", cause, "retry_in", step.String())
	return retryAt
}

func refusedClientToken(cause error) *httperr.Error {
	return httperr.Wrap(http.StatusBadGateway, httperr.CodeUpstreamUnavailable,
		"the identity provider did not issue this frontend's client token", cause)
}

// fetch asks the provider's token endpoint for a new token and shares it.
// refused reports that the provider answered and refused (as opposed to
// not answering).
func (c *clientTokens) fetch(ctx context.Context) (t sharedToken, refused bool, err error) {
	meta, err := c.b.provider.get(ctx)
	if err != nil {
		return sharedToken{}, false, errProviderUnavailable(err)
	}
	pctx, cancel := context.WithTimeout(ctx, c.b.deps.ProviderTimeout)
	tok, err := c.b.tokens.clientCredentials(pctx, meta, nil, c.key)
	cancel()
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.Is(err, errBearerDowngrade) {
			// The provider answered, with a token this frontend may not
			// send: asking again soon will not change that.
			c.b.log.ErrorContext(ctx, "the provider returned a Bearer client token to a DPoP request", "error", err)
			return sharedToken{}, true, refusedClientToken(err)
		}
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500 {
			c.b.log.ErrorContext(ctx, "the provider refused the client credentials grant", "error_code", re.ErrorCode, "status", re.Response.StatusCode)
			return sharedToken{}, true, refusedClientToken(err)
		}
		return sharedToken{}, false, errProviderUnavailable(fmt.Errorf("client credentials grant: %w", err))
	}
	now := c.b.now()
	t = sharedToken{AccessToken: tok.AccessToken, Expiry: tok.Expiry, Obtained: now}
	if t.Expiry.IsZero() {
		t.Expiry = now.Add(clientTokenNoExpiry)
	}
	if ttl := t.Expiry.Sub(now); ttl > 0 {
		raw, _ := json.Marshal(t)
		if err := c.b.deps.Sessions.PutShared(ctx, c.name, raw, ttl); err != nil {
			// This instance can still use it; the others fetch their own.
			c.b.log.WarnContext(ctx, "could not share the client token", "error", err)
		}
	}
	return t, false, nil
}
