package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/oauth2"

	"github.com/bffgate/bffgate/config"
	"github.com/bffgate/bffgate/internal/demo"
	"github.com/bffgate/bffgate/internal/gateway"
	"github.com/bffgate/bffgate/internal/observe/observetest"
)

// logBuffer is a goroutine-safe sink for the gateway's JSON logs.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines decodes every JSON line logged so far.
func (b *logBuffer) lines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(b.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("a log line is not JSON: %v: %q", err, sc.Text())
		}
		out = append(out, m)
	}
	return out
}

// withLogBuffer makes the gateway log JSON at Debug level into buf.
func withLogBuffer(buf *logBuffer) envOption {
	return withGatewayOptions(gateway.Options{
		Logger: slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
}

// secrets collects what must never be logged, by name for the messages.
type secrets map[string]string

func (s secrets) add(name, v string) {
	if v == "" {
		return
	}
	s[name] = v
	// A JWT's signature alone is as telling as the whole token.
	if parts := strings.Split(v, "."); len(parts) == 3 && len(parts[2]) >= 16 {
		s[name+" (signature)"] = parts[2]
	}
}

// Across a full login, API calls, refreshes and logout of a browser and of a
// mobile app, no token, cookie value, handle, code, state or client secret
// reaches the logs, while every line of a request names its request_id.
func TestLogsNeverContainSecrets(t *testing.T) {
	logs := &logBuffer{}
	mobile := withMobileApp()
	e := newEnv(t,
		withLogBuffer(logs),
		// Tokens live 2 s; the API calls below wait until the login's has
		// expired, so they refresh it.
		withIDP(demo.IDPOptions{AccessTokenLifetime: 2 * time.Second}),
		func(e *env) {
			mobile(e)
			addApp := e.mutate
			e.mutate = func(c *config.Config) {
				addApp(c)
				c.Sessions.RefreshMargin = time.Minute
				web := &c.Frontends[0]
				web.Aggregates = append(web.Aggregates, config.Aggregate{
					Path: "/api/summary", Timeout: 5 * time.Second,
					Parts: map[string]config.Part{"orders": {Upstream: web.Routes[0].Upstream, Path: "/list", Required: true}},
				})
			}
		})
	sec := secrets{"web client secret": webSecret, "admin client secret": adminSecret, "app client secret": "app-secret"}

	// Browser login, step by step so that the callback's code and state and
	// the login-state cookie are known.
	b := e.browser()
	cb := b.callback(t, "/web/bff/login?returnTo=/web/orders", e.admin())
	cbURL, err := url.Parse(cb)
	if err != nil {
		t.Fatal(err)
	}
	sec.add("callback code", cbURL.Query().Get("code"))
	sec.add("callback state", cbURL.Query().Get("state"))
	for _, c := range b.Jar.Cookies(mustURL(e.public + "/")) {
		if strings.HasPrefix(c.Name, "bff-login-") {
			sec.add("login state cookie", c.Value)
		}
	}
	if resp := b.get(cb, nil); resp.StatusCode != http.StatusFound {
		t.Fatalf("callback: %d %s", resp.StatusCode, readBody(resp))
	}
	ref := b.cookie("bff-web").Value
	sec.add("session cookie", ref)
	s := e.session("web", ref)
	sec.add("access token", s.AccessToken)
	sec.add("refresh token", s.RefreshToken)
	sec.add("id token", s.IDToken)

	// A replayed callback fails without logging its code or state.
	if resp := b.get(cb, nil); resp.StatusCode < 400 {
		t.Fatalf("replayed callback: %d", resp.StatusCode)
	}
	// So does one whose code the provider rejects, an error the gateway
	// logs with its cause.
	other := e.browser()
	cb2URL, _ := url.Parse(other.callback(t, "/web/bff/login", e.admin()))
	q := cb2URL.Query()
	sec.add("second callback code", q.Get("code"))
	sec.add("second callback state", q.Get("state"))
	q.Set("code", "forged-authorization-code-0123456789")
	sec.add("forged code", q.Get("code"))
	cb2URL.RawQuery = q.Encode()
	// (back to returnTo with error=login_failed: the pending login is known)
	if resp := other.get(cb2URL.String(), nil); resp.StatusCode != http.StatusFound || mustURL(resp.Header.Get("Location")).Query().Get("error") != "login_failed" {
		t.Fatalf("callback with a forged code: %d to %q %s", resp.StatusCode, resp.Header.Get("Location"), readBody(resp))
	}

	if resp := b.do(http.MethodGet, "/web/bff/user", http.Header{"X-Csrf": {"1"}}, ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("user: %d %s", resp.StatusCode, readBody(resp))
	}
	time.Sleep(time.Until(s.Expiry))
	for _, path := range []string{"/web/api/orders/7?secret-looking=query", "/web/api/summary"} {
		if resp := b.api(http.MethodGet, path); resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, readBody(resp))
		}
	}
	refreshed := e.session("web", ref)
	if refreshed.AccessToken == s.AccessToken {
		t.Fatal("the API calls did not refresh the access token; the test would prove less than it claims")
	}
	sec.add("refreshed access token", refreshed.AccessToken)
	sec.add("refreshed refresh token", refreshed.RefreshToken)
	sec.add("refreshed id token", refreshed.IDToken)
	if got := e.orders.last(t).Header.Get("Authorization"); got != "Bearer "+refreshed.AccessToken {
		t.Fatalf("the upstream got %q, not the refreshed token", got)
	}

	if resp := b.do(http.MethodPost, "/web/bff/logout", http.Header{"X-Csrf": {"1"}}, ""); resp.StatusCode != http.StatusFound {
		t.Fatalf("logout: %d %s", resp.StatusCode, readBody(resp))
	}

	// Mobile app: handoff code, PKCE verifier, handle, tokens.
	verifier := oauth2.GenerateVerifier()
	sec.add("app code_verifier", verifier)
	code := mobileLogin(t, e, verifier)
	sec.add("handoff code", code)
	app := e.browser()
	resp := redeem(t, app, code, verifier)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("redeem: %d %s", resp.StatusCode, readBody(resp))
	}
	handle, _ := decodeJSON(t, resp)["session"].(string)
	sec.add("mobile handle", handle)
	as, err := e.gw.Sessions.Load(context.Background(), "mobile:app", handle)
	if err != nil {
		t.Fatal(err)
	}
	sec.add("app access token", as.AccessToken)
	sec.add("app refresh token", as.RefreshToken)
	sec.add("app id token", as.IDToken)
	time.Sleep(time.Until(as.Expiry)) // so that the call refreshes
	if resp := app.do(http.MethodGet, "/app/api/orders/1", bearer(handle), ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("app call: %d %s", resp.StatusCode, readBody(resp))
	}
	if as2, err := e.gw.Sessions.Load(context.Background(), "mobile:app", handle); err == nil {
		sec.add("app refreshed access token", as2.AccessToken)
		sec.add("app refreshed refresh token", as2.RefreshToken)
	}
	if resp := app.do(http.MethodPost, "/app/bff/logout", bearer(handle), ""); resp.StatusCode != http.StatusFound {
		t.Fatalf("app logout: %d %s", resp.StatusCode, readBody(resp))
	}

	out := logs.String()
	if len(sec) < 20 {
		t.Fatalf("only %d secrets collected", len(sec))
	}
	for name, v := range sec {
		if strings.Contains(out, v) || strings.Contains(out, url.QueryEscape(v)) {
			t.Errorf("the %s appears in the logs", name)
		}
	}

	// Every line belongs to a request and says which; the access lines
	// carry their fields and never a query string.
	lines := logs.lines(t)
	access := 0
	for _, l := range lines {
		if id, _ := l["request_id"].(string); !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(id) {
			t.Errorf("log line without a generated request_id: %v", l)
		}
		if l["msg"] != "request" {
			continue
		}
		access++
		for _, k := range []string{"frontend", "route", "method", "path", "status", "duration_ms", "bytes"} {
			if _, ok := l[k]; !ok {
				t.Errorf("access line lacks %q: %v", k, l)
			}
		}
		if p, _ := l["path"].(string); strings.Contains(p, "?") || strings.Contains(p, "query") {
			t.Errorf("access line logs a query: %v", l)
		}
	}
	if access < 10 {
		t.Errorf("%d access lines, want one per request (>= 10)", access)
	}

	// The flow shows in the metrics.
	reg := e.gw.Registry
	for _, c := range []struct {
		name   string
		labels map[string]string
		min    float64
		max    float64
	}{
		{"bffgate_logins_started_total", map[string]string{"frontend": "web"}, 2, 2},
		{"bffgate_logins_succeeded_total", map[string]string{"frontend": "web"}, 1, 1},
		{"bffgate_logins_failed_total", map[string]string{"frontend": "web", "reason": "invalid_state"}, 1, 1},
		{"bffgate_logins_failed_total", map[string]string{"frontend": "web", "reason": "code_rejected"}, 1, 1},
		{"bffgate_logins_succeeded_total", map[string]string{"frontend": "app"}, 1, 1},
		{"bffgate_sessions_created_total", map[string]string{"frontend": "web"}, 1, 1},
		{"bffgate_sessions_ended_total", map[string]string{"frontend": "web", "cause": "logout"}, 1, 1},
		{"bffgate_sessions_ended_total", map[string]string{"frontend": "app", "cause": "logout"}, 1, 1},
		{"bffgate_token_refreshes_total", map[string]string{"frontend": "web", "outcome": "ok"}, 1, 1},
		{"bffgate_token_refreshes_total", map[string]string{"frontend": "app", "outcome": "ok"}, 1, 1},
		// the login, and the forged code sent back with error=login_failed
		{"bffgate_http_requests_total", map[string]string{"frontend": "web", "route": "bff:callback", "status_class": "3xx"}, 2, 2},
		{"bffgate_http_requests_total", map[string]string{"frontend": "web", "route": "bff:callback", "status_class": "4xx"}, 1, 1},
		{"bffgate_http_requests_total", map[string]string{"frontend": "web", "route": "/api/orders", "status_class": "2xx"}, 1, 1},
		{"bffgate_http_requests_total", map[string]string{"frontend": "web", "route": "/api/summary", "status_class": "2xx"}, 1, 1},
		{"bffgate_http_request_duration_seconds", map[string]string{"frontend": "web", "route": "bff:user"}, 1, 1},
		{"bffgate_upstream_request_duration_seconds", map[string]string{"frontend": "web", "route": "/api/orders"}, 1, 1},
		{"bffgate_upstream_request_duration_seconds", map[string]string{"frontend": "web", "route": "/api/summary"}, 1, 1},
		{"bffgate_upstream_responses_total", map[string]string{"frontend": "app", "route": "/api/orders", "status_class": "2xx"}, 1, 1},
		{"bffgate_session_store_operations_total", map[string]string{"operation": "get", "result": "ok"}, 1, 1e9},
		{"bffgate_session_store_operations_total", map[string]string{"operation": "add_to_set", "result": "ok"}, 1, 1e9},
		{"bffgate_session_store_operation_duration_seconds", map[string]string{"operation": "set"}, 1, 1e9},
	} {
		if v := observetest.Value(t, reg, c.name, c.labels); v < c.min || v > c.max {
			t.Errorf("%s%v = %v, want %v..%v", c.name, c.labels, v, c.min, c.max)
		}
	}
}

// The request id: a valid incoming one is kept, anything else replaced; it
// is on the response, at the upstream (routes and aggregate parts) and in
// the access log. W3C trace context passes untouched.
func TestRequestIDAndTraceContext(t *testing.T) {
	// An upstream that answers with its own X-Request-Id must not make the
	// response carry two.
	var mu sync.Mutex
	var parts []http.Header
	echoing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		parts = append(parts, r.Header.Clone())
		mu.Unlock()
		w.Header().Set("X-Request-Id", "set-by-upstream")
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{}`)
	}))
	t.Cleanup(echoing.Close)

	logs := &logBuffer{}
	e := newEnv(t, withLogBuffer(logs), withConfig(func(c *config.Config) {
		web := &c.Frontends[0]
		web.Routes = append(web.Routes, config.Route{Prefix: "/api/echoing", Upstream: echoing.URL, Token: config.TokenNone})
		web.Aggregates = append(web.Aggregates, config.Aggregate{
			Path: "/api/both", Timeout: 5 * time.Second,
			Parts: map[string]config.Part{"a": {Upstream: echoing.URL, Path: "/a"}, "b": {Upstream: echoing.URL, Path: "/b"}},
		})
	}))
	b := e.browser()
	b.login("/web", e.admin())

	const (
		traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		tracestate  = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
	)
	generated := regexp.MustCompile(`^[0-9a-f]{32}$`)
	for _, c := range []struct {
		name, sent string
		keep       bool
	}{
		{"valid", "req-1.A_b-9", true},
		{"max length", strings.Repeat("a", 128), true},
		{"absent", "", false},
		{"too long", strings.Repeat("a", 129), false},
		{"space", "a b", false},
		{"log injection", `x","level":"ERROR`, false},
		{"non-ascii", "idé", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := http.Header{"X-Csrf": {"1"}, "Traceparent": {traceparent}, "Tracestate": {tracestate}}
			if c.sent != "" {
				h.Set("X-Request-Id", c.sent)
			}
			resp := b.do(http.MethodGet, "/web/api/orders/1", h, "")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", resp.StatusCode, readBody(resp))
			}
			ids := resp.Header.Values("X-Request-Id")
			if len(ids) != 1 {
				t.Fatalf("response X-Request-Id = %q, want one", ids)
			}
			id := ids[0]
			if c.keep && id != c.sent {
				t.Errorf("request id %q replaced by %q", c.sent, id)
			}
			if !c.keep && !generated.MatchString(id) {
				t.Errorf("request id %q: want a generated 32-hex id, got %q", c.sent, id)
			}
			got := e.orders.last(t)
			if v := got.Header.Values("X-Request-Id"); len(v) != 1 || v[0] != id {
				t.Errorf("upstream X-Request-Id = %q, want %q", v, id)
			}
			if got.Header.Get("Traceparent") != traceparent || got.Header.Get("Tracestate") != tracestate {
				t.Errorf("trace context changed: traceparent %q tracestate %q", got.Header.Get("Traceparent"), got.Header.Get("Tracestate"))
			}
			found := false
			for _, l := range logs.lines(t) {
				if l["msg"] == "request" && l["request_id"] == id {
					found = true
					if l["route"] != "/api/orders" || l["frontend"] != "web" || l["path"] != "/web/api/orders/1" || l["status"] != float64(200) {
						t.Errorf("access line %v", l)
					}
				}
			}
			if !found {
				t.Errorf("no access line with request_id %q", id)
			}
		})
	}

	t.Run("upstream sends its own id", func(t *testing.T) {
		resp := b.do(http.MethodGet, "/web/api/echoing/x", http.Header{"X-Request-Id": {"mine"}}, "")
		if v := resp.Header.Values("X-Request-Id"); len(v) != 1 || v[0] != "mine" {
			t.Errorf("response X-Request-Id = %q, want only the gateway's", v)
		}
	})

	t.Run("aggregate parts", func(t *testing.T) {
		mu.Lock()
		parts = nil
		mu.Unlock()
		resp := b.do(http.MethodGet, "/web/api/both", http.Header{
			"X-Csrf": {"1"}, "X-Request-Id": {"agg-1"}, "Traceparent": {traceparent}, "Tracestate": {tracestate},
		}, "")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, readBody(resp))
		}
		mu.Lock()
		defer mu.Unlock()
		if len(parts) != 2 {
			t.Fatalf("%d part calls, want 2", len(parts))
		}
		for _, h := range parts {
			if h.Get("X-Request-Id") != "agg-1" || h.Get("Traceparent") != traceparent || h.Get("Tracestate") != tracestate {
				t.Errorf("part headers: X-Request-Id %q traceparent %q tracestate %q",
					h.Get("X-Request-Id"), h.Get("Traceparent"), h.Get("Tracestate"))
			}
		}
	})

	t.Run("aggregate parts, invalid id", func(t *testing.T) {
		mu.Lock()
		parts = nil
		mu.Unlock()
		resp := b.do(http.MethodGet, "/web/api/both", http.Header{"X-Csrf": {"1"}, "X-Request-Id": {"a b"}}, "")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, readBody(resp))
		}
		id := resp.Header.Get("X-Request-Id")
		mu.Lock()
		defer mu.Unlock()
		if len(parts) != 2 || len(id) != 32 {
			t.Fatalf("%d part calls, response id %q", len(parts), id)
		}
		for _, h := range parts {
			if v := h.Values("X-Request-Id"); len(v) != 1 || v[0] != id {
				t.Errorf("part X-Request-Id %q, want the gateway's %q", v, id)
			}
		}
	})
}

// Route labels are configured names, never raw paths; requests nothing
// took are "unmatched".
func TestMetricsUseConfiguredRouteLabels(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login("/web", e.admin())
	for _, p := range []string{"/web/api/orders/8675309", "/web/api/orders", "/web/api/public/x"} {
		b.api(http.MethodGet, p)
	}
	b.api(http.MethodGet, "/web/nothing-here-4711")
	b.api(http.MethodGet, "/web/bff/no-such-endpoint-4712")
	b.api(http.MethodGet, "/elsewhere-4713")
	b.api(http.MethodDelete, "/web/api/readonly/1")

	resp := b.get("/metrics", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d", resp.StatusCode)
	}
	text := readBody(resp)
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, "bffgate_") {
			continue
		}
		// Only the label set counts: a sample's value may contain the
		// same digits by chance (a duration sum of 0.034713...).
		labels, _, _ := strings.Cut(line, "} ")
		for _, raw := range []string{"8675309", "4711", "4712", "4713"} {
			if strings.Contains(labels, raw) {
				t.Errorf("a raw path (%s) became a label: %s", raw, line)
			}
		}
	}
	reg := e.gw.Registry
	for _, c := range []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"frontend": "web", "route": "/api/orders", "status_class": "2xx"}, 2},
		{map[string]string{"frontend": "web", "route": "/api/public", "status_class": "2xx"}, 1},
		{map[string]string{"frontend": "web", "route": "unmatched", "status_class": "4xx"}, 2},
		{map[string]string{"frontend": "none", "route": "unmatched", "status_class": "4xx"}, 1},
		{map[string]string{"frontend": "web", "route": "/api/readonly", "status_class": "4xx"}, 1},
		{map[string]string{"frontend": "web", "route": "bff:login", "status_class": "3xx"}, 1},
	} {
		if v := observetest.Value(t, reg, "bffgate_http_requests_total", c.labels); v != c.want {
			t.Errorf("bffgate_http_requests_total%v = %v, want %v", c.labels, v, c.want)
		}
	}
	// Fixed label sets exist before their first event.
	if !strings.Contains(text, `bffgate_logins_failed_total{frontend="admin",reason="code_rejected"} 0`) {
		t.Error("zero series of the fixed login failure reasons are missing")
	}
}

// The gateway starts while the provider is down: alive, not ready; once the
// provider answers on its address, ready without a restart.
func TestReadyzFollowsProvider(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there until the provider starts
	issuer := "http://" + addr

	e := newEnv(t, withConfig(func(c *config.Config) {
		for i := range c.Frontends {
			c.Frontends[i].OIDC.Issuer = issuer
		}
	}))
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(e.public + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d %s while the provider is down, want 200", code, body)
	}
	for range 2 {
		if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "frontend web: identity provider") {
			t.Fatalf("/readyz = %d %s while the provider is down, want 503 naming the frontend", code, body)
		}
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d, want 200", code)
	}

	idp, err := demo.NewIDP(issuer, []demo.Client{
		{ID: "web-bff", Secret: webSecret, RedirectURIs: []string{e.public + "/web/bff/callback"}, PostLogoutRedirectURIs: []string{e.public + "/web/"}},
		{ID: "admin-bff", Secret: adminSecret, RedirectURIs: []string{e.public + "/admin/bff/callback"}, PostLogoutRedirectURIs: []string{e.public + "/admin/"}},
	}, demo.IDPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(idp)
	srv.Listener.Close()
	if srv.Listener, err = net.Listen("tcp", addr); err != nil {
		t.Skipf("the provider's port was taken meanwhile: %v", err)
	}
	srv.Start()
	t.Cleanup(srv.Close)

	// The loader retries with backoff (1 s, 2 s, ...): a bounded wait.
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, body := get("/readyz")
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d %s 15 s after the provider came up", code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d, want 200", code)
	}
	// And the provider is usable, not only reachable.
	b := e.browser()
	b.login("/web", demo.AdminUsername(issuer))
	if resp := b.api(http.MethodGet, "/web/api/orders/1"); resp.StatusCode != http.StatusOK {
		t.Fatalf("API call after the provider came up: %d %s", resp.StatusCode, readBody(resp))
	}
}

// The store being down makes /readyz 503 and counts store errors; /healthz
// stays 200.
func TestReadyzFollowsStore(t *testing.T) {
	e := newEnv(t)
	gw, err := gateway.New(e.cfg, gateway.Options{Redis: deadRedis(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	srv := httptest.NewServer(gw.Handler(true))
	t.Cleanup(srv.Close)
	for path, want := range map[string]int{"/healthz": http.StatusOK, "/readyz": http.StatusServiceUnavailable} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s = %d with the store down, want %d", path, resp.StatusCode, want)
		}
	}
	if v := observetest.Value(t, gw.Registry, "bffgate_session_store_operations_total", map[string]string{"operation": "ping", "result": "error"}); v < 1 {
		t.Errorf("store ping errors = %v, want >= 1", v)
	}
}

// deadRedis is a client of a port nothing listens on.
func deadRedis(t *testing.T) *redis.Client {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
}

// refreshModes makes the provider's refresh grants slow, failing (503) or
// rejected (invalid_grant) on demand.
type refreshModes struct{ mode atomic.Value }

func (m *refreshModes) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/oauth/token" {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			form, _ := url.ParseQuery(string(body))
			mode, _ := m.mode.Load().(string)
			if form.Get("grant_type") == "refresh_token" {
				switch mode {
				case "slow":
					time.Sleep(300 * time.Millisecond)
				case "down":
					http.Error(w, "provider down", http.StatusServiceUnavailable)
					return
				case "reject":
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(http.StatusBadRequest)
					_, _ = io.WriteString(w, `{"error":"invalid_grant"}`)
					return
				}
			}
		}
		h.ServeHTTP(w, r)
	})
}

func TestRefreshAndBackchannelMetrics(t *testing.T) {
	modes := &refreshModes{}
	// Tokens live 3 s: due (half the lifetime) after 1.5 s, expired after 3 s.
	e := newEnv(t,
		withIDP(demo.IDPOptions{AccessTokenLifetime: 3 * time.Second}),
		withIDPWrap(modes.wrap))
	reg := e.gw.Registry
	refreshes := func(outcome string) float64 {
		return observetest.Value(t, reg, "bffgate_token_refreshes_total", map[string]string{"frontend": "web", "outcome": outcome})
	}
	b := e.browser()
	b.login("/web", e.admin())
	ref := b.cookie("bff-web").Value
	time.Sleep(time.Until(e.session("web", ref).Expiry))

	// Concurrent requests of one session whose token expired share one
	// refresh.
	modes.mode.Store("slow")
	const n = 10
	statuses := b.burst(t, n, func(int) string { return e.public + "/web/api/orders/1" })
	for i, s := range statuses {
		if s != http.StatusOK {
			t.Fatalf("request %d: status %d", i, s)
		}
	}
	if ok, joined := refreshes("ok"), refreshes("joined"); ok < 1 || joined < 1 || ok+joined+refreshes("waited") != n {
		t.Errorf("refreshes ok=%v joined=%v waited=%v, want %d in all, some joined", ok, joined, refreshes("waited"), n)
	}

	// A provider outage keeps the still-valid token: transient (the
	// refresh runs beside the request).
	modes.mode.Store("down")
	s := e.session("web", ref)
	time.Sleep(time.Until(s.Expiry.Add(-s.Expiry.Sub(s.TokenObtainedAt) / 2)))
	if resp := b.api(http.MethodGet, "/web/api/orders/2"); resp.StatusCode != http.StatusOK {
		t.Fatalf("during the outage: %d %s", resp.StatusCode, readBody(resp))
	}
	for deadline := time.Now().Add(3 * time.Second); refreshes("transient") < 1 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if v := refreshes("transient"); v != 1 {
		t.Errorf("transient refreshes = %v, want 1", v)
	}

	// A rejected refresh token ends the session (once the back-off and the
	// token are over, the request waits for the refresh and is told).
	modes.mode.Store("reject")
	s = e.session("web", ref)
	time.Sleep(time.Until(later(s.Expiry, s.RefreshRetryAt)) + 50*time.Millisecond)
	errorCode(t, b.api(http.MethodGet, "/web/api/orders/3"), http.StatusUnauthorized, "session_expired")
	if v := refreshes("rejected"); v != 1 {
		t.Errorf("rejected refreshes = %v, want 1", v)
	}
	if v := observetest.Value(t, reg, "bffgate_sessions_ended_total", map[string]string{"frontend": "web", "cause": "refresh_rejected"}); v != 1 {
		t.Errorf("sessions ended by refresh_rejected = %v, want 1", v)
	}

	// Back-channel logout: two sessions of one subject, then a replay.
	modes.mode.Store("")
	laptop, phone := e.browser(), e.browser()
	laptop.login("/web", plainUser)
	phone.login("/web", plainUser)
	token := e.sign(e.logoutClaims(laptop.subject()), "logout+jwt")
	if resp := e.postLogoutToken("/web", token); resp.StatusCode != http.StatusOK {
		t.Fatalf("back-channel logout: %d %s", resp.StatusCode, readBody(resp))
	}
	if resp := e.postLogoutToken("/web", token); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("replayed logout token: %d", resp.StatusCode)
	}
	for outcome, want := range map[string]float64{"ok": 1, "invalid_token": 1, "error": 0} {
		if v := observetest.Value(t, reg, "bffgate_backchannel_logouts_total", map[string]string{"frontend": "web", "outcome": outcome}); v != want {
			t.Errorf("back-channel logouts %s = %v, want %v", outcome, v, want)
		}
	}
	if v := observetest.Value(t, reg, "bffgate_sessions_ended_total", map[string]string{"frontend": "web", "cause": "backchannel"}); v != 2 {
		t.Errorf("sessions ended by backchannel = %v, want 2", v)
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
