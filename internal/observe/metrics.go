// Package observe is the gateway's observability: Prometheus metrics on the
// gateway's own registry (never the global one), the request-id and
// access-log middleware, a slog handler that stamps every line of a request
// with its id, and a sessions.Store decorator that times store calls. Only
// the composition root (internal/gateway) imports it; bff reports through
// its small bff.Observer interface and knows nothing of Prometheus.
package observe

import (
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
	exchanges         *prometheus.CounterVec
	backchannel       *prometheus.CounterVec
	sessionsCreated   *prometheus.CounterVec
	sessionsEnded     *prometheus.CounterVec
	storeOps          *prometheus.CounterVec
	storeDuration     *prometheus.HistogramVec
	configReloads     *prometheus.CounterVec

	routes routeSet       // children of requests, requestDuration, upstream*
	store  storeOpMetrics // children of storeOps and storeDuration
}

// storeOpMetrics are the children of each store operation.
type storeOpMetrics struct {
	get, set, expire, take, delete, ping, acquire, renew, release opMetrics
	addToSet, members, removeFromSet, scan                        opMetrics
	schedule, due, unschedule                                     opMetrics
}

var _ bff.Observer = (*Metrics)(nil)

// NewMetrics creates the collectors and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, labels)
		reg.MustRegister(c)
		return c
	}
	histogram := func(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
		h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: name, Help: help, Buckets: buckets}, labels)
		reg.MustRegister(h)
		return h
	}
	latency := []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}
	m := &Metrics{
		requests: counter("http_requests_total",
			"Requests served, by frontend, route (configured prefix, aggregate path, bff:<endpoint> or unmatched) and status class.",
			"frontend", "route", "status_class"),
		requestDuration: histogram("http_request_duration_seconds",
			"Time to serve a request, until its body is written (streams and WebSockets included).",
			latency, "frontend", "route"),
		upstreamDuration: histogram("upstream_request_duration_seconds",
			"Time from sending an upstream request (route or aggregate part) to its response headers.",
			latency, "frontend", "route"),
		upstreamResponses: counter("upstream_responses_total",
			"Upstream answers by status class; \"error\" when the call failed without an answer (refused, timeout).",
			"frontend", "route", "status_class"),
		loginsStarted: counter("logins_started_total",
			"Logins sent to the identity provider by M/bff/login.",
			"frontend"),
		loginsSucceeded: counter("logins_succeeded_total",
			"Callbacks that created a session.",
			"frontend"),
		loginsFailed: counter("logins_failed_total",
			"Callbacks that failed, by reason.",
			"frontend", "reason"),
		refreshes: counter("token_refreshes_total",
			"Access token refreshes by outcome (ok, rejected, transient, joined, waited, error).",
			"frontend", "outcome"),
		exchanges: counter("token_exchanges_total",
			"Token exchanges of token: exchange routes by route (configured prefix) and outcome (ok, refused, transient, joined, waited, error).",
			"frontend", "route", "outcome"),
		backchannel: counter("backchannel_logouts_total",
			"Back-channel logout requests by outcome (ok, invalid_token, error).",
			"frontend", "outcome"),
		sessionsCreated: counter("sessions_created_total",
			"Sessions created by a login.",
			"frontend"),
		sessionsEnded: counter("sessions_ended_total",
			"Sessions this instance ended, by cause (logout, backchannel, expired, revoked, refresh_rejected).",
			"frontend", "cause"),
		storeOps: counter("session_store_operations_total",
			"Session store calls by operation and result (ok, not_found, exists, canceled, error).",
			"operation", "result"),
		storeDuration: histogram("session_store_operation_duration_seconds",
			"Session store call latency by operation.",
			[]float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}, "operation"),
		configReloads: counter("config_reloads_total",
			"Reloads of the frontend files (SIGHUP or a change in frontends_dir) by result (success, failure); a failure keeps the running frontends.",
			"result"),
	}
	m.store = storeOpMetrics{
		get: opMetrics{name: "get"}, set: opMetrics{name: "set"}, expire: opMetrics{name: "expire"},
		take: opMetrics{name: "take"}, delete: opMetrics{name: "delete"}, ping: opMetrics{name: "ping"},
		acquire: opMetrics{name: "acquire"}, renew: opMetrics{name: "renew"}, release: opMetrics{name: "release"},
		addToSet: opMetrics{name: "add_to_set"}, members: opMetrics{name: "members"},
		removeFromSet: opMetrics{name: "remove_from_set"}, scan: opMetrics{name: "scan"},
		schedule: opMetrics{name: "schedule"}, due: opMetrics{name: "due"}, unschedule: opMetrics{name: "unschedule"},
	}
	return m
}

// ConfigReload counts one reload of the frontend files; result is
// "success" or "failure".
func (m *Metrics) ConfigReload(result string) { m.configReloads.WithLabelValues(result).Inc() }

// InitFrontends creates the zero series of every fixed label value for fes,
// so that rate() and absent() work before the first event.
func (m *Metrics) InitFrontends(fes []config.Frontend) {
	m.configReloads.WithLabelValues("success")
	m.configReloads.WithLabelValues("failure")
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
		for _, rt := range fe.Routes {
			if rt.Token == config.TokenExchange {
				for _, o := range bff.ExchangeOutcomes {
					m.exchanges.WithLabelValues(n, rt.Prefix, o)
				}
			}
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
	return statusClasses[status/100-1]
}

// statusClasses avoids building the label string on every request.
var statusClasses = [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}

// Request records one served request.
func (m *Metrics) Request(frontend, route string, status int, d time.Duration) {
	if frontend == "" {
		frontend = FrontendNone
	}
	if route == "" {
		route = bff.RouteUnmatched
	}
	rm := m.routes.get(frontend, route)
	rm.request(m, classIndex(status)).Inc()
	rm.requestTime(m).Observe(d.Seconds())
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

// TokenExchange implements bff.Observer.
func (m *Metrics) TokenExchange(frontend, route, outcome string) {
	m.exchanges.WithLabelValues(frontend, route, outcome).Inc()
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
	class := len(statusClasses) + 1 // "error"
	if status != 0 {
		class = classIndex(status)
	}
	rm := m.routes.get(frontend, route)
	rm.upstreamAnswer(m, class).Inc()
	rm.upstreamTime(m).Observe(d.Seconds())
}
