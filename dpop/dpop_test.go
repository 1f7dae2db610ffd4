package dpop

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

func mustKey(t testing.TB) *Key {
	t.Helper()
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// RFC 7638 section 3.1 and RFC 9449 section 6.1 examples.
func TestThumbprintVectors(t *testing.T) {
	tests := []struct {
		name, jwk, want string
	}{
		{"rfc7638 RSA", `{"kty":"RSA","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw","e":"AQAB","alg":"RS256","kid":"2011-04-29"}`, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"},
		{"rfc9449 EC", `{"kty":"EC","x":"l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs","y":"9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA","crv":"P-256"}`, "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var k jose.JSONWebKey
			if err := json.Unmarshal([]byte(tt.jwk), &k); err != nil {
				t.Fatal(err)
			}
			got, err := Thumbprint(k)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("thumbprint %s, want %s", got, tt.want)
			}
		})
	}
}

func TestATHVector(t *testing.T) {
	// RFC 9449 section 7.1: the ath of the example access token.
	if got := ATH("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"); got != "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo" {
		t.Fatalf("ath %s", got)
	}
}

func TestHTU(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://Server.Example.com:443/token?x=1#f", "https://server.example.com/token"},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080/"},
		{"HTTP://a:80/p%2Fq", "http://a/p%2Fq"},
		{"http://[::1]:9000/x", "http://[::1]:9000/x"},
	}
	for _, tt := range tests {
		got, err := HTU(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("HTU(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "/relative", "ftp://x/", "mailto:a@b", "http://"} {
		if _, err := HTU(bad); err == nil {
			t.Errorf("HTU(%q) accepted", bad)
		}
	}
}

func TestKeyMarshalRoundTrip(t *testing.T) {
	k := mustKey(t)
	der, err := k.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	k2, err := ParseKey(der)
	if err != nil {
		t.Fatal(err)
	}
	if k2.Thumbprint() != k.Thumbprint() {
		t.Fatal("thumbprint changed")
	}
	if _, err := ParseKey([]byte("junk")); err == nil {
		t.Fatal("junk accepted")
	}
}

func TestProofContents(t *testing.T) {
	k := mustKey(t)
	now := time.Unix(1_700_000_000, 0)
	proof, err := k.Proof("POST", "https://as.example/token?q=1#frag", ProofOptions{AccessToken: "tok", Nonce: "n1", Now: now})
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(proof, ".")
	if len(parts) != 3 {
		t.Fatalf("not compact: %s", proof)
	}
	var hdr map[string]any
	raw, _ := base64.RawURLEncoding.DecodeString(parts[0])
	if err := json.Unmarshal(raw, &hdr); err != nil {
		t.Fatal(err)
	}
	if hdr["typ"] != "dpop+jwt" || hdr["alg"] != "ES256" || hdr["jwk"] == nil {
		t.Fatalf("header %v", hdr)
	}
	if _, ok := hdr["jwk"].(map[string]any)["d"]; ok {
		t.Fatal("private key in header")
	}
	p, err := ParseProof(proof, nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.HTM != "POST" || p.HTU != "https://as.example/token" || !p.IssuedAt.Equal(now) || p.Nonce != "n1" ||
		p.ATH != ATH("tok") || p.JTI == "" || p.Thumbprint != k.Thumbprint() {
		t.Fatalf("proof %+v", p)
	}
	again, _ := k.Proof("POST", "https://as.example/token", ProofOptions{Now: now})
	p2, _ := ParseProof(again, nil)
	if p2.JTI == p.JTI {
		t.Fatal("jti reused")
	}
	if p2.ATH != "" {
		t.Fatal("ath without access token")
	}
}

// signRaw signs arbitrary claims with arbitrary headers, for malformed proofs.
func signRaw(t *testing.T, alg jose.SignatureAlgorithm, key any, headers map[jose.HeaderKey]any, claims any) string {
	t.Helper()
	opts := &jose.SignerOptions{ExtraHeaders: headers}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestVerifierCheck(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	const target = "http://api.internal:8080/orders/7"
	const token = "access-token-1"
	k := mustKey(t)
	other := mustKey(t)
	ecPriv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	pubJWK := jose.JSONWebKey{Key: &ecPriv.PublicKey}
	goodClaims := func() map[string]any {
		return map[string]any{"jti": "j-" + newJTI(), "htm": "GET", "htu": target, "iat": now.Unix(), "ath": ATH(token)}
	}
	mint := func(mod func(*ProofOptions)) func(t *testing.T) string {
		return func(t *testing.T) string {
			o := ProofOptions{AccessToken: token, Now: now}
			if mod != nil {
				mod(&o)
			}
			p, err := k.Proof("GET", target+"?page=2", o)
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
	}
	tamperPayload := func(t *testing.T) string {
		p := mint(nil)(t)
		parts := strings.Split(p, ".")
		raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
		var c map[string]any
		_ = json.Unmarshal(raw, &c)
		c["htu"] = "http://api.internal:8080/admin"
		raw, _ = json.Marshal(c)
		parts[1] = base64.RawURLEncoding.EncodeToString(raw)
		return strings.Join(parts, ".")
	}
	tests := []struct {
		name     string
		method   string
		url      string
		proof    func(t *testing.T) string
		token    string
		jkt      string
		wantCode string // "" = accepted
	}{
		{name: "valid", proof: mint(nil)},
		{name: "valid without token (token endpoint)", token: "-", proof: func(t *testing.T) string {
			p, _ := k.Proof("GET", target, ProofOptions{Now: now})
			return p
		}},
		{name: "query ignored", url: target + "?x=1", proof: mint(nil)},
		{name: "wrong method", method: "POST", proof: mint(nil), wantCode: CodeInvalidProof},
		{name: "wrong path", url: "http://api.internal:8080/orders/8", proof: mint(nil), wantCode: CodeInvalidProof},
		{name: "wrong host", url: "http://evil:8080/orders/7", proof: mint(nil), wantCode: CodeInvalidProof},
		{name: "too old", proof: mint(func(o *ProofOptions) { o.Now = now.Add(-61 * time.Second) }), wantCode: CodeInvalidProof},
		{name: "slightly old ok", proof: mint(func(o *ProofOptions) { o.Now = now.Add(-59 * time.Second) })},
		{name: "future", proof: mint(func(o *ProofOptions) { o.Now = now.Add(6 * time.Second) }), wantCode: CodeInvalidProof},
		{name: "ath of another token", proof: mint(func(o *ProofOptions) { o.AccessToken = "other" }), wantCode: CodeInvalidProof},
		{name: "no ath", proof: mint(func(o *ProofOptions) { o.AccessToken = "" }), wantCode: CodeInvalidProof},
		{name: "token bound to another key", jkt: other.Thumbprint(), proof: mint(nil), wantCode: CodeInvalidToken},
		{name: "unbound token", jkt: "-", proof: mint(nil), wantCode: CodeInvalidToken},
		{name: "tampered payload", proof: tamperPayload, wantCode: CodeInvalidProof},
		{name: "tampered signature", proof: func(t *testing.T) string {
			p := mint(nil)(t)
			b := []byte(p)
			i := len(b) - 5
			if b[i] == 'A' {
				b[i] = 'B'
			} else {
				b[i] = 'A'
			}
			return string(b)
		}, wantCode: CodeInvalidProof},
		{name: "jwk header of another key", proof: func(t *testing.T) string {
			return signRaw(t, jose.ES256, ecPriv, map[jose.HeaderKey]any{"typ": ProofType, "jwk": k.PublicJWK()}, goodClaims())
		}, wantCode: CodeInvalidProof},
		{name: "wrong typ", proof: func(t *testing.T) string {
			return signRaw(t, jose.ES256, ecPriv, map[jose.HeaderKey]any{"typ": "JWT", "jwk": pubJWK}, goodClaims())
		}, jkt: mustThumb(t, pubJWK), wantCode: CodeInvalidProof},
		{name: "no jwk", proof: func(t *testing.T) string {
			return signRaw(t, jose.ES256, ecPriv, map[jose.HeaderKey]any{"typ": ProofType}, goodClaims())
		}, wantCode: CodeInvalidProof},
		{name: "private jwk in header", proof: func(t *testing.T) string {
			return signRaw(t, jose.ES256, ecPriv, map[jose.HeaderKey]any{"typ": ProofType, "jwk": jose.JSONWebKey{Key: ecPriv}}, goodClaims())
		}, jkt: mustThumb(t, pubJWK), wantCode: CodeInvalidProof},
		{name: "hmac alg", proof: func(t *testing.T) string {
			return signRaw(t, jose.HS256, []byte("0123456789abcdef0123456789abcdef"), map[jose.HeaderKey]any{"typ": ProofType, "jwk": pubJWK}, goodClaims())
		}, wantCode: CodeInvalidProof},
		{name: "alg none", proof: func(t *testing.T) string {
			h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"dpop+jwt"}`))
			c, _ := json.Marshal(goodClaims())
			return h + "." + base64.RawURLEncoding.EncodeToString(c) + "."
		}, wantCode: CodeInvalidProof},
		{name: "custom proof accepted", proof: func(t *testing.T) string {
			return signRaw(t, jose.ES256, ecPriv, map[jose.HeaderKey]any{"typ": ProofType, "jwk": pubJWK}, goodClaims())
		}, jkt: mustThumb(t, pubJWK)},
		{name: "missing jti", proof: func(t *testing.T) string {
			c := goodClaims()
			delete(c, "jti")
			return signRaw(t, jose.ES256, ecPriv, map[jose.HeaderKey]any{"typ": ProofType, "jwk": pubJWK}, c)
		}, jkt: mustThumb(t, pubJWK), wantCode: CodeInvalidProof},
		{name: "iat string", proof: func(t *testing.T) string {
			c := goodClaims()
			c["iat"] = "now"
			return signRaw(t, jose.ES256, ecPriv, map[jose.HeaderKey]any{"typ": ProofType, "jwk": pubJWK}, c)
		}, jkt: mustThumb(t, pubJWK), wantCode: CodeInvalidProof},
		{name: "garbage", proof: func(*testing.T) string { return "not.a.jwt" }, wantCode: CodeInvalidProof},
		{name: "no header", proof: func(*testing.T) string { return "" }, wantCode: CodeInvalidProof},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := &Verifier{Now: func() time.Time { return now }}
			method, u := tt.method, tt.url
			if method == "" {
				method = "GET"
			}
			if u == "" {
				u = target
			}
			r := httptest.NewRequest(method, u, nil)
			if p := tt.proof(t); p != "" {
				r.Header.Set("DPoP", p)
			}
			tok, jkt := tt.token, tt.jkt
			if tok == "" {
				tok = token
			} else if tok == "-" {
				tok = ""
			}
			if jkt == "" {
				jkt = k.Thumbprint()
			} else if jkt == "-" {
				jkt = ""
			}
			_, err := v.Check(r, tok, jkt)
			if tt.wantCode == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				// The same proof again is a replay.
				if _, err := v.Check(r, tok, jkt); err == nil || !strings.Contains(err.Error(), "replayed") {
					t.Fatalf("replay accepted: %v", err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.Code != tt.wantCode {
				t.Fatalf("got %v, want code %s", err, tt.wantCode)
			}
		})
	}
}

func mustThumb(t *testing.T, k jose.JSONWebKey) string {
	t.Helper()
	s, err := Thumbprint(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestTwoDPoPHeadersRefused(t *testing.T) {
	k := mustKey(t)
	v := &Verifier{}
	r := httptest.NewRequest("GET", "http://x/", nil)
	p1, _ := k.Proof("GET", "http://x/", ProofOptions{AccessToken: "t"})
	p2, _ := k.Proof("GET", "http://x/", ProofOptions{AccessToken: "t"})
	r.Header.Add("DPoP", p1)
	r.Header.Add("DPoP", p2)
	if _, err := v.Check(r, "t", k.Thumbprint()); err == nil {
		t.Fatal("two DPoP headers accepted")
	}
}

func TestNonces(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	n := &Nonces{Secret: []byte("0123456789abcdef0123456789abcdef"), Period: time.Minute, Now: func() time.Time { return now }}
	cur := n.Current()
	if !n.Valid(cur) {
		t.Fatal("current nonce refused")
	}
	now = now.Add(time.Minute)
	if !n.Valid(cur) {
		t.Fatal("previous window's nonce refused")
	}
	now = now.Add(time.Minute)
	if n.Valid(cur) {
		t.Fatal("stale nonce accepted")
	}
	other := &Nonces{Secret: []byte("another secret another secret 32"), Period: time.Minute, Now: n.Now}
	if n.Valid(other.Current()) || n.Valid("") || n.Valid("!!") {
		t.Fatal("foreign nonce accepted")
	}
}

func TestMiddleware(t *testing.T) {
	k := mustKey(t)
	other := mustKey(t)
	nonces := NewNonces(time.Minute)
	v := &Verifier{Nonces: nonces}
	tokens := map[string]string{"bound": k.Thumbprint(), "bound-other": other.Thumbprint(), "plain": ""}
	verify := func(_ context.Context, tok string) (string, any, error) {
		jkt, ok := tokens[tok]
		if !ok {
			return "", nil, errors.New("unknown token")
		}
		return jkt, map[string]any{"sub": "alice"}, nil
	}
	h := v.Middleware(verify, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := ClaimsFrom(r.Context()).(map[string]any)
		if ProofFrom(r.Context()) == nil {
			t.Error("no proof in context")
		}
		_, _ = w.Write([]byte(c["sub"].(string)))
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()

	call := func(auth string, key *Key, nonce string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+"/things?x=1", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		if key != nil {
			tok := auth[strings.IndexByte(auth, ' ')+1:]
			p, err := key.Proof("GET", req.URL.String(), ProofOptions{AccessToken: tok, Nonce: nonce})
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("DPoP", p)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	// No nonce yet: use_dpop_nonce with a DPoP-Nonce to retry with.
	resp := call("DPoP bound", k, "")
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="use_dpop_nonce"`) {
		t.Fatalf("no nonce: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	nonce := resp.Header.Get("DPoP-Nonce")
	if nonce == "" {
		t.Fatal("no DPoP-Nonce")
	}
	if resp := call("DPoP bound", k, nonce); resp.StatusCode != 200 {
		t.Fatalf("with nonce: %d %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	for name, tc := range map[string]struct {
		auth string
		key  *Key
	}{
		"no authorization":      {"", nil},
		"bearer":                {"Bearer bound", nil},
		"bearer with proof":     {"Bearer bound", k},
		"dpop without proof":    {"DPoP bound", nil},
		"unknown token":         {"DPoP nope", k},
		"unbound token":         {"DPoP plain", k},
		"token of another key":  {"DPoP bound-other", k},
		"proof of another key":  {"DPoP bound", other},
		"scheme without token":  {"DPoP ", k},
		"token with extra part": {"DPoP bound extra", k},
	} {
		t.Run(name, func(t *testing.T) {
			resp := call(tc.auth, tc.key, nonce)
			if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "DPoP ") {
				t.Fatalf("%d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
}

// TestMiddlewareBehindStripPrefix: a service mounted under a prefix sees a
// shorter r.URL.Path, but the client signed the URL it called; htu is
// compared with the request line, so a proof for /orders/latest passes a
// middleware behind http.StripPrefix("/orders") and one for another path
// does not.
func TestMiddlewareBehindStripPrefix(t *testing.T) {
	k := mustKey(t)
	v := &Verifier{}
	verify := func(context.Context, string) (string, any, error) { return k.Thumbprint(), nil, nil }
	var seenPath string
	h := v.Middleware(verify, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seenPath = r.URL.Path }))
	srv := httptest.NewServer(http.StripPrefix("/orders", h))
	defer srv.Close()
	for _, tc := range []struct {
		name, signed string
		want         int
	}{
		{"the URL called", srv.URL + "/orders/latest", http.StatusOK},
		{"the stripped URL", srv.URL + "/latest", http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := k.Proof("GET", tc.signed, ProofOptions{AccessToken: "tok"})
			if err != nil {
				t.Fatal(err)
			}
			req, _ := http.NewRequest("GET", srv.URL+"/orders/latest?x=1", nil)
			req.Header.Set("Authorization", "DPoP tok")
			req.Header.Set("DPoP", p)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("%d %q, want %d", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), tc.want)
			}
			if tc.want == http.StatusOK && seenPath != "/latest" {
				t.Fatalf("handler saw %q, want the stripped path", seenPath)
			}
		})
	}
}

func TestReplayCacheBounded(t *testing.T) {
	c := newReplayCache(3)
	now := time.Unix(1000, 0)
	exp := now.Add(time.Minute)
	for _, k := range []string{"a", "b", "c", "d"} {
		if !c.add(k, exp, now) {
			t.Fatalf("%s not new", k)
		}
	}
	if c.len() != 3 {
		t.Fatalf("len %d", c.len())
	}
	if c.add("d", exp, now) {
		t.Fatal("d replayed")
	}
	if !c.add("a", exp, now) {
		t.Fatal("oldest entry was not dropped")
	}
	// After expiry everything is forgotten.
	later := exp.Add(time.Second)
	if !c.add("c", later.Add(time.Minute), later) || c.len() != 1 {
		t.Fatalf("expired entries kept: %d", c.len())
	}
}
