package bff

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/bffgate/bffgate/dpop"
	"github.com/bffgate/bffgate/sessions"
)

// maxDPoPRetryBody is the largest request body kept to resend once after an
// upstream's use_dpop_nonce challenge (SPEC section 5).
const maxDPoPRetryBody = 64 << 10

// sessionDPoPKey is the session's DPoP key, or nil without DPoP (or for a
// session made before DPoP was turned on).
func (b *BFF) sessionDPoPKey(ctx context.Context, s *sessions.Session) *dpop.Key {
	if !b.fe.OIDC.UsesDPoP() || len(s.DPoPKey) == 0 {
		return nil
	}
	k, err := dpop.ParseKey(s.DPoPKey)
	if err != nil {
		b.log.WarnContext(ctx, "the session's DPoP key cannot be read", "error", err)
		return nil
	}
	return k
}

// deriveDPoPKey is the frontend's DPoP key for purpose. Every instance
// derives the same key from the secret they already share (the sealing
// cookie key pair), so they agree on it with no store round trip and no
// race over which one creates it. The alternative, a key created once in
// the store with SET NX, would need its own encryption key for rest, which
// could only come from that same secret, plus a read before the first use.
// Rotating the first cookie key pair changes every derived key: a new
// client token is fetched for the new client key, and a login begun before
// the rotation on one instance and finished after it on another makes its
// key again from the older pair (callbackDPoPKey).
func (b *BFF) deriveDPoPKey(purpose string) (*dpop.Key, error) {
	return deriveDPoPKeyWith(b.keySecret, b.fe.Name, purpose)
}

func deriveDPoPKeyWith(secret []byte, frontend, purpose string) (*dpop.Key, error) {
	return dpop.DeriveKey(secret, "bffgate\x00"+frontend+"\x00"+purpose)
}

// loginDPoPKey is the DPoP key of the session a login makes, nil without
// DPoP. It is derived from the login's state, so that /login can send its
// thumbprint (dpop_jkt, RFC 9449 section 10: the code is bound to it) while
// writing nothing to the store and giving the browser no key, and the
// callback, on any instance, can make the same key again. The state is
// random per login, so no two sessions share a key; the session keeps its
// key (encrypted) from then on.
func (b *BFF) loginDPoPKey(state string) (*dpop.Key, error) {
	if !b.fe.OIDC.UsesDPoP() {
		return nil, nil
	}
	return b.deriveDPoPKey("login\x00" + state)
}

// callbackDPoPKey makes the login's key again: with the first cookie key
// pair, or, when /login ran where an older pair was still the first (the
// thumbprint it sent says which), with that pair. A login cookie this
// instance could open was sealed with one of its pairs, so one of them
// gives the key unless the frontend's DPoP setting changed meanwhile.
func (b *BFF) callbackDPoPKey(p *pendingLogin) (*dpop.Key, error) {
	k, err := b.loginDPoPKey(p.State)
	if k == nil || err != nil || p.DPoPJKT == "" || k.Thumbprint() == p.DPoPJKT {
		return k, err // a cookie from before the thumbprint was kept: the first pair's
	}
	for _, secret := range b.olderKeySecrets {
		old, err := deriveDPoPKeyWith(secret, b.fe.Name, "login\x00"+p.State)
		if err != nil {
			return nil, err
		}
		if old.Thumbprint() == p.DPoPJKT {
			return old, nil
		}
	}
	return nil, fmt.Errorf("no cookie key pair of this instance gives the key /login bound the code to (dpop_jkt %s)", p.DPoPJKT)
}

type dpopKeyCtx struct{}

// withDPoPKey makes the upstream transport send the request's token as a
// DPoP token with a proof made with key.
func withDPoPKey(ctx context.Context, key *dpop.Key) context.Context {
	if key == nil {
		return ctx
	}
	return context.WithValue(ctx, dpopKeyCtx{}, key)
}

// dpopTransport turns "Authorization: Bearer T" into "Authorization: DPoP
// T" plus a DPoP proof (htm, htu without query, ath, iat, jti) for requests
// whose context has a key, and retries once on a 401 use_dpop_nonce
// challenge with the upstream's nonce when the body is empty or at most
// 64 KiB. The last nonce is remembered per upstream origin. Requests
// without a key pass unchanged.
type dpopTransport struct {
	next   http.RoundTripper
	now    func() time.Time
	nonces *sync.Map // origin -> nonce, shared by the frontend's routes
}

func (t *dpopTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	key, _ := req.Context().Value(dpopKeyCtx{}).(*dpop.Key)
	token, isBearer := strings.CutPrefix(req.Header.Get("Authorization"), "Bearer ")
	if key == nil || !isBearer {
		return t.next.RoundTrip(req)
	}
	origin := req.URL.Scheme + "://" + req.URL.Host
	// Keep up to 64 KiB of the body so the request can be sent again.
	var kept []byte
	replayable := req.Body == nil || req.Body == http.NoBody
	if !replayable && req.ContentLength >= 0 && req.ContentLength <= maxDPoPRetryBody {
		buf, err := io.ReadAll(io.LimitReader(req.Body, maxDPoPRetryBody+1))
		if err != nil {
			return nil, err
		}
		if len(buf) <= maxDPoPRetryBody {
			kept, replayable = buf, true
			req.Body.Close()
			req.Body = io.NopCloser(bytes.NewReader(kept))
		} else {
			req.Body = struct {
				io.Reader
				io.Closer
			}{io.MultiReader(bytes.NewReader(buf), req.Body), req.Body}
		}
	}
	send := func(r *http.Request) (*http.Response, error) {
		nonce, _ := t.nonces.Load(origin)
		n, _ := nonce.(string)
		proof, err := key.Proof(r.Method, r.URL.String(), dpop.ProofOptions{AccessToken: token, Nonce: n, Now: t.now()})
		if err != nil {
			return nil, err
		}
		r.Header.Set("Authorization", "DPoP "+token)
		r.Header.Set("DPoP", proof)
		resp, err := t.next.RoundTrip(r)
		if err == nil {
			if n := resp.Header.Get("DPoP-Nonce"); n != "" {
				t.nonces.Store(origin, n)
			}
		}
		return resp, err
	}
	resp, err := send(req)
	if err != nil || !replayable || resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("DPoP-Nonce") == "" ||
		!strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="use_dpop_nonce"`) {
		return resp, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	retry := req.Clone(req.Context())
	if kept != nil {
		retry.Body = io.NopCloser(bytes.NewReader(kept))
	}
	return send(retry)
}
