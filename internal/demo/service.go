package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// The roles the two demo services require.
const (
	OrdersRole  = RoleUser
	ReportsRole = RoleAdmin
)

const (
	// discoveryTimeout bounds one attempt to fetch the provider metadata.
	discoveryTimeout = 5 * time.Second
	// defaultServiceClientTimeout bounds discovery and JWKS requests when
	// NewService is given no client.
	defaultServiceClientTimeout = 10 * time.Second
)

// NewService returns a demo microservice that verifies the bearer JWT with
// go-oidc against issuer (signature via the provider's JWKS, iss, exp), accepts
// tokens whose aud contains any of audiences, and authorizes by role: the
// token's "roles" claim must hold requiredRole ("" admits any valid token).
//
// Provider metadata is fetched on the first request that carries a token, not
// here, because the services may start before the provider is up; a failed
// fetch answers 503 and is retried on the next request, a successful one is
// kept. ctx supplies values to go-oidc (the HTTP client is added to it) and,
// when cancelled, stops further fetches. client is used for discovery and
// JWKS; nil means a client with a 10s timeout.
//
// Answers are JSON: 200 with the service name, the token's subject and roles,
// the request path, a message and some demo data ("orders" lists orders,
// "reports" returns a report); 401 with WWW-Authenticate: Bearer when the
// token is missing or invalid; 403 when the role is missing.
func NewService(ctx context.Context, name, issuer string, audiences []string, requiredRole string, client *http.Client) (http.Handler, error) {
	if name == "" {
		return nil, errors.New("demo service: empty name")
	}
	if u, err := url.Parse(issuer); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("demo service %s: issuer %q: must be an absolute http(s) URL", name, issuer)
	}
	if len(audiences) == 0 || slices.Contains(audiences, "") {
		return nil, fmt.Errorf("demo service %s: audiences must be non-empty", name)
	}
	if client == nil {
		client = &http.Client{Timeout: defaultServiceClientTimeout}
	}
	return &service{
		ctx:       ctx,
		name:      name,
		issuer:    issuer,
		audiences: slices.Clone(audiences),
		role:      requiredRole,
		client:    client,
	}, nil
}

type service struct {
	ctx       context.Context
	name      string
	issuer    string
	audiences []string
	role      string
	client    *http.Client

	mu       sync.Mutex
	verifier *oidc.IDTokenVerifier // nil until discovery succeeded
}

// serviceClaims are the claims the services read from the access token.
type serviceClaims struct {
	Subject string   `json:"sub"`
	Roles   []string `json:"roles"`
}

func (s *service) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	raw, ok := bearerToken(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q`, s.name))
		writeJSON(w, http.StatusUnauthorized, errorBody{"unauthenticated", "a bearer access token is required"})
		return
	}
	verifier, err := s.verifierFor(r.Context())
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, errorBody{"provider_unavailable", "cannot load the provider metadata: " + err.Error()})
		return
	}
	tok, err := verifier.Verify(r.Context(), raw)
	if err == nil && !slices.ContainsFunc(tok.Audience, func(a string) bool { return slices.Contains(s.audiences, a) }) {
		err = fmt.Errorf("audience %v is not accepted by this service", tok.Audience)
	}
	var claims serviceClaims
	if err == nil {
		err = tok.Claims(&claims)
	}
	if err != nil {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q, error="invalid_token"`, s.name))
		writeJSON(w, http.StatusUnauthorized, errorBody{"unauthenticated", "invalid access token: " + err.Error()})
		return
	}
	if s.role != "" && !slices.Contains(claims.Roles, s.role) {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm=%q, error="insufficient_scope"`, s.name))
		writeJSON(w, http.StatusForbidden, errorBody{"forbidden", fmt.Sprintf("the %s service requires the role %q", s.name, s.role)})
		return
	}

	// The audience shows on the demo page why payments takes only the
	// exchanged token and orders only the user's own.
	respond(w, r, s.name, claims.Subject, claims.Roles, "verified your access token itself", map[string]any{"audience": tok.Audience})
}

// respond writes a service's 200 answer: who called, with what, some demo
// data, and extra (how the call was authenticated).
func respond(w http.ResponseWriter, r *http.Request, name, subject string, roles []string, how string, extra map[string]any) {
	if roles == nil {
		roles = []string{}
	}
	body := map[string]any{
		"service": name,
		"subject": subject,
		"roles":   roles,
		"method":  r.Method,
		"path":    r.URL.Path,
		"message": fmt.Sprintf("Hello %s: the %s service %s.", subject, name, how),
	}
	for k, v := range extra {
		body[k] = v
	}
	switch name {
	case "orders":
		body["orders"] = []map[string]any{
			{"id": "A-1001", "item": "Espresso beans, 1 kg", "quantity": 2, "status": "shipped"},
			{"id": "A-1002", "item": "Burr grinder", "quantity": 1, "status": "processing"},
			{"id": "A-1003", "item": "Milk jug", "quantity": 1, "status": "delivered"},
		}
	case "payments":
		body["payments"] = []map[string]any{
			{"id": "P-301", "to": "Roastery Ltd", "amount": "42.00 EUR", "status": "settled"},
			{"id": "P-302", "to": "Grinder Co", "amount": "189.00 EUR", "status": "pending"},
		}
	case "reports":
		body["report"] = map[string]any{
			"title":     "Quarterly sales",
			"period":    "Q3",
			"orders":    1284,
			"revenue":   "48,210.00 EUR",
			"top_items": []string{"Espresso beans, 1 kg", "Burr grinder"},
		}
	}
	writeJSON(w, http.StatusOK, body)
}

// verifierFor returns the cached verifier or makes one from the provider's
// discovery document. The lock makes concurrent first requests wait for one
// fetch instead of each starting their own.
func (s *service) verifierFor(reqCtx context.Context) (*oidc.IDTokenVerifier, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.verifier != nil {
		return s.verifier, nil
	}
	// go-oidc keeps this context's values (not its deadline) for the JWKS
	// fetches that follow, so it carries the client; the request bounds only
	// this attempt.
	ctx, cancel := context.WithTimeout(oidc.ClientContext(s.ctx, s.client), discoveryTimeout)
	defer cancel()
	stop := context.AfterFunc(reqCtx, cancel)
	defer stop()
	p, err := oidc.NewProvider(ctx, s.issuer)
	if err != nil {
		return nil, err
	}
	// The audience is checked against the list afterwards: go-oidc's own
	// check takes a single client ID.
	s.verifier = p.Verifier(&oidc.Config{SkipClientIDCheck: true})
	return s.verifier, nil
}

func bearerToken(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	token = strings.TrimSpace(token)
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
		return "", false
	}
	return token, true
}

type errorBody struct {
	Error   string `json:"error"`
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	// The status is sent; an encoding or write error has nowhere to go.
	_ = json.NewEncoder(w).Encode(v)
}
