package demo

import (
	"strings"

	"github.com/bffgate/bffgate/config"
)

// AdminLogin is the login name the -fapi2 demo's provider gives the admin
// role (with user); every other name gets the user role only.
const AdminLogin = "admin"

// FAPI2Roles are the roles the -fapi2 demo's provider (oidc-provider
// through internal/panva/launch) puts in access tokens, by login name.
func FAPI2Roles() map[string][]string {
	return map[string][]string{AdminLogin: {RoleAdmin, RoleUser}, "*": {RoleUser}}
}

// UseFAPI2 turns every frontend of cfg (Config's) into a FAPI 2.0 client:
// profile fapi2 (PAR, DPoP-bound tokens, the iss response parameter),
// private_key_jwt with the key in keyFile(frontend name) instead of the
// client secret.
func UseFAPI2(cfg *config.Config, keyFile func(frontend string) string) {
	for i := range cfg.Frontends {
		o := &cfg.Frontends[i].OIDC
		o.Profile = config.ProfileFAPI2
		o.ClientAuth = config.PrivateKeyJWT
		o.PrivateKeyFile = keyFile(cfg.Frontends[i].Name)
		o.ClientSecret = ""
	}
}

// FAPI2Clients is the client metadata (oidc-provider's format) matching
// Config with UseFAPI2: web-bff and app-bff authenticate with
// private_key_jwt (ES256) against the key set the gateway serves at
// <mount>/bff/jwks, get DPoP-bound access tokens and ES256 ID tokens, and
// have Clients' redirect and post-logout URIs and a back-channel logout
// URI; then the demo services' introspection client.
func FAPI2Clients(ep Endpoints) []map[string]any {
	public := strings.TrimSuffix(ep.PublicURL, "/")
	mounts := map[string]string{WebClientID: WebMount, AppClientID: AppMount}
	var out []map[string]any
	for _, c := range Clients(ep) {
		base := public + mounts[c.ID] + "/bff"
		out = append(out, map[string]any{
			"client_id":                           c.ID,
			"token_endpoint_auth_method":          "private_key_jwt",
			"token_endpoint_auth_signing_alg":     "ES256",
			"jwks_uri":                            base + "/jwks",
			"id_token_signed_response_alg":        "ES256",
			"dpop_bound_access_tokens":            true,
			"redirect_uris":                       c.RedirectURIs,
			"post_logout_redirect_uris":           c.PostLogoutRedirectURIs,
			"backchannel_logout_uri":              base + "/backchannel-logout",
			"backchannel_logout_session_required": true,
		})
	}
	return append(out, map[string]any{
		"client_id":                  IntrospectionClientID,
		"client_secret":              IntrospectionClientSecret,
		"token_endpoint_auth_method": "client_secret_basic",
		"grant_types":                []string{},
		"response_types":             []string{},
		"redirect_uris":              []string{},
	})
}
