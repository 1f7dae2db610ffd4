package demo

import (
	"crypto/rand"
	"encoding/base64"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/bffgate/bffgate/config"
)

// The demo's frontends and their clients at the demo provider. The secrets
// are published here: demo only.
const (
	WebFrontend     = "web"
	WebMount        = "/web"
	WebClientID     = "web-bff"
	WebClientSecret = "demo-web-secret"

	// The mobile frontend: a native app's BFF. The demo plays the app with
	// a page of the web frontend (MobilePage), whose URL is the app's
	// redirect URI.
	AppFrontend     = "app"
	AppMount        = "/app"
	AppClientID     = "app-bff"
	AppClientSecret = "demo-app-secret"
	// MobilePage is the page, under WebMount, that plays the native app.
	MobilePage = "/mobile.html"
	// DashboardPath is the web frontend's aggregate: orders (required) and
	// reports (optional) in one call.
	DashboardPath = "/api/dashboard"
	// StepUpPath is the web frontend's route to the orders service that
	// needs a recent login: it forwards only while the user's login is at
	// most StepUpMaxAge old (require.max_age), and answers 401
	// step_up_required after that, which the page turns into a new login.
	StepUpPath = "/api/recent"
	// StepUpMaxAge is short so that the step-up shows within a minute.
	StepUpMaxAge = 60 * time.Second

	// PaymentsAudience is the payments service's name at the provider: the
	// service accepts only tokens issued for it, which the web frontend's
	// /api/payments route obtains by token exchange (web-bff may ask for
	// it; ExchangeAudiences).
	PaymentsAudience = "payments-api"
	// PaymentsPath is the web frontend's token: exchange route.
	PaymentsPath = "/api/payments"
)

// ClientIDs are the provider clients whose access tokens the demo services
// accept (their audiences).
func ClientIDs() []string { return []string{WebClientID, AppClientID} }

// AppRedirectURI is the mobile frontend's one registered return_to: the
// page that plays the app, PublicURL + WebMount + MobilePage.
func AppRedirectURI(publicURL string) string {
	return strings.TrimSuffix(publicURL, "/") + WebMount + MobilePage
}

// Endpoints are the URLs the demo pieces are reachable at.
type Endpoints struct {
	// PublicURL is the gateway's external origin (scheme://host:port, no path).
	PublicURL string
	// Issuer is the demo provider's issuer (its root URL).
	Issuer string
	// OrdersURL, ReportsURL and SPAURL are the upstreams: the two services and
	// the page handler.
	OrdersURL  string
	ReportsURL string
	SPAURL     string
	// PaymentsURL is the payments service, which accepts only tokens for
	// PaymentsAudience. Empty: no PaymentsPath route (a provider without
	// token exchange).
	PaymentsURL string
}

// Config returns the demo gateway configuration: the spa frontend "web"
// mounted at /web with the routes /api/orders -> OrdersURL and /api/reports ->
// ReportsURL (prefix stripped, the user's token attached; the services
// authorize by role themselves), StepUpPath -> OrdersURL for a login at most
// StepUpMaxAge old, and / -> SPAURL (anonymous, GET and HEAD),
// the aggregate DashboardPath (orders required, reports optional), and
// with a PaymentsURL the token: exchange route PaymentsPath -> PaymentsURL
// (a token for PaymentsAudience exchanged for the user's); the
// mobile frontend "app" mounted at /app with the same two API routes and
// AppRedirectURI as its app redirect URI; the OIDC clients of Clients, and
// in-memory sessions, or Redis at redisURL when it is not empty.
//
// With the memory store no cookie keys are set: the store generates them. With
// Redis, Config generates a random key pair on every call, so the keys are
// per-process: sessions kept in Redis do not survive a restart of the demo, and
// two demo processes cannot share them. Real deployments set cookie_keys.
//
// Every field the gateway reads is set explicitly, so the result passes
// ApplyDefaults and Validate unchanged. Server.Listen is PublicURL's host:port;
// an http:// PublicURL sets AllowInsecureHTTP, which is what the demo is for.
func Config(ep Endpoints, redisURL string) *config.Config {
	public := strings.TrimSuffix(ep.PublicURL, "/")
	listen, insecure := listenFor(public)

	sessions := config.Sessions{
		Store:           "memory",
		IdleTimeout:     30 * time.Minute,
		AbsoluteTimeout: 12 * time.Hour,
		RefreshMargin:   60 * time.Second,
	}
	if redisURL != "" {
		sessions.Store = "redis"
		sessions.Redis = config.Redis{
			URL:          redisURL,
			KeyPrefix:    "bffgate-demo:",
			DialTimeout:  time.Second,
			ReadTimeout:  500 * time.Millisecond,
			WriteTimeout: 500 * time.Millisecond,
		}
		sessions.CookieKeys = []config.CookieKey{{
			Hash:  randomKey(64),
			Block: randomKey(32),
		}}
	}

	const after = WebMount + "/"
	apiRoutes := func() []config.Route {
		return []config.Route{
			{
				Prefix:      "/api/orders",
				Upstream:    ep.OrdersURL,
				StripPrefix: true,
				Token:       config.TokenUser,
				Timeout:     10 * time.Second,
			},
			{
				Prefix:      "/api/reports",
				Upstream:    ep.ReportsURL,
				StripPrefix: true,
				Token:       config.TokenUser,
				Timeout:     10 * time.Second,
			},
		}
	}
	// client is a frontend's OIDC client at the demo provider.
	client := func(id, secret string) config.OIDC {
		return config.OIDC{
			Issuer:       ep.Issuer,
			ClientID:     id,
			ClientSecret: secret,
			Scopes:       []string{"openid", "profile", "email", "offline_access"},
		}
	}
	webRoutes := apiRoutes()
	if ep.PaymentsURL != "" {
		webRoutes = append(webRoutes, config.Route{
			Prefix:      PaymentsPath,
			Upstream:    ep.PaymentsURL,
			StripPrefix: true,
			Token:       config.TokenExchange,
			Exchange:    &config.Exchange{Audience: PaymentsAudience},
			Timeout:     10 * time.Second,
		})
	}
	return &config.Config{
		Server: config.Server{
			Listen:            listen,
			PublicURL:         public,
			ShutdownTimeout:   5 * time.Second,
			MaxBodyBytes:      10 << 20,
			AllowInsecureHTTP: insecure,
		},
		Sessions: sessions,
		Frontends: []config.Frontend{{
			Name:        WebFrontend,
			Kind:        config.KindSPA,
			Mount:       WebMount,
			OIDC:        client(WebClientID, WebClientSecret),
			Cookie:      config.Cookie{SameSite: "strict"},
			AfterLogin:  after,
			AfterLogout: after,
			ReturnTo:    []string{after},
			Routes: append(webRoutes, config.Route{
				Prefix:      StepUpPath,
				Upstream:    ep.OrdersURL,
				StripPrefix: true,
				Token:       config.TokenUser,
				Require:     config.Require{MaxAge: StepUpMaxAge},
				Timeout:     10 * time.Second,
			}, config.Route{
				// The pages: anonymous, so a logged-out visitor sees them.
				Prefix:   "/",
				Upstream: ep.SPAURL,
				Token:    config.TokenNone,
				Methods:  []string{"GET", "HEAD"},
				Timeout:  10 * time.Second,
			}),
			Aggregates: []config.Aggregate{{
				Path:    DashboardPath,
				Timeout: 5 * time.Second,
				Parts: map[string]config.Part{
					"orders":  {Upstream: ep.OrdersURL, Path: "/latest", Required: true},
					"reports": {Upstream: ep.ReportsURL, Path: "/summary"},
				},
			}},
		}, {
			Name:        AppFrontend,
			Kind:        config.KindMobile,
			Mount:       AppMount,
			OIDC:        client(AppClientID, AppClientSecret),
			Cookie:      config.Cookie{SameSite: "strict"},
			AfterLogin:  AppRedirectURI(public),
			AfterLogout: WebMount + MobilePage,
			ReturnTo:    []string{AppRedirectURI(public)},
			Routes:      apiRoutes(),
		}},
	}
}

// Clients returns the provider clients matching Config: web-bff with the
// redirect URI PublicURL/web/bff/callback and the post-logout redirect URI
// PublicURL/web/, then app-bff with PublicURL/app/bff/callback and
// PublicURL/web/mobile.html. web-bff may exchange its users' tokens for
// PaymentsAudience.
func Clients(ep Endpoints) []Client {
	public := strings.TrimSuffix(ep.PublicURL, "/")
	return []Client{{
		ID:                     WebClientID,
		Secret:                 WebClientSecret,
		RedirectURIs:           []string{public + WebMount + "/bff/callback"},
		PostLogoutRedirectURIs: []string{public + WebMount + "/"},
		ExchangeAudiences:      []string{PaymentsAudience},
	}, {
		ID:                     AppClientID,
		Secret:                 AppClientSecret,
		RedirectURIs:           []string{public + AppMount + "/bff/callback"},
		PostLogoutRedirectURIs: []string{public + WebMount + MobilePage},
	}}
}

// listenFor derives the listen address from the public URL (adding the
// scheme's default port) and reports whether it is plain http.
func listenFor(public string) (listen string, insecure bool) {
	u, err := url.Parse(public)
	if err != nil || u.Host == "" {
		// Left for Validate to report.
		return "", false
	}
	listen = u.Host
	if u.Port() == "" {
		port := "443"
		if u.Scheme == "http" {
			port = "80"
		}
		listen = net.JoinHostPort(u.Hostname(), port)
	}
	return listen, u.Scheme == "http"
}

// randomKey returns n random bytes, base64 encoded.
func randomKey(n int) string {
	b := make([]byte, n)
	// crypto/rand.Read never fails (it panics on a broken system source).
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// AnyMountClients returns the clients of Clients for every gateway origin in
// publicURLs, each also accepting the callback of a frontend at any mount
// under those origins (AnyCallbackGlob) and any post-logout redirect URI
// there (AnyPathGlobs): a team trying its own frontend file against the demo
// provider (mount /shop, say) can use web-bff or app-bff as they are.
func AnyMountClients(publicURLs []string) []Client {
	var out []Client
	for i, u := range publicURLs {
		for j, c := range Clients(Endpoints{PublicURL: u}) {
			if i == 0 {
				out = append(out, c)
			} else {
				out[j].RedirectURIs = append(out[j].RedirectURIs, c.RedirectURIs...)
				out[j].PostLogoutRedirectURIs = append(out[j].PostLogoutRedirectURIs, c.PostLogoutRedirectURIs...)
			}
			out[j].RedirectURIGlobs = append(out[j].RedirectURIGlobs, AnyCallbackGlob(u))
			out[j].PostLogoutRedirectURIGlobs = append(out[j].PostLogoutRedirectURIGlobs, AnyPathGlobs(u)...)
		}
	}
	return out
}
