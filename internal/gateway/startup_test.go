package gateway_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/bffgate/bffgate/config"
	"github.com/bffgate/bffgate/internal/gateway"
)

// A store and a provider that cannot be reached at start are logged at warn
// at once and on each retry, with a growing delay; readiness probes in
// between add no line above debug.
func TestStartupWarnsOnEachRetry(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadIssuer := "http://" + ln.Addr().String()
	ln.Close()
	e := newEnv(t, withConfig(func(c *config.Config) {
		for i := range c.Frontends {
			c.Frontends[i].OIDC.Issuer = deadIssuer
		}
	}))
	logs := &logBuffer{}
	gw, err := gateway.New(e.cfg, gateway.Options{
		Redis:  deadRedis(t),
		Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	srv := httptest.NewServer(gw.Handler(true))
	t.Cleanup(srv.Close)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { gw.WatchStartup(ctx); close(done) }()
	warnings := func() []map[string]any {
		var out []map[string]any
		for _, l := range logs.lines(t) {
			if l["level"] == "WARN" {
				out = append(out, l)
			}
		}
		return out
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(warnings()) < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	before := len(warnings())
	for range 5 {
		resp, err := http.Get(srv.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("/readyz = %d with nothing reachable", resp.StatusCode)
		}
	}
	cancel()
	<-done

	got := warnings()
	if len(got) < 2 {
		t.Fatalf("%d warnings in 10 s, want one at start and one per retry: %v", len(got), got)
	}
	// Five probes may overlap one scheduled retry, never add five lines.
	if len(got) > before+1 {
		t.Errorf("the readiness probes logged at warn: %v", got[before:])
	}
	for i, l := range got[:2] {
		failing, _ := l["failing"].([]any)
		if len(failing) != 3 || !slices.Contains(failing, any("session store")) ||
			!slices.Contains(failing, any("frontend web: identity provider")) || !slices.Contains(failing, any("frontend admin: identity provider")) {
			t.Errorf("warning %d names %v, want the store and both providers", i, l["failing"])
		}
		if want := []string{"1s", "2s"}[i]; l["retry_in"] != want || l["attempt"] != float64(i+1) {
			t.Errorf("warning %d: attempt %v retry_in %v, want %d and %s", i, l["attempt"], l["retry_in"], i+1, want)
		}
	}
}
