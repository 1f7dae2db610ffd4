package gateway_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
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
