package gateway_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	return newPanvaEnvWith(t, o, gateway.Options{}, clients, fe)
}

// newPanvaEnvWith is newPanvaEnv with the gateway built with gwo.
func newPanvaEnvWith(t testing.TB, o panva.Options, gwo gateway.Options, clients func(public string) []map[string]any, fe func(issuer string, orders string) config.Frontend) *panvaEnv {
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
	gw, err := gateway.New(e.cfg, gwo)
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
			"backchannel_logout_uri":    public + "/web/bff/backchannel-logout",
		}}
	}, func(issuer, orders string) config.Frontend {
		return config.Frontend{
			Name: "web", Mount: "/web", Source: "frontends/web.yaml",
			OIDC:   config.OIDC{Issuer: issuer, ClientID: "web-bff", ClientSecret: "web-secret-0123456789", PAR: config.PARNever},
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

	// Back-channel logout: bob ends his session at the provider, which
	// posts a logout token (RS256 here) to the gateway.
	bob := oidctest.NewBrowser(t)
	e.login(t, bob, "/web", "bob")
	if resp := e.call(t, bob, "GET", "/web/bff/user"); resp.StatusCode != 200 {
		t.Fatalf("bob: %d", resp.StatusCode)
	}
	if _, err := e.op.ConfirmLogout(context.Background(), bob.Client, e.op.Issuer+"/session/end?client_id=web-bff"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.call(t, bob, "GET", "/web/bff/user").StatusCode != http.StatusUnauthorized {
		if time.Now().After(deadline) {
			t.Fatal("bob's session survived back-channel logout")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// writeClientKey writes a fresh PKCS#8 PEM key for private_key_jwt (keys are
// made at test time, never committed).
func writeClientKey(t testing.TB, key any) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "client-key.txt")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Every client authentication method against oidc-provider, which checks
// them for real: the code exchange, the refresh token's revocation at
// logout (revoking it ends the grant, so the access token dies too), and for
// private_key_jwt the provider fetches the public key from M/bff/jwks.
func TestPanvaClientAuthentication(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	tests := []struct {
		name   string
		method string
		alg    string
		key    any
	}{
		{"client_secret_basic", config.ClientSecretBasic, "", nil},
		{"client_secret_post", config.ClientSecretPost, "", nil},
		{"private_key_jwt ES256", config.PrivateKeyJWT, "ES256", ec},
		{"private_key_jwt PS256", config.PrivateKeyJWT, "PS256", rsaKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			keyFile := ""
			if tt.key != nil {
				keyFile = writeClientKey(t, tt.key)
			}
			e := newPanvaEnv(t, panva.Options{}, func(public string) []map[string]any {
				c := map[string]any{
					"client_id": "web-bff", "token_endpoint_auth_method": tt.method,
					"redirect_uris":             []string{public + "/web/bff/callback"},
					"post_logout_redirect_uris": []string{public + "/web/"},
				}
				if tt.key == nil {
					c["client_secret"] = "web-secret-0123456789"
				} else {
					c["jwks_uri"] = public + "/web/bff/jwks"
					c["token_endpoint_auth_signing_alg"] = tt.alg
				}
				return []map[string]any{c}
			}, func(issuer, orders string) config.Frontend {
				o := config.OIDC{Issuer: issuer, ClientID: "web-bff", ClientAuth: tt.method, PrivateKeyFile: keyFile}
				if tt.key == nil {
					o.ClientSecret = "web-secret-0123456789"
				}
				return config.Frontend{Name: "web", Mount: "/web", OIDC: o,
					Routes: []config.Route{{Prefix: "/api/orders", Upstream: orders, StripPrefix: true}}}
			})
			b := oidctest.NewBrowser(t)
			jwks := e.call(t, b, "GET", "/web/bff/jwks")
			if tt.key == nil && jwks.StatusCode != http.StatusNotFound {
				t.Fatalf("jwks without private_key_jwt: %d", jwks.StatusCode)
			}
			if tt.key != nil && jwks.StatusCode != http.StatusOK {
				t.Fatalf("jwks: %d", jwks.StatusCode)
			}
			e.login(t, b, "/web", "alice")
			if resp := e.call(t, b, "GET", "/web/api/orders/1"); resp.StatusCode != 200 {
				t.Fatalf("api: %d %s", resp.StatusCode, readBody(resp))
			}
			tok := strings.TrimPrefix(e.orders.last(t).Header.Get("Authorization"), "Bearer ")
			if ti, _ := e.op.TokenInfo(context.Background(), tok); !ti.Active {
				t.Fatal("the access token is not active at the provider")
			}
			if resp := e.call(t, b, "POST", "/web/bff/logout"); resp.StatusCode != http.StatusFound {
				t.Fatalf("logout: %d", resp.StatusCode)
			}
			if ti, _ := e.op.TokenInfo(context.Background(), tok); ti.Active {
				t.Fatal("logout did not revoke the grant at the provider (revocation with client authentication)")
			}
		})
	}
}

// PAR against a provider that requires it: par auto sees
// require_pushed_authorization_requests and pushes; the browser's
// authorization request carries only client_id and request_uri.
func TestPanvaPushedAuthorizationRequest(t *testing.T) {
	for _, mode := range []string{config.PARAuto, config.PARAlways} {
		t.Run(mode, func(t *testing.T) {
			e := newPanvaEnv(t, panva.Options{RequirePAR: true}, func(public string) []map[string]any {
				return []map[string]any{{
					"client_id": "web-bff", "client_secret": "web-secret-0123456789",
					"redirect_uris": []string{public + "/web/bff/callback"},
				}}
			}, func(issuer, orders string) config.Frontend {
				return config.Frontend{Name: "web", Mount: "/web",
					OIDC: config.OIDC{Issuer: issuer, ClientID: "web-bff", ClientSecret: "web-secret-0123456789", PAR: mode}}
			})
			b := oidctest.NewBrowser(t)
			_, authz := e.login(t, b, "/web", "alice")
			u, _ := url.Parse(authz)
			q := u.Query()
			if len(q) != 2 || q.Get("client_id") != "web-bff" || !strings.HasPrefix(q.Get("request_uri"), "urn:ietf:params:oauth:request_uri:") {
				t.Fatalf("authorization request %s, want only client_id and request_uri", authz)
			}
			if resp := e.call(t, b, "GET", "/web/bff/user"); resp.StatusCode != 200 {
				t.Fatalf("user: %d", resp.StatusCode)
			}
		})
	}
}
