// Package localrun holds what the load and soak programs (internal/loadenv,
// internal/soak) both need to run a gateway on 127.0.0.1 and log a session
// into it: a quiet http.Server, a readiness wait and a login through the demo
// provider's form. It is for those programs, not for the gateway itself.
package localrun

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"time"

	"github.com/bffgate/bffgate/internal/demo"
	"github.com/bffgate/bffgate/internal/oidctest"
)

// NewIDP is the demo provider with one client for the frontend mounted at
// mount under public: its callback and its after-logout page registered,
// access tokens living lifetime.
func NewIDP(issuer, clientID, clientSecret, public, mount string, lifetime time.Duration) (*demo.IDP, error) {
	return demo.NewIDP(issuer, []demo.Client{{
		ID: clientID, Secret: clientSecret,
		RedirectURIs:           []string{public + mount + "/bff/callback"},
		PostLogoutRedirectURIs: []string{public + mount + "/"},
	}}, demo.IDPOptions{AccessTokenLifetime: lifetime})
}

// NewServer serves h with the timeouts of a real deployment; connections that
// a load generator drops at the end of a run are not logged.
func NewServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(slog.DiscardHandler, slog.LevelWarn),
	}
}

// WaitReady polls u (a gateway's /readyz) until it answers 200: the store
// answers and the provider's discovery is loaded. It gives up after 15 s.
func WaitReady(ctx context.Context, u string) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("gateway %s not ready: %v", u, context.Cause(ctx))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// LoginCookie drives the code flow of the frontend at public+mount through
// the demo provider's form (as the demo admin user) and the gateway's
// callback, as oidctest's Browser does for the tests, and returns the
// session cookie named cookieName as "name=value".
func LoginCookie(ctx context.Context, public, mount, cookieName string) (string, error) {
	jar, err := cookiejar.New(nil)
	if err != nil {
		return "", err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	b := &oidctest.Browser{Jar: jar, Client: &http.Client{
		Jar:       jar,
		Transport: tr,
		Timeout:   10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}}
	cb, _, err := b.Login(ctx, public+mount+"/bff/login", demo.UserUsername, demo.Password)
	if err != nil {
		return "", fmt.Errorf("login: %w", err)
	}
	resp, err := b.Follow(ctx, cb)
	if err != nil {
		return "", fmt.Errorf("callback: %w", err)
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		return "", fmt.Errorf("callback: status %d: %s", resp.StatusCode, body)
	}
	u, _ := url.Parse(public + "/")
	for _, c := range jar.Cookies(u) {
		if c.Name == cookieName {
			return c.Name + "=" + c.Value, nil
		}
	}
	return "", errors.New("callback set no " + cookieName + " cookie")
}
