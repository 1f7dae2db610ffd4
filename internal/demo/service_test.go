package demo_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/bffgate/bffgate/internal/demo"
)

// fakeIssuer serves discovery and a JWKS for a key the test signs with, and
// answers 503 until up is set (a provider that starts after the services).
type fakeIssuer struct {
	url string
	key *rsa.PrivateKey
	up  atomic.Bool
}

func newFakeIssuer(t *testing.T) *fakeIssuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeIssuer{key: key}
	f.up.Store(true)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		if !f.up.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                f.url,
			"authorization_endpoint":                f.url + "/auth",
			"token_endpoint":                        f.url + "/token",
			"jwks_uri":                              f.url + "/keys",
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"},
		}})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

// sign makes a JWT with the given claims (defaults: this issuer, aud web-bff,
// sub u1, valid for a minute), signed with key (nil: the issuer's key).
func (f *fakeIssuer) sign(t *testing.T, key *rsa.PrivateKey, override map[string]any) string {
	t.Helper()
	if key == nil {
		key = f.key
	}
	now := time.Now()
	claims := map[string]any{
		"iss": f.url,
		"aud": []string{demo.WebClientID},
		"sub": "u1",
		"iat": now.Unix(),
		"exp": now.Add(time.Minute).Unix(),
	}
	for k, v := range override {
		if v == nil {
			delete(claims, k)
		} else {
			claims[k] = v
		}
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: "k1"}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

type serviceAnswer struct {
	status int
	header http.Header
	body   map[string]any
}

func callService(t *testing.T, h http.Handler, path, authorization string) serviceAnswer {
	t.Helper()
	req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, path, nil)
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var body map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("body %q: %v", rec.Body.String(), err)
	}
	return serviceAnswer{status: rec.Code, header: rec.Header(), body: body}
}

func TestService(t *testing.T) {
	f := newFakeIssuer(t)
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	orders, err := demo.NewService(t.Context(), "orders", f.url, []string{"mobile-bff", demo.WebClientID}, demo.OrdersRole, nil)
	if err != nil {
		t.Fatal(err)
	}
	reports, err := demo.NewService(t.Context(), "reports", f.url, []string{demo.WebClientID}, demo.ReportsRole, nil)
	if err != nil {
		t.Fatal(err)
	}
	user := map[string]any{"roles": []string{"user"}}
	admin := map[string]any{"roles": []string{"admin", "user"}}
	with := func(base map[string]any, k string, v any) map[string]any {
		m := map[string]any{k: v}
		for bk, bv := range base {
			if bk != k {
				m[bk] = bv
			}
		}
		return m
	}

	tests := []struct {
		name       string
		service    http.Handler
		auth       string
		wantStatus int
		wantError  string
	}{
		{"user calls orders", orders, "Bearer " + f.sign(t, nil, user), http.StatusOK, ""},
		{"lower-case scheme", orders, "bearer " + f.sign(t, nil, user), http.StatusOK, ""},
		{"admin calls reports", reports, "Bearer " + f.sign(t, nil, admin), http.StatusOK, ""},
		{"user calls reports", reports, "Bearer " + f.sign(t, nil, user), http.StatusForbidden, "forbidden"},
		{"no roles claim", orders, "Bearer " + f.sign(t, nil, nil), http.StatusForbidden, "forbidden"},
		{"missing token", orders, "", http.StatusUnauthorized, "unauthenticated"},
		{"basic auth", orders, "Basic dXNlcjpwYXNz", http.StatusUnauthorized, "unauthenticated"},
		{"empty bearer", orders, "Bearer ", http.StatusUnauthorized, "unauthenticated"},
		{"garbage", orders, "Bearer not-a-jwt", http.StatusUnauthorized, "unauthenticated"},
		{"expired", orders, "Bearer " + f.sign(t, nil, with(user, "exp", time.Now().Add(-time.Minute).Unix())), http.StatusUnauthorized, "unauthenticated"},
		{"other issuer", orders, "Bearer " + f.sign(t, nil, with(user, "iss", "http://evil.example")), http.StatusUnauthorized, "unauthenticated"},
		{"other audience", orders, "Bearer " + f.sign(t, nil, with(user, "aud", []string{"someone-else"})), http.StatusUnauthorized, "unauthenticated"},
		{"second listed audience", orders, "Bearer " + f.sign(t, nil, with(user, "aud", "mobile-bff")), http.StatusOK, ""},
		{"signed by another key", orders, "Bearer " + f.sign(t, otherKey, user), http.StatusUnauthorized, "unauthenticated"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := callService(t, tt.service, "/latest", tt.auth)
			if got.status != tt.wantStatus {
				t.Fatalf("status %d, want %d; body %v", got.status, tt.wantStatus, got.body)
			}
			if tt.wantError != "" {
				if got.body["error"] != tt.wantError || got.body["message"] == "" {
					t.Errorf("body %v, want error %q with a message", got.body, tt.wantError)
				}
			}
			if tt.wantStatus == http.StatusUnauthorized && !strings.HasPrefix(got.header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate %q", got.header.Get("WWW-Authenticate"))
			}
		})
	}

	t.Run("answer", func(t *testing.T) {
		got := callService(t, orders, "/latest", "Bearer "+f.sign(t, nil, user))
		if got.body["service"] != "orders" || got.body["subject"] != "u1" || got.body["path"] != "/latest" || got.body["message"] == "" {
			t.Errorf("body %v", got.body)
		}
		if roles, _ := got.body["roles"].([]any); len(roles) != 1 || roles[0] != "user" {
			t.Errorf("roles %v", got.body["roles"])
		}
		if list, _ := got.body["orders"].([]any); len(list) == 0 {
			t.Errorf("no orders in %v", got.body)
		}
		got = callService(t, reports, "/summary", "Bearer "+f.sign(t, nil, admin))
		if _, ok := got.body["report"].(map[string]any); !ok {
			t.Errorf("no report in %v", got.body)
		}
	})
}

// TestServiceLazyDiscovery: a service made while the provider is down answers
// 503, then works once the provider is up, without being rebuilt.
func TestServiceLazyDiscovery(t *testing.T) {
	f := newFakeIssuer(t)
	f.up.Store(false)
	orders, err := demo.NewService(t.Context(), "orders", f.url, []string{demo.WebClientID}, demo.OrdersRole, nil)
	if err != nil {
		t.Fatal(err)
	}
	token := "Bearer " + f.sign(t, nil, map[string]any{"roles": []string{"user"}})
	if got := callService(t, orders, "/", ""); got.status != http.StatusUnauthorized {
		t.Errorf("no token while the provider is down: %d, want 401 without contacting it", got.status)
	}
	if got := callService(t, orders, "/", token); got.status != http.StatusServiceUnavailable {
		t.Fatalf("provider down: %d %v, want 503", got.status, got.body)
	}
	f.up.Store(true)
	if got := callService(t, orders, "/", token); got.status != http.StatusOK {
		t.Fatalf("provider up: %d %v, want 200", got.status, got.body)
	}
	// Cached: a provider going away again does not matter.
	f.up.Store(false)
	if got := callService(t, orders, "/", token); got.status != http.StatusOK {
		t.Fatalf("after discovery: %d %v, want 200", got.status, got.body)
	}
}

// TestServiceWithDemoIDP: tokens from the real demo provider are accepted and
// authorized by role.
func TestServiceWithDemoIDP(t *testing.T) {
	issuer := serveIDP(t, demo.IDPOptions{})
	r := newRP(t, issuer)
	orders, err := demo.NewService(t.Context(), "orders", issuer, []string{testClientID}, demo.OrdersRole, nil)
	if err != nil {
		t.Fatal(err)
	}
	reports, err := demo.NewService(t.Context(), "reports", issuer, []string{testClientID}, demo.ReportsRole, nil)
	if err != nil {
		t.Fatal(err)
	}
	user := "Bearer " + r.login(t, demo.UserUsername).token.AccessToken
	admin := "Bearer " + r.login(t, demo.AdminUsername(issuer)).token.AccessToken

	srv := httptest.NewServer(reports) // once over a real connection too
	t.Cleanup(srv.Close)
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/summary", nil)
	req.Header.Set("Authorization", admin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("admin -> reports over HTTP: %d %s", resp.StatusCode, b)
	}

	tests := []struct {
		name       string
		service    http.Handler
		auth       string
		wantStatus int
		wantRoles  []string
	}{
		{"user -> orders", orders, user, http.StatusOK, []string{"user"}},
		{"user -> reports", reports, user, http.StatusForbidden, nil},
		{"admin -> reports", reports, admin, http.StatusOK, []string{"admin", "user"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := callService(t, tt.service, "/x", tt.auth)
			if got.status != tt.wantStatus {
				t.Fatalf("status %d, want %d; %v", got.status, tt.wantStatus, got.body)
			}
			if tt.wantRoles != nil {
				var roles []string
				for _, r := range got.body["roles"].([]any) {
					roles = append(roles, r.(string))
				}
				if !slices.Equal(roles, tt.wantRoles) {
					t.Errorf("roles %v, want %v", roles, tt.wantRoles)
				}
			}
		})
	}
}

func TestNewServiceRejectsBadInput(t *testing.T) {
	tests := []struct {
		name, svc, issuer string
		audiences         []string
	}{
		{"empty name", "", "http://127.0.0.1:9998", []string{"a"}},
		{"relative issuer", "orders", "/idp", []string{"a"}},
		{"no audiences", "orders", "http://127.0.0.1:9998", nil},
		{"empty audience", "orders", "http://127.0.0.1:9998", []string{""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := demo.NewService(t.Context(), tt.svc, tt.issuer, tt.audiences, "user", nil); err == nil {
				t.Fatal("NewService accepted bad input")
			}
		})
	}
}
