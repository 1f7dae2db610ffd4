package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/bffgate/bffgate/dpop"
)

// The client the demo services introspect tokens with at the -fapi2 demo's
// provider, whose access tokens are opaque. Published: demo only.
const (
	IntrospectionClientID     = "demo-services"
	IntrospectionClientSecret = "demo-services-secret"
)

// Introspector asks a provider's introspection endpoint (RFC 7662) what an
// opaque access token is: the -fapi2 demo services' token check. The
// endpoint comes from discovery, fetched on first use and kept once it
// succeeded (the services may start before the provider).
type Introspector struct {
	ctx          context.Context
	issuer       string
	clientID     string
	clientSecret string
	client       *http.Client

	mu       sync.Mutex
	endpoint string
}

// NewIntrospector returns an Introspector for issuer that authenticates
// as clientID/clientSecret (client_secret_basic). ctx, when cancelled,
// stops further discovery; nil client means one with a 10 s timeout.
func NewIntrospector(ctx context.Context, issuer, clientID, clientSecret string, client *http.Client) (*Introspector, error) {
	if u, err := url.Parse(issuer); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("introspection: issuer %q: must be an absolute http(s) URL", issuer)
	}
	if client == nil {
		client = &http.Client{Timeout: defaultServiceClientTimeout}
	}
	return &Introspector{ctx: ctx, issuer: strings.TrimSuffix(issuer, "/"), clientID: clientID, clientSecret: clientSecret, client: client}, nil
}

// TokenInfo is what introspection says of a token (RFC 7662, RFC 9449
// section 6.2 for cnf.jkt); Roles is the demo provider's extra claim.
type TokenInfo struct {
	Active    bool     `json:"active"`
	Subject   string   `json:"sub"`
	ClientID  string   `json:"client_id"`
	TokenType string   `json:"token_type"`
	Roles     []string `json:"roles"`
	Cnf       struct {
		JKT string `json:"jkt"`
	} `json:"cnf"`
}

// errInactive is a token the provider does not know or no longer accepts.
var errInactive = errors.New("the provider says the token is not active")

// Introspect returns what the provider says of token; an inactive token is
// an error.
func (in *Introspector) Introspect(ctx context.Context, token string) (*TokenInfo, error) {
	endpoint, err := in.endpointFor(ctx)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint,
		strings.NewReader(url.Values{"token": {token}, "token_type_hint": {"access_token"}}.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(in.clientID), url.QueryEscape(in.clientSecret))
	resp, err := in.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("introspection: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("introspection: provider answered %d", resp.StatusCode)
	}
	var ti TokenInfo
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&ti); err != nil {
		return nil, fmt.Errorf("introspection: %w", err)
	}
	if !ti.Active {
		return nil, errInactive
	}
	return &ti, nil
}

// endpointFor returns the introspection endpoint from the provider's
// discovery document; the lock makes concurrent first calls wait for one
// fetch.
func (in *Introspector) endpointFor(reqCtx context.Context) (string, error) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.endpoint != "" {
		return in.endpoint, nil
	}
	ctx, cancel := context.WithTimeout(in.ctx, discoveryTimeout)
	defer cancel()
	stop := context.AfterFunc(reqCtx, cancel)
	defer stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, in.issuer+"/.well-known/openid-configuration", nil)
	if err != nil {
		return "", err
	}
	resp, err := in.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("discovery: provider answered %d", resp.StatusCode)
	}
	var meta struct {
		Issuer   string `json:"issuer"`
		Endpoint string `json:"introspection_endpoint"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&meta); err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	if meta.Issuer != in.issuer {
		return "", fmt.Errorf("discovery: issuer %q, want %q", meta.Issuer, in.issuer)
	}
	if meta.Endpoint == "" {
		return "", errors.New("discovery: the provider has no introspection_endpoint")
	}
	in.endpoint = meta.Endpoint
	return in.endpoint, nil
}

// NewDPoPService returns the demo service name for DPoP-bound tokens (the
// -fapi2 demo): v's Middleware lets a call through only with
// "Authorization: DPoP <token>" and a DPoP proof that v accepts for this
// request (htm, htu, iat window, jti replay, ath) made with the key the
// token is bound to (cnf.jkt from introspection). Bearer tokens, a missing
// or wrong proof, and tokens of clients not in audiences are refused with
// 401 and a WWW-Authenticate: DPoP challenge; a missing requiredRole is 403.
//
// The 200 answer is NewService's plus "token_type" (as introspection gives
// it, DPoP) and "jkt", the thumbprint of the key the proof was made with,
// so the demo page shows what was checked. One Verifier may serve several
// services: its replay cache and nonces then cover them all, which is what
// services sharing one origin need (the gateway keeps one nonce per origin).
func NewDPoPService(name string, in *Introspector, audiences []string, requiredRole string, v *dpop.Verifier) (http.Handler, error) {
	if name == "" {
		return nil, errors.New("demo service: empty name")
	}
	if len(audiences) == 0 || slices.Contains(audiences, "") {
		return nil, fmt.Errorf("demo service %s: audiences must be non-empty", name)
	}
	if in == nil || v == nil {
		return nil, fmt.Errorf("demo service %s: an introspector and a verifier are required", name)
	}
	audiences = slices.Clone(audiences)
	verify := func(ctx context.Context, token string) (string, any, error) {
		ti, err := in.Introspect(ctx, token)
		if err != nil {
			return "", nil, err
		}
		if !slices.Contains(audiences, ti.ClientID) {
			return "", nil, fmt.Errorf("tokens of client %q are not accepted by this service", ti.ClientID)
		}
		return ti.Cnf.JKT, ti, nil
	}
	return v.Middleware(verify, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ti, _ := dpop.ClaimsFrom(r.Context()).(*TokenInfo)
		p := dpop.ProofFrom(r.Context())
		if ti == nil || p == nil {
			// Middleware always sets both; refuse rather than serve blind.
			writeJSON(w, http.StatusInternalServerError, errorBody{"internal", "no verified token in the request"})
			return
		}
		if requiredRole != "" && !slices.Contains(ti.Roles, requiredRole) {
			w.Header().Set("WWW-Authenticate", `DPoP error="insufficient_scope"`)
			writeJSON(w, http.StatusForbidden, errorBody{"forbidden", fmt.Sprintf("the %s service requires the role %q", name, requiredRole)})
			return
		}
		respond(w, r, name, ti.Subject, ti.Roles, "checked the DPoP proof and that your token is bound to its key", map[string]any{
			"token_type": ti.TokenType,
			"jkt":        p.Thumbprint,
		})
	})), nil
}
