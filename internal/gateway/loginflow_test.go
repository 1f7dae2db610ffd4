package gateway_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

// A login in a browser that already has a session of the frontend ends the
// old session (ASVS 5 V7.2.4, issue 8 item 6): a fixed or copied old cookie
// stops working and its record leaves Redis.
func TestLoginInSameBrowserEndsPreviousSession(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login("/web", e.admin())
	oldRef := b.cookie("bff-web").Value
	oldID := e.session("web", oldRef).ID()
	// The admin frontend's session in the same browser is another frontend's: it stays.
	b.login("/admin", e.admin())
	adminRef := b.cookie("bff-admin").Value

	b.login("/web", plainUser)
	newRef := b.cookie("bff-web").Value
	if newRef == oldRef {
		t.Fatal("the second login kept the old cookie")
	}
	if n := e.rdb.Exists(context.Background(), e.prefix+"s:{"+oldID+"}").Val(); n != 0 {
		t.Error("the previous session's record is still in Redis")
	}
	thief := e.browser()
	thief.Jar.SetCookies(mustURL(e.public+"/"), []*http.Cookie{{Name: "bff-web", Value: oldRef}})
	errorCode(t, thief.api(http.MethodGet, "/web/api/orders/1"), http.StatusUnauthorized, "unauthenticated")
	if resp := b.api(http.MethodGet, "/web/api/orders/1"); resp.StatusCode != http.StatusOK {
		t.Errorf("the new session: %d %s", resp.StatusCode, readBody(resp))
	}
	other := e.browser()
	other.Jar.SetCookies(mustURL(e.public+"/"), []*http.Cookie{{Name: "bff-admin", Value: adminRef}})
	if resp := other.api(http.MethodGet, "/admin/api/orders/1"); resp.StatusCode != http.StatusOK {
		t.Errorf("the admin frontend's session was ended too: %d", resp.StatusCode)
	}
}

// An anonymous flood of error callbacks costs the store nothing (issue 8
// item 7), and failed callbacks of any kind leave only single-use markers.
func TestErrorCallbackWritesNothingToStore(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	before := len(e.keys())
	for range 200 {
		state := b.loginState()
		resp := b.get("/web/bff/callback?error=access_denied&state="+url.QueryEscape(state), nil)
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("error callback: %d %s", resp.StatusCode, readBody(resp))
		}
		resp.Body.Close()
	}
	if after := len(e.keys()); after != before {
		t.Errorf("200 error callbacks changed the Redis key count from %d to %d: %v", before, after, e.keys())
	}

	for range 5 {
		state := b.loginState()
		b.get("/web/bff/callback?code=forged&state="+url.QueryEscape(state), nil).Body.Close()
	}
	for _, k := range e.keys() {
		if !strings.HasPrefix(k, e.prefix+"login-spent:") {
			t.Errorf("a failed callback stored %q; only single-use login markers may remain", k)
		}
	}
}

// Login failures go back to the frontend (SPEC §3 callback, issue 9 item
// 3): to the pending login's returnTo with error=<code> when the browser's
// pending login is known, else a 400 that a person can read.
func TestLoginFailureRedirectsBackWithError(t *testing.T) {
	e := newEnv(t, withMobileApp())

	start := func(b *browser, returnTo string) string {
		t.Helper()
		resp := b.get("/web/bff/login?returnTo="+url.QueryEscape(returnTo), nil)
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("login: %d %s", resp.StatusCode, readBody(resp))
		}
		return mustURL(resp.Header.Get("Location")).Query().Get("state")
	}
	cases := []struct {
		name, query, wantError string
	}{
		{"user cancelled at the provider", "error=access_denied&error_description=the+user+said+no", "access_denied"},
		{"provider server error", "error=temporarily_unavailable", "temporarily_unavailable"},
		{"not an OAuth code is not echoed", "error=%3Cscript%3Ealert(1)%3C%2Fscript%3E", "login_failed"},
		{"forged code", "code=forged", "login_failed"},
		{"neither code nor error", "", "login_failed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := e.browser()
			state := start(b, "/web/orders?tab=open")
			resp := b.get("/web/bff/callback?state="+url.QueryEscape(state)+"&"+c.query, nil)
			wantLoginError(t, resp, "/web/orders", c.wantError)
			if got := mustURL(resp.Header.Get("Location")).Query().Get("tab"); got != "open" {
				t.Errorf("returnTo's own query was lost: tab=%q", got)
			}
			if strings.Contains(resp.Header.Get("Location"), "script") || strings.Contains(resp.Header.Get("Location"), "said") {
				t.Errorf("the provider's text reached the redirect: %s", resp.Header.Get("Location"))
			}
		})
	}

	t.Run("mobile: back to the app URI", func(t *testing.T) {
		b := e.browser()
		resp := b.get("/app/bff/login?returnTo="+url.QueryEscape(appURI)+"&state=app-state-42&code_challenge="+oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier()), nil)
		state := mustURL(resp.Header.Get("Location")).Query().Get("state")
		resp = b.get("/app/bff/callback?error=access_denied&state="+url.QueryEscape(state), nil)
		if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), appURI+"?") {
			t.Fatalf("status %d to %q, want 302 to the app", resp.StatusCode, resp.Header.Get("Location"))
		}
		q := mustURL(resp.Header.Get("Location")).Query()
		if q.Get("error") != "access_denied" || q.Get("state") != "app-state-42" {
			t.Errorf("the app got %v, want error=access_denied and its own state back", q)
		}
	})

	// Without a pending login of this browser nobody knows where to go back.
	unknown := "/web/bff/callback?code=x&state=unknown-state"
	t.Run("unknown login, browser: HTML page", func(t *testing.T) {
		resp := e.browser().get(unknown, http.Header{"Accept": {"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}})
		body := readBody(resp)
		if resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
			t.Fatalf("status %d, Content-Type %q, want a 400 HTML page", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if !strings.Contains(body, "no login is pending in this browser") || !strings.Contains(body, `href="/web/bff/login"`) {
			t.Errorf("the page does not say what happened or how to start again: %s", body)
		}
		for k, want := range map[string]string{
			"X-Content-Type-Options":  "nosniff",
			"Cache-Control":           "no-store",
			"Content-Security-Policy": "frame-ancestors 'none'",
		} {
			if got := resp.Header.Get(k); !strings.Contains(got, want) {
				t.Errorf("%s = %q, want %q", k, got, want)
			}
		}
	})
	t.Run("unknown login, API client: JSON", func(t *testing.T) {
		errorCode(t, e.browser().get(unknown, http.Header{"Accept": {"application/json"}}), http.StatusBadRequest, "bad_request")
		errorCode(t, e.browser().get(unknown, nil), http.StatusBadRequest, "bad_request")
	})
	t.Run("provider markup in the message is escaped", func(t *testing.T) {
		resp := e.browser().get("/web/bff/callback?state=%3Cscript%3E", http.Header{"Accept": {"text/html"}})
		if body := readBody(resp); strings.Contains(body, "<script>") {
			t.Errorf("unescaped markup in the page: %s", body)
		}
	})
}

// Silent login by top-level navigation (issue 12 item 4): prompt=none goes
// to the provider, and its "the user must interact" answers come back to R
// as error=login_required, never an error page.
func TestSilentLoginPromptNone(t *testing.T) {
	e := newEnv(t)

	t.Run("real provider: no session there", func(t *testing.T) {
		// The zitadel example OP answers every prompt=none with login_required.
		b := e.browser()
		cb, authz, err := b.Login(context.Background(), e.public+"/web/bff/login?prompt=none&returnTo=/web/orders", e.admin(), password)
		if err != nil {
			t.Fatal(err)
		}
		if got := authz.Query().Get("prompt"); got != "none" {
			t.Errorf("authorize prompt = %q, want none", got)
		}
		if got := mustURL(cb).Query().Get("error"); got != "login_required" {
			t.Fatalf("the provider answered %s, want error=login_required", cb)
		}
		// A browser's navigation, which would get an HTML page for an
		// unknown login: this one is known, so back to R, never a page.
		keys := len(e.keys())
		wantLoginError(t, b.get(cb, http.Header{"Accept": {"text/html,application/xhtml+xml"}}), "/web/orders", "login_required")
		if b.cookie("bff-web") != nil || len(e.keys()) != keys {
			t.Error("a silent login the provider refused left a session behind")
		}
	})

	// What a provider with a session but a needed consent or interaction
	// answers; the example OP never does, so these callbacks are written here.
	for _, answer := range []string{"interaction_required", "consent_required", "login_required"} {
		t.Run("provider answers "+answer, func(t *testing.T) {
			b := e.browser()
			resp := b.get("/web/bff/login?prompt=none&returnTo=/web/orders", nil)
			state := mustURL(resp.Header.Get("Location")).Query().Get("state")
			wantLoginError(t, b.get("/web/bff/callback?error="+answer+"&state="+url.QueryEscape(state), nil), "/web/orders", "login_required")
		})
	}

	t.Run("without prompt=none the provider's code is kept", func(t *testing.T) {
		b := e.browser()
		state := b.loginState()
		wantLoginError(t, b.get("/web/bff/callback?error=interaction_required&state="+url.QueryEscape(state), nil), "/web/", "interaction_required")
	})

	for _, p := range []string{"login", "consent", "select_account", "login consent"} {
		t.Run("prompt="+p+" is passed", func(t *testing.T) {
			resp := e.browser().get("/web/bff/login?prompt="+url.QueryEscape(p), nil)
			if got := mustURL(resp.Header.Get("Location")).Query().Get("prompt"); resp.StatusCode != http.StatusFound || got != p {
				t.Errorf("status %d, authorize prompt = %q, want %q", resp.StatusCode, got, p)
			}
		})
	}
	for _, p := range []string{"none+login", "always", "none%0d%0aX:1"} {
		t.Run("prompt="+p+" is refused", func(t *testing.T) {
			errorCode(t, e.browser().get("/web/bff/login?prompt="+p, nil), http.StatusBadRequest, "bad_request")
		})
	}
}

// A long returnTo is a clear 400, not a 500 from a cookie too long to seal
// (issue 8 item 14).
func TestReturnToTooLongIsRefused(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		name, returnTo string
		status         int
		msg            string
	}{
		{"2000 characters", "/web/" + strings.Repeat("a", 1995), http.StatusFound, ""},
		{"2001 characters", "/web/" + strings.Repeat("a", 1996), http.StatusBadRequest, "at most 2000"},
		{"100 KB", "/web/" + strings.Repeat("a", 100_000), http.StatusBadRequest, "at most 2000"},
		{"markup does not blow up", "/web/?q=" + strings.Repeat("<>&", 600), http.StatusFound, ""},
		{"quotes that JSON doubles", "/web/?q=" + strings.Repeat(`"`, 1990), http.StatusBadRequest, "too long"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := e.browser().get("/web/bff/login?returnTo="+url.QueryEscape(c.returnTo), nil)
			if c.status == http.StatusFound {
				if resp.StatusCode != http.StatusFound {
					t.Fatalf("status %d %s, want 302", resp.StatusCode, readBody(resp))
				}
				return
			}
			m := decodeJSON(t, resp)
			if resp.StatusCode != c.status || m["error"] != "bad_request" || !strings.Contains(m["message"].(string), c.msg) {
				t.Fatalf("status %d %v, want 400 saying %q", resp.StatusCode, m, c.msg)
			}
		})
	}
}

// Duende BFF users (issue 9): returnUrl is returnTo's alias, with the same
// checks, and /bff/user leaves out the protocol-only claims.
func TestDuendeCompatibility(t *testing.T) {
	e := newEnv(t)

	t.Run("returnUrl alias", func(t *testing.T) {
		b := e.browser()
		resp := b.get(b.callback(t, "/web/bff/login?returnUrl="+url.QueryEscape("/web/orders/7"), e.admin()), nil)
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/web/orders/7" {
			t.Fatalf("callback: %d to %q, want /web/orders/7", resp.StatusCode, resp.Header.Get("Location"))
		}
		errorCode(t, e.browser().get("/web/bff/login?returnUrl="+url.QueryEscape("https://evil.example/"), nil), http.StatusBadRequest, "bad_request")
		errorCode(t, e.browser().get("/web/bff/login?returnUrl="+url.QueryEscape("//evil.example/"), nil), http.StatusBadRequest, "bad_request")
	})

	t.Run("user without nonce, at_hash, c_hash", func(t *testing.T) {
		b := e.browser()
		b.login("/web", e.admin())
		if raw := e.session("web", b.cookie("bff-web").Value).Claims; !strings.Contains(string(raw), `"nonce"`) {
			t.Fatalf("the ID token has no nonce, so this test proves nothing: %s", raw)
		}
		u := decodeJSON(t, b.get("/web/bff/user", http.Header{"X-Csrf": {"1"}}))
		for _, k := range []string{"nonce", "at_hash", "c_hash"} {
			if _, ok := u[k]; ok {
				t.Errorf("/bff/user has %s", k)
			}
		}
		if u["sub"] == nil || u["bff"] == nil {
			t.Errorf("/bff/user lost its claims: %v", u)
		}
	})
}
