package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/go-jose/go-jose/v4"
)

// IDP is the demo provider: an http.Handler plus what tests need that the
// example OP does not do itself.
type IDP struct {
	http.Handler
	issuer string
	st     *idpStorage
}

// Issuer is the provider's issuer URL.
func (p *IDP) Issuer() string { return p.issuer }

// SignJWT signs claims with the provider's current signing key, the same key
// its ID tokens carry and its JWKS publishes. The example OP sends no
// back-channel logout tokens, so tests make them with this; typ, when not
// empty, goes into the JOSE header.
func (p *IDP) SignJWT(claims any, typ string) (string, error) {
	key, err := p.st.SigningKey(context.Background())
	if err != nil {
		return "", fmt.Errorf("demo idp: signing key: %w", err)
	}
	opts := (&jose.SignerOptions{}).WithHeader(jose.HeaderKey("kid"), key.ID())
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: key.SignatureAlgorithm(), Key: key.Key()}, opts)
	if err != nil {
		return "", err
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}
