package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// asMetadata is the part of RFC 8414 metadata a native OAuth client reads.
type asMetadata struct {
	Issuer                string   `json:"issuer"`
	AuthorizationEndpoint string   `json:"authorization_endpoint"`
	TokenEndpoint         string   `json:"token_endpoint"`
	RevocationEndpoint    string   `json:"revocation_endpoint"`
	ResponseTypes         []string `json:"response_types_supported"`
	GrantTypes            []string `json:"grant_types_supported"`
	ChallengeMethods      []string `json:"code_challenge_methods_supported"`
	TokenAuthMethods      []string `json:"token_endpoint_auth_methods_supported"`
}

// discover is the app's discovery: GET M/.well-known/oauth-authorization-server.
func discover(t *testing.T, e *env, app *browser) asMetadata {
	t.Helper()
	resp := app.get("/app/.well-known/oauth-authorization-server", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("metadata: %d %s", resp.StatusCode, readBody(resp))
	}
	var m asMetadata
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	base := e.public + "/app"
	if m.Issuer != base || m.AuthorizationEndpoint != base+"/bff/login" || m.TokenEndpoint != base+"/bff/session" ||
		m.RevocationEndpoint != base+"/bff/revoke" {
		t.Errorf("metadata endpoints %+v, want under %s", m, base)
	}
	if !slicesEqual(m.ResponseTypes, "code") || !slicesEqual(m.GrantTypes, "authorization_code") ||
		!slicesEqual(m.ChallengeMethods, "S256") || !slicesEqual(m.TokenAuthMethods, "none") {
		t.Errorf("metadata capabilities %+v", m)
	}
	return m
}

func slicesEqual(got []string, want ...string) bool {
	return strings.Join(got, " ") == strings.Join(want, " ")
}

// TestMobileAsStandardOAuthServer drives a mobile frontend exactly as
// AppAuth-iOS/Android would, with golang.org/x/oauth2 configured from the
// discovered metadata as a stock client library is: discovery, the
// authorization request (client_id, scope, state, PKCE S256, redirect_uri),
// the form-encoded token request, an API call with the access token (the
// session handle), and revocation.
func TestMobileAsStandardOAuthServer(t *testing.T) {
	e := newEnv(t, withMobileApp())
	app := e.browser() // the app's own HTTP client: no browser cookies
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, app.Client)

	meta := discover(t, e, app)
	conf := &oauth2.Config{
		ClientID:    "com.example.app", // the app's id: the BFF ignores it
		Endpoint:    oauth2.Endpoint{AuthURL: meta.AuthorizationEndpoint, TokenURL: meta.TokenEndpoint},
		RedirectURL: appURI,
		Scopes:      []string{"openid", "profile"},
	}
	verifier := oauth2.GenerateVerifier()
	state := "app-state-" + oauth2.GenerateVerifier()[:16]
	authURL := conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier))

	// The system browser: the BFF sends it on to the provider with the BFF's
	// own client, PKCE and redirect URI; the user signs in; the BFF's
	// callback sends it to the app with a code and the app's state.
	sys := e.browser()
	resp := sys.get(authURL, nil)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("authorize at the BFF: %d %s", resp.StatusCode, readBody(resp))
	}
	toProvider := resp.Header.Get("Location")
	cb, authz, err := sys.Login(ctx, toProvider, e.admin(), password)
	if err != nil {
		t.Fatalf("login at the provider: %v", err)
	}
	if got := authz.Query().Get("client_id"); got != "app-bff" {
		t.Errorf("the provider saw client_id %q, want the BFF's app-bff", got)
	}
	if authz.Query().Get("state") == state {
		t.Error("the app's state was sent to the provider; the BFF must use its own")
	}
	resp = sys.get(cb, nil)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("callback: %d %s", resp.StatusCode, readBody(resp))
	}
	back, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || !strings.HasPrefix(back.String(), appURI+"?") {
		t.Fatalf("callback redirects to %q, want %s?...", resp.Header.Get("Location"), appURI)
	}
	if got := back.Query().Get("state"); got != state {
		t.Errorf("app redirect state %q, want the app's %q unchanged", got, state)
	}
	code := back.Query().Get("code")

	// The token request, form-encoded by x/oauth2 (grant_type, code,
	// redirect_uri, code_verifier, client_id).
	tok, err := conf.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	if tok.TokenType != "Bearer" || tok.AccessToken == "" || tok.RefreshToken != "" {
		t.Errorf("token answer: type %q, access token %d chars, refresh token %q", tok.TokenType, len(tok.AccessToken), tok.RefreshToken)
	}
	if left := time.Until(tok.Expiry); left <= 0 || left > 12*time.Hour {
		t.Errorf("token expires in %v", left)
	}
	s, err := e.gw.Sessions.Load(context.Background(), "mobile:app", tok.AccessToken)
	if err != nil {
		t.Fatalf("the access token is not the session handle: %v", err)
	}
	if strings.Contains(tok.AccessToken, s.AccessToken) || tok.AccessToken == s.AccessToken {
		t.Error("the provider's access token reached the app")
	}

	// The API, with the token as AppAuth's performActionWithFreshTokens
	// would attach it.
	api := conf.Client(ctx, tok)
	r, err := api.Get(e.public + "/app/api/orders/7")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusOK {
		t.Fatalf("API call with the access token: %d", r.StatusCode)
	}
	if got := e.orders.last(t).Header.Get("Authorization"); got != "Bearer "+s.AccessToken {
		t.Errorf("upstream Authorization %q, want the provider's access token", got)
	}

	// The code is single-use: RFC 6749 invalid_grant.
	_, err = conf.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.Response.StatusCode != http.StatusBadRequest || re.ErrorCode != "invalid_grant" {
		t.Errorf("second redemption: %v, want 400 invalid_grant", err)
	}

	// Revocation (RFC 7009): the session ends; a second revocation, or an
	// unknown token, is 200 too.
	revoke := func(token string) int {
		t.Helper()
		resp := app.do(http.MethodPost, meta.RevocationEndpoint,
			http.Header{"Content-Type": {"application/x-www-form-urlencoded"}},
			url.Values{"token": {token}, "token_type_hint": {"access_token"}, "client_id": {conf.ClientID}}.Encode())
		return resp.StatusCode
	}
	if st := revoke(tok.AccessToken); st != http.StatusOK {
		t.Fatalf("revoke: %d", st)
	}
	if _, err := e.gw.Sessions.Load(context.Background(), "mobile:app", tok.AccessToken); err == nil {
		t.Error("the session survived revocation")
	}
	r, err = api.Get(e.public + "/app/api/orders/7")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusUnauthorized {
		t.Errorf("API call after revocation: %d, want 401", r.StatusCode)
	}
	for _, token := range []string{tok.AccessToken, "no-such-handle"} {
		if st := revoke(token); st != http.StatusOK {
			t.Errorf("revoke of a dead or unknown token: %d, want 200", st)
		}
	}
}

// tokenRequest is a form-encoded POST M/bff/session, as an OAuth client sends it.
func tokenRequest(app *browser, form url.Values) *http.Response {
	return app.do(http.MethodPost, "/app/bff/session", http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, form.Encode())
}

// oauthErrorCode asserts an RFC 6749 section 5.2 error answer.
func oauthErrorCode(t *testing.T, resp *http.Response, code string) {
	t.Helper()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d, want 400; body %s", resp.StatusCode, readBody(resp))
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}
	m := decodeJSON(t, resp)
	if m["error"] != code {
		t.Fatalf("error %v, want %q (%v)", m["error"], code, m["error_description"])
	}
	if d, _ := m["error_description"].(string); d == "" {
		t.Error("no error_description")
	}
}

// TestMobileTokenRequestErrors: a form-encoded token request is answered
// with RFC 6749 errors, and every failed redemption spends the code.
func TestMobileTokenRequestErrors(t *testing.T) {
	e := newEnv(t, withMobileApp())
	app := e.browser()
	form := func(code, verifier string, extra ...string) url.Values {
		v := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}, "client_id": {"com.example.app"}}
		for i := 0; i+1 < len(extra); i += 2 {
			v.Set(extra[i], extra[i+1])
		}
		return v
	}
	for _, tt := range []struct {
		name string
		form func(code, verifier string) url.Values
		want string
	}{
		{"wrong verifier", func(c, _ string) url.Values { return form(c, oauth2.GenerateVerifier()) }, "invalid_grant"},
		{"other redirect_uri", func(c, v string) url.Values { return form(c, v, "redirect_uri", "http://127.0.0.1/other-app") }, "invalid_grant"},
		{"refresh grant", func(c, v string) url.Values { return form(c, v, "grant_type", "refresh_token") }, "unsupported_grant_type"},
		{"no grant_type", func(c, v string) url.Values { f := form(c, v); f.Del("grant_type"); return f }, "invalid_request"},
		{"no verifier", func(c, _ string) url.Values { return form(c, "") }, "invalid_request"},
		{"repeated code", func(c, v string) url.Values { f := form(c, v); f.Add("code", c); return f }, "invalid_request"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			verifier := oauth2.GenerateVerifier()
			code := mobileLogin(t, e, verifier)
			oauthErrorCode(t, tokenRequest(app, tt.form(code, verifier)), tt.want)
			if tt.want != "invalid_grant" {
				// Refused before the code was looked at: it still works.
				if resp := tokenRequest(app, form(code, verifier)); resp.StatusCode != http.StatusOK {
					t.Fatalf("the code did not survive a malformed request: %d %s", resp.StatusCode, readBody(resp))
				}
				return
			}
			oauthErrorCode(t, tokenRequest(app, form(code, verifier)), "invalid_grant")
		})
	}
	t.Run("unknown code", func(t *testing.T) {
		oauthErrorCode(t, tokenRequest(app, form("no-such-code", oauth2.GenerateVerifier())), "invalid_grant")
	})
}

// TestMobileLoginOAuthParameters: the authorization request of a stock
// client is accepted (redirect_uri for returnTo; response_type, client_id
// and scope ignored), and contradictions are refused.
func TestMobileLoginOAuthParameters(t *testing.T) {
	e := newEnv(t, withMobileApp())
	app := e.browser()
	ch := oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier())
	std := "response_type=code&client_id=whatever&scope=openid+profile&state=xyz&code_challenge_method=S256&code_challenge=" + ch
	for _, tt := range []struct {
		name   string
		query  string
		status int
	}{
		{"redirect_uri", std + "&redirect_uri=" + url.QueryEscape(appURI), http.StatusFound},
		{"both, equal", std + "&redirect_uri=" + url.QueryEscape(appURI) + "&returnTo=" + url.QueryEscape(appURI), http.StatusFound},
		{"both, different", std + "&redirect_uri=" + url.QueryEscape(appURI) + "&returnTo=" + url.QueryEscape("http://127.0.0.1/other-app"), http.StatusBadRequest},
		{"unregistered redirect_uri", std + "&redirect_uri=" + url.QueryEscape("com.evil.app:/cb"), http.StatusBadRequest},
		{"implicit flow", strings.Replace(std, "response_type=code", "response_type=token", 1) + "&redirect_uri=" + url.QueryEscape(appURI), http.StatusBadRequest},
		{"state too long", std + strings.Repeat("s", 1100) + "&redirect_uri=" + url.QueryEscape(appURI), http.StatusBadRequest},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp := app.get("/app/bff/login?"+tt.query, nil)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tt.status, readBody(resp))
			}
		})
	}
}

// TestMobileFailedRedemptionLeavesNoSession (issue 8 item 14): until the app
// redeems its code, and after a failed or expired redemption, the store
// holds no session (and so no refresh token), only the login's spent marker.
func TestMobileFailedRedemptionLeavesNoSession(t *testing.T) {
	e := newEnv(t, withMobileApp())
	app := e.browser()
	// leftovers lists the keys other than the single-use login markers.
	leftovers := func() []string {
		var out []string
		for _, k := range e.keys() {
			if !strings.HasPrefix(k, e.prefix+"login-spent:") {
				out = append(out, k)
			}
		}
		slices.Sort(out)
		return out
	}
	form := func(code, verifier string) url.Values {
		return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {verifier}}
	}

	t.Run("wrong verifier", func(t *testing.T) {
		verifier := oauth2.GenerateVerifier()
		code := mobileLogin(t, e, verifier)
		if keys := leftovers(); len(keys) != 1 || !strings.HasPrefix(keys[0], e.prefix+"handoff:") {
			t.Errorf("before redemption the store holds %q, want only the handoff code", keys)
		}
		oauthErrorCode(t, tokenRequest(app, form(code, oauth2.GenerateVerifier())), "invalid_grant")
		if keys := leftovers(); len(keys) != 0 {
			t.Errorf("after a failed redemption the store holds %q", keys)
		}
	})

	t.Run("expired code", func(t *testing.T) {
		verifier := oauth2.GenerateVerifier()
		code := mobileLogin(t, e, verifier)
		// What the store does when the 60 s are up.
		for _, k := range leftovers() {
			if err := e.rdb.PExpire(context.Background(), k, time.Millisecond).Err(); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(20 * time.Millisecond)
		oauthErrorCode(t, tokenRequest(app, form(code, verifier)), "invalid_grant")
		if keys := leftovers(); len(keys) != 0 {
			t.Errorf("after the code expired the store holds %q", keys)
		}
	})

	t.Run("reuse", func(t *testing.T) {
		verifier := oauth2.GenerateVerifier()
		code := mobileLogin(t, e, verifier)
		resp := tokenRequest(app, form(code, verifier))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("redeem: %d %s", resp.StatusCode, readBody(resp))
		}
		handle, _ := decodeJSON(t, resp)["access_token"].(string)
		before := leftovers()
		oauthErrorCode(t, tokenRequest(app, form(code, verifier)), "invalid_grant")
		if after := leftovers(); strings.Join(after, " ") != strings.Join(before, " ") {
			t.Errorf("a reused code changed the store: %q -> %q", before, after)
		}
		if _, err := e.gw.Sessions.Load(context.Background(), "mobile:app", handle); err != nil {
			t.Errorf("a reused code ended the session it had made: %v", err)
		}
	})
}
