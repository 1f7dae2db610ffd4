package bff

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/labstack/echo/v4"
	"golang.org/x/oauth2"

	"github.com/bffgate/bffgate/bff/httperr"
	"github.com/bffgate/bffgate/config"
	"github.com/bffgate/bffgate/dpop"
)

// tokenClient is the one way this frontend talks to its provider's token,
// PAR and revocation endpoints: every grant (code, refresh, client
// credentials, token exchange) goes through it, with the frontend's client
// authentication (client_secret_basic, client_secret_post, or a fresh
// private_key_jwt assertion per request) and, when given a key, a DPoP proof
// with one retry on use_dpop_nonce (fresh assertion and proof).
type tokenClient struct {
	clientID string
	secret   string
	method   string // config.ClientSecretBasic, ClientSecretPost or PrivateKeyJWT
	signer   jose.Signer
	jwks     []byte // the public JWK Set (private_key_jwt)
	http     *http.Client
	now      func() time.Time

	mu    sync.Mutex
	nonce string // the provider's latest DPoP-Nonce
}

// maxTokenResponse bounds what is read of a provider's answer.
const maxTokenResponse = 1 << 20

// assertionLifetime is how long a client assertion is valid (at most 60 s).
const assertionLifetime = 60 * time.Second

// errBearerDowngrade: a DPoP token request answered with a plain Bearer
// token, which a frontend with dpop must refuse.
var errBearerDowngrade = errors.New("the provider returned a Bearer token to a DPoP token request")

func newTokenClient(o config.OIDC, hc *http.Client, now func() time.Time) (*tokenClient, error) {
	tc := &tokenClient{clientID: o.ClientID, secret: o.ClientSecret, method: o.ClientAuth, http: hc, now: now}
	if tc.method == "" {
		tc.method = config.ClientSecretBasic
	}
	if tc.method != config.PrivateKeyJWT {
		return tc, nil
	}
	path := o.PrivateKeyPath
	if path == "" {
		path = o.PrivateKeyFile
	}
	key, err := config.ReadPrivateKey(path)
	if err != nil {
		return nil, fmt.Errorf("oidc.private_key_file: %w", err)
	}
	alg := jose.ES256
	if _, ok := key.(*rsa.PrivateKey); ok {
		alg = jose.PS256
	}
	pub := jose.JSONWebKey{Key: key.Public(), Algorithm: string(alg), Use: "sig"}
	kid, err := dpop.Thumbprint(pub)
	if err != nil {
		return nil, err
	}
	pub.KeyID = kid
	if tc.jwks, err = json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{pub}}); err != nil {
		return nil, err
	}
	tc.signer, err = jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("oidc.private_key_file: %w", err)
	}
	return tc, nil
}

// assertion is a private_key_jwt client assertion (RFC 7523, OIDC Core 9).
func (tc *tokenClient) assertion(issuer string) (string, error) {
	now := tc.now()
	var jti [16]byte
	_, _ = rand.Read(jti[:])
	claims, _ := json.Marshal(map[string]any{
		"iss": tc.clientID, "sub": tc.clientID, "aud": issuer,
		"jti": base64.RawURLEncoding.EncodeToString(jti[:]),
		"iat": now.Unix(), "exp": now.Add(assertionLifetime).Unix(),
	})
	jws, err := tc.signer.Sign(claims)
	if err != nil {
		return "", fmt.Errorf("sign client assertion: %w", err)
	}
	return jws.CompactSerialize()
}

// authenticate adds the client authentication to a request's form/header.
func (tc *tokenClient) authenticate(meta *providerMeta, req *http.Request, form url.Values) error {
	method := tc.method
	// A provider that only takes the secret in the body (go-oidc reads
	// that from discovery) gets it there, as the oauth2 package did.
	if method == config.ClientSecretBasic && meta.oauth.Endpoint.AuthStyle == oauth2.AuthStyleInParams {
		method = config.ClientSecretPost
	}
	switch method {
	case config.PrivateKeyJWT:
		a, err := tc.assertion(meta.issuer)
		if err != nil {
			return err
		}
		form.Set("client_id", tc.clientID)
		form.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
		form.Set("client_assertion", a)
	case config.ClientSecretPost:
		form.Set("client_id", tc.clientID)
		form.Set("client_secret", tc.secret)
	default:
		req.SetBasicAuth(url.QueryEscape(tc.clientID), url.QueryEscape(tc.secret))
	}
	return nil
}

// post sends form to endpoint with client authentication and, with key, a
// DPoP proof; a use_dpop_nonce answer is retried once with the nonce. It
// returns the status, headers and body (at most 1 MiB) of the last answer.
func (tc *tokenClient) post(ctx context.Context, meta *providerMeta, endpoint string, form url.Values, key *dpop.Key) (*http.Response, []byte, error) {
	for attempt := 0; ; attempt++ {
		f := url.Values{}
		for k, v := range form {
			f[k] = v
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, nil)
		if err != nil {
			return nil, nil, err
		}
		if err := tc.authenticate(meta, req, f); err != nil {
			return nil, nil, err
		}
		body := f.Encode()
		req.Body = io.NopCloser(strings.NewReader(body))
		req.ContentLength = int64(len(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Accept", "application/json")
		if key != nil {
			tc.mu.Lock()
			nonce := tc.nonce
			tc.mu.Unlock()
			proof, err := key.Proof(http.MethodPost, endpoint, dpop.ProofOptions{Nonce: nonce, Now: tc.now()})
			if err != nil {
				return nil, nil, err
			}
			req.Header.Set("DPoP", proof)
		}
		resp, err := tc.http.Do(req)
		if err != nil {
			return nil, nil, err
		}
		raw, err := io.ReadAll(io.LimitReader(resp.Body, maxTokenResponse))
		resp.Body.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("read %s answer: %w", endpoint, err)
		}
		if n := resp.Header.Get("DPoP-Nonce"); n != "" && key != nil {
			tc.mu.Lock()
			tc.nonce = n
			tc.mu.Unlock()
		}
		if key != nil && attempt == 0 && resp.Header.Get("DPoP-Nonce") != "" &&
			(resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusUnauthorized) &&
			oauthErrorCode(resp, raw) == "use_dpop_nonce" {
			continue
		}
		return resp, raw, nil
	}
}

// oauthErrorCode is the error code of an RFC 6749 section 5.2 answer (or of
// a WWW-Authenticate challenge).
func oauthErrorCode(resp *http.Response, body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return e.Error
	}
	if strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="use_dpop_nonce"`) {
		return "use_dpop_nonce"
	}
	return ""
}

// token runs one grant at the token endpoint. An error answer comes back as
// *oauth2.RetrieveError, as from the oauth2 package, so callers classify it
// the same way. With key, the answer must be a DPoP token.
func (tc *tokenClient) token(ctx context.Context, meta *providerMeta, form url.Values, key *dpop.Key) (*oauth2.Token, error) {
	return tc.grant(ctx, meta, form, key, false)
}

// grant is token, where allowBearer accepts a Bearer answer to a DPoP
// request (a token exchange: the provider decides per audience whether the
// target service takes DPoP-bound tokens).
func (tc *tokenClient) grant(ctx context.Context, meta *providerMeta, form url.Values, key *dpop.Key, allowBearer bool) (*oauth2.Token, error) {
	resp, body, err := tc.post(ctx, meta, meta.oauth.Endpoint.TokenURL, form, key)
	if err != nil {
		return nil, fmt.Errorf("token endpoint: %w", err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		re := &oauth2.RetrieveError{Response: resp, Body: body}
		var e struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
			URI         string `json:"error_uri"`
		}
		if json.Unmarshal(body, &e) == nil {
			re.ErrorCode, re.ErrorDescription, re.ErrorURI = e.Error, e.Description, e.URI
		}
		return nil, re
	}
	if ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); ct != "" && ct != "application/json" {
		return nil, fmt.Errorf("token endpoint answered %s, not JSON", ct)
	}
	var extra map[string]any
	if err := json.Unmarshal(body, &extra); err != nil {
		return nil, fmt.Errorf("token endpoint: %w", err)
	}
	str := func(k string) string { s, _ := extra[k].(string); return s }
	tok := &oauth2.Token{AccessToken: str("access_token"), TokenType: str("token_type"), RefreshToken: str("refresh_token")}
	if tok.AccessToken == "" {
		return nil, errors.New("token endpoint: the answer has no access_token")
	}
	var secs int64
	switch v := extra["expires_in"].(type) {
	case float64:
		secs = int64(v)
	case string:
		secs, _ = strconv.ParseInt(v, 10, 64)
	}
	if secs > 0 {
		tok.Expiry = tc.now().Add(time.Duration(secs) * time.Second)
		tok.ExpiresIn = secs
	}
	if key != nil && !allowBearer && !strings.EqualFold(tok.TokenType, "DPoP") {
		return nil, fmt.Errorf("%w (token_type %q)", errBearerDowngrade, tok.TokenType)
	}
	return tok.WithExtra(extra), nil
}

// exchangeCode redeems an authorization code with its PKCE verifier.
func (tc *tokenClient) exchangeCode(ctx context.Context, meta *providerMeta, code, verifier string, key *dpop.Key) (*oauth2.Token, error) {
	return tc.token(ctx, meta, url.Values{
		"grant_type": {"authorization_code"}, "code": {code},
		"redirect_uri": {meta.oauth.RedirectURL}, "code_verifier": {verifier},
	}, key)
}

// refresh spends a refresh token.
func (tc *tokenClient) refresh(ctx context.Context, meta *providerMeta, refreshToken string, key *dpop.Key) (*oauth2.Token, error) {
	return tc.token(ctx, meta, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}}, key)
}

// clientCredentials gets the frontend's own token.
func (tc *tokenClient) clientCredentials(ctx context.Context, meta *providerMeta, scopes []string, key *dpop.Key) (*oauth2.Token, error) {
	form := url.Values{"grant_type": {"client_credentials"}}
	if len(scopes) > 0 {
		form.Set("scope", strings.Join(scopes, " "))
	}
	return tc.token(ctx, meta, form, key)
}

// Token exchange (RFC 8693) parameters.
const (
	grantTokenExchange   = "urn:ietf:params:oauth:grant-type:token-exchange"
	tokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
)

// exchange trades the user's access token for one restricted to the
// route's audience, resource (RFC 8707) and scopes. With key, the request
// carries a DPoP proof; the answer may still be a Bearer token.
func (tc *tokenClient) exchange(ctx context.Context, meta *providerMeta, subjectToken string, x config.Exchange, key *dpop.Key) (*oauth2.Token, error) {
	form := url.Values{
		"grant_type":           {grantTokenExchange},
		"subject_token":        {subjectToken},
		"subject_token_type":   {tokenTypeAccessToken},
		"requested_token_type": {tokenTypeAccessToken},
	}
	if x.Audience != "" {
		form.Set("audience", x.Audience)
	}
	if x.Resource != "" {
		form.Set("resource", x.Resource)
	}
	if len(x.Scopes) > 0 {
		form.Set("scope", strings.Join(x.Scopes, " "))
	}
	return tc.grant(ctx, meta, form, key, true)
}

// revoke tells the provider a token is dead (RFC 7009); 200 is success.
func (tc *tokenClient) revoke(ctx context.Context, meta *providerMeta, token, hint string) error {
	if meta.revocation == "" {
		return nil
	}
	resp, _, err := tc.post(ctx, meta, meta.revocation, url.Values{"token": {token}, "token_type_hint": {hint}}, nil)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("revocation endpoint answered %d", resp.StatusCode)
	}
	return nil
}

// serveJWKS answers GET M/bff/jwks: the client's public key for the
// provider's jwks_uri registration (private_key_jwt only, else 404).
func (tc *tokenClient) serveJWKS(w http.ResponseWriter) bool {
	if tc.jwks == nil {
		return false
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(tc.jwks)
	return true
}

func (b *BFF) jwks(c echo.Context) error {
	if !b.tokens.serveJWKS(c.Response()) {
		return httperr.New(http.StatusNotFound, httperr.CodeNotFound, "no JWK Set: this frontend does not use client_auth: private_key_jwt")
	}
	return nil
}
