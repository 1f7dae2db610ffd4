package observe_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/bffgate/bffgate/bff"
	"github.com/bffgate/bffgate/internal/observe"
	"github.com/bffgate/bffgate/internal/observe/observetest"
	"github.com/bffgate/bffgate/sessions"
	"github.com/bffgate/bffgate/sessions/memstore"
	"github.com/bffgate/bffgate/sessions/redisstore"
	"github.com/bffgate/bffgate/sessions/sessionstest"
)

func TestValidRequestID(t *testing.T) {
	for _, c := range []struct {
		name, id string
		want     bool
	}{
		{"hex", observe.NewRequestID(), true},
		{"uuid", "0f8fad5b-d9cb-469f-a165-70867728950e", true},
		{"dots and underscores", "a.b_c-D9", true},
		{"128 chars", strings.Repeat("x", 128), true},
		{"empty", "", false},
		{"129 chars", strings.Repeat("x", 129), false},
		{"space", "a b", false},
		{"newline", "a\nb", false},
		{"quote", `a"b`, false},
		{"slash", "a/b", false},
		{"non-ascii", "é", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := observe.ValidRequestID(c.id); got != c.want {
				t.Errorf("ValidRequestID(%q) = %v, want %v", c.id, got, c.want)
			}
		})
	}
	if a, b := observe.NewRequestID(), observe.NewRequestID(); a == b || len(a) != 32 {
		t.Errorf("NewRequestID: %q, %q", a, b)
	}
}

// The decorator is transparent: the whole store conformance suite passes
// through it, optional interfaces included.
func TestInstrumentedStoreConformance(t *testing.T) {
	wrap := func(t *testing.T, s observe.LockingStore) sessionstest.Backend {
		b, ok := observe.InstrumentStore(s, observe.NewMetrics(prometheus.NewRegistry())).(sessionstest.Backend)
		if !ok {
			t.Fatal("the instrumented store hides Indexer or Scanner")
		}
		return b
	}
	t.Run("memory", func(t *testing.T) {
		sessionstest.Run(t, func(t *testing.T) sessionstest.Backend { return wrap(t, memstore.New()) })
	})
	t.Run("redis", func(t *testing.T) {
		c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", DialTimeout: 300 * time.Millisecond})
		t.Cleanup(func() { c.Close() })
		if err := c.Ping(t.Context()).Err(); err != nil {
			t.Skipf("no Redis at 127.0.0.1:6379: %v", err)
		}
		sessionstest.Run(t, func(t *testing.T) sessionstest.Backend { return wrap(t, redisstore.New(c)) })
	})
}

// plainStore has only the required methods.
type plainStore struct{ observe.LockingStore }

// failingStore fails every call as an unreachable store would.
type failingStore struct{ observe.LockingStore }

func (failingStore) Get(context.Context, string) ([]byte, time.Duration, error) {
	return nil, 0, errors.New("dial tcp: connection refused")
}

func TestInstrumentedStoreInterfacesAndResults(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := observe.NewMetrics(reg)

	plain := observe.InstrumentStore(plainStore{memstore.New()}, m)
	if _, ok := plain.(sessions.Indexer); ok {
		t.Error("a store without Indexer became one")
	}
	if _, ok := plain.(sessions.Scanner); ok {
		t.Error("a store without Scanner became one")
	}
	if _, ok := plain.(sessions.Expirer); ok {
		t.Error("a store without Expirer became one")
	}
	// The Redis store's set of capabilities: losing Expirer would silently
	// stop the session_expired events of TTL expiries.
	if _, ok := observe.InstrumentStore(expiringStore{Store: memstore.New()}, m).(sessions.Expirer); !ok {
		t.Error("an Indexer, Scanner and Expirer store lost Expirer")
	}

	ctx := context.Background()
	s := observe.InstrumentStore(memstore.New(), m)
	if err := s.Set(ctx, "k", []byte("v"), time.Minute, sessions.Always); err != nil {
		t.Fatal(err)
	}
	_ = s.Set(ctx, "k", []byte("v"), time.Minute, sessions.IfAbsent)
	_, _, _ = s.Get(ctx, "missing")
	_, _, _ = observe.InstrumentStore(failingStore{memstore.New()}, m).Get(ctx, "k")
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	_, _, _ = observe.InstrumentStore(ctxStore{memstore.New()}, m).Get(canceled, "k")

	for _, c := range []struct{ op, result string }{
		{"set", "ok"}, {"set", "exists"}, {"get", "not_found"}, {"get", "error"}, {"get", "canceled"},
	} {
		if v := observetest.Value(t, reg, "bffgate_session_store_operations_total", map[string]string{"operation": c.op, "result": c.result}); v != 1 {
			t.Errorf("store %s/%s = %v, want 1", c.op, c.result, v)
		}
	}
}

// expiringStore has every capability the Redis store has.
type expiringStore struct {
	*memstore.Store
	sessions.Expirer
}

// ctxStore answers with the context's error, as go-redis does.
type ctxStore struct{ observe.LockingStore }

func (ctxStore) Get(ctx context.Context, _ string) ([]byte, time.Duration, error) {
	return nil, 0, ctx.Err()
}

func TestContextHandlerStampsRequestID(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(observe.NewContextHandler(slog.NewJSONHandler(&buf, nil))).With("frontend", "web")
	log.InfoContext(observe.WithRequestID(context.Background(), "abc"), "in a request")
	log.Info("outside")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines", len(lines))
	}
	var in, out map[string]any
	_ = json.Unmarshal([]byte(lines[0]), &in)
	_ = json.Unmarshal([]byte(lines[1]), &out)
	if in["request_id"] != "abc" || in["frontend"] != "web" {
		t.Errorf("request line %v", in)
	}
	if _, ok := out["request_id"]; ok {
		t.Errorf("line outside a request has a request_id: %v", out)
	}
}

func TestHandlerAccessLineAndMetrics(t *testing.T) {
	var buf bytes.Buffer
	reg := prometheus.NewRegistry()
	m := observe.NewMetrics(reg)
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	var seen *http.Request
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = r
		w.Header().Add("X-Request-Id", "from-upstream") // as ReverseProxy copies it
		w.WriteHeader(http.StatusEarlyHints)
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, "hello")
		http.NewResponseController(w).Flush()
	})
	srv := httptest.NewServer(observe.Handler(inner, logger, m, observe.Tracing{}))
	t.Cleanup(srv.Close)

	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/nowhere?code=secret", nil)
	req.Header["X-Request-Id"] = []string{"bad id", "second"}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	srv.Close() // waits for the handler, hence the access line
	ids := resp.Header.Values("X-Request-Id")
	if resp.StatusCode != http.StatusCreated || len(ids) != 1 || len(ids[0]) != 32 {
		t.Fatalf("status %d, X-Request-Id %q", resp.StatusCode, ids)
	}
	// The handler finds the id in the context (bff/proxy and bff/aggregate
	// send it upstream from there); the request's headers are as sent.
	if got := observe.RequestID(seen.Context()); got != ids[0] {
		t.Errorf("the handler's context has request id %q, want %q", got, ids[0])
	}
	if v := seen.Header.Values("X-Request-Id"); len(v) != 2 || v[0] != "bad id" {
		t.Errorf("the handler saw X-Request-Id %q, want the client's two values untouched", v)
	}
	if req.Header.Get("X-Request-Id") != "bad id" {
		t.Error("the caller's header map was modified")
	}
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("%v: %s", err, buf.String())
	}
	want := map[string]any{"msg": "request", "request_id": ids[0], "frontend": observe.FrontendNone,
		"route": bff.RouteUnmatched, "method": "GET", "path": "/nowhere", "status": float64(201), "bytes": float64(5)}
	for k, v := range want {
		if line[k] != v {
			t.Errorf("access line %s = %v, want %v", k, line[k], v)
		}
	}
	if strings.Contains(buf.String(), "secret") {
		t.Error("the query reached the log")
	}
	if v := observetest.Value(t, reg, "bffgate_http_requests_total", map[string]string{"frontend": "none", "route": "unmatched", "status_class": "2xx"}); v != 1 {
		t.Errorf("requests = %v, want 1", v)
	}
}

func TestStatusClass(t *testing.T) {
	for status, want := range map[int]string{101: "1xx", 200: "2xx", 302: "3xx", 404: "4xx", 503: "5xx", 0: "other", 600: "other"} {
		if got := observe.StatusClass(status); got != want {
			t.Errorf("StatusClass(%d) = %q, want %q", status, got, want)
		}
	}
}
