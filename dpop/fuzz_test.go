package dpop

import (
	"net/http/httptest"
	"testing"
	"time"
)

// FuzzParseProof feeds arbitrary strings to the proof parser and to the
// whole check: neither may panic, and anything accepted must be a proof
// whose signature verifies with its own header key.
func FuzzParseProof(f *testing.F) {
	k, err := GenerateKey()
	if err != nil {
		f.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	for _, o := range []ProofOptions{{Now: now}, {Now: now, AccessToken: "tok", Nonce: "n"}} {
		p, err := k.Proof("GET", "http://api.test/x", o)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(p)
	}
	f.Add("")
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, proof string) {
		p, err := ParseProof(proof, nil)
		if err == nil {
			if p.Thumbprint == "" || p.JTI == "" || p.HTM == "" || p.HTU == "" {
				t.Fatalf("accepted incomplete proof %+v", p)
			}
			if _, err := Thumbprint(p.JWK); err != nil {
				t.Fatalf("accepted key without thumbprint: %v", err)
			}
		}
		v := &Verifier{Now: func() time.Time { return now }}
		r := httptest.NewRequest("GET", "http://api.test/x", nil)
		r.Header.Set("DPoP", proof)
		_, _ = v.Check(r, "tok", k.Thumbprint())
	})
}
