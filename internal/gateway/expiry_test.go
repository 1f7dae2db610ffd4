package gateway_test

import (
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/bffgate/bffgate/config"
	"github.com/bffgate/bffgate/internal/gateway"
	"github.com/bffgate/bffgate/internal/observe/observetest"
)

// A session that Redis expires by its idle timeout, with no request after
// its login, is logged as session_expired exactly once although two
// instances sweep; a session that was logged out is not reported when its
// TTL would have run out; and the browser that comes back with the expired
// cookie gets 401 unauthenticated without a second event.
func TestSessionExpiredByTTLAuditedOnce(t *testing.T) {
	logs := &logBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	const sweep = 100 * time.Millisecond
	e := newEnv(t, withGatewayOptions(gateway.Options{Logger: logger, ExpirySweep: sweep}),
		withConfig(func(c *config.Config) {
			// Long enough for a login and a logout on a loaded machine.
			c.Sessions.IdleTimeout = 3 * time.Second
			c.Sessions.AbsoluteTimeout = time.Hour
		}))
	second, err := gateway.New(e.cfg, gateway.Options{Logger: logger, ExpirySweep: sweep})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { second.Close() })

	b := e.browser()
	b.login("/web", e.admin())
	ref := b.cookie("bff-web").Value
	s := e.session("web", ref)
	sub, sid := s.Subject, s.ProviderSID

	gone := e.browser()
	gone.login("/web", plainUser)
	goneSub := gone.subject()
	if resp := gone.do(http.MethodPost, "/web/bff/logout", http.Header{"X-Csrf": {"1"}}, ""); resp.StatusCode != http.StatusFound {
		t.Fatalf("logout: %d %s", resp.StatusCode, readBody(resp))
	}

	expired := func() []map[string]any {
		var out []map[string]any
		for _, l := range logs.lines(t) {
			if l["event"] == "session_expired" {
				out = append(out, l)
			}
		}
		return out
	}
	// Idle timeout, the sweep's 2 s grace and a sweep; generous for load.
	deadline := time.Now().Add(30 * time.Second)
	for len(expired()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no session_expired event 30 s after the login")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Each instance sweeps about 10 more times meanwhile.
	time.Sleep(10 * sweep)
	// Idle, and then refused: the request that finds the session gone
	// answers like any stale cookie and logs no event of its own.
	errorCode(t, b.api(http.MethodGet, "/web/api/orders/1"), http.StatusUnauthorized, "unauthenticated")

	got := expired()
	if len(got) != 1 {
		t.Fatalf("%d session_expired events, want 1: %v", len(got), got)
	}
	l := got[0]
	want := map[string]any{"level": "INFO", "event": "session_expired", "frontend": "web", "sub": sub, "sid": sid, "client_ip": "", "cause": "timeout"}
	for k, v := range want {
		if l[k] != v {
			t.Errorf("%s = %v, want %v (%v)", k, l[k], v, l)
		}
	}
	for k := range l {
		if _, ok := want[k]; !ok && k != "time" && k != "msg" {
			t.Errorf("unexpected field %s in %v", k, l)
		}
	}
	if l["sub"] == goneSub {
		t.Errorf("the logged-out session was reported as expired: %v", l)
	}
	n := observetest.Value(t, e.gw.Registry, "bffgate_sessions_ended_total", map[string]string{"frontend": "web", "cause": "expired"}) +
		observetest.Value(t, second.Registry, "bffgate_sessions_ended_total", map[string]string{"frontend": "web", "cause": "expired"})
	if n != 1 {
		t.Errorf("bffgate_sessions_ended_total{cause=expired} across the instances = %v, want 1", n)
	}
	for _, k := range e.keys() {
		if k == e.prefix+"exp:{web}" {
			t.Errorf("the expiry schedule still lists sessions after every one ended")
		}
	}
}
