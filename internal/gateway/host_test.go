package gateway_test

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/bffgate/bffgate/config"
)

// hostRequest sends method path to the gateway with Host set to host, as a
// browser does that reached the same listener under another name.
func hostRequest(t *testing.T, b *browser, method, path, host string, h http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, b.e.public+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := b.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// TestOtherLoopbackNameGoesToPublicURL: public_url is 127.0.0.1:PORT here;
// a browser on localhost:PORT (the same listener) is sent to public_url for
// the login and for pages, before a cookie lands on the wrong host. API
// calls and other methods are left alone.
func TestOtherLoopbackNameGoesToPublicURL(t *testing.T) {
	e := newEnv(t)
	_, port, _ := strings.Cut(strings.TrimPrefix(e.public, "http://"), ":")
	other := "localhost:" + port
	html := http.Header{"Accept": {"text/html,application/xhtml+xml"}}
	for _, tt := range []struct {
		name, method, path string
		h                  http.Header
		redirect           bool
	}{
		{"login", http.MethodGet, "/web/bff/login?returnTo=%2Fweb%2Forders", nil, true},
		{"page", http.MethodGet, "/web/api/public/index.html?x=1", html, true},
		{"api call", http.MethodGet, "/web/api/public/x", http.Header{"X-Csrf": {"1"}, "Accept": {"application/json"}}, false},
		{"other bff endpoint", http.MethodGet, "/web/bff/user", http.Header{"X-Csrf": {"1"}, "Accept": {"text/html"}}, false},
		{"post", http.MethodPost, "/web/api/public/x", html, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp := hostRequest(t, e.browser(), tt.method, tt.path, other, tt.h)
			loc := resp.Header.Get("Location")
			if got := resp.StatusCode == http.StatusFound && loc == e.public+tt.path; got != tt.redirect {
				t.Errorf("%s %s on %s: %d Location %q, want redirect to public_url: %v", tt.method, tt.path, other, resp.StatusCode, loc, tt.redirect)
			}
			for _, c := range resp.Cookies() {
				if tt.redirect {
					t.Errorf("a cookie was set on the wrong host: %s", c.Name)
				}
			}
		})
	}
	// On public_url's own host nothing changes.
	resp := e.browser().get("/web/bff/login", nil)
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, e.issuer) {
		t.Errorf("login on public_url's host: %d to %q, want the provider", resp.StatusCode, loc)
	}
}

// TestCallbackNamesHostMismatch: a callback without a pending login says
// which host the login started on, or which host the callback was opened on,
// and what public_url is, instead of a bare "no login is pending".
func TestCallbackNamesHostMismatch(t *testing.T) {
	e := newEnv(t)

	t.Run("login started on another host", func(t *testing.T) {
		// A name that is not loopback: no redirect (behind a proxy that would
		// loop), so the login starts there and its cookie stays there.
		start := hostRequest(t, e.browser(), http.MethodGet, "/web/bff/login", "gw.example:8443", nil)
		if start.StatusCode != http.StatusFound {
			t.Fatalf("login: %d %s", start.StatusCode, readBody(start))
		}
		b := e.browser() // the browser's jar for public_url's host: no login cookie
		cb, _, err := b.Login(context.Background(), start.Header.Get("Location"), e.admin(), password)
		if err != nil {
			t.Fatal(err)
		}
		msg := callbackError(t, b, cb)
		for _, want := range []string{"started on gw.example:8443", "public_url is " + e.public} {
			if !strings.Contains(msg, want) {
				t.Errorf("message %q does not say %q", msg, want)
			}
		}
	})

	t.Run("callback opened on another host", func(t *testing.T) {
		b := e.browser()
		resp := hostRequest(t, b, http.MethodGet, "/web/bff/callback?code=c&state=unknown", "gw.example:8443", nil)
		msg := decodeJSON(t, resp)["message"].(string)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(msg, "opened on gw.example:8443") ||
			!strings.Contains(msg, "public_url is "+e.public) {
			t.Errorf("%d %q", resp.StatusCode, msg)
		}
	})
}

// callbackError GETs the callback and returns the message of its 400.
func callbackError(t *testing.T, b *browser, cb string) string {
	t.Helper()
	u, err := url.Parse(cb)
	if err != nil {
		t.Fatal(err)
	}
	resp := b.get(u.String(), http.Header{"Accept": {"application/json"}})
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("callback: %d, want 400; %s", resp.StatusCode, readBody(resp))
	}
	m, _ := decodeJSON(t, resp)["message"].(string)
	return m
}

// A frontend's host may name a port (SPEC section 2: "match only this
// Host"): it then answers only on that port, while a host without a port
// answers on any. Its redirect URIs use its own port.
func TestHostWithPort(t *testing.T) {
	var port string
	e := newEnv(t, withConfig(func(c *config.Config) {
		_, port, _ = net.SplitHostPort(c.Server.Listen)
		c.Frontends[0].Host = "127.0.0.1:" + port // web
		c.Frontends[1].Host = "127.0.0.1"         // admin, any port
	}))
	for _, tt := range []struct {
		name, host, path string
		status           int
	}{
		{"port-bound frontend on its port", "127.0.0.1:" + port, "/web/api/public/x", http.StatusOK},
		{"port-bound frontend on another port", "127.0.0.1:1", "/web/api/public/x", http.StatusNotFound},
		{"port-bound frontend without a port", "127.0.0.1", "/web/api/public/x", http.StatusNotFound},
		{"name-bound frontend on the listener's port", "127.0.0.1:" + port, "/admin/api/orders/1", http.StatusUnauthorized},
		{"name-bound frontend on another port", "127.0.0.1:1", "/admin/api/orders/1", http.StatusUnauthorized},
		{"name-bound frontend without a port", "127.0.0.1", "/admin/api/orders/1", http.StatusUnauthorized},
		{"name-bound frontend, other name", "localhost:" + port, "/admin/api/orders/1", http.StatusNotFound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp := hostRequest(t, e.browser(), http.MethodGet, tt.path, tt.host, http.Header{"X-Csrf": {"1"}})
			if resp.StatusCode != tt.status {
				t.Errorf("GET %s with Host %s: %d %s, want %d", tt.path, tt.host, resp.StatusCode, readBody(resp), tt.status)
			}
		})
	}
	resp := e.browser().get("/web/bff/login", nil)
	loc := mustURL(resp.Header.Get("Location"))
	if got, want := loc.Query().Get("redirect_uri"), "http://127.0.0.1:"+port+"/web/bff/callback"; resp.StatusCode != http.StatusFound || got != want {
		t.Errorf("login: %d, redirect_uri %q, want %q", resp.StatusCode, got, want)
	}
}
