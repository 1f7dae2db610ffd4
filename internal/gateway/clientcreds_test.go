package gateway_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bffgate/bffgate/config"
	"github.com/bffgate/bffgate/internal/demo"
	"github.com/bffgate/bffgate/sessions"
)

// withClientRoute adds /api/svc to the web frontend with `token: client`.
func withClientRoute(extra func(*config.Config)) envOption {
	return withConfig(func(c *config.Config) {
		fe := &c.Frontends[0]
		fe.Routes = append(fe.Routes, config.Route{
			Prefix: "/api/svc", Upstream: fe.Routes[0].Upstream, StripPrefix: true, Token: config.TokenClient,
		})
		if extra != nil {
			extra(c)
		}
	})
}

// jwtClaims reads a JWT's payload without verifying it (the upstream's job).
func jwtClaims(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", token)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func upstreamBearer(t *testing.T, u *upstream) string {
	t.Helper()
	a := u.last(t).Header.Get("Authorization")
	if !strings.HasPrefix(a, "Bearer ") {
		t.Fatalf("upstream Authorization %q", a)
	}
	return strings.TrimPrefix(a, "Bearer ")
}

func TestClientCredentialsRoute(t *testing.T) {
	var grants tokenGrants
	e := newEnv(t, withIDPWrap(grants.wrap), withClientRoute(nil))
	anon := e.browser()
	errorCode(t, anon.api(http.MethodGet, "/web/api/svc/x"), http.StatusUnauthorized, "unauthenticated")

	b := e.browser()
	b.login("/web", plainUser)
	errorCode(t, b.get("/web/api/svc/x", nil), http.StatusUnauthorized, "csrf_required")
	if n := grants.count("client_credentials"); n != 0 {
		t.Errorf("%d client_credentials grants for refused requests", n)
	}
	s := e.session("web", b.cookie("bff-web").Value)

	resp := b.api(http.MethodGet, "/web/api/svc/x")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d %s", resp.StatusCode, readBody(resp))
	}
	tok := upstreamBearer(t, e.orders)
	if tok == s.AccessToken {
		t.Fatal("the client route sent the user's access token")
	}
	claims := jwtClaims(t, tok)
	if claims["sub"] != "web-bff" {
		t.Errorf("client token sub %v, want the frontend's client web-bff", claims["sub"])
	}
	if cid, ok := claims["client_id"]; ok && cid != "web-bff" {
		t.Errorf("client token client_id %v", cid)
	}
	if _, ok := claims[demo.RolesClaim]; ok {
		t.Errorf("client token carries user roles: %v", claims)
	}

	// Cached: more calls, no new grant, same token.
	for range 3 {
		if resp := b.api(http.MethodGet, "/web/api/svc/y"); resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if got := upstreamBearer(t, e.orders); got != tok {
			t.Error("a cached client token was not reused")
		}
	}
	if n := grants.count("client_credentials"); n != 1 {
		t.Errorf("%d client_credentials grants, want 1", n)
	}
	// User routes still carry the user's token.
	if resp := b.api(http.MethodGet, "/web/api/orders/1"); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got := upstreamBearer(t, e.orders); got != s.AccessToken {
		t.Error("a user route did not send the user's token")
	}

	// Shared through the store: sealed, and living as long as the token.
	var shared []string
	for _, k := range e.keys() {
		if strings.Contains(k, "client-token") && !strings.Contains(k, "lock") {
			shared = append(shared, k)
		}
	}
	if len(shared) != 1 {
		t.Fatalf("shared client token keys %v, want one", shared)
	}
	raw, err := e.rdb.Get(context.Background(), shared[0]).Result()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(raw, tok[:20]) || strings.Contains(raw, strings.Split(tok, ".")[1][:20]) {
		t.Error("the client token is stored in clear")
	}
	ttl := e.rdb.PTTL(context.Background(), shared[0]).Val()
	if max := 5 * time.Minute; ttl <= 0 || ttl > max {
		t.Errorf("shared token TTL %v, want within (0, %v]", ttl, max)
	}
}

func TestClientTokenSharedAcrossInstances(t *testing.T) {
	var grants tokenGrants
	e := newEnv(t, withIDPWrap(grants.wrap), withClientRoute(nil))
	second := e.instance()
	third := e.instance()
	b := e.browser()
	b.login("/web", e.admin())

	// A cold burst on three instances: one grant for all of them.
	var wg sync.WaitGroup
	for i := range 30 {
		base := []string{e.public, second, third}[i%3]
		wg.Go(func() {
			resp := b.api(http.MethodGet, base+"/web/api/svc/burst")
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s: status %d %s", base, resp.StatusCode, readBody(resp))
			}
		})
	}
	wg.Wait()
	if n := grants.count("client_credentials"); n != 1 {
		t.Errorf("%d client_credentials grants across 3 instances, want 1", n)
	}
	e.orders.mu.Lock()
	seen := map[string]bool{}
	for _, r := range e.orders.reqs {
		seen[r.Header.Get("Authorization")] = true
	}
	e.orders.mu.Unlock()
	if len(seen) != 1 {
		t.Errorf("the instances sent %d different tokens, want one shared token", len(seen))
	}
}

func TestClientTokenRenewedWithinRefreshMargin(t *testing.T) {
	var grants tokenGrants
	e := newEnv(t,
		withIDP(demo.IDPOptions{AccessTokenLifetime: shortTokenLifetime}),
		withIDPWrap(grants.wrap),
		withClientRoute(func(c *config.Config) { c.Sessions.RefreshMargin = shortRefreshMargin }))
	b := e.browser()
	b.login("/web", e.admin())

	call := func() string {
		t.Helper()
		if resp := b.api(http.MethodGet, "/web/api/svc/x"); resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d %s", resp.StatusCode, readBody(resp))
		}
		return upstreamBearer(t, e.orders)
	}
	first := call()
	if again := call(); again != first || grants.count("client_credentials") != 1 {
		t.Fatalf("token not reused before the margin (%d grants)", grants.count("client_credentials"))
	}
	waitUntilDue() // now within refresh_margin of expiry, still valid
	// The request goes on with the current token while a new one is
	// fetched beside it; the next requests get the new one.
	call()
	renewed := first
	for deadline := time.Now().Add(3 * time.Second); renewed == first && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
		renewed = call()
	}
	if renewed == first {
		t.Error("a token within refresh_margin of expiry was not renewed")
	}
	if n := grants.count("client_credentials"); n != 2 {
		t.Errorf("%d client_credentials grants, want 2", n)
	}
}

func TestClientTokenProviderRefuses(t *testing.T) {
	var grants tokenGrants
	e := newEnv(t, withIDPWrap(grants.wrap), withClientRoute(func(c *config.Config) {
		c.Frontends[0].OIDC.ClientSecret = "wrong-secret"
	}))
	// Logging in needs the right secret; the session is planted instead.
	b := e.browser()
	ref := plantSession(t, e, "web")
	b.Jar.SetCookies(mustURL(e.public+"/"), []*http.Cookie{{Name: "bff-web", Value: ref}})
	before := e.orders.count()
	errorCode(t, b.api(http.MethodGet, "/web/api/svc/x"), http.StatusBadGateway, "upstream_unavailable")
	if e.orders.count() != before {
		t.Error("the request reached the upstream without a client token")
	}
	// Right after a refusal, requests get the same answer without asking
	// the provider again (backoff). One fetch may be two POSTs: x/oauth2
	// tries the other client authentication style after a 401.
	first := grants.count("client_credentials")
	for range 5 {
		errorCode(t, b.api(http.MethodGet, "/web/api/svc/x"), http.StatusBadGateway, "upstream_unavailable")
	}
	if n := grants.count("client_credentials"); n != first {
		t.Errorf("%d more client_credentials grants within the backoff, want none", n-first)
	}
}

// plantSession stores a live session for frontend (a spa) without a login,
// for tests whose provider cannot complete one.
func plantSession(t *testing.T, e *env, frontend string) string {
	t.Helper()
	now := time.Now()
	ref, err := e.gw.Sessions.Create(context.Background(), "spa:"+frontend, &sessions.Session{
		Frontend: frontend, Subject: "planted", Claims: json.RawMessage(`{"sub":"planted"}`),
		AccessToken: "user-token", Expiry: now.Add(time.Hour),
		CreatedAt: now, AbsoluteExpiry: now.Add(time.Hour), IdleTimeout: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// The zitadel example OP issues no DPoP-bound tokens: it answers a token
// request that carries a DPoP proof with a Bearer token, so with dpop: true
// it is a real provider that downgrades. The login fails like any callback
// failure, and a client route is refused without reaching its upstream
// (and without asking the provider again within the back-off).
func TestDPoPFrontendRefusesBearerTokens(t *testing.T) {
	var grants tokenGrants
	logs := &logBuffer{}
	e := newEnv(t, withIDPWrap(grants.wrap), withLogBuffer(logs), withClientRoute(func(c *config.Config) {
		c.Frontends[0].OIDC.DPoP = true
	}))
	b := e.browser()
	resp := b.get(b.callback(t, "/web/bff/login", e.admin()), nil)
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/web/?error=login_failed" {
		t.Fatalf("callback: %d to %q, want 302 to /web/?error=login_failed: %s", resp.StatusCode, resp.Header.Get("Location"), readBody(resp))
	}
	var refused bool
	for _, l := range logs.lines(t) {
		if l["event"] == "login_failed" {
			refused = l["reason"] == "invalid_response" && strings.Contains(l["error"].(string), "Bearer token to a DPoP token request")
		}
	}
	if !refused {
		t.Fatalf("no login_failed line for the Bearer token:\n%s", logs.String())
	}
	if resp := b.get("/web/bff/user", http.Header{"X-CSRF": {"1"}}); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("user after the refused login: %d, want 401", resp.StatusCode)
	}

	ref := plantSession(t, e, "web")
	b.Jar.SetCookies(mustURL(e.public+"/"), []*http.Cookie{{Name: "bff-web", Value: ref}})
	before := e.orders.count()
	errorCode(t, b.api(http.MethodGet, "/web/api/svc/x"), http.StatusBadGateway, "upstream_unavailable")
	first := grants.count("client_credentials")
	if first == 0 {
		t.Fatal("no client_credentials grant was asked for")
	}
	errorCode(t, b.api(http.MethodGet, "/web/api/svc/x"), http.StatusBadGateway, "upstream_unavailable")
	if n := grants.count("client_credentials"); n != first {
		t.Errorf("%d more client_credentials grants within the back-off, want none", n-first)
	}
	if e.orders.count() != before {
		t.Error("a Bearer client token reached the upstream of a DPoP frontend")
	}
}
