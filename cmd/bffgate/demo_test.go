package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"
)

// demoPartRun is a `bffgate demo ...` running in the test.
type demoPartRun struct {
	args           []string
	stdout, stderr syncBuffer
	exited         chan struct{} // closed when run returned
	code           int           // run's result, once exited is closed
}

// startDemoPart runs `bffgate args...` until the test ends, then cancels its
// context and expects exit code 0.
func startDemoPart(t *testing.T, args ...string) *demoPartRun {
	t.Helper()
	return startDemoFunc(t, args, func(ctx context.Context, stdout, stderr io.Writer) int {
		return run(ctx, args, stdout, stderr)
	})
}

// startDemoFunc is startDemoPart for a command function called directly;
// args only name it in messages.
func startDemoFunc(t *testing.T, args []string, cmd func(ctx context.Context, stdout, stderr io.Writer) int) *demoPartRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &demoPartRun{args: args, exited: make(chan struct{})}
	go func() {
		defer close(d.exited)
		d.code = cmd(ctx, &d.stdout, &d.stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-d.exited:
			if d.code != exitOK {
				t.Errorf("%q exited %d after cancel; stderr:\n%s", args, d.code, d.stderr.String())
			}
		case <-time.After(10 * time.Second):
			t.Errorf("%q did not stop after cancel", args)
		}
	})
	return d
}

// field waits for a line "<label>  <value>" on stdout and returns the value.
func (d *demoPartRun) field(t *testing.T, label string) string {
	t.Helper()
	re := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(label) + `\s+(\S+)`)
	// A ceiling, not a performance bound: -fapi2 starts node first.
	deadline := time.After(30 * time.Second)
	for {
		if m := re.FindStringSubmatch(d.stdout.String()); m != nil {
			return m[1]
		}
		select {
		case <-d.exited:
			t.Fatalf("%q exited %d before printing %q; stderr:\n%s", d.args, d.code, label, d.stderr.String())
		case <-deadline:
			t.Fatalf("no %q line in the output:\n%s", label, d.stdout.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

var noRedirect = &http.Client{
	Timeout:       5 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func demoGet(t *testing.T, rawURL string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func TestDemoIDP(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantIssuer func(addr string) string
		wantAdmin  string
	}{
		{
			name:       "default issuer",
			args:       nil,
			wantIssuer: func(addr string) string { return "http://localhost:" + addr[strings.LastIndex(addr, ":")+1:] },
			wantAdmin:  "test-user@localhost",
		},
		{
			name:       "issuer and public URLs",
			args:       []string{"-issuer", "http://idp.example:9998", "-public-url", "http://gw.example:8080", "-public-url=http://localhost:8081"},
			wantIssuer: func(string) string { return "http://idp.example:9998" },
			wantAdmin:  "test-user@idp.example",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := startDemoPart(t, append([]string{"demo", "idp", "-listen", "127.0.0.1:0"}, tt.args...)...)
			addr := out.field(t, "Listening on")
			issuer := out.field(t, "Issuer")
			if want := tt.wantIssuer(addr); issuer != want {
				t.Errorf("issuer %q, want %q", issuer, want)
			}
			if admin := out.field(t, "Users"); admin != tt.wantAdmin {
				t.Errorf("admin user %q, want %q", admin, tt.wantAdmin)
			}

			resp, body := demoGet(t, "http://"+addr+"/.well-known/openid-configuration")
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("discovery: %d %s", resp.StatusCode, body)
			}
			var disc struct {
				Issuer string `json:"issuer"`
				Auth   string `json:"authorization_endpoint"`
			}
			if err := json.Unmarshal(body, &disc); err != nil {
				t.Fatal(err)
			}
			if disc.Issuer != issuer || !strings.HasPrefix(disc.Auth, issuer+"/") {
				t.Fatalf("discovery: issuer %q authorization_endpoint %q, want under %q", disc.Issuer, disc.Auth, issuer)
			}
		})
	}
}

// TestDemoIDPRedirectURIs: the demo clients accept a callback at any mount
// under every -public-url, and nothing outside them.
func TestDemoIDPRedirectURIs(t *testing.T) {
	out := startDemoPart(t, "demo", "idp", "-listen", "127.0.0.1:0", "-issuer", "http://idp.example:9998",
		"-public-url", "http://gw.example:8080", "-public-url", "http://localhost:8081")
	addr := out.field(t, "Listening on")
	for _, tt := range []struct {
		client, redirect string
		ok               bool
	}{
		{"web-bff", "http://gw.example:8080/web/bff/callback", true},
		{"web-bff", "http://localhost:8081/web/bff/callback", true},
		{"app-bff", "http://gw.example:8080/app/bff/callback", true},
		{"web-bff", "http://gw.example:8080/shop/bff/callback", true},
		{"app-bff", "http://gw.example:8080/teams/shop/bff/callback", true},
		{"web-bff", "http://gw.example:8080/bff/callback", true},
		{"web-bff", "http://localhost:8080/web/bff/callback", false},
		{"web-bff", "http://evil.example/web/bff/callback", false},
		{"web-bff", "http://gw.example:8080.evil.example/web/bff/callback", false},
		{"web-bff", "http://gw.example:80801/web/bff/callback", false},
		{"web-bff", "http://gw.example:8080/web/bff/callback/x", false},
		{"web-bff", "http://gw.example:8080/web/other", false},
	} {
		t.Run(tt.client+" "+tt.redirect, func(t *testing.T) {
			q := url.Values{
				"client_id":     {tt.client},
				"redirect_uri":  {tt.redirect},
				"response_type": {"code"},
				"scope":         {"openid"},
				"state":         {"s"},
				"nonce":         {"n"},
			}
			// The authorization endpoint is /auth on this provider; the
			// discovery test above checks it is under the issuer.
			resp, body := demoGet(t, "http://"+addr+"/auth?"+q.Encode())
			toLogin := resp.StatusCode == http.StatusFound && strings.HasPrefix(resp.Header.Get("Location"), "/login/username")
			if toLogin != tt.ok {
				t.Errorf("authorize: %d Location %q, want login page: %v; body %.200s", resp.StatusCode, resp.Header.Get("Location"), tt.ok, body)
			}
		})
	}
}

func TestDemoServices(t *testing.T) {
	// An issuer nobody listens on: requests without a token never reach it.
	out := startDemoPart(t, "demo", "services", "-listen", "127.0.0.1:0", "-issuer", "http://127.0.0.1:1")
	base := "http://" + out.field(t, "Listening on")
	for _, tt := range []struct {
		path   string
		status int
		ctype  string
	}{
		{"/orders/", http.StatusUnauthorized, "application/json"},
		{"/orders/7", http.StatusUnauthorized, "application/json"},
		{"/orders", http.StatusUnauthorized, "application/json"},
		{"/reports/", http.StatusUnauthorized, "application/json"},
		{"/spa/", http.StatusOK, "text/html; charset=utf-8"},
		{"/spa", http.StatusOK, "text/html; charset=utf-8"},
		{"/spa/mobile.html", http.StatusOK, "text/html; charset=utf-8"},
		{"/", http.StatusNotFound, ""},
		{"/ordersX", http.StatusNotFound, ""},
	} {
		t.Run(tt.path, func(t *testing.T) {
			resp, body := demoGet(t, base+tt.path)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d; body %.200s", resp.StatusCode, tt.status, body)
			}
			if tt.ctype != "" && resp.Header.Get("Content-Type") != tt.ctype {
				t.Errorf("Content-Type %q, want %q", resp.Header.Get("Content-Type"), tt.ctype)
			}
			if tt.status == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("WWW-Authenticate %q", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
}

// TestDemoAllInOne: the all-in-one demo still serves the page and the
// routes through its gateway, now from one internal services listener.
func TestDemoAllInOne(t *testing.T) {
	out := startDemoPart(t, "demo", "-listen", "127.0.0.1:0", "-idp-listen", "127.0.0.1:0")
	page := out.field(t, "Open")
	if !strings.HasPrefix(page, "http://localhost:") || !strings.HasSuffix(page, "/web/") {
		t.Fatalf("Open %q", page)
	}
	if admin := out.field(t, "Log in as"); admin != "test-user@localhost" {
		t.Errorf("admin user %q", admin)
	}
	resp, body := demoGet(t, page)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "<html") {
		t.Errorf("GET %s: %d %.200s", page, resp.StatusCode, body)
	}
	api := strings.TrimSuffix(page, "/web/") + "/web/api/orders/"
	resp, body = demoGet(t, api, "X-CSRF", "1")
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), `"unauthenticated"`) {
		t.Errorf("GET %s without a session: %d %.200s", api, resp.StatusCode, body)
	}
}

func TestDemoUsage(t *testing.T) {
	for _, tt := range []struct {
		args       []string
		code       int
		wantStderr string
	}{
		{[]string{"demo", "bogus"}, exitUsage, `unknown subcommand "bogus"`},
		{[]string{"demo", "idp", "extra"}, exitUsage, `unexpected argument "extra"`},
		{[]string{"demo", "services", "-nope"}, exitUsage, "flag provided but not defined"},
		// -h is help, not a usage error: stdout and exit 0 like every
		// command (issue 9 item 7; TestCLIHelpAndExitCodes checks the text).
		{[]string{"demo", "idp", "-h"}, exitOK, ""},
		{[]string{"demo", "-bogus"}, exitUsage, "flag provided but not defined"},
		{[]string{"demo", "idp", "-listen", "127.0.0.1:0", "-issuer", "idp.example"}, exitFail, "must be an http(s) URL"},
		{[]string{"demo", "idp", "-listen", "127.0.0.1:0", "-public-url", "not a url"}, exitFail, "redirect URI"},
		{[]string{"demo", "services", "-listen", "127.0.0.1:0", "-issuer", "ftp://x"}, exitFail, "issuer"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tt.code, &stderr)
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr does not mention %q:\n%s", tt.wantStderr, &stderr)
			}
		})
	}
}
