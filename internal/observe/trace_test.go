package observe_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/bffgate/bffgate/config"
	"github.com/bffgate/bffgate/internal/observe"
)

// collector is an OTLP/HTTP endpoint that keeps what it receives.
type collector struct {
	mu    sync.Mutex
	paths []string
	types []string
	spans []string // span names
	attrs map[string]string
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var req coltracepb.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.paths = append(c.paths, r.Method+" "+r.URL.Path)
	c.types = append(c.types, r.Header.Get("Content-Type"))
	for _, rs := range req.ResourceSpans {
		for _, a := range rs.GetResource().GetAttributes() {
			c.attrs[a.Key] = a.GetValue().GetStringValue()
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				c.spans = append(c.spans, s.Name)
			}
		}
	}
	w.Header().Set("Content-Type", "application/x-protobuf")
}

// The exporter POSTs protobuf to <otlp_endpoint>/v1/traces; sampling is
// parent-based: sample_ratio decides for new traces, a sampled traceparent
// is always followed.
func TestTracerProviderExportsOTLPHTTP(t *testing.T) {
	const (
		sampledParent   = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		unsampledParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"
	)
	for _, tc := range []struct {
		name     string
		suffix   string // appended to the collector URL in otlp_endpoint
		ratio    float64
		parent   string
		exported bool
	}{
		{"new trace, ratio 1", "", 1, "", true},
		{"endpoint with a trailing slash", "/", 1, "", true},
		{"new trace, ratio 0", "", 0, "", false},
		{"sampled parent, ratio 0", "", 0, sampledParent, true},
		// Parent-based both ways: the client's "not sampled" is followed too.
		{"unsampled parent, ratio 1", "", 1, unsampledParent, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			col := &collector{attrs: map[string]string{}}
			srv := httptest.NewServer(col)
			defer srv.Close()
			ratio := tc.ratio
			tp, err := observe.NewTracerProvider(context.Background(), config.Tracing{OTLPEndpoint: srv.URL + tc.suffix, SampleRatio: &ratio}, "v-test")
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if tc.parent != "" {
				ctx = observe.Propagator().Extract(ctx, propagation.HeaderCarrier(http.Header{"Traceparent": {tc.parent}}))
			}
			_, span := tp.Tracer(observe.TracerName).Start(ctx, "GET web /api/orders")
			span.End()
			if err := tp.Shutdown(context.Background()); err != nil {
				t.Fatal(err)
			}
			col.mu.Lock()
			defer col.mu.Unlock()
			if !tc.exported {
				if len(col.spans) != 0 {
					t.Errorf("exported %v, want nothing sampled", col.spans)
				}
				return
			}
			if len(col.paths) != 1 || col.paths[0] != "POST /v1/traces" || col.types[0] != "application/x-protobuf" {
				t.Fatalf("collector got %v %v, want one POST /v1/traces of application/x-protobuf", col.paths, col.types)
			}
			if len(col.spans) != 1 || col.spans[0] != "GET web /api/orders" {
				t.Errorf("spans %v", col.spans)
			}
			if col.attrs["service.name"] != "bffgate" || col.attrs["service.version"] != "v-test" {
				t.Errorf("resource %v", col.attrs)
			}
		})
	}
}
