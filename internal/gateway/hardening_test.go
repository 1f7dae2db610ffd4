package gateway_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/bffgate/bffgate/config"
	"github.com/bffgate/bffgate/internal/demo"
)

// An encoded letter must not route a request around a nested route's
// checks: routing and forwarding see the same decoded path.
func TestEncodedPathCannotSkipNestedRoute(t *testing.T) {
	e := newEnv(t, withConfig(func(c *config.Config) {
		up := c.Frontends[0].Routes[0].Upstream
		c.Frontends[0].Routes = append(c.Frontends[0].Routes,
			config.Route{Prefix: "/api/v1", Upstream: up},
			config.Route{Prefix: "/api/v1/admin", Upstream: up, Require: config.Require{Claims: map[string][]string{"roles": {"admin"}}}},
			config.Route{Prefix: "/api/v1/ro", Upstream: up, Methods: []string{"GET"}},
		)
	}))
	b := e.browser()
	b.login("/web", plainUser)
	errorCode(t, b.api(http.MethodGet, "/web/api/v1/%61dmin/users"), http.StatusForbidden, "forbidden")
	errorCode(t, b.api(http.MethodDelete, "/web/api/v1/r%6f/x"), http.StatusMethodNotAllowed, "method_not_allowed")
	if e.orders.count() != 0 {
		t.Errorf("the upstream received %q", e.orders.last(t).URL.Path)
	}
}

func TestSemicolonDotSegmentsAreRefused(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login("/web", e.admin())
	addr := strings.TrimPrefix(e.public, "http://")
	for _, target := range []string{"/web/api/orders/..;/admin/x", "/web/api/orders/%2e%2e;x/admin", "/web/api/orders/.;/x"} {
		if st := rawGet(t, addr, target, b.cookie("bff-web").Value); st != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", target, st)
		}
	}
	if e.orders.count() != 0 {
		t.Errorf("the upstream received %q", e.orders.last(t).URL.Path)
	}
}

func TestClientRoutingHeadersAreDropped(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login("/web", e.admin())
	h := http.Header{"X-Csrf": {"1"}}
	for _, k := range []string{"X-Forwarded-Prefix", "X-Forwarded-Port", "X-Forwarded-Server", "X-Forwarded-Ssl", "X-Real-Ip", "X-Original-Url"} {
		h.Set(k, "evil")
	}
	if resp := b.do(http.MethodGet, "/web/api/orders/1", h, ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	got := e.orders.last(t).Header
	for k := range h {
		if k != "X-Csrf" && got.Get(k) != "" {
			t.Errorf("the upstream received the client's %s: %q", k, got.Get(k))
		}
	}
}

// An upstream cannot set the gateway's cookies (session fixation, forced
// logout on every frontend of the host) nor answer CORS for it, and its
// redirects to itself do not disclose its address.
func TestUpstreamCannotSetGatewayCookies(t *testing.T) {
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Set-Cookie", "bff-web=attacker-ref; Path=/")
		w.Header().Add("Set-Cookie", "bff-admin=; Path=/; Max-Age=0")
		w.Header().Add("Set-Cookie", "bff-login-web.abc=x; Path=/")
		w.Header().Add("Set-Cookie", "app-pref=dark; Path=/")
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Access-Control-Allow-Credentials", "true")
		w.Header().Set("Location", "http://"+r.Host+"/evil/next?x=1")
		_, _ = io.WriteString(w, "ok")
	}))
	defer evil.Close()
	e := newEnv(t, withConfig(func(c *config.Config) {
		c.Frontends[0].Routes = append(c.Frontends[0].Routes, config.Route{Prefix: "/evil", Upstream: evil.URL, Token: config.TokenNone})
	}))
	b := e.browser()
	resp := b.get("/web/evil/x", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	cookies := resp.Header.Values("Set-Cookie")
	if len(cookies) != 1 || !strings.HasPrefix(cookies[0], "app-pref=") {
		t.Errorf("Set-Cookie that reached the browser: %q, want only app-pref", cookies)
	}
	if v := resp.Header.Get("Access-Control-Allow-Origin"); v != "" {
		t.Errorf("the upstream's Access-Control-Allow-Origin %q reached the browser", v)
	}
	// Its redirect to its own address comes back as the gateway path.
	if loc := resp.Header.Get("Location"); loc != "/web/evil/next?x=1" {
		t.Errorf("Location = %q, want the public path /web/evil/next?x=1", loc)
	}
}

// Only invalid_grant (and Dex's invalid_request) ends a session: a
// throttled or misconfigured token endpoint keeps it.
func TestRefreshKeepsSessionOnOtherTokenErrors(t *testing.T) {
	var answer atomic.Value // "" = pass through
	answer.Store("")
	e := newEnv(t,
		withIDP(demo.IDPOptions{AccessTokenLifetime: shortTokenLifetime}),
		withIDPWrap(func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/oauth/token" && answer.Load().(string) != "" {
					_ = r.ParseForm()
					if r.PostForm.Get("grant_type") == "refresh_token" {
						parts := strings.SplitN(answer.Load().(string), " ", 2)
						w.Header().Set("Content-Type", "application/json")
						if parts[0] == "429" {
							w.WriteHeader(http.StatusTooManyRequests)
						} else {
							w.WriteHeader(http.StatusUnauthorized)
						}
						_, _ = io.WriteString(w, `{"error":"`+parts[1]+`"}`)
						return
					}
				}
				h.ServeHTTP(w, r)
			})
		}),
		withConfig(func(c *config.Config) { c.Sessions.RefreshMargin = shortRefreshMargin }))
	b := e.browser()
	b.login("/web", e.admin())
	waitUntilDue() // due, but not yet expired: the current token may be used

	for _, a := range []string{"429 slow_down", "401 invalid_client"} {
		answer.Store(a)
		if resp := b.api(http.MethodGet, "/web/api/orders/1"); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: status %d %s, want the request served with the current token", a, resp.StatusCode, readBody(resp))
		}
	}
	answer.Store("")
	if resp := b.api(http.MethodGet, "/web/api/orders/1"); resp.StatusCode != http.StatusOK {
		t.Fatalf("after the token endpoint recovered: %d %s", resp.StatusCode, readBody(resp))
	}
}

func TestReadyzNamesPartsNotHosts(t *testing.T) {
	e := newEnv(t, withConfig(func(c *config.Config) {
		c.Frontends[1].OIDC.Issuer = "http://127.0.0.1:1/realms/hidden-name"
	}))
	resp := e.browser().get("/readyz", nil)
	body := readBody(resp)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "frontend admin") {
		t.Fatalf("readyz: %d %s", resp.StatusCode, body)
	}
	if strings.Contains(body, "127.0.0.1:1") || strings.Contains(body, "hidden-name") {
		t.Errorf("readyz discloses the cause: %s", body)
	}
}

// Starting logins writes nothing to the store and keeps a bounded number of
// login-state cookies in the browser.
func TestLoginFloodIsBounded(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	for range 20 {
		if resp := b.get("/web/bff/login", nil); resp.StatusCode != http.StatusFound {
			t.Fatalf("login: %d", resp.StatusCode)
		}
	}
	if keys := e.keys(); len(keys) != 0 {
		t.Errorf("starting logins wrote %d keys to Redis: %v", len(keys), keys)
	}
	n := 0
	for _, c := range b.Jar.Cookies(mustURL(e.public + "/")) {
		if strings.HasPrefix(c.Name, "bff-login-") {
			n++
		}
	}
	if n > 3 {
		t.Errorf("the browser holds %d login-state cookies, want at most 3", n)
	}
	// A login still completes after the flood.
	b.login("/web", e.admin())
}
