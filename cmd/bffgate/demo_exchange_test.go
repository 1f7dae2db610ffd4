package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/bffgate/bffgate/internal/demo"
	"github.com/bffgate/bffgate/internal/oidctest"
)

// audienceOf reads the audience a demo service reports it verified.
func audienceOf(body []byte) []string {
	var m struct {
		Service  string   `json:"service"`
		Audience []string `json:"audience"`
	}
	_ = json.Unmarshal(body, &m)
	return m.Audience
}

// The demo's payments service takes only tokens for its own audience: the
// gateway's token: exchange route gets one for the logged-in user, while
// the user's own access token (audience web-bff) is refused there and
// accepted by orders.
func TestDemoPaymentsTakesOnlyExchangedTokens(t *testing.T) {
	ctx := context.Background()

	t.Run("through the gateway", func(t *testing.T) {
		out := startDemoPart(t, "demo", "-listen", "127.0.0.1:0", "-idp-listen", "127.0.0.1:0")
		public := strings.TrimSuffix(out.field(t, "Open"), "/web/")
		b := oidctest.NewBrowser(t)
		signIn(t, b, public+"/web/bff/login", demo.UserUsername)
		call := func(path string) (int, []byte) {
			t.Helper()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, public+"/web"+path, nil)
			req.Header.Set("X-Csrf", "1")
			resp, err := b.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			return resp.StatusCode, body
		}
		status, body := call(demo.PaymentsPath + "/recent")
		if status != http.StatusOK || !strings.Contains(string(body), `"payments"`) {
			t.Fatalf("payments through the gateway: %d %s", status, body)
		}
		if got := audienceOf(body); !slices.Equal(got, []string{demo.PaymentsAudience}) {
			t.Errorf("payments verified audience %v, want [%s]", got, demo.PaymentsAudience)
		}
		status, body = call("/api/orders/latest")
		if got := audienceOf(body); status != http.StatusOK || !slices.Equal(got, []string{demo.WebClientID}) {
			t.Errorf("orders: %d, audience %v, want the user's own token for [%s]", status, got, demo.WebClientID)
		}
	})

	t.Run("the user's own token at the service", func(t *testing.T) {
		idp := startDemoPart(t, "demo", "idp", "-listen", "127.0.0.1:0")
		issuer := idp.field(t, "Issuer")
		svc := startDemoPart(t, "demo", "services", "-listen", "127.0.0.1:0", "-issuer", issuer)
		services := "http://" + svc.field(t, "Listening on")

		// web-bff's own code flow, as the gateway runs it, stopped at the
		// callback (the demo provider accepts http://localhost:8080).
		provider, err := oidc.NewProvider(ctx, issuer)
		if err != nil {
			t.Fatal(err)
		}
		ep := provider.Endpoint()
		ep.AuthStyle = oauth2.AuthStyleInHeader
		conf := &oauth2.Config{
			ClientID: demo.WebClientID, ClientSecret: demo.WebClientSecret,
			Endpoint:    ep,
			RedirectURL: "http://localhost:8080/web/bff/callback",
			Scopes:      []string{"openid"},
		}
		verifier := oauth2.GenerateVerifier()
		cb, _, err := oidctest.NewBrowser(t).Login(ctx, conf.AuthCodeURL("state-1", oauth2.S256ChallengeOption(verifier)), demo.UserUsername, demo.Password)
		if err != nil {
			t.Fatal(err)
		}
		u, err := url.Parse(cb)
		if err != nil || u.Query().Get("code") == "" {
			t.Fatalf("callback %q: %v", cb, err)
		}
		tok, err := conf.Exchange(ctx, u.Query().Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		resp, body := demoGet(t, services+"/payments/recent", "Authorization", "Bearer "+tok.AccessToken)
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "audience") {
			t.Errorf("payments with the user's own token: %d %s, want 401 naming the audience", resp.StatusCode, body)
		}
		if resp, body := demoGet(t, services+"/orders/latest", "Authorization", "Bearer "+tok.AccessToken); resp.StatusCode != http.StatusOK {
			t.Errorf("orders with the same token: %d %s (the token itself is good)", resp.StatusCode, body)
		}
	})
}
