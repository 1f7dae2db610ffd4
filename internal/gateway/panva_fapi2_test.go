package gateway_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bffgate/bffgate/config"
	"github.com/bffgate/bffgate/dpop"
	"github.com/bffgate/bffgate/internal/gateway"
	"github.com/bffgate/bffgate/internal/oidctest"
	"github.com/bffgate/bffgate/internal/panva"
)

// dpopUpstream is a resource server that verifies DPoP with the dpop
// package: the token's cnf.jkt comes from the provider (its access tokens
// are opaque), and it asks for its own nonces, so the gateway's
// use_dpop_nonce retry runs too.
type dpopUpstream struct {
	*httptest.Server
	mu         sync.Mutex
	seen       []seenCall // accepted calls
	challenges int        // 401 answers
}

type seenCall struct{ sub, jkt, token, htu string }

func newDPoPUpstream(t *testing.T, op *panva.Provider) *dpopUpstream {
	u := &dpopUpstream{}
	v := &dpop.Verifier{Nonces: dpop.NewNonces(time.Minute)}
	verify := func(ctx context.Context, token string) (string, any, error) {
		ti, err := op.TokenInfo(ctx, token)
		if err != nil || !ti.Active {
			return "", nil, errInactive
		}
		return ti.JKT, ti, nil
	}
	h := v.Middleware(verify, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ti := dpop.ClaimsFrom(r.Context()).(panva.TokenInfo)
		tok, _ := dpop.AccessToken(r)
		u.mu.Lock()
		u.seen = append(u.seen, seenCall{sub: ti.Sub, jkt: ti.JKT, token: tok, htu: dpop.ProofFrom(r.Context()).HTU})
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		h.ServeHTTP(rec, r)
		if rec.status == http.StatusUnauthorized {
			u.mu.Lock()
			u.challenges++
			u.mu.Unlock()
		}
	}))
	t.Cleanup(u.Close)
	return u
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) { s.status = code; s.ResponseWriter.WriteHeader(code) }

type inactiveError struct{}

func (inactiveError) Error() string { return "token not active" }

var errInactive = inactiveError{}

func (u *dpopUpstream) last(t testing.TB) seenCall {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		t.Fatal("the upstream accepted no call")
	}
	return u.seen[len(u.seen)-1]
}

// TestPanvaFAPI2 runs the whole life of sessions with profile fapi2 against
// oidc-provider in its FAPI 2.0 mode (PAR required, private_key_jwt, DPoP
// with server nonces on every token request, ES256 ID and logout tokens):
// login, API calls verified by a DPoP-checking upstream (two sessions, two
// keys; one session, the same key on a second instance), refresh, back-channel
// logout and RP-initiated logout.
func TestPanvaFAPI2(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keyFile := writeClientKey(t, ec)
	var api *dpopUpstream
	e := newPanvaEnv(t, panva.Options{FAPI2: true, RequireDPoPNonce: true, AccessTokenTTL: 6}, func(public string) []map[string]any {
		return []map[string]any{{
			"client_id":                           "web-bff",
			"token_endpoint_auth_method":          "private_key_jwt",
			"token_endpoint_auth_signing_alg":     "ES256",
			"jwks_uri":                            public + "/web/bff/jwks",
			"id_token_signed_response_alg":        "ES256",
			"dpop_bound_access_tokens":            true,
			"redirect_uris":                       []string{public + "/web/bff/callback"},
			"post_logout_redirect_uris":           []string{public + "/web/"},
			"backchannel_logout_uri":              public + "/web/bff/backchannel-logout",
			"backchannel_logout_session_required": true,
		}}
	}, func(issuer, _ string) config.Frontend {
		return config.Frontend{Name: "web", Mount: "/web",
			OIDC: config.OIDC{Issuer: issuer, ClientID: "web-bff", Profile: config.ProfileFAPI2,
				ClientAuth: config.PrivateKeyJWT, PrivateKeyFile: keyFile},
			Routes: []config.Route{{Prefix: "/api/orders", Upstream: "http://placeholder.invalid", StripPrefix: true}},
		}
	})
	// The route's upstream needs the provider's address, known only now:
	// a gateway instance built on the same config and store, as a replica.
	api = newDPoPUpstream(t, e.op)
	e.cfg.Frontends[0].Routes[0].Upstream = api.URL
	inst1 := e.replica(t)
	inst2 := e.replica(t)

	ctx := context.Background()
	alice := oidctest.NewBrowser(t)
	_, authz := e.loginAt(t, alice, inst1, "alice")
	if u, _ := url.Parse(authz); len(u.Query()) != 2 || u.Query().Get("request_uri") == "" {
		t.Fatalf("authorization request %s: want only client_id and request_uri (PAR)", authz)
	}
	if resp := e.call(t, alice, "GET", inst1+"/web/api/orders/1"); resp.StatusCode != 200 {
		t.Fatalf("api: %d %s", resp.StatusCode, readBody(resp))
	}
	a := api.last(t)
	if a.sub != "alice" || a.jkt == "" {
		t.Fatalf("upstream saw %+v", a)
	}
	if api.challenges == 0 {
		t.Error("the upstream's nonce challenge never happened: the retry was not exercised")
	}

	bob := oidctest.NewBrowser(t)
	e.loginAt(t, bob, inst1, "bob")
	if resp := e.call(t, bob, "GET", inst1+"/web/api/orders/1"); resp.StatusCode != 200 {
		t.Fatalf("api bob: %d %s", resp.StatusCode, readBody(resp))
	}
	if bb := api.last(t); bb.sub != "bob" || bb.jkt == "" || bb.jkt == a.jkt {
		t.Fatalf("two sessions must have two keys: alice %s, bob %+v", a.jkt, bb)
	}

	// The same session on the other instance proves with the same key.
	if resp := e.call(t, alice, "GET", inst2+"/web/api/orders/2"); resp.StatusCode != 200 {
		t.Fatalf("api on instance 2: %d %s", resp.StatusCode, readBody(resp))
	}
	if a2 := api.last(t); a2.sub != "alice" || a2.jkt != a.jkt {
		t.Fatalf("one session, two instances, two keys: %s vs %s", a.jkt, a2.jkt)
	}

	// Refresh: the 6 s token is due (it refreshes beside the requests,
	// which go on with the current token); the new token is bound to the
	// same key.
	time.Sleep(3500 * time.Millisecond)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if resp := e.call(t, alice, "GET", inst1+"/web/api/orders/3"); resp.StatusCode != 200 {
			t.Fatalf("api after expiry: %d %s", resp.StatusCode, readBody(resp))
		}
		if api.last(t).token != a.token || time.Now().After(deadline) {
			break
		}
	}
	if a3 := api.last(t); a3.token == a.token || a3.jkt != a.jkt {
		t.Fatalf("refresh: same token %v, jkt %s vs %s", a3.token == a.token, a3.jkt, a.jkt)
	}

	// Back-channel logout: bob ends his session at the provider, which
	// posts an ES256 logout token to the gateway.
	if _, err := e.op.ConfirmLogout(ctx, bob.Client, e.op.Issuer+"/session/end?client_id=web-bff"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp := e.call(t, bob, "GET", inst2+"/web/bff/user")
		if resp.StatusCode == http.StatusUnauthorized {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob's session survived back-channel logout: %d", resp.StatusCode)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if resp := e.call(t, alice, "GET", inst2+"/web/bff/user"); resp.StatusCode != 200 {
		t.Fatalf("alice was logged out with bob: %d", resp.StatusCode)
	}

	// RP-initiated logout.
	resp := e.call(t, alice, "POST", inst1+"/web/bff/logout")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), e.op.Issuer+"/session/end") {
		t.Fatalf("logout: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if final, err := e.op.ConfirmLogout(ctx, alice.Client, resp.Header.Get("Location")); err != nil || final != e.public+"/web/" {
		t.Fatalf("logout at the provider ended at %q: %v", final, err)
	}
	if resp := e.call(t, alice, "GET", inst2+"/web/bff/user"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("alice after logout: %d", resp.StatusCode)
	}
}

// replica starts another gateway on e's (possibly changed) config and store.
func (e *panvaEnv) replica(t testing.TB) string {
	t.Helper()
	return e.replicaWith(t, gateway.Options{})
}

// replicaWith is replica with o (for instance a provider client that
// records or rewrites what the provider is told).
func (e *panvaEnv) replicaWith(t testing.TB, o gateway.Options) string {
	t.Helper()
	gw, err := gateway.New(e.cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gw.Handler(true))
	t.Cleanup(func() { srv.Close(); gw.Close() })
	return srv.URL
}

// loginAt runs the code flow through the gateway at base.
func (e *panvaEnv) loginAt(t testing.TB, b *oidctest.Browser, base, user string) (*http.Response, string) {
	t.Helper()
	cb, authz, err := e.op.Login(context.Background(), b.Client, base+"/web/bff/login?returnTo=/web/", user)
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	req, _ := http.NewRequest(http.MethodGet, cb, nil)
	resp, err := b.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/web/" {
		t.Fatalf("callback: %d to %q: %s", resp.StatusCode, resp.Header.Get("Location"), readBody(resp))
	}
	return resp, authz.String()
}
