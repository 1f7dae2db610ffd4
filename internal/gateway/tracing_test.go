package gateway_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/bffgate/bffgate/bff"
	"github.com/bffgate/bffgate/internal/demo"
	"github.com/bffgate/bffgate/internal/gateway"
)

// withSpanRecorder traces every request of the gateway into rec.
func withSpanRecorder(rec *tracetest.SpanRecorder) envOption {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	return withGatewayOptions(gateway.Options{TracerProvider: tp})
}

// waitSpan waits until a span named name has ended (the server span ends
// after the response has left) and returns the last one.
func waitSpan(t *testing.T, rec *tracetest.SpanRecorder, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		spans := rec.Ended()
		for i := len(spans) - 1; i >= 0; i-- {
			if spans[i].Name() == name {
				return spans[i]
			}
		}
		if time.Now().After(deadline) {
			var names []string
			for _, s := range spans {
				names = append(names, s.Name())
			}
			t.Fatalf("no span %q among %q", name, names)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// spanText is everything a span exports as text: name, attributes, events,
// status and resource.
func spanText(s sdktrace.ReadOnlySpan) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%s|", s.Name(), s.Status().Description)
	for _, a := range s.Attributes() {
		fmt.Fprintf(&b, "%s=%s|", a.Key, a.Value.String())
	}
	for _, e := range s.Events() {
		fmt.Fprintf(&b, "%s|", e.Name)
		for _, a := range e.Attributes {
			fmt.Fprintf(&b, "%s=%s|", a.Key, a.Value.String())
		}
	}
	for _, a := range s.Resource().Attributes() {
		fmt.Fprintf(&b, "%s=%s|", a.Key, a.Value.String())
	}
	return b.String()
}

// Across a login, a failed callback, API calls that refresh the token and
// a logout, no span carries a token, cookie value, code, state, client
// secret, session id or raw path; routes are named by frontend and
// configured prefix.
func TestSpansNeverContainSecrets(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	e := newEnv(t, withSpanRecorder(rec),
		// 2 s tokens: the API call below waits for the login's to expire,
		// so it waits for (and traces) the refresh.
		withIDP(demo.IDPOptions{AccessTokenLifetime: 2 * time.Second}))
	sec := secrets{"web client secret": webSecret, "admin client secret": adminSecret}

	b := e.browser()
	cb := b.callback(t, "/web/bff/login?returnTo=/web/orders", e.admin())
	cbURL, _ := url.Parse(cb)
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
	sec.add("session id", s.ID())
	sec.add("access token", s.AccessToken)
	sec.add("refresh token", s.RefreshToken)
	sec.add("id token", s.IDToken)
	if resp := b.get(cb, nil); resp.StatusCode < 400 {
		t.Fatalf("replayed callback: %d", resp.StatusCode)
	}
	if resp := b.do(http.MethodGet, "/web/bff/user", http.Header{"X-Csrf": {"1"}}, ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("user: %d", resp.StatusCode)
	}
	time.Sleep(time.Until(s.Expiry))
	if resp := b.api(http.MethodGet, "/web/api/orders/8675309?secret-looking=query"); resp.StatusCode != http.StatusOK {
		t.Fatalf("api: %d %s", resp.StatusCode, readBody(resp))
	}
	refreshed := e.session("web", ref)
	if refreshed.AccessToken == s.AccessToken {
		t.Fatal("the API call did not refresh; the test would prove less than it claims")
	}
	sec.add("refreshed access token", refreshed.AccessToken)
	sec.add("refreshed refresh token", refreshed.RefreshToken)
	sec.add("refreshed id token", refreshed.IDToken)
	if resp := b.do(http.MethodPost, "/web/bff/logout", http.Header{"X-Csrf": {"1"}}, ""); resp.StatusCode != http.StatusFound {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	waitSpan(t, rec, "POST web bff:logout")

	spans := rec.Ended()
	if len(spans) < 15 {
		t.Fatalf("only %d spans recorded", len(spans))
	}
	names := map[string]bool{}
	for _, sp := range spans {
		text := spanText(sp)
		names[sp.Name()] = true
		for name, v := range sec {
			if strings.Contains(text, v) || strings.Contains(text, url.QueryEscape(v)) {
				t.Errorf("the %s appears in span %q", name, sp.Name())
			}
		}
		for _, raw := range []string{"8675309", "secret-looking", "Bearer", "Cookie", "bff-web"} {
			if strings.Contains(text, raw) {
				t.Errorf("span %q records %q: %s", sp.Name(), raw, text)
			}
		}
	}
	for _, want := range []string{
		"GET web bff:login", "GET web bff:callback", "GET web bff:user", "GET web /api/orders", "POST web bff:logout",
		bff.SpanSessionLoad, bff.SpanRefresh, bff.SpanRefreshLockWait,
		"provider GET /.well-known/openid-configuration", "provider POST /oauth/token", "upstream /api/orders GET",
	} {
		if !names[want] {
			t.Errorf("no span %q among %v", want, names)
		}
	}
}

// One request that refreshes its token is one connected trace: the
// client's trace id throughout; the server span the child of the client's
// span; the session load, the refresh and the upstream call children of the
// server span; the lock wait and the provider's token call children of the
// refresh; and the upstream told, in traceparent, the upstream span as its parent.
func TestConnectedTrace(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	e := newEnv(t, withSpanRecorder(rec),
		// 2 s tokens: the API call below waits for the login's to expire,
		// so it waits for (and traces) the refresh.
		withIDP(demo.IDPOptions{AccessTokenLifetime: 2 * time.Second}))
	b := e.browser()
	b.login("/web", e.admin())
	time.Sleep(time.Until(e.session("web", b.cookie("bff-web").Value).Expiry))

	const traceID, clientSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	resp := b.do(http.MethodGet, "/web/api/orders/7", http.Header{
		"X-Csrf": {"1"}, "Traceparent": {"00-" + traceID + "-" + clientSpan + "-01"},
	}, "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("api: %d %s", resp.StatusCode, readBody(resp))
	}
	server := waitSpan(t, rec, "GET web /api/orders")
	byName := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		if s.SpanContext().TraceID().String() == traceID {
			byName[s.Name()] = s
		}
	}
	span := func(name string) sdktrace.ReadOnlySpan {
		t.Helper()
		s, ok := byName[name]
		if !ok {
			t.Fatalf("no span %q in trace %s (have %v)", name, traceID, byName)
		}
		return s
	}
	if got := server.SpanContext().TraceID().String(); got != traceID {
		t.Fatalf("server span trace id %s, want the client's %s", got, traceID)
	}
	if got := server.Parent().SpanID().String(); got != clientSpan || !server.Parent().IsRemote() {
		t.Errorf("server span parent %s (remote %v), want the client's span %s", got, server.Parent().IsRemote(), clientSpan)
	}
	for _, a := range server.Attributes() {
		if a.Key == "http.route" && a.Value.AsString() != "web /api/orders" {
			t.Errorf("http.route = %q, want %q", a.Value.AsString(), "web /api/orders")
		}
	}
	refresh := span(bff.SpanRefresh)
	upstream := span("upstream /api/orders GET")
	for _, c := range []struct{ child, parent sdktrace.ReadOnlySpan }{
		{span(bff.SpanSessionLoad), server},
		{refresh, server},
		{span(bff.SpanRefreshLockWait), refresh},
		{span("provider POST /oauth/token"), refresh},
		{upstream, server},
	} {
		if got, want := c.child.Parent().SpanID(), c.parent.SpanContext().SpanID(); got != want {
			t.Errorf("span %q: parent %s, want %q (%s)", c.child.Name(), got, c.parent.Name(), want)
		}
	}
	want := "00-" + traceID + "-" + upstream.SpanContext().SpanID().String() + "-01"
	if got := e.orders.last(t).Header.Get("Traceparent"); got != want {
		t.Errorf("upstream traceparent %q, want the upstream span's %q", got, want)
	}
}

// The session load span says what answered: the in-process cache on a hit,
// the store on a miss (here forced by invalidating the cached record, as a
// write on another instance would), "bypassed" while the cache's channel
// is not confirmed live. The cache's own counters decide what each request
// should report.
func TestSessionLoadSpanSource(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	e := newEnv(t, withSpanRecorder(rec))
	c := e.gw.SessionCache()
	if c == nil {
		t.Fatal("the Redis store runs without the session cache")
	}
	b := e.browser()
	b.login("/web", e.admin())
	key := e.prefix + "s:{" + e.session("web", b.cookie("bff-web").Value).ID() + "}"

	loads := func() []sdktrace.ReadOnlySpan {
		var out []sdktrace.ReadOnlySpan
		for _, s := range rec.Ended() {
			if s.Name() == bff.SpanSessionLoad {
				out = append(out, s)
			}
		}
		return out
	}
	seen := map[string]int{}
	deadline := time.Now().Add(10 * time.Second)
	for seen["cache"] == 0 || seen["store"] == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("saw sources %v in 10 s, want cache and store: %+v", seen, c.Stats())
		}
		before, n := c.Stats(), len(loads())
		if resp := b.api(http.MethodGet, "/web/api/orders/1"); resp.StatusCode != http.StatusOK {
			t.Fatalf("api: %d %s", resp.StatusCode, readBody(resp))
		}
		after, spans := c.Stats(), loads()
		if len(spans) != n+1 {
			t.Fatalf("%d session load spans for one request", len(spans)-n)
		}
		var want string
		switch {
		case after.Hits > before.Hits:
			want = "cache"
		case after.Misses > before.Misses:
			want = "store"
		case after.Bypassed > before.Bypassed:
			want = "bypassed"
		default:
			t.Fatalf("the request read no session: %+v then %+v", before, after)
		}
		got := ""
		for _, a := range spans[n].Attributes() {
			if a.Key == bff.AttrSessionSource {
				got = a.Value.AsString()
			}
		}
		if got != want {
			t.Fatalf("%s = %q, want %q (cache %+v then %+v)", bff.AttrSessionSource, got, want, before, after)
		}
		seen[got]++
		if got == "cache" {
			// Drop the entry everywhere, so the next load misses.
			if err := c.Expire(context.Background(), key, 10*time.Minute); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Logf("sources seen: %v", seen)
}
