package bff

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// jwksServer serves the public halves of keys (swappable) and counts fetches.
type jwksServer struct {
	*httptest.Server
	keys    atomic.Pointer[[]jose.JSONWebKey]
	fetches atomic.Int64
	down    atomic.Bool
}

func newJWKSServer(t *testing.T) *jwksServer {
	s := &jwksServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		if s.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: *s.keys.Load()})
	}))
	t.Cleanup(s.Close)
	return s
}

type testKey struct {
	kid  string
	priv *ecdsa.PrivateKey
}

func newTestKey(t testing.TB, kid string) testKey {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{kid, priv}
}

func (k testKey) public() jose.JSONWebKey {
	return jose.JSONWebKey{Key: &k.priv.PublicKey, KeyID: k.kid, Algorithm: "ES256", Use: "sig"}
}

// sign signs with k's private key under kid (which may name another key).
func (k testKey) sign(t *testing.T, kid string) string {
	opts := (&jose.SignerOptions{}).WithHeader(jose.HeaderKey("kid"), kid)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k.priv}, opts)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign([]byte(`{"sub":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	s, _ := jws.CompactSerialize()
	return s
}

// The key set behind back-channel logout tokens refetches only for an
// unknown kid, at most once per interval: forged tokens cannot make the
// gateway hammer the provider (SPEC §4).
func TestLimitedKeySetRefetchesRarely(t *testing.T) {
	srv := newJWKSServer(t)
	current, rotated, stranger := newTestKey(t, "k1"), newTestKey(t, "k2"), newTestKey(t, "evil")
	srv.keys.Store(&[]jose.JSONWebKey{current.public()})
	now := time.Unix(1_000_000, 0)
	ks := newLimitedKeySet(srv.URL, srv.Client(), func() time.Time { return now })
	ctx := t.Context()

	steps := []struct {
		name        string
		advance     time.Duration
		token       string
		wantOK      bool
		wantFetches int64 // total so far
	}{
		{"first token loads the keys", 0, current.sign(t, "k1"), true, 1},
		{"known kid, good signature: cache", time.Second, current.sign(t, "k1"), true, 1},
		{"known kid, bad signature: no fetch", time.Second, stranger.sign(t, "k1"), false, 1},
		{"unknown kid within the interval: no fetch", time.Second, stranger.sign(t, "nope"), false, 1},
		{"unknown kid after the interval: one fetch", 10 * time.Second, stranger.sign(t, "nope"), false, 2},
		{"again right after: no fetch", time.Second, stranger.sign(t, "nope2"), false, 2},
		{"known kid, bad signature, long after: still no fetch", time.Hour, stranger.sign(t, "k1"), false, 2},
		{"no kid and no key verifies: one rate-limited fetch", 0, stranger.sign(t, ""), false, 3},
	}
	for _, s := range steps {
		now = now.Add(s.advance)
		_, err := ks.VerifySignature(ctx, s.token)
		if (err == nil) != s.wantOK {
			t.Errorf("%s: err = %v, want ok=%v", s.name, err, s.wantOK)
		}
		if got := srv.fetches.Load(); got != s.wantFetches {
			t.Errorf("%s: %d fetches so far, want %d", s.name, got, s.wantFetches)
		}
	}

	// A key the provider rotated in is found once the interval has passed.
	srv.keys.Store(&[]jose.JSONWebKey{current.public(), rotated.public()})
	if _, err := ks.VerifySignature(ctx, rotated.sign(t, "k2")); err == nil {
		t.Error("a new kid verified within the interval without a fetch")
	}
	now = now.Add(jwksRefetchInterval)
	if _, err := ks.VerifySignature(ctx, rotated.sign(t, "k2")); err != nil {
		t.Errorf("the rotated key after the interval: %v", err)
	}

	// A provider that is down: "keys unavailable", retried only after the interval.
	down := newJWKSServer(t)
	down.down.Store(true)
	ks = newLimitedKeySet(down.URL, down.Client(), func() time.Time { return now })
	for range 5 {
		if _, err := ks.VerifySignature(ctx, current.sign(t, "k1")); !errors.Is(err, errKeysUnavailable) {
			t.Fatalf("provider down: err = %v, want errKeysUnavailable", err)
		}
	}
	if n := down.fetches.Load(); n != 1 {
		t.Errorf("a provider that is down got %d JWKS requests for 5 tokens in one interval, want 1", n)
	}
}
