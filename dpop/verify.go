package dpop

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Error codes of the WWW-Authenticate: DPoP challenge (RFC 9449 section 7.1
// and 12.2).
const (
	CodeInvalidProof = "invalid_dpop_proof"
	CodeInvalidToken = "invalid_token"
	CodeUseNonce     = "use_dpop_nonce"
	CodeInvalidReq   = "invalid_request"
)

// Error is a refused proof or token; Code is the WWW-Authenticate error.
type Error struct {
	Code   string
	Reason string
}

func (e *Error) Error() string { return "dpop: " + e.Code + ": " + e.Reason }

func proofErr(format string, a ...any) error {
	return &Error{Code: CodeInvalidProof, Reason: fmt.Sprintf(format, a...)}
}

// DefaultAlgorithms are the proof signature algorithms a Verifier accepts
// when Algorithms is empty: asymmetric ones only, never "none" or HMAC.
var DefaultAlgorithms = []jose.SignatureAlgorithm{
	jose.ES256, jose.ES384, jose.ES512, jose.PS256, jose.PS384, jose.PS512, jose.RS256, jose.EdDSA,
}

// maxProofLen bounds the proof parsed at all; real proofs are well under 2 KiB.
const maxProofLen = 8 << 10

// Proof is a parsed proof whose signature has been checked against the key
// in its own header.
type Proof struct {
	JWK        jose.JSONWebKey
	Thumbprint string // RFC 7638 thumbprint of JWK
	Algorithm  string
	JTI        string
	HTM        string
	HTU        string
	IssuedAt   time.Time
	ATH        string
	Nonce      string
}

// ParseProof parses a compact-serialised proof and checks its form: typ
// dpop+jwt, one of algs (DefaultAlgorithms when nil), a public jwk header
// the signature verifies with, and the jti, htm, htu and iat claims. It does
// not check time, method, URL, token or replay: Verifier does.
func ParseProof(proof string, algs []jose.SignatureAlgorithm) (*Proof, error) {
	if len(proof) > maxProofLen {
		return nil, proofErr("proof too long")
	}
	if algs == nil {
		algs = DefaultAlgorithms
	}
	jws, err := jose.ParseSignedCompact(proof, algs)
	if err != nil {
		return nil, proofErr("parse: %v", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, proofErr("want exactly one signature")
	}
	h := jws.Signatures[0].Protected
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != ProofType {
		return nil, proofErr("typ header is %q, want %q", typ, ProofType)
	}
	if h.JSONWebKey == nil {
		return nil, proofErr("no jwk header")
	}
	jwk := *h.JSONWebKey
	if !jwk.Valid() || !jwk.IsPublic() {
		return nil, proofErr("jwk header is not a valid public key")
	}
	payload, err := jws.Verify(jwk)
	if err != nil {
		return nil, proofErr("signature: %v", err)
	}
	var c struct {
		JTI   string          `json:"jti"`
		HTM   string          `json:"htm"`
		HTU   string          `json:"htu"`
		IAT   json.Number     `json:"iat"`
		ATH   json.RawMessage `json:"ath"`
		Nonce json.RawMessage `json:"nonce"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, proofErr("claims: %v", err)
	}
	if c.JTI == "" || c.HTM == "" || c.HTU == "" || c.IAT == "" {
		return nil, proofErr("jti, htm, htu and iat are required")
	}
	iat, err := c.IAT.Float64()
	if err != nil || math.IsNaN(iat) || iat < 0 || iat > 1e11 {
		return nil, proofErr("bad iat")
	}
	ath, err := optString(c.ATH)
	if err != nil {
		return nil, proofErr("ath: %v", err)
	}
	nonce, err := optString(c.Nonce)
	if err != nil {
		return nil, proofErr("nonce: %v", err)
	}
	thumb, err := Thumbprint(jwk)
	if err != nil {
		return nil, proofErr("%v", err)
	}
	return &Proof{
		JWK: jwk, Thumbprint: thumb, Algorithm: h.Algorithm,
		JTI: c.JTI, HTM: c.HTM, HTU: c.HTU, IssuedAt: time.Unix(int64(iat), 0),
		ATH: ath, Nonce: nonce,
	}, nil
}

func optString(raw json.RawMessage) (string, error) {
	if raw == nil {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", errors.New("not a string")
	}
	return s, nil
}

// Verifier checks DPoP proofs on a resource server. The zero value is ready
// to use with safe defaults; set fields before the first use.
type Verifier struct {
	// Algorithms accepted for proofs; nil means DefaultAlgorithms.
	Algorithms []jose.SignatureAlgorithm
	// MaxAge is how old a proof's iat may be; 0 means 60 s. Proofs are
	// remembered (replay check) for MaxAge plus Leeway.
	MaxAge time.Duration
	// Leeway is how far in the future iat may be (clock skew); 0 means 5 s.
	Leeway time.Duration
	// ReplayCacheSize bounds the remembered jti values; 0 means 100000.
	// When full, the oldest entry is forgotten first.
	ReplayCacheSize int
	// Nonces, when set, makes proofs carry a current server nonce: a
	// proof without one is refused with use_dpop_nonce and a DPoP-Nonce.
	Nonces *Nonces
	// RequestURL gives the URL the client called, to compare with htu;
	// nil means scheme (https when r.TLS is set) + r.Host + the path of
	// the request line (r.RequestURI, so a router's http.StripPrefix
	// before the middleware does not matter; r.URL.Path for a request
	// made in-process). Set it when a TLS-terminating proxy sits in front.
	RequestURL func(r *http.Request) string
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	once   sync.Once
	replay *replayCache
}

func (v *Verifier) init() {
	v.once.Do(func() {
		size := v.ReplayCacheSize
		if size <= 0 {
			size = 100000
		}
		v.replay = newReplayCache(size)
	})
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

func (v *Verifier) maxAge() time.Duration {
	if v.MaxAge > 0 {
		return v.MaxAge
	}
	return 60 * time.Second
}

func (v *Verifier) leeway() time.Duration {
	if v.Leeway > 0 {
		return v.Leeway
	}
	return 5 * time.Second
}

func (v *Verifier) requestURL(r *http.Request) string {
	if v.RequestURL != nil {
		return v.RequestURL(r)
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	// The request line is what the client signed; r.URL.Path may have been
	// rewritten since. HTU drops the query.
	if strings.HasPrefix(r.RequestURI, "/") {
		return scheme + "://" + r.Host + r.RequestURI
	}
	return scheme + "://" + r.Host + r.URL.EscapedPath()
}

// Check verifies the single DPoP header of r as a proof for this request
// and for accessToken, and that the token's confirmation thumbprint jkt
// (the cnf.jkt claim, from the caller's own token verification) is the
// proof key's. An empty accessToken checks a proof without ath (as a token
// endpoint would); then jkt is not compared.
func (v *Verifier) Check(r *http.Request, accessToken, jkt string) (*Proof, error) {
	v.init()
	values := r.Header.Values("DPoP")
	if len(values) != 1 {
		return nil, proofErr("want exactly one DPoP header, got %d", len(values))
	}
	p, err := ParseProof(values[0], v.Algorithms)
	if err != nil {
		return nil, err
	}
	if p.HTM != r.Method {
		return nil, proofErr("htm %q does not match method %s", p.HTM, r.Method)
	}
	want, err := HTU(v.requestURL(r))
	if err != nil {
		return nil, proofErr("request URL: %v", err)
	}
	got, err := HTU(p.HTU)
	if err != nil || got != want {
		return nil, proofErr("htu %q does not match %q", p.HTU, want)
	}
	now := v.now()
	if p.IssuedAt.After(now.Add(v.leeway())) {
		return nil, proofErr("iat is in the future")
	}
	if p.IssuedAt.Before(now.Add(-v.maxAge())) {
		return nil, proofErr("proof too old")
	}
	if accessToken != "" {
		if p.ATH == "" || subtle.ConstantTimeCompare([]byte(p.ATH), []byte(ATH(accessToken))) != 1 {
			return nil, proofErr("ath does not match the access token")
		}
		if jkt == "" || subtle.ConstantTimeCompare([]byte(jkt), []byte(p.Thumbprint)) != 1 {
			return nil, &Error{Code: CodeInvalidToken, Reason: "token is not bound to the proof key"}
		}
	}
	if v.Nonces != nil && !v.Nonces.Valid(p.Nonce) {
		return nil, &Error{Code: CodeUseNonce, Reason: "a current server nonce is required"}
	}
	// Last, so a proof refused for another reason does not burn its jti.
	if !v.replay.add(p.Thumbprint+"\x00"+p.JTI, now.Add(v.maxAge()+v.leeway()), now) {
		return nil, proofErr("jti replayed")
	}
	return p, nil
}

// TokenVerifier checks an access token the resource server's own way
// (signature, issuer, audience, expiry, or introspection) and returns its
// confirmation thumbprint (cnf.jkt; "" for an unbound token) and whatever
// the handlers need from it (its claims), which Middleware puts in the
// request context.
type TokenVerifier func(ctx context.Context, accessToken string) (jkt string, claims any, err error)

type claimsKey struct{}

// ClaimsFrom returns the claims the TokenVerifier gave for this request.
func ClaimsFrom(ctx context.Context) any { return ctx.Value(claimsKey{}) }

// ProofFrom returns the verified proof of this request.
func ProofFrom(ctx context.Context) *Proof {
	p, _ := ctx.Value(proofKey{}).(*Proof)
	return p
}

type proofKey struct{}

// AccessToken returns the token of an "Authorization: DPoP <token>" header.
func AccessToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "DPoP") || token == "" || strings.ContainsAny(token, " \t") {
		return "", false
	}
	return token, true
}

// Middleware lets a request through to next only with "Authorization: DPoP
// <token>", a token verify accepts, and a valid proof bound to that token.
// Anything else is answered 401 with a WWW-Authenticate: DPoP challenge (and
// a DPoP-Nonce when Nonces is set). Bearer tokens are refused.
func (v *Verifier) Middleware(verify TokenVerifier, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := AccessToken(r)
		if !ok {
			v.challenge(w, &Error{Code: CodeInvalidToken, Reason: "Authorization: DPoP <token> required"}, false)
			return
		}
		jkt, claims, err := verify(r.Context(), token)
		if err != nil {
			v.challenge(w, &Error{Code: CodeInvalidToken, Reason: err.Error()}, true)
			return
		}
		if jkt == "" {
			v.challenge(w, &Error{Code: CodeInvalidToken, Reason: "token is not DPoP-bound"}, true)
			return
		}
		p, err := v.Check(r, token, jkt)
		if err != nil {
			v.challenge(w, err, true)
			return
		}
		ctx := context.WithValue(r.Context(), claimsKey{}, claims)
		ctx = context.WithValue(ctx, proofKey{}, p)
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// challenge writes a 401 with the WWW-Authenticate: DPoP header.
func (v *Verifier) challenge(w http.ResponseWriter, err error, withCode bool) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Code: CodeInvalidProof, Reason: err.Error()}
	}
	algs := v.Algorithms
	if algs == nil {
		algs = DefaultAlgorithms
	}
	names := make([]string, len(algs))
	for i, a := range algs {
		names[i] = string(a)
	}
	value := `DPoP algs="` + strings.Join(names, " ") + `"`
	if withCode {
		value += `, error="` + e.Code + `", error_description="` + strings.ReplaceAll(e.Reason, `"`, "'") + `"`
	}
	w.Header().Set("WWW-Authenticate", value)
	if v.Nonces != nil {
		w.Header().Set("DPoP-Nonce", v.Nonces.Current())
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusUnauthorized)
	body, _ := json.Marshal(map[string]string{"error": e.Code, "error_description": e.Reason})
	_, _ = w.Write(body)
}

// replayCache remembers seen keys until they expire, at most max of them;
// when full the oldest is dropped first (FIFO, which is also expiry order
// for a fixed window).
type replayCache struct {
	mu    sync.Mutex
	max   int
	seen  map[string]time.Time
	order []string // FIFO of keys; head is order[head]
	head  int
}

func newReplayCache(max int) *replayCache {
	return &replayCache{max: max, seen: make(map[string]time.Time)}
}

// add records key until exp and reports whether it was new (or expired).
func (c *replayCache) add(key string, exp, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Drop expired entries from the head.
	for c.head < len(c.order) {
		k := c.order[c.head]
		if e, ok := c.seen[k]; ok && e.After(now) {
			break
		}
		delete(c.seen, k)
		c.order[c.head] = ""
		c.head++
	}
	if e, ok := c.seen[key]; ok && e.After(now) {
		return false
	}
	for len(c.seen) >= c.max && c.head < len(c.order) {
		delete(c.seen, c.order[c.head])
		c.order[c.head] = ""
		c.head++
	}
	if c.head > len(c.order)/2 && c.head > 1024 {
		c.order = append([]string(nil), c.order[c.head:]...)
		c.head = 0
	}
	c.seen[key] = exp
	c.order = append(c.order, key)
	return true
}

func (c *replayCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}
