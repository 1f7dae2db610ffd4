package gateway_test

import (
	"net/http"
	"testing"

	"github.com/bffgate/bffgate/config"
)

// Issue 12 item 1: user_or_none and user_or_client routes send the user's
// token for a live session presented the way the frontend's own script
// presents it (cookie plus X-CSRF: 1), and otherwise serve the call as
// anonymous, or with the frontend's client token. A cookie alone, which a
// cross-site page can make the browser send, never selects the user's
// token.
func TestOptionalUserTokenRoutesSendTheUserTokenOnlyWithCSRF(t *testing.T) {
	e := newEnv(t, withConfig(func(c *config.Config) {
		up := c.Frontends[0].Routes[0].Upstream
		c.Frontends[0].Routes = append(c.Frontends[0].Routes,
			config.Route{Prefix: "/api/feed", Upstream: up, StripPrefix: true, Token: config.TokenUserOrNone},
			config.Route{Prefix: "/api/catalog", Upstream: up, StripPrefix: true, Token: config.TokenUserOrClient})
	}))
	user := e.browser()
	user.login("/web", plainUser)
	userToken := e.session("web", user.cookie("bff-web").Value).AccessToken

	ended := e.browser()
	ended.login("/web", plainUser)
	endedCookie := *ended.cookie("bff-web")
	if resp := ended.do(http.MethodPost, "/web/bff/logout", http.Header{"X-Csrf": {"1"}}, ""); resp.StatusCode != http.StatusFound {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	ended.Jar.SetCookies(mustURL(e.public+"/"), []*http.Cookie{{Name: endedCookie.Name, Value: endedCookie.Value}})

	forged := e.browser()
	forged.Jar.SetCookies(mustURL(e.public+"/"), []*http.Cookie{{Name: "bff-web", Value: "forged"}})

	const (
		anonymous = "anonymous"
		asUser    = "the user's token"
		asClient  = "the client token"
	)
	csrf := http.Header{"X-Csrf": {"1"}}
	cases := []struct {
		name string
		b    *browser
		h    http.Header
		path string
		want string
	}{
		{"no session, user_or_none", e.browser(), nil, "/web/api/feed/x", anonymous},
		{"no session, user_or_client", e.browser(), nil, "/web/api/catalog/x", asClient},
		{"session with X-CSRF, user_or_none", user, csrf, "/web/api/feed/x", asUser},
		{"session with X-CSRF, user_or_client", user, csrf, "/web/api/catalog/x", asUser},
		{"cookie without X-CSRF, user_or_none", user, nil, "/web/api/feed/x", anonymous},
		{"cookie without X-CSRF, user_or_client", user, nil, "/web/api/catalog/x", asClient},
		{"ended session, user_or_none", ended, csrf, "/web/api/feed/x", anonymous},
		{"ended session, user_or_client", ended, csrf, "/web/api/catalog/x", asClient},
		{"forged cookie, user_or_none", forged, csrf, "/web/api/feed/x", anonymous},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := c.b.do(http.MethodGet, c.path, c.h, "")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d %s", resp.StatusCode, readBody(resp))
			}
			got := e.orders.last(t).Header.Get("Authorization")
			switch c.want {
			case anonymous:
				if got != "" {
					t.Errorf("the upstream received Authorization %q, want none", got)
				}
			case asUser:
				if got != "Bearer "+userToken {
					t.Errorf("the upstream received %q, want the user's access token", got)
				}
			case asClient:
				if got == "" || got == "Bearer "+userToken {
					t.Fatalf("the upstream received %q, want the client token", got)
				}
				if sub := jwtClaims(t, got[len("Bearer "):])["sub"]; sub != "web-bff" {
					t.Errorf("client token sub %v, want web-bff", sub)
				}
			}
			if cookie := e.orders.last(t).Header.Get("Cookie"); cookie != "" {
				t.Errorf("the upstream received the browser's cookies %q", cookie)
			}
		})
	}
}
