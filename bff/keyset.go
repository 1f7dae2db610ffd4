package bff

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// jwksRefetchInterval bounds how often an unverifiable token may send us
// back to the provider's JWKS (SPEC §4: at most once per 10 s per frontend).
const jwksRefetchInterval = 10 * time.Second

// maxJWKSBytes bounds the JWKS document we read; real ones are a few KiB.
const maxJWKSBytes = 1 << 20

// errKeysUnavailable means the provider's JWKS could not be fetched: the
// token may be fine, so the caller answers "retry later", not "bad token".
var errKeysUnavailable = errors.New("the provider's signing keys are unavailable")

// limitedKeySet is an oidc.KeySet for tokens that anonymous callers send
// (back-channel logout tokens). go-oidc's RemoteKeySet refetches the JWKS on
// every verification failure, so each forged token costs the provider a
// request; here a token whose kid is in the cached set is judged against the
// cache alone, and an unknown kid triggers at most one refetch per interval.
type limitedKeySet struct {
	jwksURL  string
	client   *http.Client
	now      func() time.Time
	interval time.Duration

	// mu is held across a fetch, so concurrent tokens with an unknown kid
	// wait for it and then see the fresh set instead of fetching again.
	mu        sync.Mutex
	keys      []jose.JSONWebKey
	fetched   bool // keys holds a fetched set
	tried     bool // lastFetch is set
	lastFetch time.Time
}

func newLimitedKeySet(jwksURL string, client *http.Client, now func() time.Time) *limitedKeySet {
	return &limitedKeySet{jwksURL: jwksURL, client: client, now: now, interval: jwksRefetchInterval}
}

// VerifySignature implements oidc.KeySet.
func (ks *limitedKeySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSignedCompact(raw, signingAlgs)
	if err != nil {
		return nil, fmt.Errorf("malformed jwt: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("exactly one signature expected")
	}
	kid := jws.Signatures[0].Header.KeyID

	ks.mu.Lock()
	defer ks.mu.Unlock()
	if !ks.fetched {
		if ks.tried && ks.now().Sub(ks.lastFetch) < ks.interval {
			return nil, fmt.Errorf("%w: the last attempt failed less than %v ago", errKeysUnavailable, ks.interval)
		}
		if err := ks.fetchLocked(ctx); err != nil {
			return nil, err
		}
	}
	candidates := ks.candidatesLocked(kid)
	if len(candidates) > 0 {
		if payload, ok := verifyWith(jws, candidates); ok {
			return payload, nil
		}
		if kid != "" {
			// The provider's own key does not verify it: a forgery, and a
			// fresh copy of the same key would say the same.
			return nil, errors.New("bad signature")
		}
	}
	// An unknown kid (or none verifying a kid-less token) may be a key the
	// provider rotated in since the last fetch; look, but rarely.
	if ks.now().Sub(ks.lastFetch) < ks.interval {
		return nil, fmt.Errorf("no key for kid %q (the key set was fetched less than %v ago)", kid, ks.interval)
	}
	if err := ks.fetchLocked(ctx); err != nil {
		return nil, err
	}
	if payload, ok := verifyWith(jws, ks.candidatesLocked(kid)); ok {
		return payload, nil
	}
	return nil, fmt.Errorf("no key verifies the signature (kid %q)", kid)
}

func (ks *limitedKeySet) candidatesLocked(kid string) []jose.JSONWebKey {
	if kid == "" {
		return ks.keys
	}
	var out []jose.JSONWebKey
	for _, k := range ks.keys {
		if k.KeyID == kid {
			out = append(out, k)
		}
	}
	return out
}

func verifyWith(jws *jose.JSONWebSignature, keys []jose.JSONWebKey) ([]byte, bool) {
	for _, k := range keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if payload, err := jws.Verify(&k); err == nil {
			return payload, true
		}
	}
	return nil, false
}

// fetchLocked replaces the cached keys; a failure keeps the old ones and
// still counts as a fetch, so a provider that is down is not hammered.
func (ks *limitedKeySet) fetchLocked(ctx context.Context) error {
	ks.lastFetch, ks.tried = ks.now(), true
	keys, err := ks.fetch(ctx)
	if err != nil {
		return fmt.Errorf("%w: %v", errKeysUnavailable, err)
	}
	ks.keys, ks.fetched = keys, true
	return nil
}

func (ks *limitedKeySet) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ks.jwksURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := ks.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jwks: status %d", resp.StatusCode)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxJWKSBytes)).Decode(&set); err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	return set.Keys, nil
}
