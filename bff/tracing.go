package bff

import (
	"context"
	"errors"
	"net/http"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/bffgate/bffgate/bff/httperr"
	"github.com/bffgate/bffgate/sessions"
)

// Spans of a BFF (Deps.Tracer): the session load, a refresh and its wait
// for the cross-instance lock, each call to the provider and each upstream
// call. Their attributes are names the configuration gives (frontend, route)
// and HTTP facts (method, host, status); never a token, cookie, handle,
// session id, query or header.
const (
	SpanSessionLoad     = "session.load"
	SpanRefresh         = "session.refresh"
	SpanRefreshLockWait = "session.refresh.lock_wait"
	// SpanExchange is a route's token exchange (token: exchange), with the
	// route prefix as bffgate.route; the provider call is its child.
	SpanExchange = "session.token_exchange"

	// AttrSessionSource on the session load says what answered the read:
	// "cache" (the in-process session cache), "store" (Redis or memory:
	// no cache, a miss, or a read that had to be fresh) or "bypassed"
	// (the store, because the cache's invalidation channel was not
	// confirmed live then). Absent when the reference did not open.
	AttrSessionSource = "bffgate.session.source"
)

// span is a started span whose end may be called more than once (a
// deferred end after an early one), so a function with many returns ends
// it where it means to and still never leaks it.
type span struct {
	s    trace.Span
	once sync.Once
}

// startSpan skips the tracer while tracing is off: the session load runs on
// every request, and even the no-op tracer's Start costs its options and
// attributes (four of five allocations per request, BenchmarkHotPath). The
// holder's span is then a no-op one, so callers use it unconditionally.
func (b *BFF) startSpan(ctx context.Context, name string) (context.Context, *span) {
	if b.deps.Tracer == nil {
		return ctx, untraced
	}
	ctx, s := b.deps.Tracer.Start(ctx, name, trace.WithAttributes(attribute.String("bffgate.frontend", b.fe.Name)))
	return ctx, &span{s: s}
}

// untraced is every request's span while tracing is off. It is never
// written to: end leaves a span that does not record alone, so it can be
// shared, and the hot path allocates no holder per request.
var untraced = &span{s: noop.Span{}}

// end ends the span, marked failed when err is not nil. The status names
// the error class only: messages can quote provider answers.
func (s *span) end(err error) {
	if !s.s.IsRecording() {
		// Nothing recorded: ending it again is harmless, so the once (and
		// with it the shared untraced holder) is left alone.
		s.s.End()
		return
	}
	s.once.Do(func() {
		if err != nil {
			s.s.SetStatus(codes.Error, errorClass(err))
		}
		s.s.End()
	})
}

func errorClass(err error) string {
	var he *httperr.Error
	switch {
	case errors.As(err, &he):
		return he.Code
	case errors.Is(err, sessions.ErrNotFound), errors.Is(err, sessions.ErrInvalidRef):
		return "not_found"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "error"
}

// tracedTransport makes each call a client span and sends that span as the
// callee's parent in traceparent (replacing what the client sent, whose
// trace id it keeps: the span descends from the request's server span).
type tracedTransport struct {
	next   http.RoundTripper
	tracer trace.Tracer
	prop   propagation.TextMapPropagator
	prefix string // span name prefix: "upstream <route>" or "provider"
	attrs  []attribute.KeyValue
	path   bool // record url.path (provider endpoints; never for upstreams, whose paths carry ids)
}

func (t tracedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	name := t.prefix + " " + r.Method
	attrs := append([]attribute.KeyValue{
		attribute.String("http.request.method", r.Method),
		attribute.String("server.address", r.URL.Hostname()),
	}, t.attrs...)
	if p := r.URL.Port(); p != "" {
		attrs = append(attrs, attribute.String("server.port", p))
	}
	if t.path {
		name += " " + r.URL.Path
		attrs = append(attrs, attribute.String("url.path", r.URL.Path))
	}
	ctx, s := t.tracer.Start(r.Context(), name, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(attrs...))
	r = r.Clone(ctx) // RoundTrippers must not change the caller's request
	t.prop.Inject(ctx, propagation.HeaderCarrier(r.Header))
	resp, err := t.next.RoundTrip(r)
	switch {
	case err != nil:
		s.SetStatus(codes.Error, errorClass(err))
	default:
		s.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
		if resp.StatusCode >= 500 {
			s.SetStatus(codes.Error, http.StatusText(resp.StatusCode))
		}
	}
	s.End()
	return resp, err
}

// traceUpstream wraps an upstream transport (a route's or an aggregate's)
// so each call is a client span; untouched while tracing is off, so the
// client's own traceparent then passes to the upstream as it came.
func (b *BFF) traceUpstream(route string, rt http.RoundTripper) http.RoundTripper {
	if b.deps.Tracer == nil {
		return rt
	}
	if rt == nil {
		rt = http.DefaultTransport
	}
	return tracedTransport{next: rt, tracer: b.deps.Tracer, prop: b.propagator(), prefix: "upstream " + route,
		attrs: []attribute.KeyValue{attribute.String("bffgate.frontend", b.fe.Name), attribute.String("bffgate.route", route)}}
}

// traceProvider returns a copy of c whose calls to the identity provider
// (discovery, JWKS, token, revocation) are client spans.
func traceProvider(c *http.Client, tracer trace.Tracer, prop propagation.TextMapPropagator, frontend string) *http.Client {
	if tracer == nil {
		return c
	}
	rt := c.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	cc := *c
	cc.Transport = tracedTransport{next: rt, tracer: tracer, prop: prop, prefix: "provider", path: true,
		attrs: []attribute.KeyValue{attribute.String("bffgate.frontend", frontend)}}
	return &cc
}

func (b *BFF) propagator() propagation.TextMapPropagator {
	if b.deps.Propagator == nil {
		return propagation.TraceContext{}
	}
	return b.deps.Propagator
}
