// Package dpop implements OAuth 2.0 Demonstrating Proof of Possession
// (DPoP, RFC 9449) for both sides of a call: a client mints proofs with a
// Key (ES256), and a resource server checks them with a Verifier, which also
// checks that the access token is bound to the proof's key (cnf.jkt, the
// RFC 7638 thumbprint of the key).
//
// The gateway mints proofs with this package; the demo services, and any Go
// service behind the gateway, verify them with it. It imports nothing of the
// gateway.
package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// ProofType is the JWS "typ" header of a DPoP proof.
const ProofType = "dpop+jwt"

// Key is a DPoP key pair (ECDSA P-256, ES256). It is safe for concurrent use.
type Key struct {
	priv   *ecdsa.PrivateKey
	signer jose.Signer
	pub    jose.JSONWebKey
	thumb  string
}

// GenerateKey makes a new ES256 key pair.
func GenerateKey() (*Key, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	return newKey(priv)
}

// ParseKey reads a key written by Key.Marshal (PKCS#8 DER of a P-256 key).
func ParseKey(der []byte) (*Key, error) {
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("dpop: parse key: %w", err)
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, errors.New("dpop: key is not an EC P-256 key")
	}
	return newKey(ec)
}

func newKey(priv *ecdsa.PrivateKey) (*Key, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: priv},
		(&jose.SignerOptions{EmbedJWK: true}).WithType(ProofType))
	if err != nil {
		return nil, err
	}
	pub := jose.JSONWebKey{Key: &priv.PublicKey, Algorithm: string(jose.ES256)}
	thumb, err := Thumbprint(pub)
	if err != nil {
		return nil, err
	}
	return &Key{priv: priv, signer: signer, pub: pub, thumb: thumb}, nil
}

// Marshal returns the private key as PKCS#8 DER, for storage (encrypted).
func (k *Key) Marshal() ([]byte, error) { return x509.MarshalPKCS8PrivateKey(k.priv) }

// Thumbprint is the RFC 7638 SHA-256 thumbprint of the public key,
// base64url without padding: the value a bound token carries as cnf.jkt.
func (k *Key) Thumbprint() string { return k.thumb }

// PublicJWK is the public key as a JWK.
func (k *Key) PublicJWK() jose.JSONWebKey { return k.pub }

// ProofOptions are the optional parts of a proof.
type ProofOptions struct {
	// AccessToken, when set, is bound to the proof by its hash (ath); set
	// it on every call to a resource server, not on token requests.
	AccessToken string
	// Nonce is a server-provided DPoP-Nonce.
	Nonce string
	// Now is the proof's iat; zero means time.Now.
	Now time.Time
}

// proofClaims is the payload of a proof.
type proofClaims struct {
	JTI   string `json:"jti"`
	HTM   string `json:"htm"`
	HTU   string `json:"htu"`
	IAT   int64  `json:"iat"`
	ATH   string `json:"ath,omitempty"`
	Nonce string `json:"nonce,omitempty"`
}

// Proof mints a DPoP proof for one HTTP request: method and target URL (its
// query and fragment are left out of htu, as RFC 9449 asks).
func (k *Key) Proof(method, target string, o ProofOptions) (string, error) {
	htu, err := HTU(target)
	if err != nil {
		return "", err
	}
	if method == "" {
		return "", errors.New("dpop: empty method")
	}
	now := o.Now
	if now.IsZero() {
		now = time.Now()
	}
	c := proofClaims{JTI: newJTI(), HTM: method, HTU: htu, IAT: now.Unix(), Nonce: o.Nonce}
	if o.AccessToken != "" {
		c.ATH = ATH(o.AccessToken)
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	jws, err := k.signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("dpop: sign proof: %w", err)
	}
	return jws.CompactSerialize()
}

// Thumbprint is the RFC 7638 SHA-256 thumbprint of a public JWK, base64url
// without padding.
func Thumbprint(k jose.JSONWebKey) (string, error) {
	if k.Key == nil {
		return "", errors.New("dpop: empty key")
	}
	pub := k.Public()
	if pub.Key == nil {
		return "", errors.New("dpop: key has no public part")
	}
	sum, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("dpop: thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(sum), nil
}

// ATH is the ath claim for an access token: base64url(SHA-256(token)).
func ATH(accessToken string) string {
	sum := sha256.Sum256([]byte(accessToken))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// HTU normalises a request URL to the htu of a proof: an absolute http(s)
// URL with the scheme and host in lower case, no default port, no query and
// no fragment, and "/" for an empty path.
func HTU(target string) (string, error) {
	u, err := url.Parse(target)
	if err != nil {
		return "", fmt.Errorf("dpop: htu: %w", err)
	}
	scheme := strings.ToLower(u.Scheme)
	if (scheme != "http" && scheme != "https") || u.Host == "" || u.Opaque != "" {
		return "", fmt.Errorf("dpop: htu %q is not an absolute http(s) URL", target)
	}
	host := strings.ToLower(u.Hostname())
	port := u.Port()
	if (scheme == "http" && port == "80") || (scheme == "https" && port == "443") {
		port = ""
	}
	if strings.Contains(host, ":") { // IPv6 literal
		host = "[" + host + "]"
	}
	if port != "" {
		host += ":" + port
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	return scheme + "://" + host + path, nil
}

func newJTI() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
