package demo_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/bffgate/bffgate/internal/demo"
	"github.com/bffgate/bffgate/internal/oidctest"
)

const (
	testClientID     = "test-rp"
	testClientSecret = "test-rp-secret"
	// The fake relying party is never called: Login stops at the redirect.
	testRedirectURI   = "http://127.0.0.1:1/cb"
	testPostLogoutURI = "http://127.0.0.1:1/bye"
)

func testClients() []demo.Client {
	return []demo.Client{{
		ID:                     testClientID,
		Secret:                 testClientSecret,
		RedirectURIs:           []string{testRedirectURI},
		PostLogoutRedirectURIs: []string{testPostLogoutURI},
	}}
}

// serveIDP serves NewIDP with httptest at the root of a fresh listener.
func serveIDP(t *testing.T, opts demo.IDPOptions) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	issuer := "http://" + srv.Listener.Addr().String()
	h, err := demo.NewIDP(issuer, testClients(), opts)
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = h
	srv.Start()
	t.Cleanup(srv.Close)
	return issuer
}

// rp is a minimal relying party made of x/oauth2 and go-oidc.
type rp struct {
	provider *oidc.Provider
	oauth    *oauth2.Config
	verifier *oidc.IDTokenVerifier
}

func newRP(t *testing.T, issuer string) *rp {
	t.Helper()
	p, err := oidc.NewProvider(t.Context(), issuer)
	if err != nil {
		t.Fatal(err)
	}
	ep := p.Endpoint()
	ep.AuthStyle = oauth2.AuthStyleInHeader // client_secret_basic
	return &rp{
		provider: p,
		oauth: &oauth2.Config{
			ClientID:     testClientID,
			ClientSecret: testClientSecret,
			Endpoint:     ep,
			RedirectURL:  testRedirectURI,
			Scopes:       []string{oidc.ScopeOpenID, "profile", "email", oidc.ScopeOfflineAccess},
		},
		verifier: p.Verifier(&oidc.Config{ClientID: testClientID}),
	}
}

type loginResult struct {
	token     *oauth2.Token
	idToken   *oidc.IDToken
	rawID     string
	authorize *url.URL
}

// login runs a full code flow with PKCE for username.
func (r *rp) login(t *testing.T, username string) loginResult {
	t.Helper()
	ctx := t.Context()
	verifier := oauth2.GenerateVerifier()
	state, nonce := oauth2.GenerateVerifier(), oauth2.GenerateVerifier()
	start := r.oauth.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce))

	callback, authorize, err := oidctest.NewBrowser(t).Login(ctx, start, username, demo.Password)
	if err != nil {
		t.Fatal(err)
	}
	cb, err := url.Parse(callback)
	if err != nil {
		t.Fatal(err)
	}
	if got := cb.Scheme + "://" + cb.Host + cb.Path; got != testRedirectURI {
		t.Fatalf("callback %s, want redirect URI %s", callback, testRedirectURI)
	}
	if cb.Query().Get("state") != state {
		t.Fatalf("callback state %q, want %q", cb.Query().Get("state"), state)
	}
	code := cb.Query().Get("code")
	if code == "" {
		t.Fatalf("no code in callback %s", callback)
	}

	// PKCE is enforced: a wrong verifier is refused (and does not use up the code).
	if _, err := r.oauth.Exchange(ctx, code, oauth2.VerifierOption(oauth2.GenerateVerifier())); err == nil {
		t.Fatal("exchange with a wrong code_verifier succeeded")
	}
	tok, err := r.oauth.Exchange(ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	rawID, _ := tok.Extra("id_token").(string)
	idt, err := r.verifier.Verify(ctx, rawID)
	if err != nil {
		t.Fatalf("ID token: %v", err)
	}
	if idt.Nonce != nonce {
		t.Fatalf("ID token nonce %q, want %q", idt.Nonce, nonce)
	}
	return loginResult{token: tok, idToken: idt, rawID: rawID, authorize: authorize}
}

type tokenClaims struct {
	Sub      string   `json:"sub"`
	Roles    []string `json:"roles"`
	Email    string   `json:"email"`
	Name     string   `json:"name"`
	ClientID string   `json:"client_id"`
	Exp      int64    `json:"exp"`
	Iat      int64    `json:"iat"`
}

// verifyAccessToken checks the access token is a JWT signed by the provider's
// JWKS, for this client, and returns its claims.
func (r *rp) verifyAccessToken(t *testing.T, raw string) tokenClaims {
	t.Helper()
	if strings.Count(raw, ".") != 2 {
		t.Fatalf("access token %q is not a JWT", raw)
	}
	at, err := r.provider.Verifier(&oidc.Config{ClientID: testClientID}).Verify(t.Context(), raw)
	if err != nil {
		t.Fatalf("access token: %v", err)
	}
	var c tokenClaims
	if err := at.Claims(&c); err != nil {
		t.Fatal(err)
	}
	return c
}

func TestIDPDiscovery(t *testing.T) {
	issuer := serveIDP(t, demo.IDPOptions{})
	resp, err := http.Get(issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d struct {
		Issuer                string   `json:"issuer"`
		Authorization         string   `json:"authorization_endpoint"`
		Token                 string   `json:"token_endpoint"`
		JWKS                  string   `json:"jwks_uri"`
		Revocation            string   `json:"revocation_endpoint"`
		EndSession            string   `json:"end_session_endpoint"`
		CodeChallengeMethods  []string `json:"code_challenge_methods_supported"`
		GrantTypes            []string `json:"grant_types_supported"`
		TokenAuthMethods      []string `json:"token_endpoint_auth_methods_supported"`
		BackChannelLogout     bool     `json:"backchannel_logout_supported"`
		BackChannelLogoutSess bool     `json:"backchannel_logout_session_supported"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name string
		ok   bool
	}{
		{"issuer", d.Issuer == issuer},
		{"authorization_endpoint is /auth", d.Authorization == issuer+"/auth"},
		{"token_endpoint", d.Token == issuer+"/oauth/token"},
		{"jwks_uri", d.JWKS == issuer+"/keys"},
		{"revocation_endpoint", d.Revocation == issuer+"/revoke"},
		{"end_session_endpoint", d.EndSession == issuer+"/end_session"},
		{"S256", slices.Contains(d.CodeChallengeMethods, "S256")},
		{"refresh_token grant", slices.Contains(d.GrantTypes, "refresh_token")},
		{"client_secret_basic", slices.Contains(d.TokenAuthMethods, "client_secret_basic")},
		// The library cannot send logout tokens and does not claim to.
		{"no back-channel logout", !d.BackChannelLogout && !d.BackChannelLogoutSess},
	}
	for _, c := range checks {
		if !c.ok {
			t.Errorf("discovery: %s: got %+v", c.name, d)
		}
	}
}

func TestIDPCodeFlow(t *testing.T) {
	const lifetime = 30 * time.Second
	issuer := serveIDP(t, demo.IDPOptions{AccessTokenLifetime: lifetime})
	r := newRP(t, issuer)
	ctx := t.Context()

	res := r.login(t, demo.AdminUsername(issuer))

	q := res.authorize.Query()
	if res.authorize.Path != "/auth" || q.Get("code_challenge_method") != "S256" || q.Get("client_id") != testClientID {
		t.Errorf("authorize URL %s", res.authorize)
	}

	var idc tokenClaims
	if err := res.idToken.Claims(&idc); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(idc.Roles, []string{demo.RoleAdmin, demo.RoleUser}) {
		t.Errorf("ID token roles %v", idc.Roles)
	}
	if idc.Email == "" || idc.Name == "" {
		t.Errorf("ID token lacks profile/email claims: %+v", idc)
	}
	// The email the page shows is the name the user logged in with.
	if idc.Email != demo.AdminUsername(issuer) {
		t.Errorf("admin email %q, want the login name %q", idc.Email, demo.AdminUsername(issuer))
	}

	// Access token: a JWT with roles, living AccessTokenLifetime.
	atc := r.verifyAccessToken(t, res.token.AccessToken)
	if !slices.Equal(atc.Roles, []string{demo.RoleAdmin, demo.RoleUser}) || atc.Sub != idc.Sub {
		t.Errorf("access token claims %+v", atc)
	}
	if d := time.Duration(atc.Exp-atc.Iat) * time.Second; d < lifetime-2*time.Second || d > lifetime {
		t.Errorf("access token exp-iat = %v, want about %v", d, lifetime)
	}
	if in := expiresIn(t, res.token); in < lifetime-2*time.Second || in > lifetime {
		t.Errorf("expires_in = %v, want about %v", in, lifetime)
	}
	if res.token.RefreshToken == "" {
		t.Fatal("no refresh token with offline_access")
	}

	// Userinfo answers for the JWT access token, with roles.
	ui, err := r.provider.UserInfo(ctx, oauth2.StaticTokenSource(res.token))
	if err != nil {
		t.Fatalf("userinfo: %v", err)
	}
	var uic tokenClaims
	if err := ui.Claims(&uic); err != nil || len(uic.Roles) != 2 {
		t.Errorf("userinfo claims %+v, %v", uic, err)
	}

	// Refresh works once; the same refresh token fails the second time.
	refreshed, err := refresh(ctx, r, res.token.RefreshToken)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if refreshed.RefreshToken == "" || refreshed.RefreshToken == res.token.RefreshToken {
		t.Errorf("refresh did not rotate the refresh token: %q", refreshed.RefreshToken)
	}
	if c := r.verifyAccessToken(t, refreshed.AccessToken); len(c.Roles) != 2 {
		t.Errorf("refreshed access token claims %+v", c)
	}
	if in := expiresIn(t, refreshed); in < lifetime-2*time.Second || in > lifetime {
		t.Errorf("refreshed expires_in = %v, want about %v", in, lifetime)
	}
	rawID, _ := refreshed.Extra("id_token").(string)
	if _, err := r.verifier.Verify(ctx, rawID); err != nil {
		t.Errorf("refreshed ID token: %v", err)
	}
	_, err = refresh(ctx, r, res.token.RefreshToken)
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		t.Fatalf("second use of a refresh token: err = %v, want an OAuth error", err)
	}
	t.Logf("reused refresh token: %d %s", re.Response.StatusCode, re.ErrorCode)
}

func TestIDPPlainUserRoles(t *testing.T) {
	issuer := serveIDP(t, demo.IDPOptions{})
	r := newRP(t, issuer)
	res := r.login(t, demo.UserUsername)
	var idc tokenClaims
	if err := res.idToken.Claims(&idc); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(idc.Roles, []string{demo.RoleUser}) {
		t.Errorf("ID token roles %v", idc.Roles)
	}
	if u, _ := url.Parse(issuer); idc.Email != demo.UserUsername+"@"+u.Hostname() {
		t.Errorf("plain user's email %q, want %s@<issuer host>", idc.Email, demo.UserUsername)
	}
	if atc := r.verifyAccessToken(t, res.token.AccessToken); !slices.Equal(atc.Roles, []string{demo.RoleUser}) {
		t.Errorf("access token roles %v", atc.Roles)
	}
	// The default lifetime is the example's 5 minutes.
	if in := expiresIn(t, res.token); in < 5*time.Minute-2*time.Second || in > 5*time.Minute {
		t.Errorf("expires_in = %v, want about 5m", in)
	}
}

func TestIDPWrongPassword(t *testing.T) {
	issuer := serveIDP(t, demo.IDPOptions{})
	r := newRP(t, issuer)
	start := r.oauth.AuthCodeURL("state", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
	_, _, err := oidctest.NewBrowser(t).Login(t.Context(), start, demo.UserUsername, "wrong")
	if err == nil || !strings.Contains(err.Error(), "rejected") {
		t.Fatalf("login with a wrong password: err = %v", err)
	}
}

// TestIDPConcurrentRefresh: of many simultaneous uses of one refresh token,
// exactly one wins.
func TestIDPConcurrentRefresh(t *testing.T) {
	issuer := serveIDP(t, demo.IDPOptions{})
	r := newRP(t, issuer)
	res := r.login(t, demo.UserUsername)

	const n = 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for range n {
		wg.Go(func() {
			if _, err := refresh(t.Context(), r, res.token.RefreshToken); err == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d of %d concurrent refreshes succeeded, want 1", wins, n)
	}
}

func TestIDPRevocation(t *testing.T) {
	issuer := serveIDP(t, demo.IDPOptions{})
	r := newRP(t, issuer)
	res := r.login(t, demo.UserUsername)

	form := url.Values{"token": {res.token.RefreshToken}, "token_type_hint": {"refresh_token"}}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, issuer+"/revoke", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(testClientID, testClientSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revoke: %d", resp.StatusCode)
	}
	if _, err := refresh(t.Context(), r, res.token.RefreshToken); err == nil {
		t.Fatal("refresh with a revoked refresh token succeeded")
	}
}

func TestIDPEndSession(t *testing.T) {
	issuer := serveIDP(t, demo.IDPOptions{})
	r := newRP(t, issuer)
	b := oidctest.NewBrowser(t)

	tests := []struct {
		name         string
		postLogout   string
		wantStatus   int
		wantLocation string
	}{
		{"unregistered post_logout_redirect_uri", "http://127.0.0.1:1/elsewhere", http.StatusBadRequest, ""},
		{"registered post_logout_redirect_uri", testPostLogoutURI, http.StatusFound, testPostLogoutURI + "?state=s1"},
	}
	res := r.login(t, demo.UserUsername)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := url.Values{
				"id_token_hint":            {res.rawID},
				"client_id":                {testClientID},
				"post_logout_redirect_uri": {tt.postLogout},
				"state":                    {"s1"},
			}
			resp, err := b.Follow(t.Context(), issuer+"/end_session?"+q.Encode())
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus || resp.Header.Get("Location") != tt.wantLocation {
				t.Fatalf("end_session: %d Location %q, want %d %q", resp.StatusCode, resp.Header.Get("Location"), tt.wantStatus, tt.wantLocation)
			}
		})
	}
	// Ending the session dropped the user's tokens for this client.
	if _, err := refresh(t.Context(), r, res.token.RefreshToken); err == nil {
		t.Fatal("refresh after end_session succeeded")
	}
}

func TestIDPClientCredentials(t *testing.T) {
	issuer := serveIDP(t, demo.IDPOptions{})
	r := newRP(t, issuer)
	cc := clientcredentials.Config{
		ClientID:     testClientID,
		ClientSecret: testClientSecret,
		TokenURL:     r.oauth.Endpoint.TokenURL,
		AuthStyle:    oauth2.AuthStyleInHeader,
	}
	tok, err := cc.Token(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if c := r.verifyAccessToken(t, tok.AccessToken); c.Sub != testClientID || c.Roles != nil {
		t.Errorf("client credentials token claims %+v", c)
	}
	cc.ClientSecret = "wrong"
	if _, err := cc.Token(t.Context()); err == nil {
		t.Error("client credentials with a wrong secret succeeded")
	}
}

func TestNewIDPRejectsBadInput(t *testing.T) {
	good := testClients()[0]
	tests := []struct {
		name    string
		issuer  string
		clients []demo.Client
		opts    demo.IDPOptions
	}{
		{"no scheme", "127.0.0.1:9998", nil, demo.IDPOptions{}},
		{"ftp", "ftp://127.0.0.1:9998", nil, demo.IDPOptions{}},
		{"path", "http://127.0.0.1:9998/idp", nil, demo.IDPOptions{}},
		{"trailing slash", "http://127.0.0.1:9998/", nil, demo.IDPOptions{}},
		{"query", "http://127.0.0.1:9998?x=1", nil, demo.IDPOptions{}},
		{"empty", "", nil, demo.IDPOptions{}},
		{"negative lifetime", "http://127.0.0.1:9998", nil, demo.IDPOptions{AccessTokenLifetime: -time.Second}},
		{"client without id", "http://127.0.0.1:9998", []demo.Client{{Secret: "s", RedirectURIs: good.RedirectURIs}}, demo.IDPOptions{}},
		{"client without secret", "http://127.0.0.1:9998", []demo.Client{{ID: "c", RedirectURIs: good.RedirectURIs}}, demo.IDPOptions{}},
		{"client without redirect", "http://127.0.0.1:9998", []demo.Client{{ID: "c", Secret: "s"}}, demo.IDPOptions{}},
		{"relative redirect", "http://127.0.0.1:9998", []demo.Client{{ID: "c", Secret: "s", RedirectURIs: []string{"/cb"}}}, demo.IDPOptions{}},
		{"relative post-logout", "http://127.0.0.1:9998", []demo.Client{{ID: "c", Secret: "s", RedirectURIs: good.RedirectURIs, PostLogoutRedirectURIs: []string{"/bye"}}}, demo.IDPOptions{}},
		{"duplicate client", "http://127.0.0.1:9998", []demo.Client{good, good}, demo.IDPOptions{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := demo.NewIDP(tt.issuer, tt.clients, tt.opts); err == nil {
				t.Fatal("NewIDP accepted bad input")
			}
		})
	}
}

func TestAdminUsername(t *testing.T) {
	if got := demo.AdminUsername("http://127.0.0.1:9998"); got != "test-user@127.0.0.1" {
		t.Errorf("AdminUsername = %q", got)
	}
	if got := demo.AdminUsername("https://idp.example.com"); got != "test-user@idp.example.com" {
		t.Errorf("AdminUsername = %q", got)
	}
}

func refresh(ctx context.Context, r *rp, refreshToken string) (*oauth2.Token, error) {
	return r.oauth.TokenSource(ctx, &oauth2.Token{RefreshToken: refreshToken}).Token()
}

// expiresIn reads the raw expires_in of a token response.
func expiresIn(t *testing.T, tok *oauth2.Token) time.Duration {
	t.Helper()
	switch v := tok.Extra("expires_in").(type) {
	case float64:
		return time.Duration(v) * time.Second
	case json.Number:
		n, _ := v.Int64()
		return time.Duration(n) * time.Second
	default:
		t.Fatalf("expires_in %T %v", v, v)
		return 0
	}
}

// TestIDPLoginFormListsDemoUsers: the provider's login form names the demo
// users and their password, and stays a working form.
func TestIDPLoginFormListsDemoUsers(t *testing.T) {
	issuer := serveIDP(t, demo.IDPOptions{})
	r := newRP(t, issuer)
	start := r.oauth.AuthCodeURL("state", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()))
	b := oidctest.NewBrowser(t)
	var page string
	for u, i := start, 0; i < 5; i++ {
		resp, err := b.Follow(t.Context(), u)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			page = string(body)
			if n := resp.Header.Get("Content-Length"); n != "" && n != strconv.Itoa(len(body)) {
				t.Errorf("Content-Length %s, body %d bytes", n, len(body))
			}
			break
		}
		next, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
		if err != nil {
			t.Fatal(err)
		}
		u = next.String()
	}
	for _, want := range []string{`<form method="POST" action="/login/username"`, demo.AdminUsername(issuer), demo.UserUsername, demo.Password} {
		if !strings.Contains(page, want) {
			t.Errorf("login page lacks %q:\n%s", want, page)
		}
	}
	// The form still logs in (oidctest submits it).
	r.login(t, demo.UserUsername)
}
