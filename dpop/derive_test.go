package dpop

import (
	"bytes"
	"encoding/hex"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

func TestDeriveKey(t *testing.T) {
	secret := bytes.Repeat([]byte{7}, 32)
	a, err := DeriveKey(secret, "client:web")
	if err != nil {
		t.Fatal(err)
	}
	// A fixed vector: a change of the derivation would give every instance
	// of a rolling upgrade a different key than the old ones, so it must
	// be deliberate (a new salt version), never accidental.
	// The scalar was computed apart from this code (HKDF-SHA256 by hand
	// with HMAC, then mod n-1, plus 1).
	const wantScalar = "5c7e2fe2b3da56eea7e9fe7e2decda64848e76d215ac39dd616875de25b8c57f"
	raw, err := a.priv.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if got := hex.EncodeToString(raw); got != wantScalar {
		t.Errorf("scalar %s, want %s", got, wantScalar)
	}
	if a.Thumbprint() != "m2okOV5-yMrwNuaqYAhNzHPbe3afDIlgD5LvcQ9ZLEc" {
		t.Errorf("thumbprint %s", a.Thumbprint())
	}
	again, err := DeriveKey(bytes.Clone(secret), "client:web")
	if err != nil || again.Thumbprint() != a.Thumbprint() {
		t.Fatalf("same inputs, another key: %v", err)
	}
	for _, c := range []struct {
		name   string
		secret []byte
		label  string
	}{
		{"other label", secret, "client:admin"},
		{"other secret", bytes.Repeat([]byte{8}, 32), "client:web"},
	} {
		k, err := DeriveKey(c.secret, c.label)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if k.Thumbprint() == a.Thumbprint() {
			t.Errorf("%s: same key", c.name)
		}
	}
	// The derived key signs proofs that parse and carry its public key.
	proof, err := a.Proof("GET", "https://api.example/x", ProofOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := ParseProof(proof, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	if p.Thumbprint != a.Thumbprint() {
		t.Fatalf("proof jkt %s, key %s", p.Thumbprint, a.Thumbprint())
	}
}

func TestDeriveKeyRefuses(t *testing.T) {
	for _, c := range []struct {
		name   string
		secret []byte
		label  string
	}{
		{"short secret", make([]byte, 15), "client:web"},
		{"no secret", nil, "client:web"},
		{"empty label", make([]byte, 32), ""},
	} {
		if _, err := DeriveKey(c.secret, c.label); err == nil {
			t.Errorf("%s: accepted", c.name)
		}
	}
}
