package bff

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/bffgate/bffgate/bff/httperr"
	"github.com/bffgate/bffgate/sessions"
)

// Observer receives the events a BFF counts. The gateway passes one backed
// by Prometheus; bff itself stays free of any metrics library. Every label
// value a BFF passes is one of the constants below, the frontend's name or a
// configured route, so the label sets stay small and fixed.
type Observer interface {
	// LoginStarted: /bff/login sent the browser to the provider.
	LoginStarted(frontend string)
	// LoginSucceeded: /bff/callback made a session.
	LoginSucceeded(frontend string)
	// LoginFailed: /bff/callback failed, for one of the Login* reasons.
	LoginFailed(frontend, reason string)
	// TokenRefresh: one Refresh* outcome of a token refresh.
	TokenRefresh(frontend, outcome string)
	// TokenExchange: one Exchange* outcome of a token: exchange route's
	// exchange (route is the configured prefix).
	TokenExchange(frontend, route, outcome string)
	// BackchannelLogout: one Backchannel* outcome of a logout token.
	BackchannelLogout(frontend, outcome string)
	// SessionCreated: a login stored a new session.
	SessionCreated(frontend string)
	// SessionsEnded: n sessions ended for one of the End* causes.
	SessionsEnded(frontend, cause string, n int)
	// UpstreamResponse: an upstream call (proxied route or aggregate part)
	// answered with status after d (to its response headers); status 0 when
	// it failed without an answer.
	UpstreamResponse(frontend, route string, status int, d time.Duration)
}

// Login failure reasons (LoginFailed).
const (
	LoginInvalidState        = "invalid_state"        // no, wrong, expired or replayed login state
	LoginProviderError       = "provider_error"       // the provider answered error=...
	LoginInvalidResponse     = "invalid_response"     // no code, or an iss naming another provider
	LoginCodeRejected        = "code_rejected"        // the token endpoint refused the code
	LoginInvalidIDToken      = "invalid_id_token"     // missing, unverifiable, wrong nonce or at_hash
	LoginProviderUnavailable = "provider_unavailable" // discovery or token endpoint unreachable
	LoginStoreUnavailable    = "store_unavailable"
	LoginInternal            = "internal"
)

// LoginFailureReasons lists every LoginFailed reason.
var LoginFailureReasons = []string{LoginInvalidState, LoginProviderError, LoginInvalidResponse,
	LoginCodeRejected, LoginInvalidIDToken, LoginProviderUnavailable, LoginStoreUnavailable, LoginInternal}

// Token refresh outcomes (TokenRefresh).
const (
	RefreshOK        = "ok"        // this instance spent the refresh token and got new tokens
	RefreshRejected  = "rejected"  // the provider refused the refresh token: the session ended
	RefreshTransient = "transient" // the provider was unreachable or answered 5xx: the session is kept
	RefreshJoined    = "joined"    // a request joined a refresh already running in this process
	RefreshWaited    = "waited"    // another instance refreshed; this one used its tokens
	RefreshError     = "error"     // the session store failed during the refresh
)

// RefreshOutcomes lists every TokenRefresh outcome.
var RefreshOutcomes = []string{RefreshOK, RefreshRejected, RefreshTransient, RefreshJoined, RefreshWaited, RefreshError}

// Token exchange outcomes (TokenExchange).
const (
	ExchangeOK        = "ok"        // this instance exchanged the user's token
	ExchangeRefused   = "refused"   // the provider refused (403 token_exchange_failed)
	ExchangeTransient = "transient" // the provider was unreachable or answered 5xx or 429 (502)
	ExchangeJoined    = "joined"    // a request joined an exchange already running in this process
	ExchangeWaited    = "waited"    // another instance exchanged; this one used its token
	ExchangeError     = "error"     // the session store failed during the exchange
)

// ExchangeOutcomes lists every TokenExchange outcome.
var ExchangeOutcomes = []string{ExchangeOK, ExchangeRefused, ExchangeTransient, ExchangeJoined, ExchangeWaited, ExchangeError}

// Back-channel logout outcomes (BackchannelLogout).
const (
	BackchannelOK           = "ok"            // verified; the matching sessions ended
	BackchannelInvalidToken = "invalid_token" // refused with 400 (bad, expired or replayed token)
	BackchannelError        = "error"         // store or provider unavailable
)

// BackchannelOutcomes lists every BackchannelLogout outcome.
var BackchannelOutcomes = []string{BackchannelOK, BackchannelInvalidToken, BackchannelError}

// Causes of a session's end (SessionsEnded).
const (
	EndLogout          = "logout"           // the user logged out
	EndBackchannel     = "backchannel"      // the provider's back-channel logout
	EndExpired         = "expired"          // found expired with nothing to renew it
	EndRevoked         = "revoked"          // operator revocation
	EndRefreshRejected = "refresh_rejected" // the provider refused the refresh token
)

// EndCauses lists every SessionsEnded cause.
var EndCauses = []string{EndLogout, EndBackchannel, EndExpired, EndRevoked, EndRefreshRejected}

// RouteUnmatched is the route label of a request no route or endpoint took.
const RouteUnmatched = "unmatched"

// NopObserver counts nothing. Embed it to implement only part of Observer.
type NopObserver struct{}

func (NopObserver) LoginStarted(string)                                 {}
func (NopObserver) LoginSucceeded(string)                               {}
func (NopObserver) LoginFailed(string, string)                          {}
func (NopObserver) TokenRefresh(string, string)                         {}
func (NopObserver) TokenExchange(string, string, string)                {}
func (NopObserver) BackchannelLogout(string, string)                    {}
func (NopObserver) SessionCreated(string)                               {}
func (NopObserver) SessionsEnded(string, string, int)                   {}
func (NopObserver) UpstreamResponse(string, string, int, time.Duration) {}

// obs is Deps.Observer, or one that counts nothing.
func (b *BFF) obs() Observer {
	if b.deps.Observer == nil {
		return NopObserver{}
	}
	return b.deps.Observer
}

// RequestInfo is what the BFF serving a request tells the layer above it
// (access log, request metrics): the frontend and the route label, which is
// the configured route prefix, the aggregate path, "bff:<endpoint>" or
// RouteUnmatched, never the raw path.
type RequestInfo struct {
	Frontend string
	Route    string

	// client is what the audit trail's client IP is derived from, kept
	// here rather than worked out for every request: only the few requests
	// that write an audit line need it.
	client clientAddr
}

// clientAddr is a request's peer address and X-Forwarded-For chain, and
// the proxies trusted to write that chain.
type clientAddr struct {
	peer         string
	forwardedFor []string
	trusted      []netip.Prefix
}

type requestInfoKey struct{}

// WithRequestInfo returns ctx carrying ri, which the BFF serving the request
// fills in. The caller reads ri once the handler has returned.
func WithRequestInfo(ctx context.Context, ri *RequestInfo) context.Context {
	return context.WithValue(ctx, requestInfoKey{}, ri)
}

func requestInfo(ctx context.Context) *RequestInfo {
	ri, _ := ctx.Value(requestInfoKey{}).(*RequestInfo)
	return ri
}

// routeLabels maps echo route patterns to route labels; anything else under
// M/bff/ is "bff:<endpoint>".
func (b *BFF) routeLabels() map[string]string {
	labels := map[string]string{}
	for _, rt := range b.fe.Routes {
		prefix := b.base + strings.TrimSuffix(rt.Prefix, "/")
		labels[prefix+"/*"] = rt.Prefix
		if prefix != "" {
			labels[prefix] = rt.Prefix
		}
	}
	for _, a := range b.fe.Aggregates {
		labels[b.base+a.Path] = a.Path
	}
	return labels
}

func routeLabel(labels map[string]string, base, pattern string) string {
	if l, ok := labels[pattern]; ok {
		return l
	}
	if ep, ok := strings.CutPrefix(pattern, base+"/bff/"); ok && ep != "" && !strings.ContainsAny(ep, "*:/") {
		return "bff:" + ep
	}
	return RouteUnmatched
}

// observeRoutes is the echo middleware (after routing) that labels the
// request for the layer above and counts login and back-channel outcomes.
func (b *BFF) observeRoutes() echo.MiddlewareFunc {
	labels := b.routeLabels()
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			label := routeLabel(labels, b.base, c.Path())
			r := c.Request()
			// The audit events of this request name its client.
			ctx := r.Context()
			addr := clientAddr{peer: r.RemoteAddr, forwardedFor: r.Header.Values("X-Forwarded-For"), trusted: b.deps.TrustedProxies}
			if ri := requestInfo(ctx); ri != nil {
				ri.Frontend, ri.Route, ri.client = b.fe.Name, label, addr
			} else {
				ctx = withClientIP(ctx, addr.ip())
				c.SetRequest(r.WithContext(ctx))
			}
			err := next(c)
			switch label {
			case "bff:login":
				if err == nil && c.Response().Status == http.StatusFound {
					b.obs().LoginStarted(b.fe.Name)
				}
			case "bff:callback":
				if err == nil {
					b.obs().LoginSucceeded(b.fe.Name)
				} else {
					b.loginFailed(ctx, err)
				}
			case "bff:backchannel-logout":
				b.obs().BackchannelLogout(b.fe.Name, backchannelOutcome(err, c.Response().Status))
			}
			return err
		}
	}
}

// loginError tags a callback failure with its reason; the wrapped
// *httperr.Error is what the client gets.
type loginError struct {
	reason string
	err    *httperr.Error
}

func (e *loginError) Error() string { return e.err.Error() }
func (e *loginError) Unwrap() error { return e.err }

func loginFail(reason string, err *httperr.Error) error {
	return &loginError{reason: reason, err: err}
}

func loginFailureReason(err error) string {
	var le *loginError
	if errors.As(err, &le) {
		return le.reason
	}
	var he *httperr.Error
	if errors.As(err, &he) {
		switch he.Code {
		case httperr.CodeStoreUnavailable:
			return LoginStoreUnavailable
		case httperr.CodeUpstreamUnavailable, httperr.CodeUpstreamTimeout:
			return LoginProviderUnavailable
		}
	}
	return LoginInternal
}

func backchannelOutcome(err error, status int) string {
	if err == nil {
		if status < 400 {
			return BackchannelOK
		}
		status = http.StatusInternalServerError
	}
	var he *httperr.Error
	if errors.As(err, &he) {
		status = he.Status
	}
	if status >= 400 && status < 500 {
		return BackchannelInvalidToken
	}
	return BackchannelError
}

// observedTransport times upstream calls to their response headers.
type observedTransport struct {
	next            http.RoundTripper
	obs             Observer
	frontend, route string
}

func (t observedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.next.RoundTrip(r)
	status := 0
	if err == nil {
		status = resp.StatusCode
	}
	t.obs.UpstreamResponse(t.frontend, t.route, status, time.Since(start))
	return resp, err
}

// observeUpstream wraps rt so the route's upstream calls are timed. The
// latency uses the monotonic clock, not Deps.Now, which tests may freeze.
//
// It also makes each call a span (traceUpstream), whose context the upstream
// receives in traceparent.
func (b *BFF) observeUpstream(route string, rt http.RoundTripper) http.RoundTripper {
	rt = b.traceUpstream(route, rt)
	if b.deps.Observer == nil {
		return rt
	}
	if rt == nil {
		rt = http.DefaultTransport
	}
	return observedTransport{next: rt, obs: b.deps.Observer, frontend: b.fe.Name, route: route}
}

// Audit events (SPEC §6): one log line per change of a session that a
// security team follows, with "event" set to one of these. Each carries the
// frontend, the subject, the provider's session id (sid) and the client's IP;
// never a token or a reference to a session (cookie, handle, session id),
// which would let a log reader act as the user.
const (
	EventLogin             = "login"
	EventLoginFailed       = "login_failed" // at warn, with "reason" (a Login* constant) and "error"
	EventLogout            = "logout"
	EventBackchannelLogout = "backchannel_logout" // with "sessions_ended"
	EventRevoked           = "revoked"            // logged by `bffgate sessions revoke`
	EventRefreshRejected   = "refresh_rejected"
	EventSessionExpired    = "session_expired"
)

// AuditEvent is who an audit event is about. Subject and ProviderSID come
// from the provider (ID or logout token); empty when unknown (a failed
// login), but the keys are always logged so every event has one shape.
type AuditEvent struct {
	Event       string
	Frontend    string
	Subject     string
	ProviderSID string
	ClientIP    string
}

// Audit logs e at level with the extra attributes. The CLI uses it too, so
// an operator's revocation looks like every other audit line.
func Audit(ctx context.Context, logger *slog.Logger, level slog.Level, e AuditEvent, extra ...slog.Attr) {
	attrs := append([]slog.Attr{
		slog.String("event", e.Event),
		slog.String("frontend", e.Frontend),
		slog.String("sub", e.Subject),
		slog.String("sid", e.ProviderSID),
		slog.String("client_ip", e.ClientIP),
	}, extra...)
	logger.LogAttrs(ctx, level, "audit: "+e.Event, attrs...)
}

// audit logs an event about s for the request in ctx. b.log already names
// the frontend, so the line is built on the parent logger to name it once.
func (b *BFF) audit(ctx context.Context, level slog.Level, event string, sub, sid string, extra ...slog.Attr) {
	Audit(ctx, b.deps.Logger, level, AuditEvent{Event: event, Frontend: b.fe.Name, Subject: sub,
		ProviderSID: sid, ClientIP: clientIPFrom(ctx)}, extra...)
}

// loggedIn records a new session: its metric and the login event.
func (b *BFF) loggedIn(ctx context.Context, s *sessions.Session) {
	b.obs().SessionCreated(b.fe.Name)
	b.audit(ctx, slog.LevelInfo, EventLogin, s.Subject, s.ProviderSID)
}

// loginFailed records a failed callback: its metric and, at warn, the
// login_failed event with the reason and the cause (which the client only
// sees as a generic message).
func (b *BFF) loginFailed(ctx context.Context, err error) {
	reason := loginFailureReason(err)
	b.obs().LoginFailed(b.fe.Name, reason)
	b.audit(ctx, slog.LevelWarn, EventLoginFailed, "", "", slog.String("reason", reason), slog.String("error", err.Error()))
}

// sessionEnded records the end of s for cause (an End* constant): its
// metric and the matching audit event.
func (b *BFF) sessionEnded(ctx context.Context, cause string, s *sessions.Session) {
	b.obs().SessionsEnded(b.fe.Name, cause, 1)
	event := map[string]string{
		EndLogout:          EventLogout,
		EndExpired:         EventSessionExpired,
		EndRevoked:         EventRevoked,
		EndRefreshRejected: EventRefreshRejected,
		EndBackchannel:     EventBackchannelLogout,
	}[cause]
	if event == "" {
		event = cause
	}
	b.audit(ctx, slog.LevelInfo, event, s.Subject, s.ProviderSID)
	b.exchange.drop(ctx, s)
}

// backchannelEnded records a verified logout token that ended n sessions:
// the metric and one backchannel_logout event with the token's sub and sid.
func (b *BFF) backchannelEnded(ctx context.Context, sub, sid string, n int) {
	b.obs().SessionsEnded(b.fe.Name, EndBackchannel, n)
	b.audit(ctx, slog.LevelInfo, EventBackchannelLogout, sub, sid, slog.Int("sessions_ended", n))
}

type clientIPKey struct{}

func withClientIP(ctx context.Context, ip string) context.Context {
	return context.WithValue(ctx, clientIPKey{}, ip)
}

// clientIPFrom returns the client IP of the request in ctx ("" outside a
// request).
func clientIPFrom(ctx context.Context) string {
	if ip, ok := ctx.Value(clientIPKey{}).(string); ok {
		return ip
	}
	if ri := requestInfo(ctx); ri != nil && ri.client.peer != "" {
		return ri.client.ip()
	}
	return ""
}

// ip is the address of the client: the connection's peer, or, when
// that peer is a trusted proxy, the nearest X-Forwarded-For entry that is
// not one. Only a parsed IP is returned, so a client cannot write its own
// text into the audit trail.
func (c clientAddr) ip() string {
	peer, trusted := c.peer, c.trusted
	if ap, err := netip.ParseAddrPort(peer); err == nil {
		peer = ap.Addr().Unmap().String()
	} else if host, _, err := net.SplitHostPort(peer); err == nil {
		peer = host
	}
	isTrusted := func(s string) bool {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return false
		}
		for _, p := range trusted {
			if p.Contains(a.Unmap()) {
				return true
			}
		}
		return false
	}
	if !isTrusted(peer) {
		return peer
	}
	hops := strings.Split(strings.Join(c.forwardedFor, ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		h := strings.TrimSpace(hops[i])
		a, err := netip.ParseAddr(h)
		if err != nil {
			return peer // a malformed chain: only the peer is known
		}
		if !isTrusted(h) {
			return a.Unmap().String()
		}
	}
	return peer
}
