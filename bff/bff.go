// Package bff is one frontend's Backend-for-Frontend: the OpenID Connect
// endpoints under M/bff (login, callback, user, logout, mobile session
// handoff), the session middleware (cookie or handle, CSRF, token refresh,
// claim checks) and the wiring of the frontend's routes to bff/proxy.
package bff

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/bffgate/bffgate/bff/aggregate"
	"github.com/bffgate/bffgate/bff/httperr"
	"github.com/bffgate/bffgate/bff/proxy"
	"github.com/bffgate/bffgate/config"
	"github.com/bffgate/bffgate/sessions"
)

// Deps are what every BFF of the process shares.
type Deps struct {
	Sessions *sessions.Manager
	// Locker makes a token refresh happen once across instances; nil means
	// in-process only (a single dev process).
	Locker sessions.Locker
	// HTTPClient talks to the identity provider.
	HTTPClient *http.Client
	Logger     *slog.Logger
	Now        func() time.Time
	// PublicURL is the external origin, without a trailing slash. A
	// frontend with its own host uses that host instead, keeping the scheme
	// and port.
	PublicURL string
	// RefreshMargin: refresh when the access token expires within this
	// (at most half the token's lifetime).
	RefreshMargin time.Duration
	// ProviderTimeout bounds one request to the provider; zero means 30s.
	// A refresh once sent is awaited this long, detached from the request.
	ProviderTimeout time.Duration
	TrustedProxies  []netip.Prefix
	// SessionCookies are the session cookie names of every frontend served
	// with this one; upstreams may not set them.
	SessionCookies []string
	// Observer counts logins, refreshes, session ends and upstream
	// latency; nil counts nothing.
	Observer Observer
	// Tracer makes the spans of tracing.go; nil traces nothing and passes
	// the client's trace context to upstreams untouched.
	Tracer trace.Tracer
	// Propagator writes the trace context on outgoing calls; nil is W3C
	// traceparent.
	Propagator propagation.TextMapPropagator
	// RequestID returns the id of the request in ctx, which upstream calls
	// carry as X-Request-Id; nil (or "") passes the client's header on
	// as it came.
	RequestID func(context.Context) string
	// KeySecret is a secret every instance shares (the sealing cookie key
	// pair), from which DPoP frontends derive their keys: the frontend's
	// client key, and each login's session key. Nil means a random secret
	// per BFF (right only for a single instance).
	KeySecret []byte
	// OlderKeySecrets are the secrets of the other cookie key pairs, which
	// still open cookies sealed before a rotation: a login begun where one
	// of them was the first pair ends with the DPoP key it began with.
	OlderKeySecrets [][]byte
}

// BFF serves one frontend.
type BFF struct {
	fe       config.Frontend
	base     string // mount without trailing slash ("" for "/")
	secure   bool
	deps     Deps
	log      *slog.Logger
	now      func() time.Time
	provider *providerLoader
	e        *echo.Echo
	binding  string // seal name of this frontend's session references
	// publicURL is the origin browsers reach this frontend at.
	publicURL *url.URL
	refresh   *refresher
	client    *clientTokens // token: client routes
	exchange  *exchanger    // token: exchange routes
	tokens    *tokenClient  // every request to the token, PAR and revocation endpoints
	// upstreamNonces are the upstreams' latest DPoP-Nonce, per origin.
	upstreamNonces sync.Map
	// keySecret is Deps.KeySecret, or random (see there).
	keySecret       []byte
	olderKeySecrets [][]byte
}

// New builds the BFF for fe (already defaulted and validated).
func New(fe config.Frontend, d Deps) (*BFF, error) {
	if d.Sessions == nil {
		return nil, errors.New("bff: Deps.Sessions is required")
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	if d.ProviderTimeout <= 0 {
		d.ProviderTimeout = 30 * time.Second
	}
	if d.HTTPClient == nil {
		d.HTTPClient = &http.Client{Timeout: d.ProviderTimeout}
	}
	d.HTTPClient = traceProvider(d.HTTPClient, d.Tracer, d.Propagator, fe.Name)
	pub, err := url.Parse(d.PublicURL)
	if err != nil {
		return nil, fmt.Errorf("public url: %w", err)
	}
	d.PublicURL = strings.TrimSuffix(d.PublicURL, "/")
	if fe.Host != "" {
		// A frontend bound to its own Host is reached there: its redirect
		// URIs must bring the browser back to that origin, where its
		// cookies live. The scheme stays public_url's, and so does the port
		// unless the host names its own.
		host := fe.Host
		if _, _, err := net.SplitHostPort(fe.Host); err != nil {
			if p := pub.Port(); p != "" {
				host = net.JoinHostPort(fe.Host, p)
			}
		}
		d.PublicURL = pub.Scheme + "://" + host
	}
	b := &BFF{
		fe:              fe,
		base:            strings.TrimSuffix(fe.Mount, "/"),
		secure:          pub.Scheme == "https",
		deps:            d,
		log:             d.Logger.With(slog.String("frontend", fe.Name)),
		now:             d.Now,
		binding:         fe.Kind + ":" + fe.Name,
		keySecret:       d.KeySecret,
		olderKeySecrets: d.OlderKeySecrets,
	}
	if len(b.keySecret) == 0 {
		b.keySecret = make([]byte, 32)
		_, _ = rand.Read(b.keySecret) // never fails (crypto/rand)
		b.olderKeySecrets = nil       // they went with a shared secret
	}
	if b.publicURL, err = url.Parse(d.PublicURL); err != nil {
		return nil, fmt.Errorf("public url: %w", err)
	}
	b.provider = &providerLoader{
		issuer:       fe.OIDC.Issuer,
		clientID:     fe.OIDC.ClientID,
		clientSecret: fe.OIDC.ClientSecret,
		redirectURL:  d.PublicURL + b.base + "/bff/callback",
		scopes:       fe.OIDC.Scopes,
		client:       d.HTTPClient,
		timeout:      d.ProviderTimeout,
		now:          d.Now,
	}
	if b.tokens, err = newTokenClient(fe.OIDC, d.HTTPClient, d.Now); err != nil {
		return nil, fmt.Errorf("frontend %q: %w", fe.Name, err)
	}
	if fe.OIDC.Profile == config.ProfileFAPI2 {
		b.provider.signingAlgs = fapi2SigningAlgs
	}
	b.refresh = newRefresher(b)
	if b.client, err = newClientTokens(b); err != nil {
		return nil, fmt.Errorf("frontend %q: %w", fe.Name, err)
	}
	b.exchange = newExchanger(b)
	if err := b.buildRoutes(); err != nil {
		return nil, fmt.Errorf("frontend %q: %w", fe.Name, err)
	}
	return b, nil
}

// Name is the frontend's name.
func (b *BFF) Name() string { return b.fe.Name }

// Frontend returns the configuration this BFF serves.
func (b *BFF) Frontend() config.Frontend { return b.fe }

// Ready reports whether the provider metadata is loaded (loading it if due).
func (b *BFF) Ready(ctx context.Context) error {
	_, err := b.provider.get(ctx)
	return err
}

// ServeHTTP serves a request already routed to this frontend (its path is
// under the mount and free of dot-segments and encoded slashes).
func (b *BFF) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.e.ServeHTTP(w, r)
}

func (b *BFF) buildRoutes() error {
	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = b.handleError
	b.e = e
	e.Use(b.observeRoutes(), ownHeaders)
	e.Use(b.canonicalHost())
	if len(b.fe.CORS.AllowedOrigins) > 0 {
		e.Use(b.cors())
	}

	g := e.Group(b.base+"/bff", noStore)
	g.GET("/login", b.login)
	g.GET("/callback", b.callback)
	g.GET("/user", b.user)
	g.GET("/logout", b.logoutGet)
	g.POST("/logout", b.logoutPost)
	g.POST("/backchannel-logout", b.backchannelLogout)
	g.GET("/jwks", b.jwks)
	if b.fe.Kind == config.KindMobile {
		g.POST("/session", b.redeemHandoff)
		g.POST("/revoke", b.revokeHandle)
		e.GET(b.base+"/.well-known/oauth-authorization-server", b.authServerMetadata)
	}
	g.RouteNotFound("/*", func(echo.Context) error {
		return httperr.New(http.StatusNotFound, httperr.CodeNotFound, "no such BFF endpoint")
	})

	for i, rt := range b.fe.Routes {
		up, err := url.Parse(rt.Upstream)
		if err != nil {
			return fmt.Errorf("routes[%d].upstream: %w", i, err)
		}
		p := proxy.New(proxy.Options{
			Upstream:       up,
			Mount:          b.base,
			Prefix:         rt.Prefix,
			StripPrefix:    rt.StripPrefix,
			Timeout:        rt.Timeout,
			TrustedProxies: b.deps.TrustedProxies,
			ReservedCookie: b.reservedCookie,
			PublicURL:      b.publicURL,
			RequestID:      b.deps.RequestID,
			Logger:         b.log.With(slog.String("route", rt.Prefix)),
		})
		p.Transport = b.observeUpstream(rt.Prefix, p.Transport)
		if b.fe.OIDC.UsesDPoP() {
			p.Transport = &dpopTransport{next: p.Transport, now: b.now, nonces: &b.upstreamNonces}
		}
		h := b.routeHandler(rt, forwardedAnswer(p))
		prefix := b.base + strings.TrimSuffix(rt.Prefix, "/")
		paths := []string{prefix + "/*"}
		if prefix != "" {
			paths = append(paths, prefix)
		}
		for _, path := range paths {
			if len(rt.Methods) == 0 {
				e.Any(path, h)
			} else {
				e.Match(rt.Methods, path, h)
			}
		}
	}
	for _, a := range b.fe.Aggregates {
		h := aggregate.New(a, b.log.With(slog.String("aggregate", a.Path)))
		h.RequestID = b.deps.RequestID
		h.WrapTransport(func(rt http.RoundTripper) http.RoundTripper {
			rt = b.observeUpstream(a.Path, rt)
			if b.fe.OIDC.UsesDPoP() {
				// Part requests carry the request's context, and so the
				// session's key: the same proofs as a route's.
				rt = &dpopTransport{next: rt, now: b.now, nonces: &b.upstreamNonces}
			}
			return rt
		})
		get := b.routeHandler(config.Route{Token: config.TokenUser}, h)
		// Any method, so that a POST is told 405 rather than 404.
		e.Any(b.base+a.Path, func(c echo.Context) error {
			if c.Request().Method != http.MethodGet {
				c.Response().Header().Set("Allow", http.MethodGet)
				return echo.ErrMethodNotAllowed
			}
			return get(c)
		})
	}
	e.RouteNotFound("/*", func(echo.Context) error {
		return httperr.New(http.StatusNotFound, httperr.CodeNotFound, "no route for this path")
	})
	return nil
}

// routeHandler puts the session checks in front of the route's proxy.
func (b *BFF) routeHandler(rt config.Route, p http.Handler) echo.HandlerFunc {
	if rt.Token == config.TokenNone {
		return echo.WrapHandler(p)
	}
	if rt.Token == config.TokenUserOrNone || rt.Token == config.TokenUserOrClient {
		return b.optionalUserHandler(rt, p)
	}
	if rt.Token == config.TokenExchange {
		return b.exchangeHandler(rt, p)
	}
	return func(c echo.Context) error {
		r := c.Request()
		sess, err := b.requireSession(c)
		if err != nil {
			return err
		}
		if !stepUpSatisfied(sess.Claims, rt.Require, b.now()) {
			return stepUpRequired(c, rt.Require)
		}
		if rt.Token == config.TokenClient {
			// A client route still needs the user's live session (and
			// CSRF) and its claims, but sends the frontend's own token:
			// the user's is not refreshed for it.
			if err := checkClaims(sess.Claims, rt.Require.Claims); err != nil {
				return err
			}
			ctx, err := b.client.forward(r.Context())
			if err != nil {
				return err
			}
			p.ServeHTTP(c.Response(), r.WithContext(ctx))
			return nil
		}
		sess, err = b.refresh.ensureFresh(r.Context(), sess)
		if err != nil {
			return err
		}
		if err := checkClaims(sess.Claims, rt.Require.Claims); err != nil {
			return err
		}
		p.ServeHTTP(c.Response(), r.WithContext(withDPoPKey(proxy.WithToken(r.Context(), sess.AccessToken), b.sessionDPoPKey(r.Context(), sess.Session))))
		return nil
	}
}

// handleError is the single place errors become responses.
func (b *BFF) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	var he *httperr.Error
	var ee *echo.HTTPError
	switch {
	case errors.As(err, &he):
	case errors.As(err, &ee):
		he = fromEcho(ee)
	default:
		he = httperr.Wrap(http.StatusInternalServerError, httperr.CodeInternal, "internal error", err)
	}
	level := slog.LevelDebug
	if he.Status >= 500 {
		level = slog.LevelError
	}
	if he.Err != nil || he.Status >= 500 {
		b.log.LogAttrs(c.Request().Context(), level, "request failed",
			slog.String("method", c.Request().Method), slog.String("path", c.Request().URL.Path),
			slog.Int("status", he.Status), slog.String("error", he.Error()))
	}
	httperr.Write(c.Response(), he)
}

func fromEcho(ee *echo.HTTPError) *httperr.Error {
	switch ee.Code {
	case http.StatusNotFound:
		return httperr.New(ee.Code, httperr.CodeNotFound, "not found")
	case http.StatusMethodNotAllowed:
		return httperr.New(ee.Code, httperr.CodeMethodNotAllowed, "method not allowed on this route")
	case http.StatusRequestEntityTooLarge:
		return httperr.New(ee.Code, httperr.CodeTooLarge, "request body too large")
	}
	if ee.Code >= 400 && ee.Code < 500 {
		return httperr.New(ee.Code, httperr.CodeBadRequest, fmt.Sprint(ee.Message))
	}
	return httperr.Wrap(http.StatusInternalServerError, httperr.CodeInternal, "internal error", ee)
}

// noStore keeps every /bff answer out of caches: they carry session state.
func noStore(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		c.Response().Header().Set("Cache-Control", "no-store")
		c.Response().Header().Set("Pragma", "no-cache")
		return next(c)
	}
}
