package dpop

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
)

// deriveSalt separates these keys from any other use of the same secret.
const deriveSalt = "bffgate dpop key derivation v1"

// minSecret is the least input keying material DeriveKey accepts: below
// 128 bits the key could be guessed from outside.
const minSecret = 16

// DeriveKey returns the P-256 key determined by secret and label: the same
// inputs give the same key in every process, so instances that share a
// secret agree on a key without talking to each other (and without a race
// over who creates it first). HKDF-SHA256 (RFC 5869) expands the secret
// with the label, and the private scalar comes from 320 bits of that output
// reduced into [1, n-1] as in FIPS 186-5 A.2.1, so its bias is below 2^-64.
// Give each use its own label; the secret must stay secret, since whoever
// knows it and the label holds the key.
func DeriveKey(secret []byte, label string) (*Key, error) {
	if len(secret) < minSecret {
		return nil, fmt.Errorf("dpop: derive key: the secret has %d bytes, want at least %d", len(secret), minSecret)
	}
	if label == "" {
		return nil, errors.New("dpop: derive key: empty label")
	}
	curve := elliptic.P256()
	n := curve.Params().N
	okm, err := hkdf.Key(sha256.New, secret, []byte(deriveSalt), label, (n.BitLen()+64)/8)
	if err != nil {
		return nil, fmt.Errorf("dpop: derive key: %w", err)
	}
	nMinus1 := new(big.Int).Sub(n, big.NewInt(1))
	d := new(big.Int).SetBytes(okm)
	d.Mod(d, nMinus1).Add(d, big.NewInt(1))
	priv, err := ecdsa.ParseRawPrivateKey(curve, d.FillBytes(make([]byte, (n.BitLen()+7)/8)))
	if err != nil {
		return nil, fmt.Errorf("dpop: derive key: %w", err)
	}
	return newKey(priv)
}
