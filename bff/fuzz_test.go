package bff

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// FuzzReturnTo: whatever a returnTo looks like, an accepted one stays on the
// gateway's origin, under an allowed prefix, and fits the login cookie.
func FuzzReturnTo(f *testing.F) {
	for _, s := range []string{
		"/web/", "/web", "/web/orders?x=1#frag", "//evil.example", "/\\evil.example", "https:evil",
		"/web/../admin", "/web/%2e%2e/admin", "/web/\t/x", "javascript:alert(1)", "/web/?q=" + strings.Repeat("<", 50),
		"/webx", "/web/./x", "/%2F%2Fevil.example", "/web/\u2028", "", "/web/@evil.example",
	} {
		f.Add(s)
	}
	allowed := []string{"/web/", "/shop"}
	origin, _ := url.Parse("https://app.example.com/")
	f.Fuzz(func(t *testing.T, rt string) {
		if validSPAReturnTo(rt, allowed) != nil {
			return
		}
		// What a browser does with Location: rt.
		u, err := origin.Parse(rt)
		if err != nil {
			t.Fatalf("accepted %q, which does not parse: %v", rt, err)
		}
		if u.Scheme != "https" || u.Host != "app.example.com" || u.User != nil {
			t.Fatalf("accepted %q, which leaves the origin: %s", rt, u)
		}
		if !underPrefix(u.Path, "/web/") && !underPrefix(u.Path, "/shop") {
			t.Fatalf("accepted %q, path %q under no allowed prefix", rt, u.Path)
		}
		if strings.ContainsAny(rt, "\\\r\n\t\x00") {
			t.Fatalf("accepted %q with a backslash or control character", rt)
		}
	})
}

// FuzzLogoutToken: no logout token, however malformed, panics the parser,
// gets past a key set that holds only the provider's key, or passes the
// claim checks without what Back-Channel Logout 1.0 §2.4 requires.
func FuzzLogoutToken(f *testing.F) {
	key := newTestKey(f, "k1")
	now := time.Unix(1_800_000_000, 0)
	good := `{"iss":"https://idp","aud":"web","iat":1800000000,"jti":"j1","sub":"u","events":{"` + backchannelEvent + `":{}}}`
	signed := func(payload string) string {
		signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key.priv},
			(&jose.SignerOptions{}).WithType("logout+jwt").WithHeader(jose.HeaderKey("kid"), "k1"))
		jws, _ := signer.Sign([]byte(payload))
		s, _ := jws.CompactSerialize()
		return s
	}
	for _, s := range []struct{ token, payload string }{
		{signed(good), good},
		{"garbage", "{}"},
		{"eyJhbGciOiJub25lIn0.e30.", `{"iat":1800000000,"jti":"x","sid":"s","events":{"` + backchannelEvent + `":null}}`},
		{signed(`{"nonce":"n"}`), `{"iat":1800000000,"jti":"x","sid":"s","nonce":"n","events":{}}`},
		{"a.b.c", `{"iat":1e300,"jti":"","events":[]}`},
		{"....", `{"iat":-9223372036854775808,"exp":9223372036854775807,"jti":"j","sid":"s","events":{"` + backchannelEvent + `":{}}}`},
	} {
		f.Add(s.token, s.payload)
	}
	// Only the provider's key, already fetched: no network in a fuzz run.
	ks := &limitedKeySet{client: &http.Client{Transport: failingTransport{}}, now: func() time.Time { return now },
		interval: jwksRefetchInterval, keys: []jose.JSONWebKey{key.public()}, fetched: true, tried: true, lastFetch: now}
	f.Fuzz(func(t *testing.T, token, payload string) {
		_ = checkLogoutHeader(token)
		if _, err := ks.VerifySignature(context.Background(), token); errors.Is(err, errKeysUnavailable) {
			t.Fatalf("the key set tried the network for %q", token)
		}
		cl, err := checkLogoutClaims([]byte(payload), now)
		if err != nil {
			return
		}
		if cl.JTI == "" || (cl.SID == "" && cl.Subject == "") || cl.Nonce != nil || cl.IssuedAt == nil {
			t.Fatalf("accepted claims without jti, sid/sub or iat, or with a nonce: %s", payload)
		}
		if _, ok := cl.Events[backchannelEvent]; !ok {
			t.Fatalf("accepted claims without the back-channel logout event: %s", payload)
		}
	})
}

// failingTransport fails every request: a fuzz run must not reach the network.
type failingTransport struct{}

func (failingTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("no network in fuzz tests")
}
