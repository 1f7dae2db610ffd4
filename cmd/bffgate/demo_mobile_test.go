package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/bffgate/bffgate/internal/demo"
	"github.com/bffgate/bffgate/internal/oidctest"
)

// TestDemoMobileAppAndDashboard walks, without a browser, what the demo's
// mobile page and Dashboard button do: the app flow against the demo's
// mobile frontend (the page's URL is the app redirect URI) and the
// dashboard aggregate for a user the reports service refuses.
func TestDemoMobileAppAndDashboard(t *testing.T) {
	out := startDemoPart(t, "demo", "-listen", "127.0.0.1:0", "-idp-listen", "127.0.0.1:0")
	page := out.field(t, "Open")
	public := strings.TrimSuffix(page, "/web/")
	if got := out.field(t, "Mobile app"); got != demo.AppRedirectURI(public) {
		t.Errorf("Mobile app line %q, want %q", got, demo.AppRedirectURI(public))
	}
	ctx := context.Background()
	do := func(client *http.Client, method, u string, h http.Header, body string) (*http.Response, map[string]any) {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, method, u, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header = h
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var m map[string]any
		_ = json.Unmarshal(raw, &m)
		return resp, m
	}

	t.Run("mobile app", func(t *testing.T) {
		if resp, _ := demoGet(t, demo.AppRedirectURI(public)); resp.StatusCode != http.StatusOK {
			t.Fatalf("the mobile page: %d", resp.StatusCode)
		}
		b := oidctest.NewBrowser(t)
		verifier := oauth2.GenerateVerifier()
		start := public + demo.AppMount + "/bff/login?returnTo=" + url.QueryEscape(demo.AppRedirectURI(public)) +
			"&code_challenge=" + oauth2.S256ChallengeFromVerifier(verifier) + "&code_challenge_method=S256"
		resp := signIn(t, b, start, demo.AdminUsername("http://localhost"))
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusFound || loc == nil || !strings.HasPrefix(loc.String(), demo.AppRedirectURI(public)+"?code=") {
			t.Fatalf("callback: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		app := &http.Client{}
		body, _ := json.Marshal(map[string]string{"code": loc.Query().Get("code"), "code_verifier": verifier})
		resp, m := do(app, http.MethodPost, public+demo.AppMount+"/bff/session", http.Header{"Content-Type": {"application/json"}}, string(body))
		handle, _ := m["session"].(string)
		if resp.StatusCode != http.StatusOK || handle == "" {
			t.Fatalf("redeem: %d %v", resp.StatusCode, m)
		}
		auth := http.Header{"Authorization": {"Bearer " + handle}}
		// The demo services accept the app client's tokens too.
		for _, p := range []string{"/api/orders/latest", "/api/reports/summary"} {
			resp, m = do(app, http.MethodGet, public+demo.AppMount+p, auth, "")
			if resp.StatusCode != http.StatusOK {
				t.Errorf("%s with the handle: %d %v", p, resp.StatusCode, m)
			}
		}
		resp, _ = do(noRedirect, http.MethodPost, public+demo.AppMount+"/bff/logout", auth, "")
		if resp.StatusCode != http.StatusFound {
			t.Errorf("logout: %d", resp.StatusCode)
		}
		if resp, _ = do(app, http.MethodGet, public+demo.AppMount+"/api/orders/latest", auth, ""); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("handle after logout: %d", resp.StatusCode)
		}
	})

	t.Run("dashboard", func(t *testing.T) {
		b := oidctest.NewBrowser(t)
		signIn(t, b, public+"/web/bff/login", demo.UserUsername)
		resp, m := do(b.Client, http.MethodGet, public+"/web"+demo.DashboardPath, http.Header{"X-Csrf": {"1"}}, "")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("dashboard: %d %v", resp.StatusCode, m)
		}
		orders, _ := m["orders"].(map[string]any)
		if orders == nil || orders["service"] != "orders" {
			t.Errorf("orders part %v", m["orders"])
		}
		// test-user2 lacks the admin role: the optional part fails in place.
		reports, _ := m["reports"].(map[string]any)
		if reports == nil || reports["status"] != float64(http.StatusForbidden) || reports["error"] == nil {
			t.Errorf("reports part %v, want {error, status 403}", m["reports"])
		}
	})
}
