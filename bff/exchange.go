package bff

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/oauth2"

	"github.com/bffgate/bffgate/bff/httperr"
	"github.com/bffgate/bffgate/bff/proxy"
	"github.com/bffgate/bffgate/config"
	"github.com/bffgate/bffgate/sessions"
)

// exchanger gets and keeps the tokens of token: exchange routes (RFC 8693),
// with the discipline of the user's refresh (flight.go):
//
//   - the exchanged token is kept with the session, per route, encrypted
//     with the session's own key (a sessions value beside the record, so
//     an exchange never rewrites the record a refresh may be rewriting);
//   - it is reused until refresh_margin (at most half its lifetime) before
//     it expires; then a new one is fetched beside the requests, which go
//     on with the current one; only a request with no usable token waits;
//   - one exchange per session and route runs in this process (flights),
//     detached from the requests, up to provider_timeout, and one across
//     instances (a store lock beside the session's refresh lock); the
//     others read what it stored;
//   - it is bound to the user's access token it was exchanged for (a
//     digest kept with it): when a refresh replaces the user's token, the
//     refresh drops it, and one stored by an exchange that raced the
//     refresh no longer matches;
//   - a failure backs off 1s doubling to 30s for that session and route,
//     recorded with it so every instance honours it, and is answered 403
//     token_exchange_failed when the provider refused, else 502.
//
// An exchange spends nothing at the provider (the user's token stays
// valid), so unlike a refresh an exchange whose answer was lost needs no
// bookkeeping: the next attempt simply asks again.
type exchanger struct {
	b       *BFF
	routes  map[string]*exchangeRoute // by route prefix
	flights flights[exchangedToken]
}

// exchangeRoute is one token: exchange route.
type exchangeRoute struct {
	prefix string
	x      config.Exchange
	// name is the session value the route's token is kept under. It names
	// the provider, client and what is asked for, so that a reload that
	// changes any of them does not reuse a token exchanged for the old.
	name string
}

// exchangedToken is what is kept per session and route.
type exchangedToken struct {
	AccessToken string    `json:"at,omitempty"`
	TokenType   string    `json:"tt,omitempty"`
	Expiry      time.Time `json:"exp,omitzero"`
	Obtained    time.Time `json:"iat,omitzero"`
	// For is a digest of the user's access token this was exchanged for.
	For string `json:"for"`
	// The back-off after a failed exchange (For's token): no attempt before
	// RetryAt; Refused says the provider answered and refused.
	RetryAt time.Time     `json:"retry_at,omitzero"`
	Backoff time.Duration `json:"backoff,omitzero"`
	Refused bool          `json:"refused,omitzero"`
}

// exchangeNoExpiry is how long an exchanged token without expires_in is
// reused (never past the user's token).
const exchangeNoExpiry = 5 * time.Minute

func newExchanger(b *BFF) *exchanger {
	e := &exchanger{b: b, routes: map[string]*exchangeRoute{}}
	for _, rt := range b.fe.Routes {
		if rt.Token != config.TokenExchange || rt.Exchange == nil {
			continue
		}
		id, _ := json.Marshal([]any{b.fe.OIDC.Issuer, b.fe.OIDC.ClientID, rt.Prefix, rt.Exchange})
		sum := sha256.Sum256(id)
		e.routes[rt.Prefix] = &exchangeRoute{prefix: rt.Prefix, x: *rt.Exchange, name: "x:" + hex.EncodeToString(sum[:12])}
	}
	return e
}

func errExchangeRefused(cause error) *httperr.Error {
	return httperr.Wrap(http.StatusForbidden, httperr.CodeTokenExchangeFailed,
		"the identity provider refused to exchange the session's token for this route", cause)
}

func errExchangeUnavailable(cause error) *httperr.Error {
	return httperr.Wrap(http.StatusBadGateway, httperr.CodeUpstreamUnavailable,
		"the identity provider cannot be reached to exchange the session's token for this route; try again shortly", cause)
}

// subjectDigest identifies the user's access token without keeping it.
func subjectDigest(accessToken string) string {
	sum := sha256.Sum256([]byte(accessToken))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

func (e *exchanger) margin(t exchangedToken) time.Duration {
	m := e.b.deps.RefreshMargin
	if !t.Obtained.IsZero() && t.Expiry.After(t.Obtained) {
		m = min(m, t.Expiry.Sub(t.Obtained)/2)
	}
	return m
}

func (e *exchanger) valid(t exchangedToken, digest string) bool {
	return t.AccessToken != "" && t.For == digest && e.b.now().Before(t.Expiry)
}

func (e *exchanger) fresh(t exchangedToken, digest string) bool {
	return e.valid(t, digest) && e.b.now().Add(e.margin(t)).Before(t.Expiry)
}

// backingOff returns the answer for a running back-off step, nil when none.
func (e *exchanger) backingOff(t exchangedToken, digest string) error {
	if t.For != digest || !e.b.now().Before(t.RetryAt) {
		return nil
	}
	cause := errors.New("token exchange backing off after a failure")
	if t.Refused {
		return errExchangeRefused(cause)
	}
	return errExchangeUnavailable(cause)
}

// token returns the exchanged token of route rt for ls's session.
func (e *exchanger) token(ctx context.Context, ls *loadedSession, rt *exchangeRoute) (exchangedToken, error) {
	digest := subjectDigest(ls.AccessToken)
	cur, err := e.read(ctx, ls.Session, rt)
	if err != nil {
		return exchangedToken{}, err
	}
	if e.fresh(cur, digest) {
		return cur, nil
	}
	if err := e.backingOff(cur, digest); err != nil {
		if e.valid(cur, digest) {
			return cur, nil
		}
		return exchangedToken{}, err
	}
	f, started := e.flights.start(ls.ID()+"\x00"+rt.name+"\x00"+digest, func() (exchangedToken, error) { return e.run(ctx, ls, rt, digest) })
	if !started {
		e.b.obs().TokenExchange(e.b.fe.Name, rt.prefix, ExchangeJoined)
	}
	if e.valid(cur, digest) {
		return cur, nil // renewed beside this request
	}
	t, err, ok := f.wait(ctx, e.maxWait())
	switch {
	case !ok && ctx.Err() != nil:
		return exchangedToken{}, ctx.Err()
	case !ok:
		return exchangedToken{}, errExchangeUnavailable(errors.New("token exchange still running"))
	case err != nil:
		return exchangedToken{}, err
	case t.AccessToken == "" || !e.b.now().Before(t.Expiry):
		return exchangedToken{}, errExchangeUnavailable(errors.New("no valid exchanged token"))
	}
	return t, nil
}

// maxWait bounds the wait for an exchange: a live lock holder is done
// within provider_timeout and its write, a dead one's lock lapses within a
// lease.
func (e *exchanger) maxWait() time.Duration {
	return e.b.deps.ProviderTimeout + lockLease + saveTimeout
}

// read returns the token kept for rt (zero when none).
func (e *exchanger) read(ctx context.Context, s *sessions.Session, rt *exchangeRoute) (exchangedToken, error) {
	var t exchangedToken
	raw, err := e.b.deps.Sessions.GetValue(ctx, s, rt.name)
	switch {
	case errors.Is(err, sessions.ErrNotFound):
		return t, nil
	case err != nil:
		e.b.obs().TokenExchange(e.b.fe.Name, rt.prefix, ExchangeError)
		return t, storeDown(err)
	}
	_ = json.Unmarshal(raw, &t) // unreadable: none kept
	return t, nil
}

// run exchanges once across instances. It runs detached from the request
// that started it, so that the requests waiting for it get its outcome.
func (e *exchanger) run(ctx context.Context, ls *loadedSession, rt *exchangeRoute, digest string) (_ exchangedToken, err error) {
	ctx, span := e.b.startSpan(context.WithoutCancel(ctx), SpanExchange)
	span.s.SetAttributes(attribute.String("bffgate.route", rt.prefix))
	defer func() { span.end(err) }()
	if !e.b.hasLocker() {
		return e.underLock(ctx, ls, rt, digest)
	}
	key := e.b.deps.Sessions.ValueLockKey(ls.Session, rt.name)
	start := time.Now()
	var pause time.Duration
	for {
		release, ok, err := e.b.holdLock(ctx, key)
		if err != nil {
			e.b.obs().TokenExchange(e.b.fe.Name, rt.prefix, ExchangeError)
			return exchangedToken{}, storeDown(err)
		}
		if ok {
			defer release()
			return e.underLock(ctx, ls, rt, digest)
		}
		// Another instance is exchanging: watch for what it stores.
		pause = pollBackoff(pause)
		time.Sleep(pause)
		if cur, done, err := e.settled(ctx, ls, rt, digest); done || err != nil {
			return cur, err
		}
		if time.Since(start) > e.maxWait() {
			return exchangedToken{}, errExchangeUnavailable(errors.New("another instance holds the token exchange lock"))
		}
	}
}

// settled reads the route's stored exchange past the cache: done with the
// token when another instance stored a fresh one, an error while the
// exchange backs off, else the current value for the caller to act on.
func (e *exchanger) settled(ctx context.Context, ls *loadedSession, rt *exchangeRoute, digest string) (exchangedToken, bool, error) {
	cur, err := e.read(sessions.FreshRead(ctx), ls.Session, rt)
	if err != nil {
		return exchangedToken{}, false, err
	}
	if e.fresh(cur, digest) {
		e.b.obs().TokenExchange(e.b.fe.Name, rt.prefix, ExchangeWaited)
		return cur, true, nil
	}
	if err := e.backingOff(cur, digest); err != nil {
		return exchangedToken{}, false, err
	}
	return cur, false, nil
}

// underLock exchanges unless another instance did (or failed) since the
// caller's read.
func (e *exchanger) underLock(ctx context.Context, ls *loadedSession, rt *exchangeRoute, digest string) (exchangedToken, error) {
	cur, done, err := e.settled(ctx, ls, rt, digest)
	if done || err != nil {
		return cur, err
	}
	meta, err := e.b.provider.get(ctx)
	if err != nil {
		return e.failed(ctx, ls, rt, cur, digest, false, err)
	}
	pctx, cancel := context.WithTimeout(ctx, e.b.deps.ProviderTimeout)
	tok, err := e.b.tokens.exchange(pctx, meta, ls.AccessToken, rt.x, e.b.sessionDPoPKey(ctx, ls.Session))
	cancel()
	if err != nil {
		return e.failed(ctx, ls, rt, cur, digest, exchangeRefused(err), err)
	}
	now := e.b.now()
	t := exchangedToken{AccessToken: tok.AccessToken, TokenType: tok.TokenType, Expiry: tok.Expiry, Obtained: now, For: digest}
	if t.Expiry.IsZero() {
		t.Expiry = now.Add(exchangeNoExpiry)
		if !ls.Expiry.IsZero() && ls.Expiry.Before(t.Expiry) {
			t.Expiry = ls.Expiry
		}
	}
	e.b.obs().TokenExchange(e.b.fe.Name, rt.prefix, ExchangeOK)
	if err := e.keep(ctx, ls.Session, rt, t); err != nil {
		// This request can still use it; the next one exchanges again.
		e.b.log.WarnContext(ctx, "could not keep the exchanged token with the session", "route", rt.prefix, "error", err)
	}
	return t, nil
}

// exchangeRefused tells the provider refusing the exchange (an OAuth error
// answer: invalid_target, invalid_grant, unauthorized_client, a bad client
// secret) from a provider that could not answer (network error, timeout,
// 5xx) or asked to slow down (429).
func exchangeRefused(err error) bool {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response == nil {
		return false
	}
	st := re.Response.StatusCode
	return st >= 400 && st < 500 && st != http.StatusTooManyRequests
}

// failed records the next back-off step for every instance (keeping a
// token that is still valid) and returns the answer.
func (e *exchanger) failed(ctx context.Context, ls *loadedSession, rt *exchangeRoute, cur exchangedToken, digest string, refused bool, cause error) (exchangedToken, error) {
	if cur.For != digest {
		cur = exchangedToken{For: digest}
	}
	cur.Backoff = nextBackoff(cur.Backoff)
	cur.RetryAt = e.b.now().Add(cur.Backoff)
	cur.Refused = refused
	s := ls.Session
	if refused {
		e.b.obs().TokenExchange(e.b.fe.Name, rt.prefix, ExchangeRefused)
		var re *oauth2.RetrieveError
		code, status := "", 0
		if errors.As(cause, &re) {
			code, status = re.ErrorCode, re.Response.StatusCode
		}
		e.b.log.WarnContext(ctx, "the provider refused the token exchange of a route",
			"route", rt.prefix, "sub", s.Subject, "status", status, "error_code", code, "retry_in", cur.Backoff.String())
	} else {
		e.b.obs().TokenExchange(e.b.fe.Name, rt.prefix, ExchangeTransient)
		e.b.log.WarnContext(ctx, "token exchange failed; retried after a back-off",
			"route", rt.prefix, "sub", s.Subject, "error", cause, "retry_in", cur.Backoff.String())
	}
	if err := e.keep(ctx, s, rt, cur); err != nil {
		e.b.log.WarnContext(ctx, "could not record the token exchange back-off", "route", rt.prefix, "error", err)
	}
	if e.valid(cur, digest) {
		return cur, nil // the current token serves until it expires
	}
	if refused {
		return exchangedToken{}, errExchangeRefused(cause)
	}
	return exchangedToken{}, errExchangeUnavailable(cause)
}

// keep stores t with the session until the later of its expiry and its
// back-off record's usefulness (the next step doubles the last).
func (e *exchanger) keep(ctx context.Context, s *sessions.Session, rt *exchangeRoute, t exchangedToken) error {
	ttl := t.Expiry.Sub(e.b.now())
	if !t.RetryAt.IsZero() {
		ttl = max(ttl, t.Backoff+maxBackoff)
	}
	if ttl <= 0 {
		return nil
	}
	raw, err := json.Marshal(t)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), saveTimeout)
	defer cancel()
	return e.b.deps.Sessions.PutValue(sctx, s, rt.name, raw, ttl)
}

// drop forgets s's exchanged tokens: the user's token they were exchanged
// for has been replaced, or the session has ended.
func (e *exchanger) drop(ctx context.Context, s *sessions.Session) {
	if len(e.routes) == 0 || s.ID() == "" {
		return
	}
	names := make([]string, 0, len(e.routes))
	for _, rt := range e.routes {
		names = append(names, rt.name)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), saveTimeout)
	defer cancel()
	if err := e.b.deps.Sessions.DeleteValues(sctx, s, names...); err != nil {
		// They no longer match the user's new token, or are unreadable
		// without the ended session, and expire by themselves.
		e.b.log.WarnContext(ctx, "could not drop the session's exchanged tokens", "error", err)
	}
}

// route is the exchange route with prefix, which buildRoutes made sure of.
func (e *exchanger) route(prefix string) (*exchangeRoute, error) {
	rt, ok := e.routes[prefix]
	if !ok {
		return nil, fmt.Errorf("route %s: token: exchange without an exchange block", prefix)
	}
	return rt, nil
}

// isDPoP reports whether an exchanged token is DPoP-bound (sent with a
// proof) rather than a Bearer token.
func (t exchangedToken) isDPoP() bool { return strings.EqualFold(t.TokenType, "DPoP") }

// exchangeHandler serves a token: exchange route: like a user route (live
// session, CSRF, step-up, claims, the user's token refreshed when due), but
// what is forwarded is a token exchanged for the user's, restricted to the
// route's audience, resource and scopes.
func (b *BFF) exchangeHandler(rt config.Route, p http.Handler) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		xr, err := b.exchange.route(rt.Prefix)
		if err != nil {
			return err
		}
		sess, err := b.requireSession(c)
		if err != nil {
			return err
		}
		if !stepUpSatisfied(sess.Claims, rt.Require, b.now()) {
			return stepUpRequired(c, rt.Require)
		}
		if sess, err = b.refresh.ensureFresh(r.Context(), sess); err != nil {
			return err
		}
		if err := checkClaims(sess.Claims, rt.Require.Claims); err != nil {
			return err
		}
		t, err := b.exchange.token(r.Context(), sess, xr)
		if err != nil {
			return err
		}
		ctx := proxy.WithToken(r.Context(), t.AccessToken)
		if t.isDPoP() {
			ctx = withDPoPKey(ctx, b.sessionDPoPKey(ctx, sess.Session))
		}
		p.ServeHTTP(c.Response(), r.WithContext(ctx))
		return nil
	}
}
