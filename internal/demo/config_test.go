package demo_test

import (
	"encoding/base64"
	"slices"
	"testing"

	"github.com/bffgate/bffgate/config"
	"github.com/bffgate/bffgate/internal/demo"
)

var testEndpoints = demo.Endpoints{
	PublicURL:  "http://127.0.0.1:8080",
	Issuer:     "http://127.0.0.1:9998",
	OrdersURL:  "http://127.0.0.1:9001",
	ReportsURL: "http://127.0.0.1:9002",
	SPAURL:     "http://127.0.0.1:9003",
}

func TestConfigMemory(t *testing.T) {
	cfg := demo.Config(testEndpoints, "")
	if cfg.Server.PublicURL != testEndpoints.PublicURL || cfg.Server.Listen != "127.0.0.1:8080" || !cfg.Server.AllowInsecureHTTP {
		t.Errorf("server %+v", cfg.Server)
	}
	if cfg.Sessions.Store != "memory" || len(cfg.Sessions.CookieKeys) != 0 {
		t.Errorf("sessions %+v", cfg.Sessions)
	}
	if len(cfg.Frontends) != 2 {
		t.Fatalf("%d frontends, want web and app", len(cfg.Frontends))
	}
	fe := cfg.Frontends[0]
	if fe.Name != "web" || fe.Kind != config.KindSPA || fe.Mount != "/web" {
		t.Errorf("frontend %+v", fe)
	}
	if fe.OIDC.Issuer != testEndpoints.Issuer || fe.OIDC.ClientID != demo.WebClientID || fe.OIDC.ClientSecret != demo.WebClientSecret ||
		!slices.Contains(fe.OIDC.Scopes, "offline_access") {
		t.Errorf("oidc %+v", fe.OIDC)
	}
	if fe.AfterLogin != "/web/" || fe.AfterLogout != "/web/" || !slices.Equal(fe.ReturnTo, []string{"/web/"}) {
		t.Errorf("after_login %q after_logout %q return_to %v", fe.AfterLogin, fe.AfterLogout, fe.ReturnTo)
	}
	want := []config.Route{
		{Prefix: "/api/orders", Upstream: testEndpoints.OrdersURL, StripPrefix: true, Token: config.TokenUser},
		{Prefix: "/api/reports", Upstream: testEndpoints.ReportsURL, StripPrefix: true, Token: config.TokenUser},
		{Prefix: demo.StepUpPath, Upstream: testEndpoints.OrdersURL, StripPrefix: true, Token: config.TokenUser,
			Require: config.Require{MaxAge: demo.StepUpMaxAge}},
		{Prefix: "/", Upstream: testEndpoints.SPAURL, StripPrefix: false, Token: config.TokenNone},
	}
	if len(fe.Routes) != len(want) {
		t.Fatalf("routes %+v", fe.Routes)
	}
	for i, w := range want {
		g := fe.Routes[i]
		if g.Prefix != w.Prefix || g.Upstream != w.Upstream || g.StripPrefix != w.StripPrefix || g.Token != w.Token || g.Timeout <= 0 ||
			g.Require.MaxAge != w.Require.MaxAge {
			t.Errorf("routes[%d] = %+v, want %+v", i, g, w)
		}
	}
}

func TestConfigRedis(t *testing.T) {
	a := demo.Config(testEndpoints, "redis://127.0.0.1:6379/0")
	b := demo.Config(testEndpoints, "redis://127.0.0.1:6379/0")
	if a.Sessions.Store != "redis" || a.Sessions.Redis.URL != "redis://127.0.0.1:6379/0" || a.Sessions.Redis.KeyPrefix == "" {
		t.Errorf("sessions %+v", a.Sessions)
	}
	if len(a.Sessions.CookieKeys) != 1 {
		t.Fatalf("cookie keys %+v", a.Sessions.CookieKeys)
	}
	k := a.Sessions.CookieKeys[0]
	hash, err1 := base64.StdEncoding.DecodeString(k.Hash)
	block, err2 := base64.StdEncoding.DecodeString(k.Block)
	if err1 != nil || err2 != nil || len(hash) != 64 || len(block) != 32 {
		t.Errorf("cookie key lengths hash %d block %d (%v, %v)", len(hash), len(block), err1, err2)
	}
	if k == b.Sessions.CookieKeys[0] {
		t.Error("two calls produced the same cookie keys")
	}
}

func TestConfigListen(t *testing.T) {
	tests := []struct {
		public, listen string
		insecure       bool
	}{
		{"http://127.0.0.1:8080/", "127.0.0.1:8080", true},
		{"http://localhost", "localhost:80", true},
		{"https://app.example.com", "app.example.com:443", false},
	}
	for _, tt := range tests {
		ep := testEndpoints
		ep.PublicURL = tt.public
		cfg := demo.Config(ep, "")
		if cfg.Server.Listen != tt.listen || cfg.Server.AllowInsecureHTTP != tt.insecure {
			t.Errorf("%s: listen %q insecure %v, want %q %v", tt.public, cfg.Server.Listen, cfg.Server.AllowInsecureHTTP, tt.listen, tt.insecure)
		}
	}
}

func TestClients(t *testing.T) {
	ep := testEndpoints
	ep.PublicURL += "/" // a trailing slash is tolerated
	got := demo.Clients(ep)
	if len(got) != 2 {
		t.Fatalf("clients %+v", got)
	}
	if a := got[1]; a.ID != demo.AppClientID || a.Secret != demo.AppClientSecret ||
		!slices.Equal(a.RedirectURIs, []string{"http://127.0.0.1:8080/app/bff/callback"}) ||
		!slices.Equal(a.PostLogoutRedirectURIs, []string{"http://127.0.0.1:8080/web/mobile.html"}) {
		t.Errorf("app client %+v", a)
	}
	c := got[0]
	if c.ID != demo.WebClientID || c.Secret != demo.WebClientSecret ||
		!slices.Equal(c.RedirectURIs, []string{"http://127.0.0.1:8080/web/bff/callback"}) ||
		!slices.Equal(c.PostLogoutRedirectURIs, []string{"http://127.0.0.1:8080/web/"}) {
		t.Errorf("client %+v", c)
	}
	// The provider accepts them.
	if _, err := demo.NewIDP(testEndpoints.Issuer, got, demo.IDPOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestConfigValidates: the demo configuration passes the gateway's own
// defaults and validation, with either store.
func TestConfigValidates(t *testing.T) {
	for _, redisURL := range []string{"", "redis://127.0.0.1:6379/0"} {
		cfg := demo.Config(testEndpoints, redisURL)
		cfg.ApplyDefaults()
		if err := cfg.Validate(); err != nil {
			t.Errorf("redis %q: %v", redisURL, err)
		}
	}
}

// TestConfigMobileAndDashboard: the mobile frontend plays against the page
// at AppRedirectURI, and the web frontend has the dashboard aggregate.
func TestConfigMobileAndDashboard(t *testing.T) {
	cfg := demo.Config(testEndpoints, "")
	app := cfg.Frontends[1]
	if app.Name != demo.AppFrontend || app.Kind != config.KindMobile || app.Mount != demo.AppMount ||
		app.OIDC.ClientID != demo.AppClientID || app.OIDC.ClientSecret != demo.AppClientSecret {
		t.Errorf("app frontend %+v", app)
	}
	if want := []string{"http://127.0.0.1:8080/web/mobile.html"}; !slices.Equal(app.ReturnTo, want) ||
		demo.AppRedirectURI(testEndpoints.PublicURL+"/") != want[0] {
		t.Errorf("app return_to %v, want %v", app.ReturnTo, want)
	}
	if len(app.Routes) != 2 || app.Routes[0].Prefix != "/api/orders" || app.Routes[1].Prefix != "/api/reports" {
		t.Errorf("app routes %+v", app.Routes)
	}
	web := cfg.Frontends[0]
	if len(web.Aggregates) != 1 {
		t.Fatalf("web aggregates %+v", web.Aggregates)
	}
	a := web.Aggregates[0]
	if a.Path != demo.DashboardPath || len(a.Parts) != 2 ||
		a.Parts["orders"] != (config.Part{Upstream: testEndpoints.OrdersURL, Path: "/latest", Required: true}) ||
		a.Parts["reports"] != (config.Part{Upstream: testEndpoints.ReportsURL, Path: "/summary"}) {
		t.Errorf("dashboard %+v", a)
	}
	if !slices.Equal(demo.ClientIDs(), []string{demo.WebClientID, demo.AppClientID}) {
		t.Errorf("ClientIDs %v", demo.ClientIDs())
	}
}

// With a payments service, the web frontend gets the token: exchange route
// to it, web-bff may ask the provider for its audience, and the result is
// a valid configuration.
func TestConfigPaymentsExchangeRoute(t *testing.T) {
	ep := testEndpoints
	ep.PaymentsURL = "http://127.0.0.1:9004"
	cfg := demo.Config(ep, "")
	i := slices.IndexFunc(cfg.Frontends[0].Routes, func(r config.Route) bool { return r.Prefix == demo.PaymentsPath })
	if i < 0 {
		t.Fatalf("no %s route: %+v", demo.PaymentsPath, cfg.Frontends[0].Routes)
	}
	r := cfg.Frontends[0].Routes[i]
	if r.Token != config.TokenExchange || r.Upstream != ep.PaymentsURL || r.Exchange == nil || r.Exchange.Audience != demo.PaymentsAudience {
		t.Errorf("payments route %+v", r)
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if web := demo.Clients(ep)[0]; web.ID != demo.WebClientID || !slices.Equal(web.ExchangeAudiences, []string{demo.PaymentsAudience}) {
		t.Errorf("web client %+v may not exchange for %s", web, demo.PaymentsAudience)
	}
	if app := demo.Clients(ep)[1]; len(app.ExchangeAudiences) != 0 {
		t.Errorf("app client may exchange: %v", app.ExchangeAudiences)
	}
	if slices.ContainsFunc(demo.Config(testEndpoints, "").Frontends[0].Routes, func(r config.Route) bool { return r.Token == config.TokenExchange }) {
		t.Error("an exchange route without a payments service")
	}
}
