package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/bffgate/bffgate/config"
	"github.com/bffgate/bffgate/internal/gateway"
)

// onlineTimeout bounds each reach of `check -online`.
const onlineTimeout = 5 * time.Second

// checkOnline reaches what a valid config depends on at run time (SPEC
// section 1, `check -online`): each frontend's provider (discovery, then
// its JWKS holding at least one key) and the session store. It prints one
// line per thing reached and returns how many failed; it reports every
// failure, not the first. It lives in cmd, not in config, whose validation
// never touches the network.
func checkOnline(ctx context.Context, cfg *config.Config, client *http.Client, out io.Writer) int {
	failed := 0
	report := func(what string, err error) {
		if err != nil {
			failed++
			fmt.Fprintf(out, "online: %s: FAILED: %v\n", what, err)
			return
		}
		fmt.Fprintf(out, "online: %s: ok\n", what)
	}

	// One provider may serve several frontends: reach it once, report it
	// for each.
	type reached struct {
		grants []string
		err    error
	}
	results := map[string]reached{}
	for _, f := range cfg.Frontends {
		r, ok := results[f.OIDC.Issuer]
		if !ok {
			r.grants, r.err = reachProvider(ctx, client, f.OIDC.Issuer)
			results[f.OIDC.Issuer] = r
		}
		report(fmt.Sprintf("frontend %s: provider %s (discovery, jwks)", f.Name, f.OIDC.Issuer), r.err)
		if r.err == nil {
			exchangeGrant(out, f, r.grants)
		}
	}

	switch cfg.Sessions.Store {
	case "redis":
		report("session store (redis)", pingRedis(ctx, cfg.Sessions.Redis))
	default:
		fmt.Fprintf(out, "online: session store (%s): in-process, nothing to reach\n", cfg.Sessions.Store)
	}
	return failed
}

// tokenExchangeGrant is the RFC 8693 grant type that token: exchange
// routes use.
const tokenExchangeGrant = "urn:ietf:params:oauth:grant-type:token-exchange"

// exchangeGrant tells whether the provider advertises the token-exchange
// grant that f's exchange routes need. Only a warning: discovery says what
// the provider implements, not what it allows this client, and a provider
// may implement the grant without listing it.
func exchangeGrant(out io.Writer, f config.Frontend, grants []string) {
	var routes []string
	for _, r := range f.Routes {
		if r.Token == config.TokenExchange {
			routes = append(routes, r.Prefix)
		}
	}
	what := fmt.Sprintf("frontend %s: token exchange (routes %s)", f.Name, strings.Join(routes, " "))
	switch {
	case len(routes) == 0:
	case grants == nil:
		fmt.Fprintf(out, "online: %s: not checked: the discovery document has no grant_types_supported\n", what)
	case !slices.Contains(grants, tokenExchangeGrant):
		fmt.Fprintf(out, "online: %s: WARNING: grant_types_supported lacks %s; unless the provider allows it anyway, these routes answer 403 token_exchange_failed\n", what, tokenExchangeGrant)
	default:
		fmt.Fprintf(out, "online: %s: ok (offered; whether this client may use it for these audiences only a call shows)\n", what)
	}
}

// reachProvider fetches the issuer's discovery document (go-oidc also checks
// that it names the same issuer) and its JWKS, which must hold a key. It
// returns the grant_types_supported of the document (nil when absent).
func reachProvider(ctx context.Context, client *http.Client, issuer string) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, onlineTimeout)
	defer cancel()
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, client), issuer)
	if err != nil {
		return nil, fmt.Errorf("discovery: %w", err)
	}
	var meta struct {
		JWKSURI    string   `json:"jwks_uri"`
		GrantTypes []string `json:"grant_types_supported"`
	}
	if err := p.Claims(&meta); err != nil || meta.JWKSURI == "" {
		return nil, fmt.Errorf("discovery: no jwks_uri")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, meta.JWKSURI, nil)
	if err != nil {
		return nil, fmt.Errorf("jwks %s: %w", meta.JWKSURI, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jwks %s: %s", meta.JWKSURI, resp.Status)
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return nil, fmt.Errorf("jwks %s: %w", meta.JWKSURI, err)
	}
	if len(set.Keys) == 0 {
		return nil, fmt.Errorf("jwks %s: no keys", meta.JWKSURI)
	}
	return meta.GrantTypes, nil
}

// pingRedis connects with the configured client and sends PING. Its errors
// never carry the URL, which may hold the password.
func pingRedis(ctx context.Context, rc config.Redis) error {
	c, err := gateway.NewRedisClient(rc)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, onlineTimeout)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		msg := err.Error()
		if rc.Password != "" {
			msg = strings.ReplaceAll(msg, rc.Password, "xxxxx")
		}
		return fmt.Errorf("PING: %s", msg)
	}
	return nil
}
