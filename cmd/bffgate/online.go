package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
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
	results := map[string]error{}
	for _, f := range cfg.Frontends {
		err, ok := results[f.OIDC.Issuer]
		if !ok {
			err = reachProvider(ctx, client, f.OIDC.Issuer)
			results[f.OIDC.Issuer] = err
		}
		report(fmt.Sprintf("frontend %s: provider %s (discovery, jwks)", f.Name, f.OIDC.Issuer), err)
	}

	switch cfg.Sessions.Store {
	case "redis":
		report("session store (redis)", pingRedis(ctx, cfg.Sessions.Redis))
	default:
		fmt.Fprintf(out, "online: session store (%s): in-process, nothing to reach\n", cfg.Sessions.Store)
	}
	return failed
}

// reachProvider fetches the issuer's discovery document (go-oidc also checks
// that it names the same issuer) and its JWKS, which must hold a key.
func reachProvider(ctx context.Context, client *http.Client, issuer string) error {
	ctx, cancel := context.WithTimeout(ctx, onlineTimeout)
	defer cancel()
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, client), issuer)
	if err != nil {
		return fmt.Errorf("discovery: %w", err)
	}
	var meta struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := p.Claims(&meta); err != nil || meta.JWKSURI == "" {
		return fmt.Errorf("discovery: no jwks_uri")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, meta.JWKSURI, nil)
	if err != nil {
		return fmt.Errorf("jwks %s: %w", meta.JWKSURI, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("jwks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("jwks %s: %s", meta.JWKSURI, resp.Status)
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return fmt.Errorf("jwks %s: %w", meta.JWKSURI, err)
	}
	if len(set.Keys) == 0 {
		return fmt.Errorf("jwks %s: no keys", meta.JWKSURI)
	}
	return nil
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
