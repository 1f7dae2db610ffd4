package gateway_test

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bffgate/bffgate/config"
)

func TestForwardingAttachesTokenAndDropsBrowserCredentials(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login("/web", e.admin())
	s := e.session("web", b.cookie("bff-web").Value)

	resp := b.do(http.MethodPost, "/web/api/orders/7?x=1", http.Header{
		"X-Csrf":            {"1"},
		"Authorization":     {"Bearer browser-supplied"},
		"X-Forwarded-For":   {"6.6.6.6"},
		"X-Forwarded-Host":  {"evil.example"},
		"X-Forwarded-Proto": {"https"},
		"Forwarded":         {"for=6.6.6.6"},
		"Content-Type":      {"application/json"},
	}, `{"qty":2}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, readBody(resp))
	}
	got := e.orders.last(t)
	if got.URL.Path != "/7" || got.URL.RawQuery != "x=1" {
		t.Errorf("upstream path %q query %q, want /7 and x=1 (strip_prefix)", got.URL.Path, got.URL.RawQuery)
	}
	if a := got.Header.Get("Authorization"); a != "Bearer "+s.AccessToken {
		t.Errorf("upstream Authorization = %q, want the provider's access token", a)
	}
	if c := got.Header.Get("Cookie"); c != "" {
		t.Errorf("upstream got the browser's cookies: %q", c)
	}
	if xff := got.Header.Get("X-Forwarded-For"); xff != "127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q, want only the client's address", xff)
	}
	if h := got.Header.Get("X-Forwarded-Host"); h != strings.TrimPrefix(e.public, "http://") {
		t.Errorf("X-Forwarded-Host = %q", h)
	}
	if p := got.Header.Get("X-Forwarded-Proto"); p != "http" {
		t.Errorf("X-Forwarded-Proto = %q, want http (the client's claim is dropped)", p)
	}
	if f := got.Header.Get("Forwarded"); f != "" {
		t.Errorf("Forwarded from an untrusted client passed: %q", f)
	}
	if body := decodeJSON(t, resp)["body"]; body != `{"qty":2}` {
		t.Errorf("request body reached the upstream as %q", body)
	}
}

func TestStripPrefix(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login("/web", e.admin())
	cases := []struct{ path, want string }{
		{"/web/api/orders/7", "/7"},
		{"/web/api/orders", "/"},
		{"/web/api/orders/a/b", "/a/b"},
		{"/web/api/full/7", "/base/api/full/7"},
		{"/web/api/full", "/base/api/full"},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			if resp := b.api(http.MethodGet, c.path); resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d %s", resp.StatusCode, readBody(resp))
			}
			if got := e.orders.last(t).URL.Path; got != c.want {
				t.Errorf("upstream path %q, want %q", got, c.want)
			}
		})
	}
}

func TestRouteAccess(t *testing.T) {
	e := newEnv(t)
	admin := e.browser()
	admin.login("/web", e.admin())
	plain := e.browser()
	plain.login("/web", plainUser)
	anon := e.browser()

	cases := []struct {
		name   string
		b      *browser
		method string
		path   string
		csrf   bool
		status int
		code   string
	}{
		{"no session", anon, "GET", "/web/api/orders/1", true, 401, "unauthenticated"},
		{"no csrf header", admin, "GET", "/web/api/orders/1", false, 401, "csrf_required"},
		{"admin claim met", admin, "GET", "/web/api/admin/x", true, 200, ""},
		{"admin claim missing", plain, "GET", "/web/api/admin/x", true, 403, "forbidden"},
		{"anonymous route", anon, "GET", "/web/api/public/x", false, 200, ""},
		{"method not allowed", admin, "POST", "/web/api/readonly/x", true, 405, "method_not_allowed"},
		{"method allowed", admin, "GET", "/web/api/readonly/x", true, 200, ""},
		{"whole segments only", admin, "GET", "/web/api/ordersX", true, 404, "not_found"},
		{"unknown path", admin, "GET", "/web/nothing", true, 404, "not_found"},
		{"unknown mount", admin, "GET", "/nowhere/x", true, 404, "not_found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := http.Header{}
			if c.csrf {
				h.Set("X-Csrf", "1")
			}
			before := e.orders.count()
			resp := c.b.do(c.method, c.path, h, "")
			if c.code != "" {
				errorCode(t, resp, c.status, c.code)
				if e.orders.count() != before {
					t.Error("a refused request reached the upstream")
				}
				return
			}
			if resp.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, c.status, readBody(resp))
			}
			if c.b == anon && e.orders.last(t).Header.Get("Authorization") != "" {
				t.Error("an anonymous route sent an Authorization header")
			}
		})
	}
}

// rawGet sends a request line exactly as given: Go's client would clean it.
func rawGet(t *testing.T, addr, target, cookie string) int {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	req := "GET " + target + " HTTP/1.1\r\nHost: " + addr + "\r\nX-CSRF: 1\r\nCookie: bff-web=" + cookie + "\r\nConnection: close\r\n\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufioReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestPathTraversalIsRefused(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login("/web", e.admin())
	ref := b.cookie("bff-web").Value
	addr := strings.TrimPrefix(e.public, "http://")
	for _, target := range []string{
		"/web/api/orders/../../admin/api/orders/1",
		"/web/api/orders/%2e%2e/%2e%2e/admin",
		"/web/api/orders/%2E%2E/secret",
		"/web/api/orders/..%2fsecret",
		"/web/api/orders/..%2Fsecret",
		"/web/api/orders/a%2fb",
		"/web/api/orders/..%5csecret",
		"/web/api/orders/./x",
		"/web/./api/orders/x",
		"/web/api/public/../orders/x",
	} {
		t.Run(target, func(t *testing.T) {
			before := e.orders.count()
			if st := rawGet(t, addr, target, ref); st != http.StatusBadRequest {
				t.Errorf("status %d, want 400", st)
			}
			if e.orders.count() != before {
				t.Errorf("the upstream received %q", e.orders.last(t).URL.Path)
			}
		})
	}
	// A clean path still works on the same connection type.
	if st := rawGet(t, addr, "/web/api/orders/x", ref); st != http.StatusOK {
		t.Errorf("clean path: status %d", st)
	}
}

func TestUpstreamFailures(t *testing.T) {
	slowSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(3 * time.Second):
		case <-r.Context().Done():
		}
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = slowSrv.Serve(ln) }()
	t.Cleanup(func() { slowSrv.Close() })
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadURL := "http://" + dead.Addr().String()
	dead.Close()

	e := newEnv(t, withConfig(func(c *config.Config) {
		c.Frontends[0].Routes = append(c.Frontends[0].Routes,
			config.Route{Prefix: "/api/slow", Upstream: "http://" + ln.Addr().String(), Timeout: 200 * time.Millisecond},
			config.Route{Prefix: "/api/dead", Upstream: deadURL},
		)
	}))
	b := e.browser()
	b.login("/web", e.admin())
	errorCode(t, b.api(http.MethodGet, "/web/api/slow/x"), http.StatusGatewayTimeout, "upstream_timeout")
	errorCode(t, b.api(http.MethodGet, "/web/api/dead/x"), http.StatusBadGateway, "upstream_unavailable")
}

func TestBodyLimit(t *testing.T) {
	e := newEnv(t, withConfig(func(c *config.Config) { c.Server.MaxBodyBytes = 1024 }))
	b := e.browser()
	b.login("/web", e.admin())
	big := strings.Repeat("x", 4096)
	errorCode(t, b.do(http.MethodPost, "/web/api/orders/1", http.Header{"X-Csrf": {"1"}}, big), http.StatusRequestEntityTooLarge, "request_too_large")

	// Without Content-Length (chunked) the limit bites while streaming.
	req, _ := http.NewRequest(http.MethodPost, e.public+"/web/api/orders/1", io.NopCloser(strings.NewReader(big)))
	req.ContentLength = -1
	req.Header.Set("X-Csrf", "1")
	resp, err := b.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	errorCode(t, resp, http.StatusRequestEntityTooLarge, "request_too_large")

	if resp := b.do(http.MethodPost, "/web/api/orders/1", http.Header{"X-Csrf": {"1"}}, "small"); resp.StatusCode != http.StatusOK {
		t.Errorf("a small body: %d", resp.StatusCode)
	}
}
