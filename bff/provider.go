package bff

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// providerMeta is what one frontend needs from its provider's discovery
// document, loaded once and then shared by every request.
type providerMeta struct {
	issuer     string
	oauth      oauth2.Config
	verifier   *oidc.IDTokenVerifier
	endSession string
	revocation string
	// par is the pushed authorization request endpoint (RFC 9126), "" when
	// the provider offers none; requirePAR is its
	// require_pushed_authorization_requests.
	par        string
	requirePAR bool
	// logoutVerifier checks back-channel logout tokens: same keys and
	// audience as ID tokens, but no expiry requirement beyond what the spec says.
	logoutVerifier *oidc.IDTokenVerifier
}

// providerLoader fetches discovery lazily so the gateway starts (and serves
// its other frontends) while one provider is down; failures are retried with
// backoff instead of on every request.
type providerLoader struct {
	issuer       string
	clientID     string
	clientSecret string
	redirectURL  string
	scopes       []string
	client       *http.Client
	timeout      time.Duration // one discovery fetch
	now          func() time.Time
	// signingAlgs, when set, are the only ID and logout token algorithms
	// accepted (profile fapi2: PS256, ES256, EdDSA).
	signingAlgs []string

	loaded atomic.Pointer[providerMeta]

	mu      sync.Mutex
	lastErr error
	nextTry time.Time
	backoff time.Duration
}

// get returns the metadata, fetching it when it is not loaded and the
// backoff has passed.
func (p *providerLoader) get(ctx context.Context) (*providerMeta, error) {
	if m := p.loaded.Load(); m != nil {
		return m, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if m := p.loaded.Load(); m != nil {
		return m, nil
	}
	if now := p.now(); now.Before(p.nextTry) {
		return nil, p.lastErr
	}
	m, err := p.fetch(ctx)
	if err != nil {
		if p.backoff == 0 {
			p.backoff = time.Second
		} else if p.backoff < 30*time.Second {
			p.backoff *= 2
		}
		p.nextTry = p.now().Add(p.backoff)
		p.lastErr = fmt.Errorf("provider %s: %w", p.issuer, err)
		return nil, p.lastErr
	}
	p.backoff, p.lastErr = 0, nil
	p.loaded.Store(m)
	return m, nil
}

func (p *providerLoader) fetch(ctx context.Context) (*providerMeta, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	// The provider keeps this client for its key set too.
	prov, err := oidc.NewProvider(oidc.ClientContext(ctx, p.client), p.issuer)
	if err != nil {
		return nil, err
	}
	var extra struct {
		EndSession string   `json:"end_session_endpoint"`
		Revocation string   `json:"revocation_endpoint"`
		JWKS       string   `json:"jwks_uri"`
		Algs       []string `json:"id_token_signing_alg_values_supported"`
		PAR        string   `json:"pushed_authorization_request_endpoint"`
		RequirePAR bool     `json:"require_pushed_authorization_requests"`
	}
	if err := prov.Claims(&extra); err != nil {
		return nil, fmt.Errorf("discovery document: %w", err)
	}
	cfg := &oidc.Config{ClientID: p.clientID, Now: p.now}
	logoutAlgs := extra.Algs
	if p.signingAlgs != nil {
		// A profile (fapi2) narrows what ID and logout tokens may use.
		cfg.SupportedSigningAlgs = p.signingAlgs
		logoutAlgs = p.signingAlgs
	}
	return &providerMeta{
		issuer: p.issuer,
		oauth: oauth2.Config{
			ClientID:     p.clientID,
			ClientSecret: p.clientSecret,
			Endpoint:     prov.Endpoint(),
			RedirectURL:  p.redirectURL,
			Scopes:       p.scopes,
		},
		verifier: prov.Verifier(cfg),
		// Anyone can post a logout token: its key set refetches rarely
		// (limitedKeySet), unlike the ID tokens' RemoteKeySet.
		logoutVerifier: oidc.NewVerifier(p.issuer, newLimitedKeySet(extra.JWKS, p.client, p.now),
			&oidc.Config{ClientID: p.clientID, Now: p.now, SkipExpiryCheck: true, SupportedSigningAlgs: logoutAlgs}),
		endSession: extra.EndSession,
		revocation: extra.Revocation,
		par:        extra.PAR,
		requirePAR: extra.RequirePAR,
	}, nil
}
