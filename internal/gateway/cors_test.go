package gateway_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/bffgate/bffgate/config"
)

const spaOrigin = "http://localhost:5173"

func withCORS() envOption {
	return withConfig(func(c *config.Config) {
		// Written as a user might; ApplyDefaults normalises it to spaOrigin.
		c.Frontends[0].CORS.AllowedOrigins = []string{"http://LocalHost:5173/", "https://app.example.com"}
	})
}

func preflight(b *browser, path, origin string) *http.Response {
	return b.do(http.MethodOptions, path, http.Header{
		"Origin":                         {origin},
		"Access-Control-Request-Method":  {"POST"},
		"Access-Control-Request-Headers": {"content-type,x-csrf"},
	}, "")
}

func TestCORSPreflight(t *testing.T) {
	e := newEnv(t, withCORS())
	anon := e.browser()

	t.Run("listed origin", func(t *testing.T) {
		for _, path := range []string{"/web/api/orders/1", "/web/api/readonly/1", "/web/bff/user", "/web/bff/logout"} {
			resp := preflight(anon, path, spaOrigin)
			if resp.StatusCode != http.StatusNoContent {
				t.Fatalf("%s: status %d %s", path, resp.StatusCode, readBody(resp))
			}
			h := resp.Header
			if got := h.Get("Access-Control-Allow-Origin"); got != spaOrigin {
				t.Errorf("%s: Allow-Origin %q, want %q", path, got, spaOrigin)
			}
			if got := h.Get("Access-Control-Allow-Credentials"); got != "true" {
				t.Errorf("%s: Allow-Credentials %q", path, got)
			}
			if got := strings.ToLower(h.Get("Access-Control-Allow-Headers")); !strings.Contains(got, "x-csrf") || !strings.Contains(got, "content-type") {
				t.Errorf("%s: Allow-Headers %q lacks X-CSRF or Content-Type", path, got)
			}
			if got := h.Get("Access-Control-Allow-Methods"); !strings.Contains(got, "POST") {
				t.Errorf("%s: Allow-Methods %q", path, got)
			}
			if !strings.Contains(strings.Join(h.Values("Vary"), ","), "Origin") {
				t.Errorf("%s: Vary %q lacks Origin", path, h.Values("Vary"))
			}
			for k, v := range h {
				if strings.HasPrefix(k, "Access-Control-") && strings.Contains(strings.Join(v, ","), "*") {
					t.Errorf("%s: wildcard in %s: %v", path, k, v)
				}
			}
		}
		if n := e.orders.count(); n != 0 {
			t.Errorf("preflights reached the upstream %d times; the gateway answers them", n)
		}
	})

	t.Run("unlisted origins", func(t *testing.T) {
		for _, origin := range []string{"http://evil.example", "http://localhost:5174", "https://sub.app.example.com", "null", "http://localhost:5173.evil.example"} {
			resp := preflight(anon, "/web/api/orders/1", origin)
			if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "" {
				t.Errorf("%s: Allow-Origin %q, want none", origin, got)
			}
			if got := resp.Header.Get("Access-Control-Allow-Credentials"); got != "" {
				t.Errorf("%s: Allow-Credentials %q, want none", origin, got)
			}
		}
		if n := e.orders.count(); n != 0 {
			t.Errorf("preflights reached the upstream %d times", n)
		}
	})

	t.Run("frontend without cors", func(t *testing.T) {
		resp := preflight(anon, "/admin/api/orders/1", spaOrigin)
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "" {
			t.Errorf("Allow-Origin %q on a frontend without cors.allowed_origins", got)
		}
	})
}

func TestCORSActualRequests(t *testing.T) {
	e := newEnv(t, withCORS())
	b := e.browser()
	b.login("/web", e.admin())

	resp := b.do(http.MethodPost, "/web/api/orders/1", http.Header{
		"Origin": {spaOrigin}, "X-Csrf": {"1"}, "Content-Type": {"application/json"},
	}, `{"qty":1}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d %s", resp.StatusCode, readBody(resp))
	}
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != spaOrigin {
		t.Errorf("Allow-Origin %q, want %q", got, spaOrigin)
	}
	if got := resp.Header.Get("Access-Control-Allow-Credentials"); got != "true" {
		t.Errorf("Allow-Credentials %q", got)
	}

	resp = b.do(http.MethodGet, "/web/bff/user", http.Header{"Origin": {spaOrigin}, "X-Csrf": {"1"}}, "")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != spaOrigin {
		t.Errorf("/bff/user: %d, Allow-Origin %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}

	// An error answer carries the CORS headers too, so the SPA can read it.
	resp = b.do(http.MethodGet, "/web/api/orders/1", http.Header{"Origin": {spaOrigin}}, "")
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != spaOrigin {
		t.Errorf("error answer: Allow-Origin %q, want %q", got, spaOrigin)
	}
	errorCode(t, resp, http.StatusUnauthorized, "csrf_required")

	// An unlisted origin's request is answered without CORS headers: the
	// browser keeps the answer from that page.
	resp = b.do(http.MethodGet, "/web/api/orders/1", http.Header{"Origin": {"http://evil.example"}, "X-Csrf": {"1"}}, "")
	if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("unlisted origin got Allow-Origin %q", got)
	}
}
