package gateway_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/bffgate/bffgate/config"
	"github.com/bffgate/bffgate/sessions"
)

// appURI is the native app's registered redirect URI (RFC 8252 private-use scheme).
const appURI = "com.example.app:/oauth/callback"

// withMobileApp adds the mobile frontend "app" at /app, using the provider
// client app-bff that newEnv registers.
func withMobileApp() envOption {
	return withConfig(func(c *config.Config) {
		web := c.Frontends[0]
		c.Frontends = append(c.Frontends, config.Frontend{
			Name: "app", Kind: config.KindMobile, Mount: "/app", Source: "frontends/app.yaml",
			OIDC:     config.OIDC{Issuer: web.OIDC.Issuer, ClientID: "app-bff", ClientSecret: "app-secret"},
			ReturnTo: []string{appURI, "http://127.0.0.1/other-app"},
			Routes: []config.Route{
				{Prefix: "/api/orders", Upstream: web.Routes[0].Upstream, StripPrefix: true},
			},
		})
	})
}

// mobileLogin runs the system-browser part of an app login and returns the
// one-time handoff code from the redirect to the app.
func mobileLogin(t *testing.T, e *env, verifier string) string {
	t.Helper()
	b := e.browser()
	start := e.public + "/app/bff/login?returnTo=" + url.QueryEscape(appURI) +
		"&code_challenge=" + oauth2.S256ChallengeFromVerifier(verifier) + "&code_challenge_method=S256"
	cb, authz, err := b.Login(context.Background(), start, e.admin(), password)
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	if got := authz.Query().Get("redirect_uri"); got != e.public+"/app/bff/callback" {
		t.Errorf("redirect_uri %q: the provider must come back to the BFF, not to the app", got)
	}
	if authz.Query().Get("code_challenge") == oauth2.S256ChallengeFromVerifier(verifier) {
		t.Error("the app's code_challenge was sent to the provider; the BFF must use its own")
	}
	resp := b.get(cb, nil)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("callback: %d %s", resp.StatusCode, readBody(resp))
	}
	loc := resp.Header.Get("Location")
	if !strings.HasPrefix(loc, appURI+"?code=") {
		t.Fatalf("callback redirects to %q, want %s?code=...", loc, appURI)
	}
	for _, c := range resp.Cookies() {
		if c.Name == "bff-app" && c.MaxAge >= 0 {
			t.Errorf("a mobile login set a session cookie: %v", c)
		}
	}
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	if len(u.Query()) != 1 {
		t.Errorf("the app redirect carries more than the code: %q", u.RawQuery)
	}
	return u.Query().Get("code")
}

// redeem is the app's POST M/bff/session.
func redeem(t *testing.T, app *browser, code, verifier string) *http.Response {
	t.Helper()
	body := mustJSON(t, map[string]string{"code": code, "code_verifier": verifier})
	return app.do(http.MethodPost, "/app/bff/session", http.Header{"Content-Type": {"application/json"}}, body)
}

func bearer(handle string) http.Header { return http.Header{"Authorization": {"Bearer " + handle}} }

func TestMobileHandoffAndHandle(t *testing.T) {
	e := newEnv(t, withMobileApp())
	verifier := oauth2.GenerateVerifier()
	code := mobileLogin(t, e, verifier)

	app := e.browser() // the app: no cookies of the system browser
	resp := redeem(t, app, code, verifier)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("redeem: %d %s", resp.StatusCode, readBody(resp))
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("redeem Cache-Control %q, want no-store", cc)
	}
	if len(resp.Cookies()) != 0 {
		t.Errorf("redeem set cookies: %v", resp.Header.Values("Set-Cookie"))
	}
	m := decodeJSON(t, resp)
	handle, _ := m["session"].(string)
	if handle == "" || len(handle) > 300 {
		t.Fatalf("session handle %q", handle)
	}
	if exp, _ := m["expires_in"].(float64); exp <= 0 {
		t.Errorf("expires_in %v", m["expires_in"])
	}
	s, err := e.gw.Sessions.Load(context.Background(), "mobile:app", handle)
	if err != nil {
		t.Fatalf("the handle opens no mobile session: %v", err)
	}
	for _, tok := range []string{s.AccessToken, s.RefreshToken, s.IDToken} {
		if tok != "" && strings.Contains(mustJSON(t, m), tok[:20]) {
			t.Error("a provider token leaks into the redeem answer")
		}
	}

	// Routes take the handle as a bearer token, without CSRF header.
	resp = app.do(http.MethodGet, "/app/api/orders/7", bearer(handle), "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("route with handle: %d %s", resp.StatusCode, readBody(resp))
	}
	up := e.orders.last(t)
	if got := up.Header.Get("Authorization"); got != "Bearer "+s.AccessToken {
		t.Errorf("upstream Authorization %q, want the access token (not the handle)", got)
	}
	if strings.Contains(up.Header.Get("Authorization"), handle) {
		t.Error("the handle reached the upstream")
	}
	resp = app.do(http.MethodGet, "/app/bff/user", bearer(handle), "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/bff/user with handle: %d %s", resp.StatusCode, readBody(resp))
	}
	if u := decodeJSON(t, resp); u["sub"] != s.Subject {
		t.Errorf("/bff/user sub %v, want %s", u["sub"], s.Subject)
	}
	errorCode(t, app.get("/app/api/orders/7", nil), http.StatusUnauthorized, "unauthenticated")
	errorCode(t, app.get("/app/api/orders/7", bearer(handle+"x")), http.StatusUnauthorized, "unauthenticated")

	// The code was single-use.
	errorCode(t, redeem(t, app, code, verifier), http.StatusBadRequest, "bad_request")

	// Logout with the handle ends the session everywhere.
	resp = app.do(http.MethodPost, "/app/bff/logout", bearer(handle), "")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("logout: %d %s", resp.StatusCode, readBody(resp))
	}
	if _, err := e.gw.Sessions.Load(context.Background(), "mobile:app", handle); err == nil {
		t.Error("the session survived logout")
	}
	errorCode(t, app.do(http.MethodGet, "/app/api/orders/7", bearer(handle), ""), http.StatusUnauthorized, "unauthenticated")
}

func TestMobileHandoffCodeChecks(t *testing.T) {
	e := newEnv(t, withMobileApp())
	app := e.browser()

	t.Run("wrong verifier spends the code", func(t *testing.T) {
		verifier := oauth2.GenerateVerifier()
		code := mobileLogin(t, e, verifier)
		errorCode(t, redeem(t, app, code, oauth2.GenerateVerifier()), http.StatusBadRequest, "bad_request")
		errorCode(t, redeem(t, app, code, verifier), http.StatusBadRequest, "bad_request")
	})

	t.Run("expired code", func(t *testing.T) {
		verifier := oauth2.GenerateVerifier()
		code := mobileLogin(t, e, verifier)
		sum := sha256.Sum256([]byte(code))
		key := e.prefix + "handoff:" + hex.EncodeToString(sum[:])
		ttl, err := e.rdb.PTTL(context.Background(), key).Result()
		if err != nil || ttl <= 0 || ttl > 60*time.Second {
			t.Fatalf("handoff code TTL %v (%v), want within 60s (SPEC §3)", ttl, err)
		}
		// What the store does when the 60 s are up.
		if err := e.rdb.PExpire(context.Background(), key, time.Millisecond).Err(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
		errorCode(t, redeem(t, app, code, verifier), http.StatusBadRequest, "bad_request")
	})

	t.Run("unknown code", func(t *testing.T) {
		errorCode(t, redeem(t, app, "no-such-code", oauth2.GenerateVerifier()), http.StatusBadRequest, "bad_request")
	})

	t.Run("malformed body", func(t *testing.T) {
		for _, body := range []string{"", "{}", `{"code":"x"}`, "code=x&code_verifier=y"} {
			resp := app.do(http.MethodPost, "/app/bff/session", http.Header{"Content-Type": {"application/json"}}, body)
			errorCode(t, resp, http.StatusBadRequest, "bad_request")
		}
	})

	t.Run("login parameters", func(t *testing.T) {
		ch := oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())
		for name, q := range map[string]string{
			"no returnTo":         "code_challenge=" + ch,
			"unregistered app":    "returnTo=" + url.QueryEscape("com.evil.app:/cb") + "&code_challenge=" + ch,
			"prefix of a URI":     "returnTo=" + url.QueryEscape("com.example.app:/oauth") + "&code_challenge=" + ch,
			"no challenge":        "returnTo=" + url.QueryEscape(appURI),
			"short challenge":     "returnTo=" + url.QueryEscape(appURI) + "&code_challenge=abc",
			"plain method":        "returnTo=" + url.QueryEscape(appURI) + "&code_challenge=" + ch + "&code_challenge_method=plain",
			"spa-style path only": "returnTo=/app/&code_challenge=" + ch,
		} {
			t.Run(name, func(t *testing.T) {
				errorCode(t, app.get("/app/bff/login?"+q, nil), http.StatusBadRequest, "bad_request")
			})
		}
	})
}

func TestMobileAndSPACredentialsDoNotCross(t *testing.T) {
	e := newEnv(t, withMobileApp())
	verifier := oauth2.GenerateVerifier()
	app := e.browser()
	resp := redeem(t, app, mobileLogin(t, e, verifier), verifier)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("redeem: %d %s", resp.StatusCode, readBody(resp))
	}
	handle := decodeJSON(t, resp)["session"].(string)

	web := e.browser()
	web.login("/web", e.admin())
	cookie := web.cookie("bff-web").Value

	before := e.orders.count()
	// The handle is no credential for a spa: not as a bearer token...
	h := bearer(handle)
	h.Set("X-Csrf", "1")
	errorCode(t, app.do(http.MethodGet, "/web/api/orders/1", h, ""), http.StatusUnauthorized, "unauthenticated")
	// ...nor planted as its cookie.
	errorCode(t, app.do(http.MethodGet, "/web/api/orders/1", http.Header{"X-Csrf": {"1"}, "Cookie": {"bff-web=" + handle}}, ""),
		http.StatusUnauthorized, "unauthenticated")
	// A spa cookie is no credential for the app: the browser's jar sends it
	// to /app, and it does not count...
	errorCode(t, web.api(http.MethodGet, "/app/api/orders/1"), http.StatusUnauthorized, "unauthenticated")
	// ...nor does its value as a bearer handle.
	errorCode(t, app.do(http.MethodGet, "/app/api/orders/1", bearer(cookie), ""), http.StatusUnauthorized, "unauthenticated")
	if e.orders.count() != before {
		t.Error("a request with the other kind's credential reached the upstream")
	}
	if _, err := e.gw.Sessions.Load(context.Background(), "spa:web", handle); !errors.Is(err, sessions.ErrInvalidRef) {
		t.Errorf("a mobile handle loaded as a spa session: %v, want ErrInvalidRef", err)
	}

	// Both still work with their own credential.
	if resp := app.do(http.MethodGet, "/app/api/orders/1", bearer(handle), ""); resp.StatusCode != http.StatusOK {
		t.Errorf("handle on its own frontend: %d", resp.StatusCode)
	}
	if resp := web.api(http.MethodGet, "/web/api/orders/1"); resp.StatusCode != http.StatusOK {
		t.Errorf("cookie on its own frontend: %d", resp.StatusCode)
	}
}
