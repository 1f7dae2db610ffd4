// Package oidctest helps end-to-end tests run against the demo OpenID provider:
// StartIDP serves demo.NewIDP on its own loopback listener, and Browser is a
// cookie-keeping HTTP client that walks a login through the provider's UI the
// way a user would, stopping at the redirect back to the relying party so the
// test decides what to do with the callback.
package oidctest

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/bffgate/bffgate/internal/demo"
	"github.com/bffgate/bffgate/internal/faultidp"
)

// StartIDP serves demo.NewIDP on a fresh loopback listener (at the root path,
// as the provider's login UI requires) and returns its issuer URL,
// http://127.0.0.1:PORT. The server is closed in t.Cleanup.
func StartIDP(t testing.TB, clients []demo.Client, opts demo.IDPOptions) (issuer string) {
	t.Helper()
	return StartIDPWith(t, clients, opts, nil)
}

// StartIDPWith is StartIDP with the provider's handler passed through wrap
// first (when non-nil), for instance to count refresh grants at the token
// endpoint or to make the provider fail on demand.
func StartIDPWith(t testing.TB, clients []demo.Client, opts demo.IDPOptions, wrap func(http.Handler) http.Handler) (issuer string) {
	t.Helper()
	return StartProvider(t, clients, opts, wrap).Issuer()
}

// StartProvider is StartIDPWith returning the provider itself, whose
// SignJWT makes back-channel logout tokens.
func StartProvider(t testing.TB, clients []demo.Client, opts demo.IDPOptions, wrap func(http.Handler) http.Handler) *demo.IDP {
	t.Helper()
	return startProvider(t, clients, opts, wrap, nil)
}

// StartFaultyProvider is StartProvider behind f: its handler and listener
// go through the switchable faults (late answers, hangs, refused
// connections, 503).
func StartFaultyProvider(t testing.TB, clients []demo.Client, opts demo.IDPOptions, f *faultidp.Faults) *demo.IDP {
	t.Helper()
	return startProvider(t, clients, opts, f.Handler, func(ln net.Listener) net.Listener { return f.Listener(ln) })
}

func startProvider(t testing.TB, clients []demo.Client, opts demo.IDPOptions, wrap func(http.Handler) http.Handler, wrapListener func(net.Listener) net.Listener) *demo.IDP {
	t.Helper()
	// The issuer names the listener's port, so the listener comes first and
	// the handler is set before the server starts.
	srv := httptest.NewUnstartedServer(nil)
	if wrapListener != nil {
		srv.Listener = wrapListener(srv.Listener)
	}
	issuer := "http://" + srv.Listener.Addr().String()
	idp, err := demo.NewIDP(issuer, clients, opts)
	if err != nil {
		srv.Listener.Close()
		t.Fatalf("oidctest: demo.NewIDP: %v", err)
	}
	var h http.Handler = idp
	if wrap != nil {
		h = wrap(h)
	}
	srv.Config.Handler = h
	srv.Start()
	t.Cleanup(srv.Close)
	return idp
}

// maxHops bounds the redirects Login follows; a real login takes about five.
const maxHops = 20

// Browser is an http.Client with a cookie jar that never follows redirects by
// itself, so a test sees (and can assert on) every hop.
type Browser struct {
	Client *http.Client
	Jar    *cookiejar.Jar
}

// NewBrowser returns a Browser with an empty jar and its own connection pool,
// closed in t.Cleanup.
func NewBrowser(t testing.TB) *Browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatalf("oidctest: cookie jar: %v", err)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(transport.CloseIdleConnections)
	return &Browser{
		Jar: jar,
		Client: &http.Client{
			Jar:       jar,
			Transport: transport,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
	}
}

// Do sends req with the jar's cookies, without following redirects.
func (b *Browser) Do(req *http.Request) (*http.Response, error) {
	return b.Client.Do(req)
}

// Follow GETs rawURL with the jar's cookies, without following redirects. The
// caller closes the body.
func (b *Browser) Follow(ctx context.Context, rawURL string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, err
	}
	return b.Client.Do(req)
}

// Login drives a login: it GETs startURL (typically the gateway's
// /bff/login?returnTo=...), follows redirects to and through the provider,
// submits the provider's username/password form, and follows redirects until
// the first one that leaves the provider's origin. It returns that target
// (normally the relying party's callback with code and state, or with an
// error) without requesting it, and the provider's authorize request as seen.
//
// The provider is recognised by its authorize request: the first URL in the
// chain, startURL included, whose query has client_id and response_type.
func (b *Browser) Login(ctx context.Context, startURL, username, password string) (callbackURL string, authorizeURL *url.URL, err error) {
	cur, err := url.Parse(startURL)
	if err != nil {
		return "", nil, fmt.Errorf("oidctest: start URL: %w", err)
	}
	var provider string // origin of the provider, once its authorize URL is seen
	var resp *http.Response
	submitted := false
	for range maxHops {
		if authorizeURL == nil && isAuthorizeRequest(cur) {
			authorizeURL = cur
			provider = origin(cur)
		}
		if resp == nil {
			resp, err = b.Follow(ctx, cur.String())
			if err != nil {
				return "", authorizeURL, fmt.Errorf("oidctest: GET %s: %w", cur.Redacted(), err)
			}
		}
		body, err := readBody(resp)
		if err != nil {
			return "", authorizeURL, fmt.Errorf("oidctest: %s: %w", cur.Redacted(), err)
		}
		status := resp.StatusCode
		location := resp.Header.Get("Location")
		resp = nil

		switch {
		case status >= 300 && status < 400 && location != "":
			next, err := cur.Parse(location)
			if err != nil {
				return "", authorizeURL, fmt.Errorf("oidctest: bad Location %q from %s: %w", location, cur.Redacted(), err)
			}
			if provider != "" && origin(next) != provider {
				return next.String(), authorizeURL, nil
			}
			cur = next

		case status == http.StatusOK && provider != "" && origin(cur) == provider && isLoginForm(body):
			if submitted {
				return "", authorizeURL, fmt.Errorf("oidctest: login as %q rejected: %s", username, loginError(body))
			}
			id := cur.Query().Get("authRequestID")
			if id == "" {
				id = hiddenID(body)
			}
			if id == "" {
				return "", authorizeURL, fmt.Errorf("oidctest: no auth request id on the login page %s", cur.Redacted())
			}
			form := url.Values{"username": {username}, "password": {password}, "id": {id}}
			action, _ := cur.Parse("/login/username")
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, action.String(), strings.NewReader(form.Encode()))
			if err != nil {
				return "", authorizeURL, err
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err = b.Client.Do(req)
			if err != nil {
				return "", authorizeURL, fmt.Errorf("oidctest: POST %s: %w", action, err)
			}
			submitted = true
			cur = action

		default:
			return "", authorizeURL, fmt.Errorf("oidctest: unexpected %d from %s: %s", status, cur.Redacted(), snippet(body))
		}
	}
	return "", authorizeURL, errors.New("oidctest: too many redirects")
}

func isAuthorizeRequest(u *url.URL) bool {
	q := u.Query()
	return q.Get("client_id") != "" && q.Get("response_type") != ""
}

func origin(u *url.URL) string {
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host)
}

func readBody(resp *http.Response) (string, error) {
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return string(b), err
}

func isLoginForm(body string) bool {
	return strings.Contains(body, `action="/login/username"`) && strings.Contains(body, `name="password"`)
}

var (
	hiddenIDRE   = regexp.MustCompile(`name="id" value="([^"]*)"`)
	loginErrorRE = regexp.MustCompile(`(?s)<p style="color:red[^"]*">(.*?)</p>`)
)

func hiddenID(body string) string {
	if m := hiddenIDRE.FindStringSubmatch(body); m != nil {
		return html.UnescapeString(m[1])
	}
	return ""
}

func loginError(body string) string {
	if m := loginErrorRE.FindStringSubmatch(body); m != nil && strings.TrimSpace(m[1]) != "" {
		return html.UnescapeString(strings.TrimSpace(m[1]))
	}
	return "the login page came back without a message"
}

func snippet(body string) string {
	body = strings.TrimSpace(body)
	if len(body) > 300 {
		body = body[:300] + "..."
	}
	return body
}
