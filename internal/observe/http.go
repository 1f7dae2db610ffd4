package observe

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/bffgate/bffgate/bff"
)

// Handler wraps next (the frontends router) with the request id, the request
// metrics and one access log line per request.
//
// The request id is the client's X-Request-Id when it passes ValidRequestID,
// else a new one. It is set on the response and in the context, where the
// logger (wrapped by NewContextHandler) finds it for every line the request
// logs, and where bff/proxy and bff/aggregate find it (bff.Deps.RequestID
// is RequestID) to send it upstream in place of the client's header, next
// to W3C traceparent/tracestate (which are left untouched). The request's
// own headers are not rewritten: that took a copy of them per request.
//
// The access line logs the path without its query: the callback's query
// holds the authorization code and state, and others may hold what the
// frontends put there.
//
// With tr.Tracer set, each request is also a server span (see
// finishServerSpan), the parent of every span the request makes.
func Handler(next http.Handler, logger *slog.Logger, m *Metrics, tr Tracing) http.Handler {
	logger = slog.New(NewContextHandler(logger.Handler()))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		var span trace.Span
		if tr.Tracer != nil {
			var ctx context.Context
			ctx, span = tr.startServerSpan(r)
			r = r.WithContext(ctx)
		}
		id := r.Header.Get(RequestIDHeader)
		if !ValidRequestID(id) {
			id = NewRequestID()
		}
		info := &bff.RequestInfo{}
		ctx := bff.WithRequestInfo(WithRequestID(r.Context(), id), info)
		r = r.WithContext(ctx)
		w.Header().Set(RequestIDHeader, id)
		rw := &responseWriter{ResponseWriter: w, requestID: id}

		completed := false
		defer func() {
			status := rw.status
			switch {
			case status != 0:
			case rw.hijacked:
				status = http.StatusSwitchingProtocols
			case !completed:
				status = http.StatusInternalServerError // the handler panicked
			default:
				status = http.StatusOK
			}
			d := time.Since(start)
			m.Request(info.Frontend, info.Route, status, d)
			frontend, route := info.Frontend, info.Route
			if frontend == "" {
				frontend = FrontendNone
			}
			if route == "" {
				route = bff.RouteUnmatched
			}
			if span != nil {
				finishServerSpan(span, r.Method, frontend, route, id, status)
			}
			logger.LogAttrs(ctx, slog.LevelInfo, "request",
				slog.String("frontend", frontend),
				slog.String("route", route),
				slog.String("method", r.Method),
				slog.String("path", r.URL.Path),
				slog.Int("status", status),
				slog.Float64("duration_ms", float64(d.Microseconds())/1000),
				slog.Int64("bytes", rw.bytes),
				slog.String("remote_ip", remoteIP(r.RemoteAddr)),
			)
		}()
		next.ServeHTTP(rw, r)
		completed = true
	})
}

func remoteIP(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// responseWriter records the status and body size, and makes the response's
// X-Request-Id ours even when a proxied upstream sent one too.
type responseWriter struct {
	http.ResponseWriter
	requestID string
	status    int
	bytes     int64
	hijacked  bool
}

func (w *responseWriter) WriteHeader(code int) {
	if w.status == 0 {
		if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
			// Informational (103 Early Hints): the final status comes later.
			w.ResponseWriter.WriteHeader(code)
			return
		}
		w.status = code
		w.Header().Set(RequestIDHeader, w.requestID)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// FlushError sends what is buffered (streaming responses, server-sent
// events); http.ResponseController prefers it to Flush.
func (w *responseWriter) FlushError() error {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Flush is FlushError for code that asserts http.Flusher.
func (w *responseWriter) Flush() { _ = w.FlushError() }

// Hijack hands the connection over (WebSocket upgrades).
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.hijacked = true
	}
	return c, rw, err
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
