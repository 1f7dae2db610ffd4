package gateway_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/bffgate/bffgate/config"
)

// Step-up (issue 12 item 3, SPEC §5): a route that needs an acr the session
// lacks answers 401 step_up_required with what to ask for; the login that
// asks for it is refused when the provider's ID token does not carry it
// (the demo provider issues no acr, so that is what it shows), and a route
// that needs a recent login accepts a fresh one.
func TestStepUpRequiredAndRefusedWhenNotSatisfied(t *testing.T) {
	e := newEnv(t, withConfig(func(c *config.Config) {
		up := c.Frontends[0].Routes[0].Upstream
		c.Frontends[0].Routes = append(c.Frontends[0].Routes,
			config.Route{Prefix: "/api/mfa", Upstream: up, Require: config.Require{ACR: []string{"urn:example:mfa"}, MaxAge: 10 * time.Minute}},
			config.Route{Prefix: "/api/recent", Upstream: up, Require: config.Require{MaxAge: 10 * time.Minute}},
		)
	}))
	b := e.browser()
	b.login("/web", e.admin())
	before := e.orders.count()

	resp := b.api(http.MethodGet, "/web/api/mfa/x")
	m := decodeJSON(t, resp)
	if resp.StatusCode != http.StatusUnauthorized || m["error"] != "step_up_required" ||
		m["acr_values"] != "urn:example:mfa" || m["max_age"] != float64(600) {
		t.Fatalf("status %d %v, want 401 step_up_required with acr_values and max_age", resp.StatusCode, m)
	}
	if e.orders.count() != before {
		t.Fatal("the upstream was called without the step-up")
	}
	if resp := b.api(http.MethodGet, "/web/api/recent/x"); resp.StatusCode != http.StatusOK {
		t.Errorf("a fresh login on a max_age route: %d %s", resp.StatusCode, readBody(resp))
	}

	// The SPA's next move: log in with what the 401 said.
	oldRef := b.cookie("bff-web").Value
	cb, authz, err := b.Login(context.Background(),
		e.public+"/web/bff/login?acr_values=urn:example:mfa&max_age=600&returnTo="+url.QueryEscape("/web/orders"), e.admin(), password)
	if err != nil {
		t.Fatal(err)
	}
	if q := authz.Query(); q.Get("acr_values") != "urn:example:mfa" || q.Get("max_age") != "600" {
		t.Errorf("authorize acr_values %q max_age %q", q.Get("acr_values"), q.Get("max_age"))
	}
	wantLoginError(t, b.get(cb, nil), "/web/orders", "step_up_failed")
	if b.cookie("bff-web").Value != oldRef {
		t.Error("a refused step-up replaced the session")
	}
	for _, bad := range []string{"max_age=-1", "max_age=x", "acr_values=%0d%0a"} {
		errorCode(t, e.browser().get("/web/bff/login?"+bad, nil), http.StatusBadRequest, "bad_request")
	}
}
