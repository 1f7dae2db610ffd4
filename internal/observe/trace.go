package observe

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/bffgate/bffgate/config"
)

// TracerName names the tracer every bffgate span comes from.
const TracerName = "github.com/bffgate/bffgate"

// NewTracerProvider builds the OpenTelemetry tracer provider of
// server.tracing: spans batched and POSTed as OTLP/HTTP protobuf to
// <otlp_endpoint>/v1/traces, new traces sampled at sample_ratio, and a
// request that arrives with a traceparent sampled as its parent says
// (parent-based). The caller owns it: Shutdown flushes the last spans.
// Nothing global is set; the gateway hands the provider to what traces.
func NewTracerProvider(ctx context.Context, t config.Tracing, version string) (*sdktrace.TracerProvider, error) {
	exp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(strings.TrimSuffix(t.OTLPEndpoint, "/")+"/v1/traces"))
	if err != nil {
		return nil, fmt.Errorf("server.tracing.otlp_endpoint: %w", err)
	}
	ratio := 1.0
	if t.SampleRatio != nil {
		ratio = *t.SampleRatio
	}
	res := resource.NewSchemaless(
		attribute.String("service.name", "bffgate"),
		attribute.String("service.version", version),
	)
	return sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
		sdktrace.WithResource(res),
	), nil
}

// Propagator is the trace context format on the wire: W3C traceparent and
// tracestate, read from clients and written to upstreams and providers.
func Propagator() propagation.TextMapPropagator { return propagation.TraceContext{} }

// Tracing is what the request handler needs to trace: nil Tracer is off.
type Tracing struct {
	Tracer     trace.Tracer
	Propagator propagation.TextMapPropagator
}

// startServerSpan starts the request's server span, the child of the
// client's traceparent when it sent one. Its name and http.route are set
// by finishServerSpan, when the route is known.
func (t Tracing) startServerSpan(r *http.Request) (context.Context, trace.Span) {
	ctx := t.Propagator.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	return t.Tracer.Start(ctx, r.Method, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("http.request.method", r.Method)))
}

// finishServerSpan names the span "<method> <frontend> <route>" and sets
// http.route to "<frontend> <route>": the configured route prefix,
// aggregate path or bff:<endpoint>, never the raw path, whose ids would
// make every request a span name of its own. No path, query, header or
// cookie is recorded.
func finishServerSpan(span trace.Span, method, frontend, route, requestID string, status int) {
	httpRoute := frontend + " " + route
	span.SetName(method + " " + httpRoute)
	span.SetAttributes(
		attribute.String("http.route", httpRoute),
		attribute.String("bffgate.frontend", frontend),
		attribute.String("bffgate.route", route),
		attribute.String("bffgate.request_id", requestID),
		attribute.Int("http.response.status_code", status),
	)
	if status >= 500 {
		span.SetStatus(codes.Error, http.StatusText(status))
	}
	span.End()
}
