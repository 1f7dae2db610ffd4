package gateway_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bffgate/bffgate/config"
	"github.com/bffgate/bffgate/internal/gateway"
	"github.com/bffgate/bffgate/internal/oidctest"
	"github.com/bffgate/bffgate/internal/panva"
)

// providerTap is the gateway's HTTP client to the provider with a window
// on it: it keeps every pushed authorization request's form.
type providerTap struct {
	mu  sync.Mutex
	par []url.Values
}

func (p *providerTap) client() *http.Client {
	return &http.Client{Transport: p, Timeout: 30 * time.Second}
}

func (p *providerTap) RoundTrip(req *http.Request) (*http.Response, error) {
	var form url.Values
	if req.Method == http.MethodPost && req.GetBody != nil {
		if body, err := req.GetBody(); err == nil {
			raw, _ := io.ReadAll(body)
			form, _ = url.ParseQuery(string(raw))
		}
	}
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil || form == nil {
		return resp, err
	}
	if strings.HasSuffix(req.URL.Path, "/request") { // oidc-provider's PAR endpoint
		p.mu.Lock()
		p.par = append(p.par, form)
		p.mu.Unlock()
	}
	return resp, nil
}

func (p *providerTap) pushed(t testing.TB) []url.Values {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]url.Values(nil), p.par...)
}

// fapi2Client is oidc-provider's registration of the fapi2 frontend "web"
// served at public.
func fapi2Client(public string, extra map[string]any) map[string]any {
	c := map[string]any{
		"client_id":                       "web-bff",
		"token_endpoint_auth_method":      "private_key_jwt",
		"token_endpoint_auth_signing_alg": "ES256",
		"jwks_uri":                        public + "/web/bff/jwks",
		"id_token_signed_response_alg":    "ES256",
		"dpop_bound_access_tokens":        true,
		"redirect_uris":                   []string{public + "/web/bff/callback"},
		"post_logout_redirect_uris":       []string{public + "/web/"},
	}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

// newFAPI2DPoPEnv is oidc-provider in its FAPI 2.0 mode (DPoP nonces
// required at the token endpoint) with one fapi2 frontend "web"
// (private_key_jwt, PAR, DPoP), whose route /api/orders the test points at
// its upstream. The gateway at e.public serves the logins (/bff/login
// answers on the public origin only), with tap as its window on what it
// pushes to the provider.
func newFAPI2DPoPEnv(t *testing.T) (*panvaEnv, *providerTap) {
	t.Helper()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keyFile := writeClientKey(t, ec)
	tap := &providerTap{}
	e := newPanvaEnvWith(t, panva.Options{FAPI2: true, RequireDPoPNonce: true}, gateway.Options{HTTPClient: tap.client()}, func(public string) []map[string]any {
		return []map[string]any{fapi2Client(public, nil)}
	}, func(issuer, _ string) config.Frontend {
		return config.Frontend{Name: "web", Mount: "/web",
			OIDC: config.OIDC{Issuer: issuer, ClientID: "web-bff", Profile: config.ProfileFAPI2,
				ClientAuth: config.PrivateKeyJWT, PrivateKeyFile: keyFile},
			Routes: []config.Route{{Prefix: "/api/orders", Upstream: "http://placeholder.invalid", StripPrefix: true}},
		}
	})
	return e, tap
}

// TestPanvaDPoPClientTokenAggregateAndCodeBinding runs, against
// oidc-provider in its FAPI 2.0 mode (DPoP nonces required at the token
// endpoint), what a fapi2 frontend binds besides the user's token:
//   - the login pushes dpop_jkt (RFC 9449 section 10) and a nonce of at most
//     64 characters, and the user's token is bound to that very key;
//   - `token: client` routes send a client-credentials token bound to the
//     frontend's key: two instances, one jkt, the token's own cnf.jkt (the
//     upstream's dpop.Verifier checks the proof against the provider's
//     record of the token), and another key than any session's; so do
//     `token: user_or_client` routes without a session, and with one the
//     session's token and key;
//   - an aggregate's parts each carry their own proof for their own URL,
//     with the upstream's nonce challenge answered per part.
func TestPanvaDPoPClientTokenAggregateAndCodeBinding(t *testing.T) {
	e, tap := newFAPI2DPoPEnv(t)
	// The upstream needs the provider, known only now: the instances under
	// test are replicas on the same config, store and cookie keys.
	api := newDPoPUpstream(t, e.op)
	fe := &e.cfg.Frontends[0]
	fe.Routes = []config.Route{
		{Prefix: "/api/orders", Upstream: api.URL, StripPrefix: true, Token: config.TokenUser},
		{Prefix: "/api/catalog", Upstream: api.URL, StripPrefix: true, Token: config.TokenClient},
		{Prefix: "/api/news", Upstream: api.URL, StripPrefix: true, Token: config.TokenUserOrClient},
	}
	fe.Aggregates = []config.Aggregate{{Path: "/api/dashboard", Timeout: 10 * time.Second, Parts: map[string]config.Part{
		"orders":  {Upstream: api.URL, Path: "/orders", Required: true},
		"profile": {Upstream: api.URL, Path: "/profile/me", Required: true},
	}}}
	e.cfg.ApplyDefaults()
	if err := e.cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	inst1 := e.replica(t)
	inst2 := e.replica(t)
	inst3 := e.replica(t)

	alice := oidctest.NewBrowser(t)
	e.loginAt(t, alice, e.public, "alice")
	pushed := tap.pushed(t)
	if len(pushed) != 1 {
		t.Fatalf("%d pushed authorization requests, want 1", len(pushed))
	}
	jkt, nonce := pushed[0].Get("dpop_jkt"), pushed[0].Get("nonce")
	if jkt == "" {
		t.Fatalf("the pushed authorization request has no dpop_jkt: %v", keys(pushed[0]))
	}
	if nonce == "" || len(nonce) > 64 {
		t.Fatalf("nonce of %d characters: profile fapi2 allows 1 to 64", len(nonce))
	}
	if resp := e.call(t, alice, "GET", inst2+"/web/api/orders/1"); resp.StatusCode != 200 {
		t.Fatalf("user route: %d %s", resp.StatusCode, readBody(resp))
	}
	user := api.last(t)
	if user.sub != "alice" || user.jkt != jkt {
		t.Fatalf("the user's token is bound to %q, the code to %q (sub %q)", user.jkt, jkt, user.sub)
	}

	// token: client from two instances: one key, the token's own.
	var client []seenCall
	for _, base := range []string{inst1, inst2} {
		if resp := e.call(t, alice, "GET", base+"/web/api/catalog/items"); resp.StatusCode != 200 {
			t.Fatalf("client route on %s: %d %s", base, resp.StatusCode, readBody(resp))
		}
		client = append(client, api.last(t))
	}
	for i, c := range client {
		if c.sub != "" || c.jkt == "" || !strings.HasSuffix(c.htu, "/items") {
			t.Fatalf("client call %d: %+v: want a client-credentials token bound to a key", i, c)
		}
	}
	if client[0].jkt != client[1].jkt {
		t.Fatalf("two instances proved the client token with two keys: %s, %s", client[0].jkt, client[1].jkt)
	}
	if client[0].jkt == user.jkt {
		t.Fatal("the client token is bound to the user's session key")
	}
	for i, c := range client {
		ti, err := e.op.TokenInfo(context.Background(), c.token)
		if err != nil || !ti.Active || ti.JKT != c.jkt || ti.ClientID != "web-bff" {
			t.Fatalf("client token %d at the provider: %+v %v", i, ti, err)
		}
	}

	// token: user_or_client: the user's token and key with a session, the
	// client's without one.
	if resp := e.call(t, alice, "GET", inst1+"/web/api/news/1"); resp.StatusCode != 200 {
		t.Fatalf("user_or_client route as alice: %d %s", resp.StatusCode, readBody(resp))
	}
	if c := api.last(t); c.sub != "alice" || c.jkt != user.jkt {
		t.Fatalf("user_or_client route as alice: %+v", c)
	}
	if resp := e.call(t, oidctest.NewBrowser(t), "GET", inst1+"/web/api/news/1"); resp.StatusCode != 200 {
		t.Fatalf("user_or_client route without a session: %d %s", resp.StatusCode, readBody(resp))
	}
	if c := api.last(t); c.sub != "" || c.jkt != client[0].jkt {
		t.Fatalf("user_or_client route without a session: %+v, want the client token and key", c)
	}

	// The aggregate on an instance that has not met the upstream's nonce
	// yet: each part is challenged, retried, and proves its own URL.
	api.mu.Lock()
	seenBefore, challengesBefore := len(api.seen), api.challenges
	api.mu.Unlock()
	resp := e.call(t, alice, "GET", inst3+"/web/api/dashboard")
	body := readBody(resp)
	if resp.StatusCode != 200 {
		t.Fatalf("aggregate: %d %s", resp.StatusCode, body)
	}
	var parts map[string]map[string]any
	if err := json.Unmarshal([]byte(body), &parts); err != nil || parts["orders"]["ok"] != true || parts["profile"]["ok"] != true {
		t.Fatalf("aggregate answer %s: %v", body, err)
	}
	api.mu.Lock()
	calls, challenges := append([]seenCall(nil), api.seen[seenBefore:]...), api.challenges-challengesBefore
	api.mu.Unlock()
	if challenges == 0 {
		t.Error("no part was challenged for a nonce: the retry was not exercised")
	}
	htus := map[string]bool{}
	for _, c := range calls {
		if c.sub != "alice" || c.jkt != user.jkt {
			t.Fatalf("aggregate part with %+v, want alice's token and key", c)
		}
		htus[c.htu] = true
	}
	if !htus[api.URL+"/orders"] || !htus[api.URL+"/profile/me"] || len(calls) != 2 {
		t.Fatalf("aggregate parts proved %v in %d accepted calls, want each part's own URL once", htus, len(calls))
	}
}

func keys(v url.Values) []string {
	var out []string
	for k := range v {
		out = append(out, k)
	}
	return out
}

// TestPanvaDPoPLoginRefusals drives two login refusals of profile fapi2
// through the HTTP login flow against oidc-provider. Each must fail the
// login the way every callback failure does (302 back to the login's
// returnTo with error=login_failed, no session, the reason logged at warn
// level). The third, a Bearer token to a DPoP request, needs no fake: the
// zitadel example OP does it (TestDPoPFrontendRefusesBearerTokens).
func TestPanvaDPoPLoginRefusals(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keyFile := writeClientKey(t, ec)
	fapi2Frontend := func(issuer, _ string) config.Frontend {
		return config.Frontend{Name: "web", Mount: "/web",
			OIDC: config.OIDC{Issuer: issuer, ClientID: "web-bff", Profile: config.ProfileFAPI2,
				ClientAuth: config.PrivateKeyJWT, PrivateKeyFile: keyFile},
		}
	}
	cases := []struct {
		name    string
		op      panva.Options
		client  func(public string) map[string]any
		fe      func(issuer, orders string) config.Frontend
		editCB  func(q url.Values) // the test as a party between provider and browser
		reason  string
		message string
	}{
		{
			// oidc-provider always sends iss (RFC 9207). The zitadel
			// example OP never does (its code response has code, state and
			// session_state), but it has no PAR endpoint, so a fapi2 login
			// never reaches its callback. A provider without iss is played
			// here by removing it from the redirect before the browser
			// follows it.
			name: "fapi2 and no iss in the authorization response",
			op:   panva.Options{FAPI2: true},
			client: func(public string) map[string]any {
				return fapi2Client(public, nil)
			},
			fe:      fapi2Frontend,
			editCB:  func(q url.Values) { q.Del("iss") },
			reason:  "invalid_response",
			message: "no iss parameter",
		},
		{
			// A real RS256 ID token: the provider outside its FAPI mode
			// (it would refuse RS256 for a FAPI client) with PAR, DPoP
			// and private_key_jwt as the profile asks.
			name: "fapi2 and an RS256 ID token",
			op:   panva.Options{},
			client: func(public string) map[string]any {
				return fapi2Client(public, map[string]any{"id_token_signed_response_alg": "RS256"})
			},
			fe:      fapi2Frontend,
			reason:  "invalid_id_token",
			message: "RS256",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			logs := &logBuffer{}
			gwo := gateway.Options{Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
			e := newPanvaEnvWith(t, c.op, gwo, func(public string) []map[string]any {
				return []map[string]any{c.client(public)}
			}, c.fe)
			b := oidctest.NewBrowser(t)
			cb, _, err := e.op.Login(context.Background(), b.Client, e.public+"/web/bff/login?returnTo=/web/", "alice")
			if err != nil {
				t.Fatalf("login at the provider: %v", err)
			}
			u, _ := url.Parse(cb)
			if c.editCB != nil {
				q := u.Query()
				c.editCB(q)
				u.RawQuery = q.Encode()
			}
			req, _ := http.NewRequest(http.MethodGet, u.String(), nil)
			resp, err := b.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/web/?error=login_failed" {
				t.Fatalf("callback: %d to %q, want 302 to /web/?error=login_failed: %s", resp.StatusCode, resp.Header.Get("Location"), readBody(resp))
			}
			for _, ck := range resp.Cookies() {
				if ck.Name == "bff-web" && ck.Value != "" {
					t.Fatalf("a session cookie was set: %s", ck.Name)
				}
			}
			if resp := e.call(t, b, "GET", "/web/bff/user"); resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("user after the refused login: %d, want 401", resp.StatusCode)
			}
			var found bool
			for _, l := range logs.lines(t) {
				if l["event"] == "login_failed" {
					found = true
					if l["level"] != "WARN" || l["reason"] != c.reason || !strings.Contains(l["error"].(string), c.message) {
						t.Fatalf("login_failed line %v: want WARN, reason %s, error mentioning %q", l, c.reason, c.message)
					}
				}
			}
			if !found {
				t.Fatal("no login_failed audit line")
			}
		})
	}
}

// TestPanvaDPoPLoginAcrossCookieKeyRotation: a login's DPoP key is derived
// from the first cookie key pair and the login's state. During a rolling
// rotation (the new pair put first on one instance while another still
// runs the old configuration) a login begun on the old instance and ended
// on the new one must end with the key /login bound the code to, made from
// the older pair, which the new instance still holds to open old cookies.
func TestPanvaDPoPLoginAcrossCookieKeyRotation(t *testing.T) {
	e, tap := newFAPI2DPoPEnv(t)
	api := newDPoPUpstream(t, e.op)
	e.cfg.Frontends[0].Routes = []config.Route{{Prefix: "/api/orders", Upstream: api.URL, StripPrefix: true, Token: config.TokenUser}}

	// The rotated instance: a new first pair, the old one kept second.
	rotated := *e.cfg
	rotated.Sessions.CookieKeys = append([]config.CookieKey{{Hash: randomKey(32), Block: randomKey(32)}}, e.cfg.Sessions.CookieKeys...)
	rotated.ApplyDefaults()
	if err := rotated.Validate(); err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(&rotated, gateway.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw.Handler(true))
	t.Cleanup(func() { srv.Close(); gw.Close() })

	// /login on the old instance (the public origin), the callback on the
	// rotated one: the browser's cookie jar sends the login cookie to both
	// (cookies are per host, not per port).
	alice := oidctest.NewBrowser(t)
	cb, _, err := e.op.Login(context.Background(), alice.Client, e.public+"/web/bff/login?returnTo=/web/", "alice")
	if err != nil {
		t.Fatalf("login at the provider: %v", err)
	}
	pushed := tap.pushed(t)
	if len(pushed) != 1 || pushed[0].Get("dpop_jkt") == "" {
		t.Fatalf("pushed authorization requests: %v", pushed)
	}
	jkt := pushed[0].Get("dpop_jkt")
	u, _ := url.Parse(cb)
	u.Host = strings.TrimPrefix(srv.URL, "http://")
	req, _ := http.NewRequest(http.MethodGet, u.String(), nil)
	resp, err := alice.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/web/" {
		t.Fatalf("callback on the rotated instance: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if r := e.call(t, alice, http.MethodGet, srv.URL+"/web/api/orders/1"); r.StatusCode != http.StatusOK {
		t.Fatalf("API call on the rotated instance: %d %s", r.StatusCode, readBody(r))
	}
	if got := api.last(t); got.sub != "alice" || got.jkt != jkt {
		t.Fatalf("the token is bound to %q (sub %q); /login bound the code to %q", got.jkt, got.sub, jkt)
	}
}
