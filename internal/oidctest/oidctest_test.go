package oidctest_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/bffgate/bffgate/internal/demo"
	"github.com/bffgate/bffgate/internal/oidctest"
)

const (
	rpClientID = "rp"
	rpSecret   = "rp-secret"
)

// fakeRP is a tiny relying party made with x/oauth2: GET /login redirects to
// the provider with state and PKCE and remembers the verifier, as a gateway
// would. Its callback must never be requested: Login stops before it.
type fakeRP struct {
	t     *testing.T
	srv   *httptest.Server
	url   string
	oauth *oauth2.Config

	mu        sync.Mutex
	verifiers map[string]string // state -> PKCE verifier
}

// newFakeRP reserves the RP's listener, so its redirect URI is known before
// the provider (which must register it) starts.
func newFakeRP(t *testing.T) *fakeRP {
	srv := httptest.NewUnstartedServer(nil)
	return &fakeRP{t: t, srv: srv, url: "http://" + srv.Listener.Addr().String(), verifiers: map[string]string{}}
}

func (rp *fakeRP) client() demo.Client {
	return demo.Client{ID: rpClientID, Secret: rpSecret, RedirectURIs: []string{rp.url + "/callback"}}
}

// start discovers the provider at issuer and serves the RP.
func (rp *fakeRP) start(issuer string) {
	t := rp.t
	t.Helper()
	p, err := oidc.NewProvider(t.Context(), issuer)
	if err != nil {
		t.Fatal(err)
	}
	ep := p.Endpoint()
	ep.AuthStyle = oauth2.AuthStyleInHeader
	rp.oauth = &oauth2.Config{
		ClientID:     rpClientID,
		ClientSecret: rpSecret,
		Endpoint:     ep,
		RedirectURL:  rp.url + "/callback",
		Scopes:       []string{oidc.ScopeOpenID, "profile", oidc.ScopeOfflineAccess},
	}
	rp.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/login" {
			t.Errorf("the fake RP got %s", r.URL)
			http.NotFound(w, r)
			return
		}
		state, v := oauth2.GenerateVerifier(), oauth2.GenerateVerifier()
		rp.mu.Lock()
		rp.verifiers[state] = v
		rp.mu.Unlock()
		http.SetCookie(w, &http.Cookie{Name: "login-state", Value: state, Path: "/", HttpOnly: true})
		http.Redirect(w, r, rp.oauth.AuthCodeURL(state, oauth2.S256ChallengeOption(v)), http.StatusFound)
	})
	rp.srv.Start()
	t.Cleanup(rp.srv.Close)
}

// exchange redeems the callback's code with the verifier kept for its state.
func (rp *fakeRP) exchange(callbackURL string) (*oauth2.Token, error) {
	u, err := url.Parse(callbackURL)
	if err != nil {
		return nil, err
	}
	rp.mu.Lock()
	v := rp.verifiers[u.Query().Get("state")]
	rp.mu.Unlock()
	return rp.oauth.Exchange(rp.t.Context(), u.Query().Get("code"), oauth2.VerifierOption(v))
}

func TestLoginThroughRP(t *testing.T) {
	rp := newFakeRP(t)
	issuer := oidctest.StartIDP(t, []demo.Client{rp.client()}, demo.IDPOptions{})
	rp.start(issuer)

	b := oidctest.NewBrowser(t)
	callback, authorize, err := b.Login(t.Context(), rp.url+"/login", demo.AdminUsername(issuer), demo.Password)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(callback, rp.url+"/callback?") {
		t.Fatalf("callback %q, want the RP's /callback", callback)
	}
	t.Logf("callback: %s", callback)
	if authorize == nil || authorize.Scheme+"://"+authorize.Host != issuer || authorize.Path != "/auth" {
		t.Fatalf("authorize URL %v", authorize)
	}
	q := authorize.Query()
	if q.Get("client_id") != rpClientID || q.Get("redirect_uri") != rp.url+"/callback" ||
		q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" {
		t.Errorf("authorize parameters %v", q)
	}

	// The RP's state cookie is in the jar and matches the callback's state.
	cbURL, _ := url.Parse(callback)
	rpURL, _ := url.Parse(rp.url)
	var state string
	for _, c := range b.Jar.Cookies(rpURL) {
		if c.Name == "login-state" {
			state = c.Value
		}
	}
	if state == "" || state != cbURL.Query().Get("state") {
		t.Errorf("jar state %q, callback state %q", state, cbURL.Query().Get("state"))
	}

	// The callback is genuine: its code redeems.
	tok, err := rp.exchange(callback)
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken == "" || tok.RefreshToken == "" {
		t.Errorf("token %+v", tok)
	}
}

func TestLoginAtAuthorizeURL(t *testing.T) {
	rp := newFakeRP(t)
	issuer := oidctest.StartIDP(t, []demo.Client{rp.client()}, demo.IDPOptions{})
	rp.start(issuer)

	start := rp.oauth.AuthCodeURL("s1")
	callback, authorize, err := oidctest.NewBrowser(t).Login(t.Context(), start, demo.UserUsername, demo.Password)
	if err != nil {
		t.Fatal(err)
	}
	if authorize.String() != start {
		t.Errorf("authorize %s, want the start URL %s", authorize, start)
	}
	if u, _ := url.Parse(callback); u.Query().Get("state") != "s1" || u.Query().Get("code") == "" {
		t.Errorf("callback %s", callback)
	}
}

func TestLoginFailures(t *testing.T) {
	rp := newFakeRP(t)
	issuer := oidctest.StartIDP(t, []demo.Client{rp.client()}, demo.IDPOptions{})
	rp.start(issuer)

	tests := []struct {
		name, start, user, password, wantErr string
	}{
		{"wrong password", rp.url + "/login", demo.UserUsername, "nope", "rejected"},
		{"unknown user", rp.url + "/login", "nobody", demo.Password, "rejected"},
		{"unregistered redirect_uri", issuer + "/auth?" + url.Values{
			"client_id": {rpClientID}, "response_type": {"code"}, "scope": {"openid"},
			"redirect_uri": {"http://127.0.0.1:1/elsewhere"},
		}.Encode(), demo.UserUsername, demo.Password, "unexpected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			callback, _, err := oidctest.NewBrowser(t).Login(t.Context(), tt.start, tt.user, tt.password)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Login = %q, %v; want an error containing %q", callback, err, tt.wantErr)
			}
			t.Log(err)
		})
	}
}

// TestStartIDPWith counts refresh grants at the token endpoint through wrap.
func TestStartIDPWith(t *testing.T) {
	rp := newFakeRP(t)
	var refreshes atomic.Int32
	count := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && r.URL.Path == "/oauth/token" {
				if err := r.ParseForm(); err == nil && r.PostForm.Get("grant_type") == "refresh_token" {
					refreshes.Add(1)
				}
			}
			next.ServeHTTP(w, r)
		})
	}
	issuer := oidctest.StartIDPWith(t, []demo.Client{rp.client()}, demo.IDPOptions{}, count)
	rp.start(issuer)

	b := oidctest.NewBrowser(t)
	callback, _, err := b.Login(t.Context(), rp.url+"/login", demo.UserUsername, demo.Password)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := rp.exchange(callback)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rp.oauth.TokenSource(t.Context(), &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err != nil {
		t.Fatal(err)
	}
	if n := refreshes.Load(); n != 1 {
		t.Errorf("%d refresh grants counted, want 1", n)
	}
}

func TestBrowserFollowDoesNotRedirect(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/set" {
			http.SetCookie(w, &http.Cookie{Name: "c", Value: "v", Path: "/"})
			http.Redirect(w, r, "/next", http.StatusFound)
			return
		}
		c, err := r.Cookie("c")
		if err != nil || c.Value != "v" {
			http.Error(w, "no cookie", http.StatusBadRequest)
		}
	}))
	t.Cleanup(srv.Close)

	b := oidctest.NewBrowser(t)
	resp, err := b.Follow(t.Context(), srv.URL+"/set")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/next" {
		t.Fatalf("%d %q: a redirect was followed", resp.StatusCode, resp.Header.Get("Location"))
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+"/next", nil)
	resp, err = b.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d: the jar did not send the cookie", resp.StatusCode)
	}
}
