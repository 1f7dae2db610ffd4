// Package observe is the gateway's observability: Prometheus metrics on the
// gateway's own registry (never the global one), the request-id and
// access-log middleware, a slog handler that stamps every line of a request
// with its id, and a sessions.Store decorator that times store calls. Only
// the composition root (internal/gateway) imports it; bff reports through
// its small bff.Observer interface and knows nothing of Prometheus.
package observe

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bffgate/bffgate/bff"
	"github.com/bffgate/bffgate/config"
)

const namespace = "bffgate"

// FrontendNone is the frontend label of a request no frontend took.
const FrontendNone = "none"

// Metrics holds every bffgate collector. It implements bff.Observer.
type Metrics struct {
	requests          *prometheus.CounterVec
	requestDuration   *prometheus.HistogramVec
	upstreamDuration  *prometheus.HistogramVec
	upstreamResponses *prometheus.CounterVec
	loginsStarted     *prometheus.CounterVec
	loginsSucceeded   *prometheus.CounterVec
	loginsFailed      *prometheus.CounterVec
	refreshes         *prometheus.CounterVec
	backchannel       *prometheus.CounterVec
	sessionsCreated   *prometheus.CounterVec
	sessionsEnded     *prometheus.CounterVec
	storeOps          *prometheus.CounterVec
	storeDuration     *prometheus.HistogramVec
}

var _ bff.Observer = (*Metrics)(nil)

// NewMetrics creates the collectors and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	latency := []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "http_requests_total",
			Help: "Requests served, by frontend, route (configured prefix, aggregate path, bff:<endpoint> or unmatched) and status class.",
		}, []string{"frontend", "route", "status_class"}),
		requestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "http_request_duration_seconds",
			Help:    "Time to serve a request, until its body is written (streams and WebSockets included).",
			Buckets: latency,
		}, []string{"frontend", "route"}),
		upstreamDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "upstream_request_duration_seconds",
			Help:    "Time from sending an upstream request (route or aggregate part) to its response headers.",
			Buckets: latency,
		}, []string{"frontend", "route"}),
		upstreamResponses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "upstream_responses_total",
			Help: "Upstream answers by status class; \"error\" when the call failed without an answer (refused, timeout).",
		}, []string{"frontend", "route", "status_class"}),
		loginsStarted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "logins_started_total",
			Help: "Logins sent to the identity provider by M/bff/login.",
		}, []string{"frontend"}),
		loginsSucceeded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "logins_succeeded_total",
			Help: "Callbacks that created a session.",
		}, []string{"frontend"}),
		loginsFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "logins_failed_total",
			Help: "Callbacks that failed, by reason.",
		}, []string{"frontend", "reason"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "token_refreshes_total",
			Help: "Access token refreshes by outcome (ok, rejected, transient, joined, waited, error).",
		}, []string{"frontend", "outcome"}),
		backchannel: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "backchannel_logouts_total",
			Help: "Back-channel logout requests by outcome (ok, invalid_token, error).",
		}, []string{"frontend", "outcome"}),
		sessionsCreated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "sessions_created_total",
			Help: "Sessions created by a login.",
		}, []string{"frontend"}),
		sessionsEnded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "sessions_ended_total",
			Help: "Sessions this instance ended, by cause (logout, backchannel, expired, revoked, refresh_rejected).",
		}, []string{"frontend", "cause"}),
		storeOps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: namespace, Name: "session_store_operations_total",
			Help: "Session store calls by operation and result (ok, not_found, exists, canceled, error).",
		}, []string{"operation", "result"}),
		storeDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: namespace, Name: "session_store_operation_duration_seconds",
			Help:    "Session store call latency by operation.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"operation"}),
	}
	reg.MustRegister(m.requests, m.requestDuration, m.upstreamDuration, m.upstreamResponses,
		m.loginsStarted, m.loginsSucceeded, m.loginsFailed, m.refreshes, m.backchannel,
		m.sessionsCreated, m.sessionsEnded, m.storeOps, m.storeDuration)
	return m
}

// InitFrontends creates the zero series of every fixed label value for fes,
// so that rate() and absent() work before the first event.
func (m *Metrics) InitFrontends(fes []config.Frontend) {
	for _, fe := range fes {
		n := fe.Name
		m.loginsStarted.WithLabelValues(n)
		m.loginsSucceeded.WithLabelValues(n)
		m.sessionsCreated.WithLabelValues(n)
		for _, r := range bff.LoginFailureReasons {
			m.loginsFailed.WithLabelValues(n, r)
		}
		for _, o := range bff.RefreshOutcomes {
			m.refreshes.WithLabelValues(n, o)
		}
		for _, o := range bff.BackchannelOutcomes {
			m.backchannel.WithLabelValues(n, o)
		}
		for _, c := range bff.EndCauses {
			m.sessionsEnded.WithLabelValues(n, c)
		}
	}
}

// StatusClass is "1xx".."5xx" for an HTTP status.
func StatusClass(status int) string {
	if status < 100 || status > 599 {
		return "other"
	}
	return strconv.Itoa(status/100) + "xx"
}

// Request records one served request.
func (m *Metrics) Request(frontend, route string, status int, d time.Duration) {
	if frontend == "" {
		frontend = FrontendNone
	}
	if route == "" {
		route = bff.RouteUnmatched
	}
	m.requests.WithLabelValues(frontend, route, StatusClass(status)).Inc()
	m.requestDuration.WithLabelValues(frontend, route).Observe(d.Seconds())
}

// LoginStarted implements bff.Observer.
func (m *Metrics) LoginStarted(frontend string) { m.loginsStarted.WithLabelValues(frontend).Inc() }

// LoginSucceeded implements bff.Observer.
func (m *Metrics) LoginSucceeded(frontend string) { m.loginsSucceeded.WithLabelValues(frontend).Inc() }

// LoginFailed implements bff.Observer.
func (m *Metrics) LoginFailed(frontend, reason string) {
	m.loginsFailed.WithLabelValues(frontend, reason).Inc()
}

// TokenRefresh implements bff.Observer.
func (m *Metrics) TokenRefresh(frontend, outcome string) {
	m.refreshes.WithLabelValues(frontend, outcome).Inc()
}

// BackchannelLogout implements bff.Observer.
func (m *Metrics) BackchannelLogout(frontend, outcome string) {
	m.backchannel.WithLabelValues(frontend, outcome).Inc()
}

// SessionCreated implements bff.Observer.
func (m *Metrics) SessionCreated(frontend string) { m.sessionsCreated.WithLabelValues(frontend).Inc() }

// SessionsEnded implements bff.Observer.
func (m *Metrics) SessionsEnded(frontend, cause string, n int) {
	if n > 0 {
		m.sessionsEnded.WithLabelValues(frontend, cause).Add(float64(n))
	}
}

// UpstreamResponse implements bff.Observer.
func (m *Metrics) UpstreamResponse(frontend, route string, status int, d time.Duration) {
	class := "error"
	if status != 0 {
		class = StatusClass(status)
	}
	m.upstreamResponses.WithLabelValues(frontend, route, class).Inc()
	m.upstreamDuration.WithLabelValues(frontend, route).Observe(d.Seconds())
}
