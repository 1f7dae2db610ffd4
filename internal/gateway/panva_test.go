package gateway_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/bffgate/bffgate/config"
	"github.com/bffgate/bffgate/internal/gateway"
	"github.com/bffgate/bffgate/internal/oidctest"
	"github.com/bffgate/bffgate/internal/panva"
)

// panvaEnv is one gateway in front of panva's oidc-provider (a second real
// provider beside the zitadel example OP), a recording upstream and Redis.
type panvaEnv struct {
	t      testing.TB
	op     *panva.Provider
	public string
	cfg    *config.Config
	gw     *gateway.Gateway
	orders *upstream
}

// newPanvaEnv starts the gateway's listener first (the provider needs its
// redirect and back-channel URIs), then the provider with the clients
// clients(public) returns, then the gateway with the frontend fe(issuer).
func newPanvaEnv(t testing.TB, o panva.Options, clients func(public string) []map[string]any, fe func(issuer string, orders string) config.Frontend) *panvaEnv {
	t.Helper()
	e := &panvaEnv{t: t}
	srv := httptest.NewUnstartedServer(nil)
	e.public = "http://" + srv.Listener.Addr().String()
	o.Clients = clients(e.public)
	e.op = panva.Start(t, o)
	e.orders = newUpstream(t)
	prefix := "bffgate-test:" + strings.NewReplacer("/", "", "+", "", "=", "").Replace(randomKey(9)) + ":"
	rdb := testRedis(t)
	t.Cleanup(func() {
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, prefix+"*", 500).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
	})
	e.cfg = &config.Config{
		Path:   "test.yaml",
		Server: config.Server{Listen: srv.Listener.Addr().String(), PublicURL: e.public},
		Sessions: config.Sessions{
			Store:      "redis",
			Redis:      config.Redis{URL: "redis://" + redisAddr() + "/0", KeyPrefix: prefix},
			CookieKeys: []config.CookieKey{{Hash: randomKey(32), Block: randomKey(32)}},
		},
		Frontends: []config.Frontend{fe(e.op.Issuer, e.orders.URL)},
	}
	e.cfg.ApplyDefaults()
	if err := e.cfg.Validate(); err != nil {
		t.Fatalf("test config invalid: %v", err)
	}
	gw, err := gateway.New(e.cfg, gateway.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	e.gw = gw
	srv.Config.Handler = gw.Handler(true)
	srv.Start()
	t.Cleanup(srv.Close)
	return e
}

// login runs the code flow at panva for mount and returns the callback
// response (302 expected) and the authorization request the browser made.
func (e *panvaEnv) login(t testing.TB, b *oidctest.Browser, mount, user string) (*http.Response, string) {
	t.Helper()
	cb, authz, err := e.op.Login(context.Background(), b.Client, e.public+mount+"/bff/login?returnTo="+mount+"/", user)
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	req, _ := http.NewRequest(http.MethodGet, cb, nil)
	resp, err := b.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != mount+"/" {
		t.Fatalf("callback: %d to %q: %s", resp.StatusCode, resp.Header.Get("Location"), readBody(resp))
	}
	return resp, authz.String()
}

func (e *panvaEnv) call(t testing.TB, b *oidctest.Browser, method, u string) *http.Response {
	t.Helper()
	if strings.HasPrefix(u, "/") {
		u = e.public + u
	}
	req, _ := http.NewRequest(method, u, nil)
	req.Header.Set("X-CSRF", "1")
	resp, err := b.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// The plain profile (client_secret_basic, no PAR, Bearer tokens) against
// oidc-provider: login, user endpoint, an API call with a token the
// provider knows, logout.
func TestPanvaPlainLogin(t *testing.T) {
	e := newPanvaEnv(t, panva.Options{}, func(public string) []map[string]any {
		return []map[string]any{{
			"client_id": "web-bff", "client_secret": "web-secret-0123456789",
			"redirect_uris":             []string{public + "/web/bff/callback"},
			"post_logout_redirect_uris": []string{public + "/web/"},
		}}
	}, func(issuer, orders string) config.Frontend {
		return config.Frontend{
			Name: "web", Mount: "/web", Source: "frontends/web.yaml",
			OIDC:   config.OIDC{Issuer: issuer, ClientID: "web-bff", ClientSecret: "web-secret-0123456789"},
			Routes: []config.Route{{Prefix: "/api/orders", Upstream: orders, StripPrefix: true}},
		}
	})
	b := oidctest.NewBrowser(t)
	_, authz := e.login(t, b, "/web", "alice")
	if !strings.Contains(authz, "code_challenge=") {
		t.Errorf("authorize request without PKCE: %s", authz)
	}
	resp := e.call(t, b, "GET", "/web/bff/user")
	if resp.StatusCode != 200 {
		t.Fatalf("user: %d %s", resp.StatusCode, readBody(resp))
	}
	if u := decodeJSON(t, resp); u["sub"] != "alice" || u["email"] != "alice@example.test" {
		t.Fatalf("user claims: %v", u)
	}
	resp = e.call(t, b, "GET", "/web/api/orders/7")
	if resp.StatusCode != 200 {
		t.Fatalf("api: %d %s", resp.StatusCode, readBody(resp))
	}
	auth := e.orders.last(t).Header.Get("Authorization")
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok {
		t.Fatalf("upstream Authorization %q", auth)
	}
	ti, err := e.op.TokenInfo(context.Background(), tok)
	if err != nil || !ti.Active || ti.Sub != "alice" || ti.JKT != "" {
		t.Fatalf("token at the provider: %+v %v", ti, err)
	}
	resp = e.call(t, b, "POST", "/web/bff/logout")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), e.op.Issuer+"/session/end") {
		t.Fatalf("logout: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp := e.call(t, b, "GET", "/web/bff/user"); resp.StatusCode != 401 {
		t.Fatalf("user after logout: %d", resp.StatusCode)
	}
	final, err := e.op.ConfirmLogout(context.Background(), b.Client, resp.Header.Get("Location"))
	if err != nil || final != e.public+"/web/" {
		t.Fatalf("logout at the provider ended at %q: %v", final, err)
	}
}
