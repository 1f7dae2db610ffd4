package bff

import (
	"errors"
	"net/http"
	"testing"

	"github.com/bffgate/bffgate/bff/httperr"
	"github.com/bffgate/bffgate/config"
)

func TestRouteLabel(t *testing.T) {
	for _, c := range []struct {
		name, base, pattern, want string
	}{
		{"route subtree", "/web", "/web/api/orders/*", "/api/orders"},
		{"route itself", "/web", "/web/api/orders", "/api/orders"},
		{"route with trailing slash in config", "/web", "/web/api/slash/*", "/api/slash/"},
		{"aggregate", "/web", "/web/api/dashboard", "/api/dashboard"},
		{"bff endpoint", "/web", "/web/bff/login", "bff:login"},
		{"bff endpoint with dash", "/web", "/web/bff/backchannel-logout", "bff:backchannel-logout"},
		{"bff not found", "/web", "/web/bff/*", RouteUnmatched},
		{"bff group root", "/web", "/web/bff", RouteUnmatched},
		{"global not found", "/web", "/*", RouteUnmatched},
		{"no pattern", "/web", "", RouteUnmatched},
		{"root mount route", "", "/api/orders/*", "/api/orders"},
		{"root mount endpoint", "", "/bff/user", "bff:user"},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := &BFF{base: c.base, fe: config.Frontend{
				Routes:     []config.Route{{Prefix: "/api/orders"}, {Prefix: "/api/slash/"}},
				Aggregates: []config.Aggregate{{Path: "/api/dashboard"}},
			}}
			if got := routeLabel(b.routeLabels(), c.base, c.pattern); got != c.want {
				t.Errorf("routeLabel(%q) = %q, want %q", c.pattern, got, c.want)
			}
		})
	}
}

func TestLoginFailureReason(t *testing.T) {
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"tagged", loginFail(LoginCodeRejected, badRequest("x")), LoginCodeRejected},
		{"store", storeDown(errors.New("down")), LoginStoreUnavailable},
		{"provider", httperr.New(http.StatusBadGateway, httperr.CodeUpstreamUnavailable, "x"), LoginProviderUnavailable},
		{"other", errors.New("boom"), LoginInternal},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := loginFailureReason(c.err); got != c.want {
				t.Errorf("reason = %q, want %q", got, c.want)
			}
		})
	}
	// The client still gets the tagged error's status and code.
	var he *httperr.Error
	if !errors.As(loginFail(LoginInvalidState, badRequest("x")), &he) || he.Status != http.StatusBadRequest {
		t.Error("a tagged login error hides its *httperr.Error")
	}
}

func TestBackchannelOutcome(t *testing.T) {
	for _, c := range []struct {
		name   string
		err    error
		status int
		want   string
	}{
		{"ok", nil, http.StatusOK, BackchannelOK},
		{"bad token", badRequest("invalid logout_token"), 0, BackchannelInvalidToken},
		{"store down", storeDown(errors.New("down")), 0, BackchannelError},
		{"written 5xx", nil, http.StatusServiceUnavailable, BackchannelError},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := backchannelOutcome(c.err, c.status); got != c.want {
				t.Errorf("outcome = %q, want %q", got, c.want)
			}
		})
	}
}
