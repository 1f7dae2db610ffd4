package gateway_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bffgate/bffgate/config"
	"github.com/bffgate/bffgate/internal/demo"
	"github.com/bffgate/bffgate/internal/redistest"
	"github.com/bffgate/bffgate/sessions"
)

// tokenGrants counts the provider's token-endpoint calls by grant type and
// can make refresh grants fail with a 500 (a provider outage).
type tokenGrants struct {
	mu          sync.Mutex
	counts      map[string]int
	failRefresh atomic.Bool
}

func (g *tokenGrants) wrap(h http.Handler) http.Handler {
	g.counts = map[string]int{}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/oauth/token" {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			form, _ := url.ParseQuery(string(body))
			gt := form.Get("grant_type")
			g.mu.Lock()
			g.counts[gt]++
			g.mu.Unlock()
			if gt == "refresh_token" && g.failRefresh.Load() {
				http.Error(w, "provider down", http.StatusInternalServerError)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

func (g *tokenGrants) count(grant string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.counts[grant]
}

func TestSessionSharedAcrossInstances(t *testing.T) {
	e := newEnv(t)
	second := e.instance()
	b := e.browser()
	b.login("/web", e.admin())

	if resp := b.api(http.MethodGet, second+"/web/api/orders/1"); resp.StatusCode != http.StatusOK {
		t.Fatalf("instance B refused a session made on A: %d %s", resp.StatusCode, readBody(resp))
	}
	ref := b.cookie("bff-web").Value
	if resp := b.do(http.MethodPost, "/web/bff/logout", http.Header{"X-Csrf": {"1"}}, ""); resp.StatusCode != http.StatusFound {
		t.Fatalf("logout on A: %d %s", resp.StatusCode, readBody(resp))
	}
	replay := e.browser()
	replay.Jar.SetCookies(mustURL(e.public+"/"), []*http.Cookie{{Name: "bff-web", Value: ref}})
	errorCode(t, replay.api(http.MethodGet, second+"/web/api/orders/1"), http.StatusUnauthorized, "unauthenticated")
}

// The provider issues 10 s access tokens (expires_in 9) and the gateway
// refreshes 5 s before expiry (at most half the lifetime is allowed), so a
// token becomes due about 4.5 s after it was obtained and stays valid about
// 4 s more: long enough for the bursts below, even on a loaded machine, to
// need exactly one refresh, which runs beside them.
const (
	shortTokenLifetime = 10 * time.Second
	shortRefreshMargin = 5 * time.Second
)

func waitUntilDue() { time.Sleep(5500 * time.Millisecond) }

// waitForRefresh waits until the stored access token differs from before,
// the refresh running beside the requests that made it due.
func (e *env) waitForRefresh(ref, before string) *sessions.Session {
	e.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := e.session("web", ref)
		if s.AccessToken != before {
			return s
		}
		if time.Now().After(deadline) {
			e.t.Fatal("the access token was not refreshed within 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestConcurrentRefreshHappensOnceAcrossInstances(t *testing.T) {
	grants := &tokenGrants{}
	e := newEnv(t,
		withIDP(demo.IDPOptions{AccessTokenLifetime: shortTokenLifetime}),
		withIDPWrap(grants.wrap),
		withConfig(func(c *config.Config) { c.Sessions.RefreshMargin = shortRefreshMargin }))
	second := e.instance()
	b := e.browser()
	b.login("/web", e.admin())
	before := e.session("web", b.cookie("bff-web").Value)
	waitUntilDue()

	statuses := b.burst(t, 50, func(i int) string {
		base := e.public
		if i%2 == 1 {
			base = second
		}
		return base + "/web/api/orders/" + strconv.Itoa(i)
	})
	for i, st := range statuses {
		if st != http.StatusOK {
			t.Errorf("request %d: status %d", i, st)
		}
	}
	after := e.waitForRefresh(b.cookie("bff-web").Value, before.AccessToken)
	if after.RefreshToken == before.RefreshToken {
		t.Fatal("the stored refresh token was not replaced by the refresh")
	}
	// Both instances' requests are served; let any late one settle.
	time.Sleep(300 * time.Millisecond)
	if got := grants.count("refresh_token"); got != 1 {
		t.Fatalf("refresh grants at the provider = %d, want exactly 1", got)
	}
	if resp := b.api(http.MethodGet, second+"/web/api/orders/x"); resp.StatusCode != http.StatusOK {
		t.Fatalf("after the refresh: %d %s", resp.StatusCode, readBody(resp))
	}
	if got := e.orders.last(t).Header.Get("Authorization"); got != "Bearer "+after.AccessToken {
		t.Error("the upstream did not receive the refreshed access token")
	}
}

// A refresh token the provider refuses (revoked, or spent behind the
// gateway's back with no lost answer of ours to explain it) ends the
// session: at once for a request whose token has expired, which is told
// session_expired; beside the request when its token is still valid, which
// is still served.
func TestRefreshRejectedEndsSession(t *testing.T) {
	for _, tc := range []struct {
		name     string
		lifetime time.Duration
		wait     func()
	}{
		{"token expired", 2 * time.Second, func() { time.Sleep(2200 * time.Millisecond) }},
		{"token still valid", shortTokenLifetime, waitUntilDue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, withIDP(demo.IDPOptions{AccessTokenLifetime: tc.lifetime}))
			b := e.browser()
			b.login("/web", e.admin())
			s := e.session("web", b.cookie("bff-web").Value)
			// Spend the refresh token behind the gateway's back: the
			// provider's refresh tokens are single-use, so the gateway's
			// next refresh gets invalid_grant, as after a revocation.
			if st := e.refreshDirectly(s.RefreshToken); st != http.StatusOK {
				t.Fatalf("direct refresh: status %d", st)
			}
			tc.wait()
			if tc.name == "token expired" {
				errorCode(t, b.api(http.MethodGet, "/web/api/orders/1"), http.StatusUnauthorized, "session_expired")
			} else {
				if resp := b.api(http.MethodGet, "/web/api/orders/1"); resp.StatusCode != http.StatusOK {
					t.Fatalf("a request with a valid token: %d %s", resp.StatusCode, readBody(resp))
				}
				deadline := time.Now().Add(3 * time.Second)
				for e.rdb.Exists(context.Background(), e.prefix+"s:{"+s.ID()+"}").Val() != 0 && time.Now().Before(deadline) {
					time.Sleep(20 * time.Millisecond)
				}
			}
			if n := e.rdb.Exists(context.Background(), e.prefix+"s:{"+s.ID()+"}").Val(); n != 0 {
				t.Error("the session survived a rejected refresh")
			}
			errorCode(t, b.api(http.MethodGet, "/web/api/orders/1"), http.StatusUnauthorized, "unauthenticated")
		})
	}
}

func TestProviderOutageDuringRefreshKeepsSession(t *testing.T) {
	grants := &tokenGrants{}
	e := newEnv(t,
		withIDP(demo.IDPOptions{AccessTokenLifetime: 2 * time.Second}),
		withIDPWrap(grants.wrap),
		withConfig(func(c *config.Config) { c.Sessions.RefreshMargin = time.Second }))
	b := e.browser()
	b.login("/web", e.admin())
	time.Sleep(2 * time.Second) // the access token has expired

	grants.failRefresh.Store(true)
	errorCode(t, b.api(http.MethodGet, "/web/api/orders/1"), http.StatusServiceUnavailable, "provider_unavailable")
	if e.orders.count() != 0 {
		t.Error("a request with an expired token was forwarded")
	}
	grants.failRefresh.Store(false)
	// The next attempt waits out the back-off (1 s); meanwhile the answer
	// stays 503 without asking the provider.
	var last *http.Response
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if last = b.api(http.MethodGet, "/web/api/orders/1"); last.StatusCode == http.StatusOK {
			break
		}
		errorCode(t, last, http.StatusServiceUnavailable, "provider_unavailable")
	}
	if last.StatusCode != http.StatusOK {
		t.Fatalf("after the provider came back: %d %s", last.StatusCode, readBody(last))
	}
}

// TestIdleTimeout: a session used more often than its idle timeout lives
// past it, and one left alone for longer ends. The idle window (3 s) slides
// at most once a second (the touch interval), so a stall of up to 2 s
// between two requests on a loaded machine leaves the session alive.
func TestIdleTimeout(t *testing.T) {
	const idle = 3 * time.Second
	e := newEnv(t, withConfig(func(c *config.Config) {
		c.Sessions.IdleTimeout = idle
		c.Sessions.AbsoluteTimeout = time.Hour
	}))
	b := e.browser()
	b.login("/web", e.admin())
	created := e.session("web", b.cookie("bff-web").Value).CreatedAt
	for time.Since(created) < idle+time.Second {
		if resp := b.api(http.MethodGet, "/web/api/orders/1"); resp.StatusCode != http.StatusOK {
			t.Fatalf("an active session was ended %v after its login: %d %s", time.Since(created), resp.StatusCode, readBody(resp))
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(idle + 200*time.Millisecond)
	errorCode(t, b.api(http.MethodGet, "/web/api/orders/1"), http.StatusUnauthorized, "unauthenticated")
}

// TestAbsoluteTimeout: a session in steady use outlives its idle timeout
// but not its absolute timeout (both per-frontend overrides). The margins
// are for a loaded machine: the idle window (3 s) slides at most once a
// second (the touch interval), so a stall of up to 2 s between two requests
// leaves the session alive; and a refusal counts against the gateway only
// when its answer arrived before the absolute expiry, i.e. the session was
// read before it.
func TestAbsoluteTimeout(t *testing.T) {
	const idle, absolute = 3 * time.Second, 6 * time.Second
	e := newEnv(t, withConfig(func(c *config.Config) {
		c.Sessions.IdleTimeout = time.Hour
		c.Sessions.AbsoluteTimeout = 12 * time.Hour
		c.Frontends[0].Session.IdleTimeout = idle
		c.Frontends[0].Session.AbsoluteTimeout = absolute
	}))
	b := e.browser()
	b.login("/web", e.admin())
	s := e.session("web", b.cookie("bff-web").Value)
	end := s.AbsoluteExpiry
	if got := end.Sub(s.CreatedAt); got != absolute {
		t.Fatalf("absolute timeout %v, want the frontend's %v", got, absolute)
	}
	if s.IdleTimeout != idle {
		t.Fatalf("idle timeout %v, want the frontend's %v", s.IdleTimeout, idle)
	}
	var lastOK time.Time
	for time.Until(end) > 0 {
		resp := b.api(http.MethodGet, "/web/api/orders/1")
		answered := time.Now()
		if resp.StatusCode == http.StatusOK {
			lastOK = answered
			time.Sleep(200 * time.Millisecond)
			continue
		}
		if answered.Before(end) {
			t.Fatalf("ended %v before the absolute timeout: %d %s", end.Sub(answered), resp.StatusCode, readBody(resp))
		}
		break // read around the expiry: either answer is right
	}
	if lastOK.Sub(s.CreatedAt) <= idle {
		t.Fatalf("the last request served came %v after the login: not past the idle timeout, so nothing was shown", lastOK.Sub(s.CreatedAt))
	}
	// Past the absolute timeout the session is gone however it is used.
	time.Sleep(time.Until(end) + 100*time.Millisecond)
	errorCode(t, b.api(http.MethodGet, "/web/api/orders/1"), http.StatusUnauthorized, "unauthenticated")
}

func TestStoreOutage(t *testing.T) {
	// Persisted with appendfsync always, so a restart shows whether anything
	// was deleted while it was down.
	rs := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	e := newEnv(t, withConfig(func(c *config.Config) {
		c.Sessions.Redis.URL = "redis://" + rs.Addr + "/0"
	}))
	b := e.browser()
	b.login("/web", e.admin())
	if resp := b.api(http.MethodGet, "/web/api/orders/1"); resp.StatusCode != http.StatusOK {
		t.Fatalf("before the outage: %d", resp.StatusCode)
	}

	rs.Stop()
	errorCode(t, b.api(http.MethodGet, "/web/api/orders/1"), http.StatusServiceUnavailable, "session_store_unavailable")
	errorCode(t, b.get("/web/bff/user", http.Header{"X-Csrf": {"1"}}), http.StatusServiceUnavailable, "session_store_unavailable")
	if resp := b.get("/healthz", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz = %d during a store outage, want 200", resp.StatusCode)
	}
	if resp := b.get("/readyz", nil); resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/readyz = %d during a store outage, want 503", resp.StatusCode)
	}
	if b.cookie("bff-web") == nil {
		t.Fatal("the outage cleared the browser's cookie")
	}

	rs.Restart()
	var last *http.Response
	for range 50 { // the client reconnects by itself
		last = b.api(http.MethodGet, "/web/api/orders/1")
		if last.StatusCode == http.StatusOK {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if last.StatusCode != http.StatusOK {
		t.Fatalf("after Redis came back the same session answers %d %s: the outage must not end sessions", last.StatusCode, readBody(last))
	}
	if resp := b.get("/readyz", nil); resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz = %d after recovery", resp.StatusCode)
	}
}

// refreshDirectly spends refreshToken at the provider as the web client
// would, returning the HTTP status.
func (e *env) refreshDirectly(refreshToken string) int {
	e.t.Helper()
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}}
	req, _ := http.NewRequest(http.MethodPost, e.issuer+"/oauth/token", bytes.NewBufferString(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("web-bff", webSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestLogoutRevokesRefreshToken(t *testing.T) {
	var revokeDown atomic.Bool
	e := newEnv(t, withIDPWrap(func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/revoke" && revokeDown.Load() {
				http.Error(w, "down", http.StatusServiceUnavailable)
				return
			}
			h.ServeHTTP(w, r)
		})
	}))

	t.Run("revoked at the provider", func(t *testing.T) {
		b := e.browser()
		b.login("/web", e.admin())
		s := e.session("web", b.cookie("bff-web").Value)
		if resp := b.do(http.MethodPost, "/web/bff/logout", http.Header{"X-Csrf": {"1"}}, ""); resp.StatusCode != http.StatusFound {
			t.Fatalf("logout: %d", resp.StatusCode)
		}
		if st := e.refreshDirectly(s.RefreshToken); st == http.StatusOK {
			t.Fatal("the refresh token still works at the provider after logout: it was not revoked")
		}
	})

	t.Run("revocation failure still logs out", func(t *testing.T) {
		revokeDown.Store(true)
		defer revokeDown.Store(false)
		b := e.browser()
		b.login("/web", e.admin())
		ref := b.cookie("bff-web").Value
		s := e.session("web", ref)
		if resp := b.do(http.MethodPost, "/web/bff/logout", http.Header{"X-Csrf": {"1"}}, ""); resp.StatusCode != http.StatusFound {
			t.Fatalf("logout with the revocation endpoint down: %d %s", resp.StatusCode, readBody(resp))
		}
		// Not revoked this time: this shows the check above depends on the
		// revocation, not on the logout alone.
		if st := e.refreshDirectly(s.RefreshToken); st != http.StatusOK {
			t.Errorf("direct refresh after a failed revocation: %d, want 200", st)
		}
		replay := e.browser()
		replay.Jar.SetCookies(mustURL(e.public+"/"), []*http.Cookie{{Name: "bff-web", Value: ref}})
		errorCode(t, replay.api(http.MethodGet, "/web/api/orders/1"), http.StatusUnauthorized, "unauthenticated")
	})
}

// TestOperatorRevocation revokes by subject through the same Manager.Revoke
// that `bffgate sessions revoke` uses: both instances refuse the sessions on
// their next request.
func TestOperatorRevocation(t *testing.T) {
	e := newEnv(t)
	second := e.instance()
	victim, bystander := e.browser(), e.browser()
	victim.login("/web", e.admin())
	bystander.login("/web", plainUser)
	sub := victim.subject()

	n, err := e.gw.Sessions.Revoke(context.Background(), sessions.Filter{Frontend: "web", Subject: sub})
	if err != nil || n != 1 {
		t.Fatalf("Revoke = %d, %v; want 1 session", n, err)
	}
	errorCode(t, victim.api(http.MethodGet, "/web/api/orders/1"), http.StatusUnauthorized, "unauthenticated")
	errorCode(t, victim.api(http.MethodGet, second+"/web/api/orders/1"), http.StatusUnauthorized, "unauthenticated")
	if resp := bystander.api(http.MethodGet, second+"/web/api/orders/1"); resp.StatusCode != http.StatusOK {
		t.Errorf("another user's session: %d", resp.StatusCode)
	}
}
