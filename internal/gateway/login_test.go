package gateway_test

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/bffgate/bffgate/config"
)

func TestLoginSetsOpaqueCookieAndUserEndpoint(t *testing.T) {
	e := newEnv(t)
	b := e.browser()

	cb, authz, err := b.Login(context.Background(), e.public+"/web/bff/login?returnTo=/web/orders", e.admin(), password)
	if err != nil {
		t.Fatal(err)
	}
	q := authz.Query()
	for k, want := range map[string]string{
		"response_type":         "code",
		"client_id":             "web-bff",
		"code_challenge_method": "S256",
		"redirect_uri":          e.public + "/web/bff/callback",
	} {
		if q.Get(k) != want {
			t.Errorf("authorize %s = %q, want %q", k, q.Get(k), want)
		}
	}
	for _, k := range []string{"state", "nonce", "code_challenge"} {
		if len(q.Get(k)) < 32 {
			t.Errorf("authorize %s = %q, want a random value of >= 32 chars", k, q.Get(k))
		}
	}
	if !strings.Contains(q.Get("scope"), "openid") {
		t.Errorf("scope %q lacks openid", q.Get("scope"))
	}

	resp := b.get(cb, nil)
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/web/orders" {
		t.Fatalf("callback: %d to %q, want 302 to /web/orders; body %s", resp.StatusCode, resp.Header.Get("Location"), readBody(resp))
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("callback Cache-Control = %q, want no-store", cc)
	}
	var sc *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "bff-web" {
			sc = c
		}
	}
	if sc == nil {
		t.Fatalf("no bff-web cookie set; Set-Cookie: %v", resp.Header.Values("Set-Cookie"))
	}
	if !sc.HttpOnly || sc.SameSite != http.SameSiteStrictMode || sc.Path != "/" || sc.Domain != "" {
		t.Errorf("cookie attributes: HttpOnly=%v SameSite=%v Path=%q Domain=%q", sc.HttpOnly, sc.SameSite, sc.Path, sc.Domain)
	}
	if sc.Secure {
		t.Error("cookie is Secure on an http public URL: browsers would drop it")
	}
	raw := resp.Header.Values("Set-Cookie")
	for _, h := range raw {
		if strings.HasPrefix(h, "bff-web=") && len(h) >= 300 {
			t.Errorf("session Set-Cookie is %d bytes, want < 300", len(h))
		}
	}
	s := e.session("web", sc.Value)
	for _, tok := range []string{s.AccessToken, s.RefreshToken, s.IDToken} {
		if tok == "" {
			continue
		}
		if strings.Contains(sc.Value, tok) || strings.Contains(strings.Join(raw, "\n"), tok[:20]) {
			t.Error("a token leaks into the cookie")
		}
	}
	if s.AccessToken == "" || s.IDToken == "" {
		t.Fatal("the session holds no tokens")
	}

	// /bff/user needs X-CSRF.
	errorCode(t, b.get("/web/bff/user", nil), http.StatusUnauthorized, "csrf_required")
	resp = b.get("/web/bff/user", http.Header{"X-Csrf": {"1"}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/bff/user: %d %s", resp.StatusCode, readBody(resp))
	}
	if resp.Header.Get("Cache-Control") != "no-store" {
		t.Error("/bff/user is cacheable")
	}
	body := readBody(resp)
	for _, tok := range []string{s.AccessToken, s.RefreshToken, s.IDToken} {
		if tok != "" && strings.Contains(body, tok) {
			t.Fatal("/bff/user leaks a token")
		}
	}
	resp = b.get("/web/bff/user", http.Header{"X-Csrf": {"1"}})
	u := decodeJSON(t, resp)
	if u["sub"] == nil || u["sub"] == "" {
		t.Errorf("/bff/user has no sub: %v", u)
	}
	bffInfo, _ := u["bff"].(map[string]any)
	if bffInfo == nil || bffInfo["sid"] == "" || !strings.HasPrefix(bffInfo["logout_url"].(string), "/web/bff/logout?sid=") {
		t.Errorf("/bff/user bff member = %v", u["bff"])
	}
	if exp, _ := bffInfo["session_expires_in"].(float64); exp <= 0 || exp > 12*3600 {
		t.Errorf("session_expires_in = %v", bffInfo["session_expires_in"])
	}

	// Without a session.
	other := e.browser()
	errorCode(t, other.get("/web/bff/user", http.Header{"X-Csrf": {"1"}}), http.StatusUnauthorized, "unauthenticated")
}

// A callback that fails leaves no session. Without a known pending login
// (no login cookie, or a state it does not hold) the answer is a 400; with
// one, the browser goes back to its returnTo with error= (SPEC §3 callback).
func TestLoginCallbackFailures(t *testing.T) {
	e := newEnv(t)

	t.Run("state mismatch", func(t *testing.T) {
		b := e.browser()
		cb := b.callback(t, "/web/bff/login", e.admin())
		state := mustURL(cb).Query().Get("state")
		errorCode(t, b.get(withQuery(cb, "state", state+"x"), nil), http.StatusBadRequest, "bad_request")
		if b.cookie("bff-web") != nil {
			t.Error("a session cookie was set")
		}
	})

	t.Run("replay", func(t *testing.T) {
		b := e.browser()
		cb := b.callback(t, "/web/bff/login", e.admin())
		// Keep the login cookie to replay with it, as an attacker who copied the request would.
		lc := b.Jar.Cookies(mustURL(e.public + "/web/bff/callback"))
		if resp := b.get(cb, nil); resp.StatusCode != http.StatusFound {
			t.Fatalf("first callback: %d %s", resp.StatusCode, readBody(resp))
		}
		again := e.browser()
		again.Jar.SetCookies(mustURL(e.public+"/"), lc)
		wantLoginError(t, again.get(cb, nil), "/web/", "login_failed")
		if again.cookie("bff-web") != nil {
			t.Error("replayed callback set a session cookie")
		}
	})

	t.Run("no login cookie", func(t *testing.T) {
		b := e.browser()
		cb := b.callback(t, "/web/bff/login", e.admin())
		stranger := e.browser() // the victim's browser in a login CSRF
		errorCode(t, stranger.get(cb, nil), http.StatusBadRequest, "bad_request")
	})

	t.Run("wrong iss parameter", func(t *testing.T) {
		b := e.browser()
		cb := b.callback(t, "/web/bff/login", e.admin())
		wantLoginError(t, b.get(withQuery(cb, "iss", "https://evil.example"), nil), "/web/", "login_failed")
		if b.cookie("bff-web") != nil {
			t.Error("a session cookie was set")
		}
	})

	t.Run("provider error", func(t *testing.T) {
		b := e.browser()
		state := b.loginState()
		wantLoginError(t, b.get("/web/bff/callback?error=access_denied&state="+url.QueryEscape(state), nil), "/web/", "access_denied")
	})

	t.Run("bad code", func(t *testing.T) {
		b := e.browser()
		state := b.loginState()
		wantLoginError(t, b.get("/web/bff/callback?code=forged&state="+url.QueryEscape(state), nil), "/web/", "login_failed")
		if b.cookie("bff-web") != nil {
			t.Error("a session cookie was set")
		}
	})
}

// wantLoginError asserts a failed callback's redirect back to path with
// error=code added, and that no session cookie came with it.
func wantLoginError(t *testing.T, resp *http.Response, path, code string) {
	t.Helper()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("status %d, want 302 back to %s; body %s", resp.StatusCode, path, readBody(resp))
	}
	loc := mustURL(resp.Header.Get("Location"))
	if loc.Path != path || loc.Host != "" || loc.Query().Get("error") != code {
		t.Fatalf("Location = %q, want %s?error=%s", loc, path, code)
	}
	for _, c := range resp.Cookies() {
		if c.Name == "bff-web" && c.MaxAge >= 0 {
			t.Errorf("a failed callback set the session cookie")
		}
	}
}

// withQuery is the URL raw with its query parameter key set to value.
func withQuery(raw, key, value string) string {
	u := mustURL(raw)
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return u.String()
}

// loginState starts a web login and returns the state it sent to the provider.
func (b *browser) loginState() string {
	loc, _ := url.Parse(b.get("/web/bff/login", nil).Header.Get("Location"))
	return loc.Query().Get("state")
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func TestReturnToValidation(t *testing.T) {
	e := newEnv(t)
	cases := []struct {
		returnTo string
		ok       bool
	}{
		{"/web/", true},
		{"/web/orders?x=1", true},
		{"/web", true},
		{"https://evil.example", false},
		{"//evil.example", false},
		{"/\\evil.example", false},
		{"https:evil", false},
		{"/admin/", false},
		{"/webx", false},
		{"/web/../admin", false},
		{"javascript:alert(1)", false},
		{"evil.example", false},
	}
	for _, c := range cases {
		t.Run(c.returnTo, func(t *testing.T) {
			b := e.browser()
			resp := b.get("/web/bff/login?returnTo="+url.QueryEscape(c.returnTo), nil)
			if c.ok {
				if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), e.issuer) {
					t.Fatalf("status %d location %q, want 302 to the provider", resp.StatusCode, resp.Header.Get("Location"))
				}
				return
			}
			errorCode(t, resp, http.StatusBadRequest, "bad_request")
		})
	}
}

func TestLogout(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login("/web", e.admin())
	ref := b.cookie("bff-web").Value
	id := e.session("web", ref).ID()
	if n := e.rdb.Exists(context.Background(), e.prefix+"s:{"+id+"}").Val(); n != 1 {
		t.Fatalf("session key not in Redis (keys: %v)", e.keys())
	}
	u := decodeJSON(t, b.get("/web/bff/user", http.Header{"X-Csrf": {"1"}}))
	logoutURL := u["bff"].(map[string]any)["logout_url"].(string)

	// A GET without the sid (a link on another site) is refused.
	errorCode(t, b.get("/web/bff/logout", nil), http.StatusBadRequest, "bad_request")
	errorCode(t, b.get("/web/bff/logout?sid=wrong", nil), http.StatusBadRequest, "bad_request")
	// A POST without X-CSRF is refused.
	errorCode(t, b.do(http.MethodPost, "/web/bff/logout", nil, ""), http.StatusUnauthorized, "csrf_required")

	resp := b.get(logoutURL, nil)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("logout: %d %s", resp.StatusCode, readBody(resp))
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if !strings.HasPrefix(loc.String(), e.issuer) {
		t.Fatalf("logout goes to %q, want the provider's end_session_endpoint", loc)
	}
	if loc.Query().Get("id_token_hint") == "" || loc.Query().Get("client_id") != "web-bff" ||
		loc.Query().Get("post_logout_redirect_uri") != e.public+"/web/" {
		t.Errorf("end-session parameters: %v", loc.Query())
	}
	if b.cookie("bff-web") != nil {
		t.Error("the session cookie is still in the browser")
	}
	if n := e.rdb.Exists(context.Background(), e.prefix+"s:{"+id+"}").Val(); n != 0 {
		t.Error("the session's Redis key survived logout")
	}
	// The old cookie, replayed, is dead.
	replay := e.browser()
	replay.Jar.SetCookies(mustURL(e.public+"/"), []*http.Cookie{{Name: "bff-web", Value: ref}})
	errorCode(t, replay.api(http.MethodGet, "/web/api/orders/1"), http.StatusUnauthorized, "unauthenticated")
	errorCode(t, replay.get("/web/bff/user", http.Header{"X-Csrf": {"1"}}), http.StatusUnauthorized, "unauthenticated")

	// Following the provider's redirect ends at after_logout.
	if resp := b.get(loc.String(), nil); resp.StatusCode >= 400 {
		t.Errorf("provider end-session answered %d %s", resp.StatusCode, readBody(resp))
	}
}

func TestCookieOfOneFrontendIsNotAcceptedByAnother(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login("/web", e.admin())
	ref := b.cookie("bff-web").Value

	thief := e.browser()
	thief.Jar.SetCookies(mustURL(e.public+"/"), []*http.Cookie{{Name: "bff-admin", Value: ref}})
	errorCode(t, thief.api(http.MethodGet, "/admin/api/orders/1"), http.StatusUnauthorized, "unauthenticated")
	errorCode(t, thief.get("/admin/bff/user", http.Header{"X-Csrf": {"1"}}), http.StatusUnauthorized, "unauthenticated")
}

func TestTamperedCookie(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login("/web", e.admin())
	ref := b.cookie("bff-web").Value
	flip := []byte(ref)
	i := len(flip) / 2
	if flip[i] == 'A' {
		flip[i] = 'B'
	} else {
		flip[i] = 'A'
	}
	for _, v := range []string{string(flip), ref[:len(ref)-4], "garbage", ""} {
		bad := e.browser()
		bad.Jar.SetCookies(mustURL(e.public+"/"), []*http.Cookie{{Name: "bff-web", Value: v}})
		errorCode(t, bad.api(http.MethodGet, "/web/api/orders/1"), http.StatusUnauthorized, "unauthenticated")
	}
	if e.orders.count() != 0 {
		t.Error("a request with a tampered cookie reached the upstream")
	}
}

func TestRedisHoldsNoTokenText(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login("/web", e.admin())
	s := e.session("web", b.cookie("bff-web").Value)
	// Also leave a pending login behind.
	e.browser().get("/web/bff/login", nil)

	keys := e.keys()
	if len(keys) < 2 {
		t.Fatalf("expected the session and a login marker in Redis, got %v", keys)
	}
	secrets := map[string]string{"access": s.AccessToken, "refresh": s.RefreshToken, "id": s.IDToken, "client secret": webSecret}
	for _, k := range keys {
		var v string
		var err error
		switch typ := e.rdb.Type(context.Background(), k).Val(); typ {
		case "set": // the sid/sub indexes
			var members []string
			members, err = e.rdb.SMembers(context.Background(), k).Result()
			v = strings.Join(members, "\n")
		case "zset": // the expiry schedule
			var members []string
			members, err = e.rdb.ZRange(context.Background(), k, 0, -1).Result()
			v = strings.Join(members, "\n")
		default:
			v, err = e.rdb.Get(context.Background(), k).Result()
		}
		if err != nil {
			t.Fatalf("read %s: %v", k, err)
		}
		for name, sec := range secrets {
			if sec == "" {
				continue
			}
			if strings.Contains(v, sec) || strings.Contains(k, sec) {
				t.Errorf("Redis key %s holds the %s token in clear", k, name)
			}
			// Also no long fragment (e.g. a JWT's payload part).
			for _, part := range strings.Split(sec, ".") {
				if len(part) > 16 && strings.Contains(v, part) {
					t.Errorf("Redis key %s holds part of the %s token", k, name)
				}
			}
		}
	}
}

func TestHostBoundFrontend(t *testing.T) {
	e := newEnv(t, withConfig(func(c *config.Config) {
		// A host-bound "/" would shadow host-agnostic frontends on its host,
		// which check refuses (issue 8 item 11): bind those to public_url's.
		for i := range c.Frontends {
			c.Frontends[i].Host = "127.0.0.1"
		}
		c.Frontends = append(c.Frontends, config.Frontend{
			Name: "console", Mount: "/", Host: "localhost", Source: "frontends/console.yaml",
			OIDC: config.OIDC{Issuer: c.Frontends[0].OIDC.Issuer, ClientID: "admin-bff", ClientSecret: adminSecret},
		})
	}))
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(e.public, "http://"))
	b := e.browser()
	resp := b.get("http://localhost:"+port+"/bff/login", nil)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("login on the frontend's host: %d %s", resp.StatusCode, readBody(resp))
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if got, want := loc.Query().Get("redirect_uri"), "http://localhost:"+port+"/bff/callback"; got != want {
		t.Errorf("redirect_uri = %q, want %q (the frontend's own host)", got, want)
	}
	// On the public host the same path belongs to no frontend.
	errorCode(t, b.get("/bff/login", nil), http.StatusNotFound, "not_found")
}
