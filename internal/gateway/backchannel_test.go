package gateway_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/bffgate/bffgate/config"
	"github.com/bffgate/bffgate/sessions"
)

const backchannelEvent = "http://schemas.openid.net/event/backchannel-logout"

// logoutClaims returns valid logout-token claims for the web frontend's client.
func (e *env) logoutClaims(sub string) map[string]any {
	return map[string]any{
		"iss":    e.issuer,
		"aud":    "web-bff",
		"iat":    time.Now().Unix(),
		"exp":    time.Now().Add(2 * time.Minute).Unix(),
		"jti":    randomKey(12),
		"sub":    sub,
		"events": map[string]any{backchannelEvent: map[string]any{}},
	}
}

func (e *env) postLogoutToken(mount, token string) *http.Response {
	e.t.Helper()
	resp, err := http.PostForm(e.public+mount+"/bff/backchannel-logout", url.Values{"logout_token": {token}})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func (e *env) sign(claims map[string]any, typ string) string {
	e.t.Helper()
	tok, err := e.idp.SignJWT(claims, typ)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// subject returns the sub claim of the browser's web session.
func (b *browser) subject() string {
	b.e.t.Helper()
	u := decodeJSON(b.e.t, b.get("/web/bff/user", http.Header{"X-Csrf": {"1"}}))
	sub, _ := u["sub"].(string)
	if sub == "" {
		b.e.t.Fatal("no sub")
	}
	return sub
}

func TestBackchannelLogoutEndsEverySessionOfTheSubject(t *testing.T) {
	e := newEnv(t)
	laptop, phone, other, adminConsole := e.browser(), e.browser(), e.browser(), e.browser()
	laptop.login("/web", e.admin())
	phone.login("/web", e.admin())
	other.login("/web", plainUser)
	adminConsole.login("/admin", e.admin())
	second := e.instance()
	sub := laptop.subject()

	resp := e.postLogoutToken("/web", e.sign(e.logoutClaims(sub), "logout+jwt"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("back-channel logout: %d %s", resp.StatusCode, readBody(resp))
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q", cc)
	}
	for _, b := range []*browser{laptop, phone} {
		errorCode(t, b.api(http.MethodGet, "/web/api/orders/1"), http.StatusUnauthorized, "unauthenticated")
		errorCode(t, b.api(http.MethodGet, second+"/web/api/orders/1"), http.StatusUnauthorized, "unauthenticated")
	}
	if r := other.api(http.MethodGet, "/web/api/orders/1"); r.StatusCode != http.StatusOK {
		t.Errorf("another user's session was ended: %d", r.StatusCode)
	}
	if r := adminConsole.api(http.MethodGet, "/admin/api/orders/1"); r.StatusCode != http.StatusOK {
		t.Errorf("the same user's session at another frontend was ended: %d", r.StatusCode)
	}
}

func TestBackchannelLogoutRejectsBadTokens(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login("/web", e.admin())
	sub := b.subject()

	strangerKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	foreignSigned := func(claims map[string]any) string {
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: strangerKey}, nil)
		if err != nil {
			t.Fatal(err)
		}
		payload, _ := json.Marshal(claims)
		jws, err := signer.Sign(payload)
		if err != nil {
			t.Fatal(err)
		}
		s, _ := jws.CompactSerialize()
		return s
	}
	replayed := e.logoutClaims("someone-else")
	if resp := e.postLogoutToken("/web", e.sign(replayed, "")); resp.StatusCode != http.StatusOK {
		t.Fatalf("first use of a token: %d %s", resp.StatusCode, readBody(resp))
	}

	cases := []struct {
		name  string
		token func() string
	}{
		{"nonce present", func() string { c := e.logoutClaims(sub); c["nonce"] = "n"; return e.sign(c, "") }},
		{"wrong aud", func() string { c := e.logoutClaims(sub); c["aud"] = "other-client"; return e.sign(c, "") }},
		{"wrong iss", func() string { c := e.logoutClaims(sub); c["iss"] = "https://evil.example"; return e.sign(c, "") }},
		{"missing events", func() string { c := e.logoutClaims(sub); delete(c, "events"); return e.sign(c, "") }},
		{"wrong event", func() string {
			c := e.logoutClaims(sub)
			c["events"] = map[string]any{"http://example.com/other": map[string]any{}}
			return e.sign(c, "")
		}},
		{"bad signature", func() string { return foreignSigned(e.logoutClaims(sub)) }},
		{"tampered payload", func() string {
			tok := e.sign(e.logoutClaims("nobody"), "")
			parts := strings.Split(tok, ".")
			other := strings.Split(e.sign(e.logoutClaims(sub), ""), ".")
			return parts[0] + "." + other[1] + "." + parts[2]
		}},
		{"replayed jti", func() string { return e.sign(replayed, "") }},
		{"neither sid nor sub", func() string { c := e.logoutClaims(sub); delete(c, "sub"); return e.sign(c, "") }},
		{"no jti", func() string { c := e.logoutClaims(sub); delete(c, "jti"); return e.sign(c, "") }},
		{"no iat", func() string { c := e.logoutClaims(sub); delete(c, "iat"); return e.sign(c, "") }},
		{"old iat", func() string {
			c := e.logoutClaims(sub)
			c["iat"] = time.Now().Add(-time.Hour).Unix()
			return e.sign(c, "")
		}},
		{"expired", func() string {
			c := e.logoutClaims(sub)
			c["exp"] = time.Now().Add(-10 * time.Minute).Unix()
			return e.sign(c, "")
		}},
		{"wrong typ", func() string { return e.sign(e.logoutClaims(sub), "JWT") }},
		{"not a JWT", func() string { return "garbage" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			errorCode(t, e.postLogoutToken("/web", c.token()), http.StatusBadRequest, "bad_request")
		})
	}
	// None of them ended the session.
	if r := b.api(http.MethodGet, "/web/api/orders/1"); r.StatusCode != http.StatusOK {
		t.Fatalf("a rejected logout token ended the session: %d", r.StatusCode)
	}
	// No logout_token at all.
	resp, err := http.Post(e.public+"/web/bff/backchannel-logout", "application/x-www-form-urlencoded", strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	errorCode(t, resp, http.StatusBadRequest, "bad_request")
}

// Back-Channel Logout is anonymous: a body is refused past 16 KiB, the
// declared length alone suffices (nothing more is read), and a chunked body
// is cut at the cap (issue 8 item 3).
func TestBackchannelLogoutBodyOver16KiBIsRefused(t *testing.T) {
	e := newEnv(t)
	addr := strings.TrimPrefix(e.public, "http://")

	t.Run("declared length over the cap, body never sent", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// 10 MB announced, 1 KiB sent: a server that reads the body waits
		// for the rest, and the deadline below turns that into a failure.
		_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(conn, "POST /web/bff/backchannel-logout HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 10000000\r\n\r\nlogout_token=%s", addr, strings.Repeat("a", 1024))
		resp, err := http.ReadResponse(bufioReader(conn), nil)
		if err != nil {
			t.Fatalf("no answer before the body was sent: %v", err)
		}
		defer resp.Body.Close()
		errorCode(t, resp, http.StatusRequestEntityTooLarge, "request_too_large")
	})

	t.Run("chunked body over the cap", func(t *testing.T) {
		body := "logout_token=" + strings.Repeat("a", 20<<10)
		req, _ := http.NewRequest(http.MethodPost, e.public+"/web/bff/backchannel-logout", io.NopCloser(strings.NewReader(body)))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.ContentLength = -1 // chunked
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		errorCode(t, resp, http.StatusRequestEntityTooLarge, "request_too_large")
	})

	t.Run("a real token under the cap still works", func(t *testing.T) {
		resp := e.postLogoutToken("/web", e.sign(e.logoutClaims("nobody"), "logout+jwt"))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d %s", resp.StatusCode, readBody(resp))
		}
	})
}

// Forged logout tokens must not turn the gateway into an amplifier against
// the provider: 50 of them (unknown kid, or the provider's kid with a bad
// signature) cost the provider at most one JWKS fetch (issue 8 item 3).
func TestBackchannelLogoutForgedTokensCauseAtMostOneJWKSFetch(t *testing.T) {
	var fetches atomic.Int64
	e := newEnv(t, withIDPWrap(func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/keys" {
				fetches.Add(1)
			}
			h.ServeHTTP(w, r)
		})
	}))
	// Warm the provider metadata (discovery only, no keys) so that every
	// fetch counted below is one a logout token caused.
	if resp := e.browser().get("/readyz", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz: %d %s", resp.StatusCode, readBody(resp))
	}
	base := fetches.Load()

	strangerKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	realKID := func() string {
		tok := e.sign(e.logoutClaims("x"), "logout+jwt")
		jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.RS256})
		if err != nil {
			t.Fatal(err)
		}
		return jws.Signatures[0].Header.KeyID
	}()
	forge := func(kid string) string {
		opts := (&jose.SignerOptions{}).WithType("logout+jwt").WithHeader(jose.HeaderKey("kid"), kid)
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: strangerKey}, opts)
		if err != nil {
			t.Fatal(err)
		}
		payload, _ := json.Marshal(e.logoutClaims("victim"))
		jws, err := signer.Sign(payload)
		if err != nil {
			t.Fatal(err)
		}
		s, _ := jws.CompactSerialize()
		return s
	}
	for i := range 50 {
		kid := realKID
		if i%2 == 0 {
			kid = "random-" + randomKey(6)
		}
		resp := e.postLogoutToken("/web", forge(kid))
		errorCode(t, resp, http.StatusBadRequest, "bad_request")
	}
	if n := fetches.Load() - base; n > 1 {
		t.Errorf("50 forged logout tokens caused %d JWKS fetches at the provider, want at most 1", n)
	}
	// The cached keys still verify a genuine token, without another fetch.
	before := fetches.Load()
	if resp := e.postLogoutToken("/web", e.sign(e.logoutClaims("nobody"), "logout+jwt")); resp.StatusCode != http.StatusOK {
		t.Fatalf("a genuine token after the forgeries: %d %s", resp.StatusCode, readBody(resp))
	}
	if n := fetches.Load() - before; n != 0 {
		t.Errorf("a genuine token with a known kid caused %d JWKS fetches, want 0", n)
	}
}

// The answer to a bad logout token says only that it is bad: no
// verification detail for a forger, no provider address or Go dial error
// when the provider is down (issue 8 item 3).
func TestBackchannelLogoutErrorsHideTheCause(t *testing.T) {
	e := newEnv(t, withConfig(func(c *config.Config) {
		c.Frontends[1].OIDC.Issuer = "http://127.0.0.1:1/realms/hidden-name"
	}))
	leaks := []string{"127.0.0.1:1", "hidden-name", "dial", "refused", "kid", "signature", "iss", "aud"}
	check := func(t *testing.T, resp *http.Response, status int, code string) {
		t.Helper()
		body := readBody(resp)
		for _, l := range leaks {
			if strings.Contains(body, l) {
				t.Errorf("the answer discloses %q: %s", l, body)
			}
		}
		resp.Body = io.NopCloser(strings.NewReader(body))
		errorCode(t, resp, status, code)
	}
	t.Run("provider down", func(t *testing.T) {
		// A valid-looking token the gateway cannot check: the provider may
		// send it again later, so the answer is "retry", not "bad token".
		check(t, e.postLogoutToken("/admin", e.sign(e.logoutClaims("x"), "logout+jwt")), http.StatusServiceUnavailable, "provider_unavailable")
	})
	t.Run("wrong audience", func(t *testing.T) {
		c := e.logoutClaims("x")
		c["aud"] = "someone-else"
		check(t, e.postLogoutToken("/web", e.sign(c, "logout+jwt")), http.StatusBadRequest, "bad_request")
	})
	t.Run("garbage", func(t *testing.T) {
		check(t, e.postLogoutToken("/web", "eyJhbGciOiJub25lIn0.e30."), http.StatusBadRequest, "bad_request")
	})
}

// A logout token with both sid and sub, from a provider whose ID tokens
// have no sid (the demo provider): the subject's sessions without sid end,
// as do the sessions with that sid; the subject's other logins that carry a
// different sid stay (issue 8 item 12).
func TestBackchannelLogoutWithSIDAndSubEndsSubjectSessionsWithoutSID(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login("/web", e.admin())
	sub := b.subject()
	ctx := context.Background()
	mk := func(sub, sid string) *sessions.Session {
		s := &sessions.Session{Frontend: "web", Subject: sub, ProviderSID: sid, Claims: []byte(`{}`),
			AbsoluteExpiry: time.Now().Add(time.Hour), IdleTimeout: time.Hour}
		if _, err := e.gw.Sessions.Create(ctx, "spa:web", s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	bySID := mk("someone", "provider-sid-1")
	otherLogin := mk(sub, "provider-sid-2")

	c := e.logoutClaims(sub)
	c["sid"] = "provider-sid-1"
	if resp := e.postLogoutToken("/web", e.sign(c, "logout+jwt")); resp.StatusCode != http.StatusOK {
		t.Fatalf("back-channel logout: %d %s", resp.StatusCode, readBody(resp))
	}
	errorCode(t, b.api(http.MethodGet, "/web/api/orders/1"), http.StatusUnauthorized, "unauthenticated")
	for _, tc := range []struct {
		name string
		s    *sessions.Session
		live int64
	}{{"session with the token's sid", bySID, 0}, {"the subject's login with another sid", otherLogin, 1}} {
		if n := e.rdb.Exists(ctx, e.prefix+"s:{"+tc.s.ID()+"}").Val(); n != tc.live {
			t.Errorf("%s: %d records in Redis, want %d", tc.name, n, tc.live)
		}
	}
}
