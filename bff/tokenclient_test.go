package bff

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"github.com/bffgate/bffgate/config"
	"github.com/bffgate/bffgate/dpop"
)

// fakeTokenEndpoint records each request's form and headers and answers
// with answer(i, r) for the i-th request.
type fakeTokenEndpoint struct {
	*httptest.Server
	mu    sync.Mutex
	forms []url.Values
	hdrs  []http.Header
}

func newFakeTokenEndpoint(t *testing.T, answer func(i int, w http.ResponseWriter, r *http.Request)) *fakeTokenEndpoint {
	f := &fakeTokenEndpoint{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil {
			t.Errorf("form: %v", err)
		}
		f.mu.Lock()
		i := len(f.forms)
		f.forms = append(f.forms, r.PostForm)
		f.hdrs = append(f.hdrs, r.Header.Clone())
		f.mu.Unlock()
		answer(i, w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

func tokenAnswer(w http.ResponseWriter, typ string) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"access_token":"at-1","token_type":"` + typ + `","expires_in":300,"refresh_token":"rt-1","id_token":"idt"}`))
}

func writeKey(t *testing.T, key any) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "client.key")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func testMeta(tokenURL string) *providerMeta {
	return &providerMeta{issuer: "https://idp.test/realm", revocation: tokenURL + "/revoke",
		oauth: oauth2.Config{RedirectURL: "https://app.test/web/bff/callback", Endpoint: oauth2.Endpoint{TokenURL: tokenURL + "/token"}}}
}

func TestTokenClientSecretMethods(t *testing.T) {
	srv := newFakeTokenEndpoint(t, func(_ int, w http.ResponseWriter, _ *http.Request) { tokenAnswer(w, "Bearer") })
	meta := testMeta(srv.URL)
	for _, method := range []string{"", config.ClientSecretBasic, config.ClientSecretPost} {
		tc, err := newTokenClient(config.OIDC{ClientID: "web bff", ClientSecret: "s&cret", ClientAuth: method}, srv.Client(), time.Now)
		if err != nil {
			t.Fatal(err)
		}
		tok, err := tc.exchangeCode(context.Background(), meta, "the-code", "the-verifier", nil)
		if err != nil {
			t.Fatal(err)
		}
		if tok.AccessToken != "at-1" || tok.RefreshToken != "rt-1" || tok.Extra("id_token") != "idt" || time.Until(tok.Expiry) < 290*time.Second {
			t.Fatalf("token %+v", tok)
		}
		form, hdr := srv.forms[len(srv.forms)-1], srv.hdrs[len(srv.hdrs)-1]
		if form.Get("grant_type") != "authorization_code" || form.Get("code") != "the-code" || form.Get("code_verifier") != "the-verifier" ||
			form.Get("redirect_uri") != "https://app.test/web/bff/callback" {
			t.Fatalf("form %v", form)
		}
		user, pass, basic := (&http.Request{Header: hdr}).BasicAuth()
		if method == config.ClientSecretPost {
			if basic || form.Get("client_id") != "web bff" || form.Get("client_secret") != "s&cret" {
				t.Fatalf("post: basic=%v form %v", basic, form)
			}
		} else if !basic || user != "web+bff" || pass != "s%26cret" || form.Has("client_secret") {
			t.Fatalf("basic: %q %q %v form %v", user, pass, basic, form)
		}
		if hdr.Get("DPoP") != "" {
			t.Fatal("DPoP proof without a key")
		}
	}
}

func TestTokenClientPrivateKeyJWT(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	for name, key := range map[string]any{"ES256": ec, "PS256": rsaKey} {
		t.Run(name, func(t *testing.T) {
			srv := newFakeTokenEndpoint(t, func(_ int, w http.ResponseWriter, _ *http.Request) { tokenAnswer(w, "Bearer") })
			meta := testMeta(srv.URL)
			now := time.Unix(1_800_000_000, 0)
			tc, err := newTokenClient(config.OIDC{ClientID: "web-bff", ClientAuth: config.PrivateKeyJWT, PrivateKeyPath: writeKey(t, key)},
				srv.Client(), func() time.Time { return now })
			if err != nil {
				t.Fatal(err)
			}
			rec := httptest.NewRecorder()
			if !tc.serveJWKS(rec) {
				t.Fatal("no JWK Set")
			}
			var set jose.JSONWebKeySet
			if err := json.Unmarshal(rec.Body.Bytes(), &set); err != nil || len(set.Keys) != 1 {
				t.Fatalf("jwks %s: %v", rec.Body, err)
			}
			pub := set.Keys[0]
			if !pub.IsPublic() || pub.Algorithm != name || pub.Use != "sig" {
				t.Fatalf("jwk %+v", pub)
			}
			if thumb, _ := dpop.Thumbprint(pub); pub.KeyID != thumb {
				t.Fatalf("kid %s is not the RFC 7638 thumbprint %s", pub.KeyID, thumb)
			}
			for range 2 {
				if _, err := tc.refresh(context.Background(), meta, "rt-0", nil); err != nil {
					t.Fatal(err)
				}
			}
			if err := tc.revoke(context.Background(), meta, "rt-0", "refresh_token"); err != nil {
				t.Fatal(err)
			}
			jtis := map[string]bool{}
			for i, form := range srv.forms {
				if (&http.Request{Header: srv.hdrs[i]}).Header.Get("Authorization") != "" || form.Has("client_secret") {
					t.Fatal("a secret was sent with private_key_jwt")
				}
				if form.Get("client_id") != "web-bff" || form.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
					t.Fatalf("form %v", form)
				}
				jws, err := jose.ParseSignedCompact(form.Get("client_assertion"), []jose.SignatureAlgorithm{jose.SignatureAlgorithm(name)})
				if err != nil {
					t.Fatal(err)
				}
				if jws.Signatures[0].Header.KeyID != pub.KeyID {
					t.Fatalf("assertion kid %q", jws.Signatures[0].Header.KeyID)
				}
				payload, err := jws.Verify(pub)
				if err != nil {
					t.Fatalf("assertion does not verify with the served JWK: %v", err)
				}
				var c map[string]any
				_ = json.Unmarshal(payload, &c)
				if c["iss"] != "web-bff" || c["sub"] != "web-bff" || c["aud"] != "https://idp.test/realm" ||
					c["exp"].(float64)-float64(now.Unix()) > 60 || c["exp"].(float64) <= float64(now.Unix()) {
					t.Fatalf("assertion claims %v", c)
				}
				jti, _ := c["jti"].(string)
				if jti == "" || jtis[jti] {
					t.Fatalf("jti %q empty or reused", jti)
				}
				jtis[jti] = true
			}
		})
	}
	// Other frontends have no JWK Set.
	tc, _ := newTokenClient(config.OIDC{ClientID: "x", ClientSecret: "y"}, http.DefaultClient, time.Now)
	if tc.serveJWKS(httptest.NewRecorder()) {
		t.Fatal("JWK Set served without private_key_jwt")
	}
}

// Fakes for what a real provider does not do on demand: a nonce challenge on
// every request, a Bearer answer to a DPoP request.
func TestTokenClientDPoP(t *testing.T) {
	key, _ := dpop.GenerateKey()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keyPath := writeKey(t, ec)
	newTC := func(hc *http.Client) *tokenClient {
		tc, err := newTokenClient(config.OIDC{ClientID: "web-bff", ClientAuth: config.PrivateKeyJWT, PrivateKeyPath: keyPath}, hc, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		return tc
	}
	checkProof := func(t *testing.T, r *http.Request, wantNonce string) {
		t.Helper()
		v := &dpop.Verifier{}
		p, err := v.Check(r, "", "")
		if err != nil {
			t.Fatalf("proof: %v", err)
		}
		if p.Thumbprint != key.Thumbprint() || p.Nonce != wantNonce || p.ATH != "" {
			t.Fatalf("proof %+v, want nonce %q", p, wantNonce)
		}
	}

	t.Run("nonce retry", func(t *testing.T) {
		srv := newFakeTokenEndpoint(t, func(i int, w http.ResponseWriter, r *http.Request) {
			if i == 0 {
				checkProof(t, r, "")
				w.Header().Set("DPoP-Nonce", "n-1")
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusBadRequest)
				_, _ = w.Write([]byte(`{"error":"use_dpop_nonce"}`))
				return
			}
			checkProof(t, r, "n-1")
			tokenAnswer(w, "DPoP")
		})
		tc := newTC(srv.Client())
		tok, err := tc.exchangeCode(context.Background(), testMeta(srv.URL), "c", "v", key)
		if err != nil || tok.TokenType != "DPoP" {
			t.Fatalf("%v %v", tok, err)
		}
		if len(srv.forms) != 2 || srv.forms[0].Get("client_assertion") == srv.forms[1].Get("client_assertion") {
			t.Fatalf("%d requests; the retry must carry a fresh assertion", len(srv.forms))
		}
		// The nonce is remembered for the next request (checked by the
		// handler): no second challenge.
		if _, err := tc.refresh(context.Background(), testMeta(srv.URL), "rt", key); err != nil {
			t.Fatal(err)
		}
		srv.mu.Lock()
		defer srv.mu.Unlock()
		if len(srv.forms) != 3 {
			t.Fatalf("%d requests, want 3", len(srv.forms))
		}
	})

	t.Run("nonce on every request: one retry only", func(t *testing.T) {
		srv := newFakeTokenEndpoint(t, func(i int, w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("DPoP-Nonce", "n-"+string(rune('a'+i)))
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"use_dpop_nonce"}`))
		})
		_, err := newTC(srv.Client()).refresh(context.Background(), testMeta(srv.URL), "rt", key)
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.ErrorCode != "use_dpop_nonce" || len(srv.forms) != 2 {
			t.Fatalf("err %v after %d requests", err, len(srv.forms))
		}
	})

	t.Run("bearer downgrade", func(t *testing.T) {
		srv := newFakeTokenEndpoint(t, func(_ int, w http.ResponseWriter, _ *http.Request) { tokenAnswer(w, "Bearer") })
		_, err := newTC(srv.Client()).exchangeCode(context.Background(), testMeta(srv.URL), "c", "v", key)
		if !errors.Is(err, errBearerDowngrade) {
			t.Fatalf("err %v", err)
		}
	})

	t.Run("error answer", func(t *testing.T) {
		srv := newFakeTokenEndpoint(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"invalid_grant","error_description":"spent"}`))
		})
		_, err := newTC(srv.Client()).refresh(context.Background(), testMeta(srv.URL), "rt", key)
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" || re.Response.StatusCode != 400 || !strings.Contains(re.ErrorDescription, "spent") {
			t.Fatalf("err %v", err)
		}
	})
}

// The token-exchange grant (RFC 8693) goes through the same client: its
// form, the frontend's client authentication, and with a DPoP key a proof
// and the one nonce retry. A fake provider, because the zitadel OP in the
// gateway tests does no DPoP, and oidc-provider has no token exchange. A
// Bearer answer is accepted here (the provider decides per audience).
func TestTokenClientExchange(t *testing.T) {
	key, _ := dpop.GenerateKey()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tc := func(t *testing.T, hc *http.Client) *tokenClient {
		tc, err := newTokenClient(config.OIDC{ClientID: "web-bff", ClientAuth: config.PrivateKeyJWT, PrivateKeyPath: writeKey(t, ec)}, hc, time.Now)
		if err != nil {
			t.Fatal(err)
		}
		return tc
	}
	tests := []struct {
		name     string
		x        config.Exchange
		key      *dpop.Key
		answer   string // token_type answered
		wantForm url.Values
	}{
		{
			name: "audience, resource and scopes, DPoP-bound answer", key: key, answer: "DPoP",
			x:        config.Exchange{Audience: "payments-api", Resource: "https://payments.internal/", Scopes: []string{"pay.read", "pay.write"}},
			wantForm: url.Values{"audience": {"payments-api"}, "resource": {"https://payments.internal/"}, "scope": {"pay.read pay.write"}},
		},
		{
			name: "resource only, Bearer answer to a DPoP request", key: key, answer: "Bearer",
			x:        config.Exchange{Resource: "https://ledger.internal/"},
			wantForm: url.Values{"resource": {"https://ledger.internal/"}},
		},
		{
			name: "without DPoP", answer: "Bearer",
			x:        config.Exchange{Audience: "payments-api"},
			wantForm: url.Values{"audience": {"payments-api"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var (
				mu       sync.Mutex
				proof    *dpop.Proof
				proofErr error
			)
			srv := newFakeTokenEndpoint(t, func(i int, w http.ResponseWriter, r *http.Request) {
				if tt.key != nil && i == 1 {
					mu.Lock()
					proof, proofErr = (&dpop.Verifier{}).Check(r, "", "")
					mu.Unlock()
				}
				if tt.key != nil && i == 0 {
					w.Header().Set("DPoP-Nonce", "n-1")
					w.WriteHeader(http.StatusBadRequest)
					_, _ = w.Write([]byte(`{"error":"use_dpop_nonce"}`))
					return
				}
				tokenAnswer(w, tt.answer)
			})
			tok, err := tc(t, srv.Client()).exchange(context.Background(), testMeta(srv.URL), "user-at", tt.x, tt.key)
			if err != nil {
				t.Fatal(err)
			}
			if tok.AccessToken != "at-1" || tok.TokenType != tt.answer {
				t.Fatalf("token %+v", tok)
			}
			wantRequests := 1
			if tt.key != nil {
				wantRequests = 2
			}
			if len(srv.forms) != wantRequests {
				t.Fatalf("%d requests, want %d", len(srv.forms), wantRequests)
			}
			form, hdr := srv.forms[len(srv.forms)-1], srv.hdrs[len(srv.hdrs)-1]
			want := url.Values{
				"grant_type":           {"urn:ietf:params:oauth:grant-type:token-exchange"},
				"subject_token":        {"user-at"},
				"subject_token_type":   {"urn:ietf:params:oauth:token-type:access_token"},
				"requested_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
			}
			for k, v := range tt.wantForm {
				want[k] = v
			}
			for k, v := range want {
				if got := form[k]; len(got) != 1 || got[0] != v[0] {
					t.Errorf("%s = %q, want %q", k, got, v[0])
				}
			}
			for _, k := range []string{"audience", "resource", "scope"} {
				if _, asked := want[k]; !asked && form.Has(k) {
					t.Errorf("%s sent although not configured: %q", k, form.Get(k))
				}
			}
			if form.Get("client_assertion") == "" || form.Has("client_secret") {
				t.Errorf("client authentication: form %v", form)
			}
			if tt.key == nil {
				if hdr.Get("DPoP") != "" {
					t.Error("DPoP proof without a key")
				}
				return
			}
			if srv.forms[0].Get("client_assertion") == form.Get("client_assertion") {
				t.Error("the nonce retry reused the client assertion")
			}
			mu.Lock()
			defer mu.Unlock()
			if proofErr != nil || proof == nil || proof.Thumbprint != key.Thumbprint() || proof.Nonce != "n-1" {
				t.Errorf("retry proof %+v, %v: want the session key's, with the provider's nonce", proof, proofErr)
			}
		})
	}
}
