package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/bffgate/bffgate/internal/demo"
	"github.com/bffgate/bffgate/internal/gateway"
	"github.com/bffgate/bffgate/internal/oidctest"
)

// The demo's step-up route (issue 12 item 3), at the HTTP level with the
// demo's own provider, services and configuration: the orders service
// answers through it after a fresh login; once the login is older than
// require.max_age the gateway answers 401 step_up_required, and the login
// the page then starts (max_age from that body, returnTo the page) brings
// the browser back with a new session that the route serves again. The
// demo's 60 s are cut to 5 s here so the test need not wait a minute.
func TestDemoStepUpRoute(t *testing.T) {
	ctx := context.Background()
	idpSrv, svcSrv, gwSrv := httptest.NewUnstartedServer(nil), httptest.NewUnstartedServer(nil), httptest.NewUnstartedServer(nil)
	ep := demo.Endpoints{PublicURL: "http://" + gwSrv.Listener.Addr().String(), Issuer: "http://" + idpSrv.Listener.Addr().String()}
	ep.OrdersURL, ep.ReportsURL, ep.SPAURL = demoServiceURLs("http://" + svcSrv.Listener.Addr().String())
	idp, err := newDemoIDP(ep.Issuer, []string{ep.PublicURL}, nil)
	if err != nil {
		t.Fatal(err)
	}
	services, err := newDemoServices(ctx, ep.Issuer)
	if err != nil {
		t.Fatal(err)
	}
	cfg := demo.Config(ep, "")
	// Room for a slow machine to log in and call within it; auth_time has
	// whole seconds, so up to one of them is gone at once.
	const maxAge = 5 * time.Second
	found := false
	for i, r := range cfg.Frontends[0].Routes {
		if r.Prefix == demo.StepUpPath {
			cfg.Frontends[0].Routes[i].Require.MaxAge = maxAge
			found = r.Require.MaxAge == demo.StepUpMaxAge
		}
	}
	if !found {
		t.Fatalf("the demo's web frontend has no %s route with max_age %v", demo.StepUpPath, demo.StepUpMaxAge)
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(cfg, gateway.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	for srv, h := range map[*httptest.Server]http.Handler{idpSrv: idp, svcSrv: services, gwSrv: gw.Handler(true)} {
		srv.Config.Handler = h
		srv.Start()
		t.Cleanup(srv.Close)
	}

	page := demo.WebMount + "/"
	route := ep.PublicURL + demo.WebMount + demo.StepUpPath + "/latest"
	csrf := http.Header{"X-Csrf": {"1"}}
	b := oidctest.NewBrowser(t)
	login := func(start string) {
		t.Helper()
		if resp := signIn(t, b, start, demo.AdminUsername(ep.Issuer)); resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != page {
			t.Fatalf("callback: %d to %q, want %s", resp.StatusCode, resp.Header.Get("Location"), page)
		}
	}
	call := func() (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, route, nil)
		req.Header = csrf.Clone()
		resp, err := b.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var body map[string]any
		if err := json.Unmarshal(raw, &body); err != nil {
			t.Fatalf("%s: %d, not JSON: %s", route, resp.StatusCode, raw)
		}
		return resp.StatusCode, body
	}

	login(ep.PublicURL + demo.WebMount + "/bff/login?returnTo=" + url.QueryEscape(page))
	if status, body := call(); status != http.StatusOK || body["service"] != "orders" {
		t.Fatalf("the step-up route right after login: %d %v, want 200 from the orders service", status, body)
	}
	var body map[string]any
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(200 * time.Millisecond) {
		status, b := call()
		if status == http.StatusUnauthorized {
			body = b
			break
		}
		if status != http.StatusOK || time.Now().After(deadline) {
			t.Fatalf("the step-up route: %d %v, want 401 once the login is %v old", status, b, maxAge)
		}
	}
	if body["error"] != "step_up_required" || body["max_age"] != float64(5) {
		t.Fatalf("%v, want step_up_required with max_age 5", body)
	}

	// What the page does with that body: a new login, back to the page.
	login(ep.PublicURL + demo.WebMount + "/bff/login?returnTo=" + url.QueryEscape(page) +
		"&max_age=" + strconv.FormatInt(int64(body["max_age"].(float64)), 10))
	if status, body := call(); status != http.StatusOK || body["service"] != "orders" {
		t.Fatalf("the step-up route after the step-up login: %d %v, want 200 from the orders service", status, body)
	}
}
