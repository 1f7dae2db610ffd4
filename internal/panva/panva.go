// Package panva starts panva's oidc-provider (Node.js, OpenID Certified;
// PAR, DPoP, private_key_jwt, back-channel and RP-initiated logout) for the
// integration tests, from the launcher in ./launcher with its dependencies
// pinned by the committed package-lock.json.
//
// Start runs `npm ci` in the launcher folder once (kept there for later
// runs) and then `node launcher.js` on a free port; the process is stopped
// by its PID when the test ends. Without node or npm on PATH the test is
// skipped with a message saying so (scripts/test installs them).
package panva

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bffgate/bffgate/internal/panva/launch"
)

// Options configure one provider process.
type Options = launch.Options

// Provider is a running oidc-provider.
type Provider struct {
	Issuer string
}

// Dir is the launcher folder.
func Dir() string { return launch.SourceDir() }

var installMu sync.Mutex

// install runs `npm ci` unless node_modules is already current. A file
// lock keeps parallel test binaries from installing at the same time.
func install(t testing.TB) {
	t.Helper()
	installMu.Lock()
	defer installMu.Unlock()
	dir := Dir()
	lock, err := os.OpenFile(filepath.Join(dir, ".install.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatalf("panva: lock: %v", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatalf("panva: lock: %v", err)
	}
	defer func() { _ = syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) }()
	if launch.Installed(dir) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("panva: npm ci in %s: %v\n%s", dir, err, out)
	}
}

// Start installs (once) and starts a provider, stopped when t ends. It
// skips t when node or npm is missing.
func Start(t testing.TB, o Options) *Provider {
	t.Helper()
	SkipWithoutNode(t)
	install(t)
	stderr := &tail{}
	proc, err := launch.Start(context.Background(), Dir(), filepath.Join(t.TempDir(), "panva.json"), o, stderr)
	if err != nil {
		t.Fatalf("panva: %v\n%s", err, stderr.String())
	}
	t.Cleanup(func() {
		proc.Stop()
		if t.Failed() {
			t.Logf("panva stderr:\n%s", stderr.String())
		}
	})
	return &Provider{Issuer: proc.Issuer}
}

// SkipWithoutNode skips t when node or npm is not on PATH.
func SkipWithoutNode(t testing.TB) {
	t.Helper()
	for _, bin := range []string{"node", "npm"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("panva: %s not on PATH: install nodejs and npm (scripts/test does) to run the oidc-provider tests", bin)
		}
	}
}

// Install runs `npm ci` in the launcher folder unless it is current, for
// tests that start the provider some other way (the demo's).
func Install(t testing.TB) {
	t.Helper()
	SkipWithoutNode(t)
	install(t)
}

// TokenInfo is what the provider says a token is bound to.
type TokenInfo struct {
	Active   bool   `json:"active"`
	JKT      string `json:"jkt"`
	Sub      string `json:"sub"`
	ClientID string `json:"client_id"`
	Scope    string `json:"scope"`
}

// TokenInfo looks an access token up (the launcher's test-only endpoint),
// since this provider's access tokens are opaque.
func (p *Provider) TokenInfo(ctx context.Context, token string) (TokenInfo, error) {
	var ti TokenInfo
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.Issuer+"/_test/token?value="+url.QueryEscape(token), nil)
	if err != nil {
		return ti, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ti, err
	}
	defer resp.Body.Close()
	return ti, json.NewDecoder(resp.Body).Decode(&ti)
}

// Doer sends requests without following redirects, with a cookie jar
// (oidctest.Browser's Client).
type Doer interface {
	Do(*http.Request) (*http.Response, error)
}

const maxHops = 20

var (
	loginFormRE  = regexp.MustCompile(`<form[^>]*action="([^"]*)"[^>]*method="post"`)
	logoutFormRE = regexp.MustCompile(`(?s)<form[^>]*id="op.logoutForm"[^>]*action="([^"]*)".*?name="xsrf" value="([^"]*)"`)
)

// Login drives a login through the provider's devInteractions: GET
// startURL (the gateway's /bff/login), follow the redirects, submit the
// login form as login (any password), and follow redirects until the first
// one that leaves the provider. It returns that URL (the relying party's
// callback) unrequested, and the first authorization request seen.
func (p *Provider) Login(ctx context.Context, b Doer, startURL, login string) (callback string, authorize *url.URL, err error) {
	cur, err := url.Parse(startURL)
	if err != nil {
		return "", nil, err
	}
	var resp *http.Response
	submitted := false
	for range maxHops {
		onProvider := strings.HasPrefix(cur.String(), p.Issuer+"/")
		if onProvider && authorize == nil && strings.HasSuffix(cur.Path, "/auth") {
			authorize = cur
		}
		if resp == nil {
			if resp, err = do(ctx, b, http.MethodGet, cur.String(), nil); err != nil {
				return "", authorize, err
			}
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		status, location := resp.StatusCode, resp.Header.Get("Location")
		resp = nil
		switch {
		case status >= 300 && status < 400 && location != "":
			next, err := cur.Parse(location)
			if err != nil {
				return "", authorize, err
			}
			if authorize != nil && !strings.HasPrefix(next.String(), p.Issuer+"/") {
				return next.String(), authorize, nil
			}
			cur = next
		case status == http.StatusOK && onProvider && strings.Contains(string(body), `name="login"`):
			if submitted {
				return "", authorize, fmt.Errorf("panva: login form shown again: %s", snippet(body))
			}
			m := loginFormRE.FindSubmatch(body)
			if m == nil {
				return "", authorize, fmt.Errorf("panva: no form on the login page: %s", snippet(body))
			}
			action, _ := cur.Parse(html.UnescapeString(string(m[1])))
			form := url.Values{"prompt": {"login"}, "login": {login}, "password": {"any"}}
			if resp, err = do(ctx, b, http.MethodPost, action.String(), form); err != nil {
				return "", authorize, err
			}
			submitted = true
			cur = action
		default:
			return "", authorize, fmt.Errorf("panva: unexpected %d from %s: %s", status, cur.Redacted(), snippet(body))
		}
	}
	return "", authorize, errors.New("panva: too many redirects")
}

// ConfirmLogout follows an RP-initiated logout at the provider (the
// end_session URL the gateway redirected to, or one built by the test),
// confirms the provider's "sign out?" page, and returns the URL the
// provider finally redirects to (post_logout_redirect_uri), or "" when it
// ends on its own page.
func (p *Provider) ConfirmLogout(ctx context.Context, b Doer, endSessionURL string) (string, error) {
	cur, err := url.Parse(endSessionURL)
	if err != nil {
		return "", err
	}
	resp, err := do(ctx, b, http.MethodGet, cur.String(), nil)
	if err != nil {
		return "", err
	}
	for range maxHops {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		status, location := resp.StatusCode, resp.Header.Get("Location")
		switch {
		case status >= 300 && status < 400 && location != "":
			next, err := cur.Parse(location)
			if err != nil {
				return "", err
			}
			if !strings.HasPrefix(next.String(), p.Issuer+"/") {
				return next.String(), nil
			}
			cur = next
			if resp, err = do(ctx, b, http.MethodGet, cur.String(), nil); err != nil {
				return "", err
			}
		case status == http.StatusOK && strings.Contains(string(body), "op.logoutForm"):
			m := logoutFormRE.FindSubmatch(body)
			if m == nil {
				return "", fmt.Errorf("panva: logout form not understood: %s", snippet(body))
			}
			action, _ := cur.Parse(html.UnescapeString(string(m[1])))
			form := url.Values{"xsrf": {html.UnescapeString(string(m[2]))}, "logout": {"yes"}}
			if resp, err = do(ctx, b, http.MethodPost, action.String(), form); err != nil {
				return "", err
			}
			cur = action
		case status == http.StatusOK:
			return "", nil
		default:
			return "", fmt.Errorf("panva: logout: unexpected %d from %s: %s", status, cur.Redacted(), snippet(body))
		}
	}
	return "", errors.New("panva: too many redirects")
}

func do(ctx context.Context, b Doer, method, target string, form url.Values) (*http.Response, error) {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return nil, err
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.Do(req)
	if err != nil {
		return nil, fmt.Errorf("panva: %s %s: %w", method, target, err)
	}
	return resp, nil
}

func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 400 {
		s = s[:400] + "..."
	}
	return s
}

// tail keeps the last 64 KiB written to it (the provider's stderr).
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - 64<<10; over > 0 {
		t.buf = t.buf[over:]
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
