package bff

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/bffgate/bffgate/bff/httperr"
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
			if ri := requestInfo(c.Request().Context()); ri != nil {
				ri.Frontend, ri.Route = b.fe.Name, label
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
					b.obs().LoginFailed(b.fe.Name, loginFailureReason(err))
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
func (b *BFF) observeUpstream(route string, rt http.RoundTripper) http.RoundTripper {
	if b.deps.Observer == nil {
		return rt
	}
	if rt == nil {
		rt = http.DefaultTransport
	}
	return observedTransport{next: rt, obs: b.deps.Observer, frontend: b.fe.Name, route: route}
}
