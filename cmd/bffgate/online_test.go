package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bffgate/bffgate/internal/demo"
	"github.com/bffgate/bffgate/internal/oidctest"
)

// deadAddr is a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestCheckOnline (SPEC section 1, issue 9 item 13): -online reaches each
// provider (the in-process zitadel OP: discovery and JWKS) and the session
// store (real Redis), and reports every failure with exit 1.
func TestCheckOnline(t *testing.T) {
	issuer := oidctest.StartIDP(t, []demo.Client{{ID: "web-bff", Secret: "s", RedirectURIs: []string{"http://127.0.0.1:8080/web/bff/callback"}}}, demo.IDPOptions{})
	deadIssuer := "http://" + deadAddr(t)
	gateway := func(redisAddr string, issuers ...string) string {
		var b strings.Builder
		fmt.Fprintf(&b, `server: {public_url: "http://127.0.0.1:8080"}
sessions:
  store: redis
  redis: {url: "redis://%s/0", dial_timeout: 500ms}
  cookie_keys: [{hash: "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", block: "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="}]
frontends:
`, redisAddr)
		for i, iss := range issuers {
			fmt.Fprintf(&b, "  - {name: f%d, mount: /f%d, oidc: {issuer: %q, client_id: web-bff, client_secret: s}}\n", i, i, iss)
		}
		return b.String()
	}
	tests := []struct {
		name     string
		config   string
		code     int
		ok, fail []string
	}{
		{
			name:   "provider and redis up",
			config: gateway("127.0.0.1:6379", issuer),
			code:   exitOK,
			ok:     []string{"frontend f0: provider " + issuer + " (discovery, jwks): ok", "session store (redis): ok"},
		},
		{
			name:   "dead provider and dead redis: every failure",
			config: gateway(deadAddr(t), issuer, deadIssuer),
			code:   exitFail,
			ok:     []string{"frontend f0: provider " + issuer + " (discovery, jwks): ok"},
			fail:   []string{"frontend f1: provider " + deadIssuer + " (discovery, jwks): FAILED: discovery", "session store (redis): FAILED: PING"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := filepath.Join(t.TempDir(), "gateway.yaml")
			if err := os.WriteFile(cfg, []byte(tt.config), 0o600); err != nil {
				t.Fatal(err)
			}
			var out, errb bytes.Buffer
			code := run(context.Background(), []string{"check", "-online", "-config", cfg}, &out, &errb)
			if code != tt.code {
				t.Errorf("exit %d, want %d\n%s%s", code, tt.code, out.String(), errb.String())
			}
			for _, want := range append(tt.ok, tt.fail...) {
				if !strings.Contains(out.String(), "online: "+want) {
					t.Errorf("output lacks %q:\n%s", "online: "+want, out.String())
				}
			}
			if len(tt.fail) > 0 && !strings.Contains(errb.String(), fmt.Sprintf("%d online check(s) failed", len(tt.fail))) {
				t.Errorf("stderr: %s", errb.String())
			}
		})
	}
}

// -online says whether each provider offers the token-exchange grant that
// a frontend's token: exchange routes need: the zitadel OP does; a
// provider whose discovery leaves it out (a fake: no real one here lacks
// it and still serves discovery) gets a warning, which does not fail the
// check, since discovery does not say what a client is allowed.
func TestCheckOnlineTokenExchangeGrant(t *testing.T) {
	issuer := oidctest.StartIDP(t, []demo.Client{{ID: "web-bff", Secret: "s", RedirectURIs: []string{"http://127.0.0.1:8080/web/bff/callback"}}}, demo.IDPOptions{})
	var without string
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/.well-known/openid-configuration":
			_ = json.NewEncoder(w).Encode(map[string]any{
				"issuer": without, "authorization_endpoint": without + "/auth", "token_endpoint": without + "/token",
				"jwks_uri": without + "/keys", "grant_types_supported": []string{"authorization_code", "refresh_token"},
			})
		case "/keys":
			_, _ = w.Write([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}`))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(fake.Close)
	without = fake.URL
	route := `routes: [{prefix: /api/pay, upstream: "http://pay.internal", token: exchange, exchange: {audience: pay}}]`
	for _, tt := range []struct {
		issuer, want string
	}{
		{issuer, "online: frontend f0: token exchange (routes /api/pay): ok"},
		{without, "online: frontend f0: token exchange (routes /api/pay): WARNING: grant_types_supported lacks urn:ietf:params:oauth:grant-type:token-exchange"},
	} {
		cfg := filepath.Join(t.TempDir(), "gateway.yaml")
		body := fmt.Sprintf(`server: {public_url: "http://127.0.0.1:8080"}
sessions: {store: memory}
frontends:
  - {name: f0, mount: /f0, oidc: {issuer: %q, client_id: web-bff, client_secret: s}, %s}
`, tt.issuer, route)
		if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		var out, errb bytes.Buffer
		if code := run(context.Background(), []string{"check", "-online", "-config", cfg}, &out, &errb); code != exitOK {
			t.Errorf("%s: exit %d\n%s%s", tt.issuer, code, out.String(), errb.String())
		}
		if !strings.Contains(out.String(), tt.want) {
			t.Errorf("output lacks %q:\n%s", tt.want, out.String())
		}
	}
}
