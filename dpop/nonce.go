package dpop

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"time"
)

// Nonces issues and checks server nonces (RFC 9449 section 8) without
// storing them: a nonce is the current time window and a MAC of it, valid in
// its window and the next. Several instances of a service that share Secret
// accept each other's nonces.
type Nonces struct {
	// Secret keys the MAC; at least 32 bytes. NewNonces makes a random one.
	Secret []byte
	// Period is the length of one window; 0 means 5 minutes.
	Period time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// NewNonces returns Nonces with a random secret.
func NewNonces(period time.Duration) *Nonces {
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	return &Nonces{Secret: secret, Period: period}
}

func (n *Nonces) window() uint64 {
	now := time.Now()
	if n.Now != nil {
		now = n.Now()
	}
	p := n.Period
	if p <= 0 {
		p = 5 * time.Minute
	}
	return uint64(now.UnixNano() / int64(p))
}

func (n *Nonces) make(w uint64) string {
	b := make([]byte, 8, 8+32)
	binary.BigEndian.PutUint64(b, w)
	m := hmac.New(sha256.New, n.Secret)
	m.Write(b)
	return base64.RawURLEncoding.EncodeToString(m.Sum(b))
}

// Current is the nonce to send in a DPoP-Nonce header now.
func (n *Nonces) Current() string { return n.make(n.window()) }

// Valid reports whether nonce was issued in this window or the one before.
func (n *Nonces) Valid(nonce string) bool {
	raw, err := base64.RawURLEncoding.DecodeString(nonce)
	if err != nil || len(raw) != 8+32 {
		return false
	}
	w := binary.BigEndian.Uint64(raw[:8])
	cur := n.window()
	if w != cur && w+1 != cur {
		return false
	}
	return hmac.Equal([]byte(n.make(w)), []byte(nonce))
}
