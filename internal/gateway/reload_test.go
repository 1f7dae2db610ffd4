package gateway_test

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/bffgate/bffgate/config"
)

// reloaded returns e's frontends with web's routes replaced by edit,
// defaulted and validated as a reload from files would be.
func reloaded(t *testing.T, e *env, edit func([]config.Route) []config.Route) []config.Frontend {
	t.Helper()
	c := *e.cfg
	c.Frontends = slices.Clone(e.cfg.Frontends)
	c.Frontends[0].Routes = edit(slices.Clone(c.Frontends[0].Routes))
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("reloaded config invalid: %v", err)
	}
	return c.Frontends
}

func TestReloadKeepsSessionsAndInFlightRequests(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"slow":true}`))
	}))
	t.Cleanup(slow.Close)
	e := newEnv(t, withConfig(func(c *config.Config) {
		c.Frontends[0].Routes = append(c.Frontends[0].Routes,
			config.Route{Prefix: "/api/slow", Upstream: slow.URL, StripPrefix: true, Timeout: 10 * time.Second})
	}))
	b := e.browser()
	b.login("/web", e.admin())
	s := e.session("web", b.cookie("bff-web").Value)

	// A request in flight on the old frontend set...
	done := make(chan *http.Response, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, e.public+"/web/api/slow/x", nil)
		req.Header.Set("X-Csrf", "1")
		resp, err := b.Client.Do(req)
		if err != nil {
			t.Errorf("in-flight request: %v", err)
		}
		done <- resp
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the slow request never reached its upstream")
	}

	// ...while a new set without that route, with a new one, is swapped in.
	fresh := newUpstream(t)
	fes := reloaded(t, e, func(rs []config.Route) []config.Route {
		rs = slices.DeleteFunc(rs, func(r config.Route) bool { return r.Prefix == "/api/slow" })
		return append(rs, config.Route{Prefix: "/api/new", Upstream: fresh.URL, StripPrefix: true})
	})
	if err := e.gw.Reload(fes); err != nil {
		t.Fatal(err)
	}

	close(release)
	resp := <-done
	if resp == nil {
		t.FailNow()
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || readBody(resp) != `{"slow":true}` {
		t.Errorf("in-flight request across the swap: %d", resp.StatusCode)
	}

	// The same cookie works on the new set: sessions live in the store.
	if resp := b.api(http.MethodGet, "/web/api/orders/1"); resp.StatusCode != http.StatusOK {
		t.Errorf("old route after reload: %d %s", resp.StatusCode, readBody(resp))
	}
	if resp := b.api(http.MethodGet, "/web/api/new/7"); resp.StatusCode != http.StatusOK {
		t.Fatalf("new route after reload: %d %s", resp.StatusCode, readBody(resp))
	}
	got := fresh.last(t)
	if got.URL.Path != "/7" || got.Header.Get("Authorization") != "Bearer "+s.AccessToken {
		t.Errorf("new route upstream: path %q, Authorization %q", got.URL.Path, got.Header.Get("Authorization"))
	}
	if resp := b.api(http.MethodGet, "/web/bff/user"); resp.StatusCode != http.StatusOK {
		t.Errorf("/bff/user after reload: %d", resp.StatusCode)
	}
	errorCode(t, b.api(http.MethodGet, "/web/api/slow/x"), http.StatusNotFound, "not_found")
}

func TestReloadFailureKeepsRunningSet(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login("/web", e.admin())

	bad := slices.Clone(e.cfg.Frontends)
	bad[0].Routes = append(slices.Clone(bad[0].Routes), config.Route{Prefix: "/api/bad", Upstream: "http://[::1", Timeout: time.Second})
	if err := e.gw.Reload(bad); err == nil {
		t.Fatal("a frontend set that cannot be built was swapped in")
	}
	if resp := b.api(http.MethodGet, "/web/api/orders/1"); resp.StatusCode != http.StatusOK {
		t.Errorf("running route after a failed reload: %d", resp.StatusCode)
	}
	errorCode(t, b.api(http.MethodGet, "/web/api/bad/1"), http.StatusNotFound, "not_found")
}

// TestReloadMetric (issue 9 item 10): reloads are counted by result, from
// zero, so that an alert on failures works before the first one.
func TestReloadMetric(t *testing.T) {
	e := newEnv(t)
	count := func(result string) float64 {
		t.Helper()
		mfs, err := e.gw.Registry.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "bffgate_config_reloads_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "result" && l.GetValue() == result {
						return m.GetCounter().GetValue()
					}
				}
			}
		}
		t.Fatalf("no bffgate_config_reloads_total{result=%q} series", result)
		return 0
	}
	if s, f := count("success"), count("failure"); s != 0 || f != 0 {
		t.Fatalf("before any reload: success %v, failure %v", s, f)
	}
	e.gw.ReloadFailed()
	if err := e.gw.Reload(e.cfg.Frontends); err != nil {
		t.Fatal(err)
	}
	if s, f := count("success"), count("failure"); s != 1 || f != 1 {
		t.Errorf("after one failed and one good reload: success %v, failure %v", s, f)
	}
}
