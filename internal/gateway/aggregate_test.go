package gateway_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/bffgate/bffgate/config"
)

// partsServer is a microservice with one behaviour per path, recording when
// each call started and ended and which Authorization it carried.
type partsServer struct {
	*httptest.Server
	mu     sync.Mutex
	starts map[string]time.Time
	ends   map[string]time.Time
	auth   map[string]string
}

func newPartsServer(t *testing.T) *partsServer {
	p := &partsServer{starts: map[string]time.Time{}, ends: map[string]time.Time{}, auth: map[string]string{}}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.starts[r.URL.Path] = time.Now()
		p.auth[r.URL.Path] = r.Header.Get("Authorization")
		p.mu.Unlock()
		defer func() {
			p.mu.Lock()
			p.ends[r.URL.Path] = time.Now()
			p.mu.Unlock()
		}()
		switch r.URL.Path {
		case "/a", "/b":
			time.Sleep(300 * time.Millisecond)
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]string{"part": r.URL.Path})
		case "/text":
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write([]byte("plain <text> \"quoted\""))
		case "/fail":
			http.Error(w, "boom", http.StatusInternalServerError)
		case "/forbidden":
			http.Error(w, `{"error":"forbidden"}`, http.StatusForbidden)
		case "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		case "/slowbody":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte(`{"partial":`))
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *partsServer) times(path string) (start, end time.Time, auth string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.starts[path], p.ends[path], p.auth[path]
}

func aggregateEnv(t *testing.T) (*env, *partsServer) {
	ps := newPartsServer(t)
	part := func(path string, required bool) config.Part {
		return config.Part{Upstream: ps.URL, Path: path, Required: required}
	}
	e := newEnv(t, withConfig(func(c *config.Config) {
		fe := &c.Frontends[0]
		fe.Aggregates = []config.Aggregate{
			{Path: "/api/dash", Timeout: 5 * time.Second, Parts: map[string]config.Part{
				"a": part("/a", true), "b": part("/b", true),
				"text": part("/text", false), "missing": part("/missing", false),
				"denied": part("/forbidden", false),
			}},
			{Path: "/api/broken", Timeout: 5 * time.Second, Parts: map[string]config.Part{
				"text": part("/text", false), "fail": part("/fail", true),
			}},
			{Path: "/api/denied", Timeout: 5 * time.Second, Parts: map[string]config.Part{
				"denied": part("/forbidden", true),
			}},
			{Path: "/api/down", Timeout: 5 * time.Second, Parts: map[string]config.Part{
				"down": {Upstream: "http://127.0.0.1:1", Path: "/x", Required: true},
			}},
			{Path: "/api/slow", Timeout: 300 * time.Millisecond, Parts: map[string]config.Part{
				"slow": part("/slow", true), "text": part("/text", false),
			}},
			{Path: "/api/slowbody", Timeout: 300 * time.Millisecond, Parts: map[string]config.Part{
				"slowbody": part("/slowbody", true),
			}},
			{Path: "/api/slowoptional", Timeout: 300 * time.Millisecond, Parts: map[string]config.Part{
				"slow": part("/slow", false), "text": part("/text", true),
			}},
		}
	}))
	return e, ps
}

func TestAggregateComposesPartsInParallel(t *testing.T) {
	e, ps := aggregateEnv(t)
	b := e.browser()
	b.login("/web", e.admin())
	s := e.session("web", b.cookie("bff-web").Value)

	resp := b.api(http.MethodGet, "/web/api/dash")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, readBody(resp))
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(readBody(resp)), &got); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]any{
		"a":       map[string]any{"part": "/a"},
		"b":       map[string]any{"part": "/b"},
		"text":    `plain <text> "quoted"`,
		"missing": map[string]any{"error": "upstream answered 404", "status": float64(404)},
		"denied":  map[string]any{"error": "upstream answered 403", "status": float64(403)},
	} {
		if g, _ := json.Marshal(got[name]); string(g) != mustJSON(t, want) {
			t.Errorf("part %s = %s, want %s", name, g, mustJSON(t, want))
		}
	}
	if len(got) != 5 {
		t.Errorf("answer has %d members, want 5: %v", len(got), got)
	}

	for _, path := range []string{"/a", "/b", "/text", "/missing", "/forbidden"} {
		if _, _, auth := ps.times(path); auth != "Bearer "+s.AccessToken {
			t.Errorf("part %s got Authorization %q, want the user's access token", path, auth)
		}
	}
	// Parallel, not one after the other: each slow part started before the
	// other one finished.
	startA, endA, _ := ps.times("/a")
	startB, endB, _ := ps.times("/b")
	if !startA.Before(endB) || !startB.Before(endA) {
		t.Errorf("parts ran one after the other: a %v..%v, b %v..%v", startA, endA, startB, endB)
	}
}

func TestAggregateFailures(t *testing.T) {
	e, _ := aggregateEnv(t)
	b := e.browser()
	b.login("/web", e.admin())

	cases := []struct {
		path   string
		status int
		code   string
	}{
		{"/web/api/broken", http.StatusBadGateway, "upstream_unavailable"},
		{"/web/api/denied", http.StatusBadGateway, "upstream_unavailable"},
		{"/web/api/down", http.StatusBadGateway, "upstream_unavailable"},
		{"/web/api/slow", http.StatusGatewayTimeout, "upstream_timeout"},
		{"/web/api/slowbody", http.StatusGatewayTimeout, "upstream_timeout"},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			errorCode(t, b.api(http.MethodGet, c.path), c.status, c.code)
		})
	}

	t.Run("optional timeout", func(t *testing.T) {
		resp := b.api(http.MethodGet, "/web/api/slowoptional")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, readBody(resp))
		}
		m := decodeJSON(t, resp)
		if g := mustJSON(t, m["slow"]); g != `{"error":"timeout"}` {
			t.Errorf("slow = %s, want {\"error\":\"timeout\"}", g)
		}
		if m["text"] != `plain <text> "quoted"` {
			t.Errorf("text = %v", m["text"])
		}
	})
}

func TestAggregateNeedsSession(t *testing.T) {
	e, ps := aggregateEnv(t)
	anon := e.browser()
	errorCode(t, anon.api(http.MethodGet, "/web/api/dash"), http.StatusUnauthorized, "unauthenticated")

	b := e.browser()
	b.login("/web", e.admin())
	errorCode(t, b.get("/web/api/dash", nil), http.StatusUnauthorized, "csrf_required")
	if start, _, _ := ps.times("/a"); !start.IsZero() {
		t.Error("a refused aggregate reached a part")
	}
	errorCode(t, b.do(http.MethodPost, "/web/api/dash", http.Header{"X-Csrf": {"1"}}, ""), http.StatusMethodNotAllowed, "method_not_allowed")
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
