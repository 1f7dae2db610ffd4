package bff

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/bffgate/bffgate/config"
)

// fapi2SigningAlgs are the ID and logout token algorithms FAPI 2.0 allows.
var fapi2SigningAlgs = []string{"PS256", "ES256", "EdDSA"}

// authorizeURL is where the browser goes to log in. With PAR (RFC 9126) the
// parameters in full (the authorization URL with everything) are pushed to
// the provider first, with client authentication, and the browser gets only
// client_id and request_uri.
func (b *BFF) authorizeURL(ctx context.Context, meta *providerMeta, full string) (string, error) {
	switch b.fe.OIDC.PARMode() {
	case config.PARNever:
		return full, nil
	case config.PARAlways:
		if meta.par == "" {
			return "", errors.New("oidc.par is always but the provider's metadata has no pushed_authorization_request_endpoint")
		}
	default: // auto
		if meta.par == "" {
			return full, nil
		}
	}
	u, err := url.Parse(full)
	if err != nil {
		return "", err
	}
	resp, body, err := b.tokens.post(ctx, meta, meta.par, u.Query(), nil)
	if err != nil {
		return "", fmt.Errorf("pushed authorization request: %w", err)
	}
	if resp.StatusCode != http.StatusCreated && resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("pushed authorization request: the provider answered %d: %s", resp.StatusCode, oauthErrorCode(resp, body))
	}
	var pr struct {
		RequestURI string `json:"request_uri"`
	}
	if err := json.Unmarshal(body, &pr); err != nil || pr.RequestURI == "" {
		return "", errors.New("pushed authorization request: the answer has no request_uri")
	}
	u.RawQuery = url.Values{"client_id": {b.fe.OIDC.ClientID}, "request_uri": {pr.RequestURI}}.Encode()
	return u.String(), nil
}
