package demo

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// The demo provider's users come from the zitadel example user store; these
// name them so the demo and the tests need not repeat the strings.
const (
	// Password is the password of every demo user.
	Password = "verysecure"
	// UserUsername is the plain user: roles ["user"].
	UserUsername = "test-user2"

	// RoleUser is held by every demo user; RoleAdmin only by AdminUsername.
	RoleUser  = "user"
	RoleAdmin = "admin"
	// RolesClaim is the claim carrying the roles in ID and access tokens.
	RolesClaim = "roles"
)

// defaultAccessTokenLifetime matches the example storage's own lifetime.
const defaultAccessTokenLifetime = 5 * time.Minute

// AdminUsername returns the login name of the admin user (roles ["admin",
// "user"]) of a provider served at issuer: the example store names it after the
// issuer's host, test-user@<host>.
func AdminUsername(issuer string) string {
	// Same derivation as storage.NewUserStore, so the two always agree.
	return "test-user@" + demoHost(issuer)
}

// Client is a confidential web client of the demo provider: it authenticates
// with client_secret_basic, may use the authorization code (PKCE S256
// optional), refresh_token and client_credentials grants, and receives JWT
// access tokens.
//
// There is no back-channel logout URI: the zitadel OP library only has the
// discovery flags for OIDC Back-Channel Logout, it never sends logout tokens.
type Client struct {
	ID     string
	Secret string
	// RedirectURIs are matched exactly (no loopback port wildcard).
	RedirectURIs []string
	// RedirectURIGlobs are also accepted as redirect URIs: doublestar
	// patterns ("**" spans path segments), as the OP library matches them.
	// See AnyCallbackGlob.
	RedirectURIGlobs []string
	// PostLogoutRedirectURIs are the post_logout_redirect_uri values that the
	// end_session_endpoint accepts for this client, matched exactly.
	PostLogoutRedirectURIs []string
	// PostLogoutRedirectURIGlobs are path.Match patterns ("*" stays within
	// one segment) also accepted there. See AnyPathGlobs.
	PostLogoutRedirectURIGlobs []string
	// ExchangeAudiences are the audiences this client may ask for when it
	// exchanges a user's access token (RFC 8693, token: exchange routes).
	// Empty: the client may not use the token-exchange grant. Anything
	// else is refused with invalid_target, so a test or the demo can see a
	// real refusal.
	ExchangeAudiences []string
}

// AnyCallbackGlob is the redirect URI pattern that accepts the callback of a
// frontend at any mount under the gateway origin publicURL:
// publicURL/<mount>/bff/callback, the root mount included.
func AnyCallbackGlob(publicURL string) string {
	return globQuote(strings.TrimSuffix(publicURL, "/")) + "/**/bff/callback"
}

// maxLogoutDepth bounds the path segments of a post-logout redirect URI that
// AnyPathGlobs accept: the OP matches those with path.Match, whose "*" never
// crosses a "/", so every depth needs its own pattern.
const maxLogoutDepth = 6

// AnyPathGlobs are the post-logout redirect URI patterns that accept any
// path of up to maxLogoutDepth segments under the gateway origin publicURL
// (a frontend's after_logout, wherever it is mounted).
func AnyPathGlobs(publicURL string) []string {
	base := globQuote(strings.TrimSuffix(publicURL, "/"))
	globs := make([]string, 0, maxLogoutDepth)
	for i := 1; i <= maxLogoutDepth; i++ {
		globs = append(globs, base+strings.Repeat("/*", i))
	}
	return globs
}

// globQuote escapes the pattern characters of both matchers (path.Match and
// doublestar), such as the brackets of an IPv6 host.
func globQuote(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]{}\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// IDPOptions tunes the demo provider. The zero value gives the example's
// behaviour.
type IDPOptions struct {
	// AccessTokenLifetime sets the access tokens' lifetime (JWT exp and
	// expires_in). Zero means 5m. Tests shorten it to force refreshes. (The
	// example's own record of the token, which only the userinfo and
	// introspection endpoints consult, keeps its 5m.)
	AccessTokenLifetime time.Duration
	// Logger receives one line per login attempt and per token issued. Nil
	// discards them. It never becomes the process's default logger. (The
	// example router still logs each request on slog's default logger; that is
	// the example's own middleware.)
	Logger *slog.Logger
}

// NewIDP returns the OpenID provider's http.Handler for issuer, which must be
// the root URL it is served at (scheme://host[:port], no path): the example's
// login UI sends the browser to the absolute path /login/username.
//
// It is the zitadel/oidc example OP (in-memory, users from the example store,
// refresh tokens rotated and single-use, PKCE S256, RP-initiated logout at
// end_session_endpoint, token revocation) with the clients given here instead
// of the example's package-level registry, a "roles" claim in ID and access
// tokens, the example's built-in JWT-profile service key and
// client-credentials service user switched off, and token exchange limited
// to each client's ExchangeAudiences.
func NewIDP(issuer string, clients []Client, opts IDPOptions) (*IDP, error) {
	// exampleop.SetupServer log.Fatal's on a bad issuer and the user store
	// panics on one without a scheme, so everything is checked here first.
	if err := validateIssuer(issuer); err != nil {
		return nil, err
	}
	registered, err := newOPClients(clients)
	if err != nil {
		return nil, err
	}
	lifetime := opts.AccessTokenLifetime
	switch {
	case lifetime < 0:
		return nil, fmt.Errorf("demo idp: negative access token lifetime %v", lifetime)
	case lifetime == 0:
		lifetime = defaultAccessTokenLifetime
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	users := storage.NewUserStore(issuer)
	demoEmails(users, issuer)
	st := &idpStorage{
		// An empty client map: every client lookup goes through the
		// overrides below, never through the example's global registry.
		Storage:             storage.NewStorageWithClients(users, map[string]*storage.Client{}),
		users:               users,
		clients:             registered,
		accessTokenLifetime: lifetime,
		log:                 logger,
	}
	// A nil logger: SetupServer would otherwise make it the process default.
	h := listDemoUsers(exampleop.SetupServer(issuer, st, nil, false), issuer)
	return &IDP{Handler: h, issuer: issuer, st: st}, nil
}

func validateIssuer(issuer string) error {
	u, err := url.Parse(issuer)
	if err != nil {
		return fmt.Errorf("demo idp: issuer: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("demo idp: issuer %q: must be an http(s) URL", issuer)
	}
	if u.Host == "" || u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("demo idp: issuer %q: must be scheme://host[:port] without path, query or fragment", issuer)
	}
	return op.ValidateIssuer(issuer, true)
}

func newOPClients(clients []Client) (map[string]*opClient, error) {
	out := make(map[string]*opClient, len(clients))
	var errs []error
	for i, c := range clients {
		where := fmt.Sprintf("demo idp: clients[%d]", i)
		if c.ID == "" {
			errs = append(errs, fmt.Errorf("%s: empty ID", where))
			continue
		}
		if _, dup := out[c.ID]; dup {
			errs = append(errs, fmt.Errorf("%s: duplicate ID %q", where, c.ID))
		}
		if c.Secret == "" {
			errs = append(errs, fmt.Errorf("%s (%s): empty Secret (clients are confidential)", where, c.ID))
		}
		if len(c.RedirectURIs) == 0 && len(c.RedirectURIGlobs) == 0 {
			errs = append(errs, fmt.Errorf("%s (%s): no RedirectURIs or RedirectURIGlobs", where, c.ID))
		}
		for _, g := range c.PostLogoutRedirectURIGlobs {
			if _, err := path.Match(g, ""); err != nil {
				errs = append(errs, fmt.Errorf("%s (%s): post-logout redirect URI glob %q: %w", where, c.ID, g, err))
			}
		}
		for _, u := range c.RedirectURIs {
			if err := checkAbsoluteURI(u); err != nil {
				errs = append(errs, fmt.Errorf("%s (%s): redirect URI: %w", where, c.ID, err))
			}
		}
		for _, u := range c.PostLogoutRedirectURIs {
			if err := checkAbsoluteURI(u); err != nil {
				errs = append(errs, fmt.Errorf("%s (%s): post-logout redirect URI: %w", where, c.ID, err))
			}
		}
		out[c.ID] = &opClient{
			id:                     c.ID,
			secret:                 c.Secret,
			redirectURIs:           slices.Clone(c.RedirectURIs),
			redirectGlobs:          slices.Clone(c.RedirectURIGlobs),
			postLogoutRedirectURIs: slices.Clone(c.PostLogoutRedirectURIs),
			postLogoutGlobs:        slices.Clone(c.PostLogoutRedirectURIGlobs),
			exchangeAudiences:      slices.Clone(c.ExchangeAudiences),
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

func checkAbsoluteURI(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Fragment != "" {
		return fmt.Errorf("%q: must be an absolute http(s) URL without fragment", raw)
	}
	return nil
}

// idpStorage is the example storage with our clients, roles and token
// lifetime. Methods not overridden here are the example's.
type idpStorage struct {
	*storage.Storage
	users               storage.UserStore
	clients             map[string]*opClient // read-only after NewIDP
	accessTokenLifetime time.Duration
	log                 *slog.Logger

	// refreshMu serialises the example methods that touch its refresh token
	// map: GetRefreshTokenInfo reads that map without the example's own lock,
	// which the race detector reports when a revocation meets a refresh.
	refreshMu sync.Mutex
}

var (
	_ exampleop.Storage            = (*idpStorage)(nil)
	_ op.ClientCredentialsStorage  = (*idpStorage)(nil)
	_ op.CanSetUserinfoFromRequest = (*idpStorage)(nil)
)

// GetClientByClientID serves the clients given to NewIDP.
func (s *idpStorage) GetClientByClientID(_ context.Context, clientID string) (op.Client, error) {
	c, ok := s.clients[clientID]
	if !ok {
		return nil, fmt.Errorf("client %q not found", clientID)
	}
	return c, nil
}

// AuthorizeClientIDSecret checks a client's secret (token, revocation and
// introspection endpoints).
func (s *idpStorage) AuthorizeClientIDSecret(_ context.Context, clientID, clientSecret string) error {
	if _, err := s.authenticateClient(clientID, clientSecret); err != nil {
		return err
	}
	return nil
}

func (s *idpStorage) authenticateClient(clientID, clientSecret string) (*opClient, error) {
	c, ok := s.clients[clientID]
	if !ok || subtle.ConstantTimeCompare([]byte(c.secret), []byte(clientSecret)) != 1 {
		return nil, errors.New("wrong client id or secret")
	}
	return c, nil
}

// ClientCredentials replaces the example's built-in service user with our
// clients, so a `token: client` route can be tried against the demo.
func (s *idpStorage) ClientCredentials(_ context.Context, clientID, clientSecret string) (op.Client, error) {
	c, err := s.authenticateClient(clientID, clientSecret)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// ClientCredentialsTokenRequest makes the client itself the subject, with its
// own ID as audience (as user tokens have).
func (s *idpStorage) ClientCredentialsTokenRequest(_ context.Context, clientID string, scopes []string) (op.TokenRequest, error) {
	if _, ok := s.clients[clientID]; !ok {
		return nil, fmt.Errorf("client %q not found", clientID)
	}
	s.log.Info("demo idp: client credentials token", "client_id", clientID)
	return &oidc.JWTTokenRequest{Subject: clientID, Audience: []string{clientID}, Scopes: scopes}, nil
}

// GetKeyByIDAndClientID refuses every key: the example trusts a service key
// whose private half is published in its repository, which would let anyone
// mint tokens through the JWT-profile grant.
func (s *idpStorage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("JWT-profile grant and private_key_jwt are not enabled on the demo provider")
}

// ValidateTokenExchangeRequest replaces the example's policy (which lets an
// admin impersonate anyone through a scope, and checks no audience): a
// client with ExchangeAudiences may trade a user's access token for an
// access token for the same user, restricted to one or more of those
// audiences; no actor token, no impersonation scope. The library has
// already verified the subject token (signature and expiry of our JWT
// access tokens) and authenticated the client; it does not check the
// client's grant types, so that is done here.
func (s *idpStorage) ValidateTokenExchangeRequest(_ context.Context, req op.TokenExchangeRequest) error {
	c, ok := s.clients[req.GetClientID()]
	switch {
	case !ok || len(c.exchangeAudiences) == 0:
		return oidc.ErrUnauthorizedClient().WithDescription("this client may not use token exchange on the demo provider")
	case req.GetExchangeSubjectTokenType() != oidc.AccessTokenType:
		return oidc.ErrInvalidRequest().WithDescription("subject_token_type must be an access token")
	case req.GetRequestedTokenType() != "" && req.GetRequestedTokenType() != oidc.AccessTokenType:
		return oidc.ErrInvalidRequest().WithDescription("requested_token_type must be an access token")
	case req.GetExchangeActor() != "":
		return oidc.ErrInvalidRequest().WithDescription("delegation (actor_token) is not supported")
	case len(req.GetAudience()) == 0:
		return oidc.ErrInvalidTarget().WithDescription("an audience is required")
	}
	for _, aud := range req.GetAudience() {
		if !slices.Contains(c.exchangeAudiences, aud) {
			s.log.Info("demo idp: token exchange refused", "client_id", c.id, "audience", aud)
			return oidc.ErrInvalidTarget().WithDescription("this client may not obtain tokens for audience %q", aud)
		}
	}
	for _, sc := range req.GetScopes() {
		if strings.HasPrefix(sc, storage.CustomScopeImpersonatePrefix) {
			return oidc.ErrInvalidScope().WithDescription("impersonation is not supported")
		}
	}
	req.SetRequestedTokenType(oidc.AccessTokenType)
	req.SetCurrentScopes(req.GetScopes())
	s.log.Info("demo idp: token exchange", "client_id", c.id, "sub", req.GetSubject(), "audience", strings.Join(req.GetAudience(), " "))
	return nil
}

// GetPrivateClaimsFromTokenExchangeRequest gives exchanged access tokens the
// user's roles, as the user's own access tokens have.
func (s *idpStorage) GetPrivateClaimsFromTokenExchangeRequest(_ context.Context, req op.TokenExchangeRequest) (map[string]any, error) {
	claims := map[string]any{}
	if roles := s.roles(req.GetSubject()); roles != nil {
		claims[RolesClaim] = roles
	}
	return claims, nil
}

// CheckUsernamePassword is the example's check, logged.
func (s *idpStorage) CheckUsernamePassword(username, password, id string) error {
	err := s.Storage.CheckUsernamePassword(username, password, id)
	if err != nil {
		s.log.Info("demo idp: login failed", "username", username, "error", err)
		return err
	}
	s.log.Info("demo idp: login", "username", username)
	return nil
}

// CreateAccessToken shortens the token's expiry to the configured lifetime;
// the OP derives both the JWT exp and expires_in from the returned time.
func (s *idpStorage) CreateAccessToken(ctx context.Context, req op.TokenRequest) (string, time.Time, error) {
	id, _, err := s.Storage.CreateAccessToken(ctx, req)
	if err != nil {
		return "", time.Time{}, err
	}
	s.log.Info("demo idp: access token", "sub", req.GetSubject())
	return id, time.Now().Add(s.accessTokenLifetime), nil
}

// CreateAccessAndRefreshTokens is the example's (refresh tokens rotate, each is
// single-use) with the configured access token lifetime.
func (s *idpStorage) CreateAccessAndRefreshTokens(ctx context.Context, req op.TokenRequest, currentRefreshToken string) (string, string, time.Time, error) {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	id, refresh, _, err := s.Storage.CreateAccessAndRefreshTokens(ctx, req, currentRefreshToken)
	if err != nil {
		if currentRefreshToken != "" {
			s.log.Info("demo idp: refresh rejected", "sub", req.GetSubject(), "error", err)
		}
		return "", "", time.Time{}, err
	}
	s.log.Info("demo idp: access and refresh token", "sub", req.GetSubject(), "refresh", currentRefreshToken != "")
	return id, refresh, time.Now().Add(s.accessTokenLifetime), nil
}

// GetRefreshTokenInfo is the example's, serialised (see refreshMu).
func (s *idpStorage) GetRefreshTokenInfo(ctx context.Context, clientID, token string) (string, string, error) {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	return s.Storage.GetRefreshTokenInfo(ctx, clientID, token)
}

// RevokeToken is the example's, serialised (see refreshMu).
func (s *idpStorage) RevokeToken(ctx context.Context, tokenIDOrToken, userID, clientID string) *oidc.Error {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	s.log.Info("demo idp: revoke", "client_id", clientID, "sub", userID)
	return s.Storage.RevokeToken(ctx, tokenIDOrToken, userID, clientID)
}

// TerminateSession (end_session_endpoint) is the example's, serialised (see
// refreshMu): it drops the user's tokens for that client.
func (s *idpStorage) TerminateSession(ctx context.Context, userID, clientID string) error {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	s.log.Info("demo idp: end session", "client_id", clientID, "sub", userID)
	return s.Storage.TerminateSession(ctx, userID, clientID)
}

// SetUserinfoFromRequest adds the roles claim to ID tokens.
func (s *idpStorage) SetUserinfoFromRequest(ctx context.Context, userinfo *oidc.UserInfo, req op.IDTokenRequest, scopes []string) error {
	if err := s.Storage.SetUserinfoFromRequest(ctx, userinfo, req, scopes); err != nil {
		return err
	}
	if roles := s.roles(req.GetSubject()); roles != nil {
		userinfo.AppendClaims(RolesClaim, roles)
	}
	return nil
}

// SetUserinfoFromToken adds the roles claim to the userinfo endpoint's answer.
func (s *idpStorage) SetUserinfoFromToken(ctx context.Context, userinfo *oidc.UserInfo, tokenID, subject, origin string) error {
	if err := s.Storage.SetUserinfoFromToken(ctx, userinfo, tokenID, subject, origin); err != nil {
		return err
	}
	if roles := s.roles(subject); roles != nil {
		userinfo.AppendClaims(RolesClaim, roles)
	}
	return nil
}

// GetPrivateClaimsFromScopes adds the roles claim to JWT access tokens, which
// is what the demo services authorize on.
func (s *idpStorage) GetPrivateClaimsFromScopes(ctx context.Context, userID, clientID string, scopes []string) (map[string]any, error) {
	claims, err := s.Storage.GetPrivateClaimsFromScopes(ctx, userID, clientID, scopes)
	if err != nil {
		return nil, err
	}
	if roles := s.roles(userID); roles != nil {
		if claims == nil {
			claims = make(map[string]any, 1)
		}
		claims[RolesClaim] = roles
	}
	return claims, nil
}

// roles maps the example store's IsAdmin flag to roles; nil for a subject that
// is not a user (a client-credentials token).
func (s *idpStorage) roles(userID string) []string {
	u := s.users.GetUserByID(userID)
	switch {
	case u == nil:
		return nil
	case u.IsAdmin:
		return []string{RoleAdmin, RoleUser}
	default:
		return []string{RoleUser}
	}
}

// opClient implements op.Client for a Client.
type opClient struct {
	id                     string
	secret                 string
	redirectURIs           []string
	redirectGlobs          []string
	postLogoutRedirectURIs []string
	postLogoutGlobs        []string
	exchangeAudiences      []string
}

var (
	_ op.Client           = (*opClient)(nil)
	_ op.HasRedirectGlobs = (*opClient)(nil)
)

// RedirectURIGlobs and PostLogoutRedirectURIGlobs are matched by the OP
// after the exact lists, whatever DevMode says (unlike the example's
// storage.RedirectGlobsClient, which needs DevMode and its relaxations).
func (c *opClient) RedirectURIGlobs() []string           { return c.redirectGlobs }
func (c *opClient) PostLogoutRedirectURIGlobs() []string { return c.postLogoutGlobs }

func (c *opClient) GetID() string                       { return c.id }
func (c *opClient) RedirectURIs() []string              { return c.redirectURIs }
func (c *opClient) PostLogoutRedirectURIs() []string    { return c.postLogoutRedirectURIs }
func (c *opClient) ApplicationType() op.ApplicationType { return op.ApplicationTypeWeb }
func (c *opClient) AuthMethod() oidc.AuthMethod         { return oidc.AuthMethodBasic }
func (c *opClient) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *opClient) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken, oidc.GrantTypeClientCredentials}
}

// LoginURL is the example login UI, at the root of the provider's origin.
func (c *opClient) LoginURL(authRequestID string) string {
	return "/login/username?authRequestID=" + url.QueryEscape(authRequestID)
}

// AccessTokenType is JWT: the demo services verify access tokens themselves.
func (c *opClient) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeJWT }
func (c *opClient) IDTokenLifetime() time.Duration      { return time.Hour }

// DevMode stays off: http redirect URIs are still accepted for confidential
// code-flow clients, and nothing else needs the relaxations.
func (c *opClient) DevMode() bool { return false }
func (c *opClient) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(scopes []string) []string { return scopes }
}
func (c *opClient) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(scopes []string) []string { return scopes }
}

// IsScopeAllowed allows no scope beyond the standard ones.
func (c *opClient) IsScopeAllowed(string) bool { return false }

// IDTokenUserinfoClaimsAssertion puts profile and email claims in the ID token
// even though an access token is issued: the gateway's /bff/user answers with
// the ID token's claims, and the demo page shows the user's name and email.
func (c *opClient) IDTokenUserinfoClaimsAssertion() bool { return true }
func (c *opClient) ClockSkew() time.Duration             { return 0 }
