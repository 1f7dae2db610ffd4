package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/bffgate/bffgate/config"
	"github.com/bffgate/bffgate/internal/demo"
	"github.com/bffgate/bffgate/internal/gateway"
	"github.com/bffgate/bffgate/internal/oidctest"
)

// TestDemoIDPServesAFrontendAtAnyMount is the newcomer's path: `bffgate demo
// idp -public-url G`, then a frontend file of their own (mount /shop) with a
// client and secret copied from what the provider printed. The login runs
// through, /bff/user answers, and logout comes back to /shop/.
func TestDemoIDPServesAFrontendAtAnyMount(t *testing.T) {
	gw := httptest.NewUnstartedServer(nil)
	public := "http://" + gw.Listener.Addr().String()
	out := startDemoPart(t, "demo", "idp", "-listen", "127.0.0.1:0", "-public-url", public)
	issuer := out.field(t, "Issuer")
	out.field(t, "After logout") // the last line: the client list is complete
	m := regexp.MustCompile(`(?m)^\s*Client\s+web-bff / (\S+)$`).FindStringSubmatch(out.stdout.String())
	if m == nil {
		t.Fatalf("the provider did not print web-bff's secret:\n%s", out.stdout.String())
	}
	if want := public + "/<M>/bff/callback"; !strings.Contains(out.stdout.String(), want) {
		t.Errorf("the provider did not print the accepted redirect URI %q:\n%s", want, out.stdout.String())
	}

	cfg := &config.Config{
		Server:   config.Server{Listen: gw.Listener.Addr().String(), PublicURL: public, AllowInsecureHTTP: true},
		Sessions: config.Sessions{Store: "memory"},
		Frontends: []config.Frontend{{
			Name: "shop", Mount: "/shop", Source: "frontends/shop.yaml",
			OIDC:        config.OIDC{Issuer: issuer, ClientID: demo.WebClientID, ClientSecret: m[1]},
			AfterLogout: "/shop/",
		}},
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(cfg, gateway.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	gw.Config.Handler = g.Handler(true)
	gw.Start()
	t.Cleanup(gw.Close)

	b := oidctest.NewBrowser(t)
	ctx := context.Background()
	cb, _, err := b.Login(ctx, public+"/shop/bff/login", demo.AdminUsername(issuer), demo.Password)
	if err != nil {
		t.Fatalf("login at /shop through demo idp: %v", err)
	}
	if !strings.HasPrefix(cb, public+"/shop/bff/callback?") {
		t.Fatalf("the provider sent the browser to %q, want the /shop callback", cb)
	}
	resp := follow(t, b, cb, nil)
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/shop/" {
		t.Fatalf("callback: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp = follow(t, b, public+"/shop/bff/user", http.Header{"X-Csrf": {"1"}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/shop/bff/user: %d", resp.StatusCode)
	}

	// Logout: the provider accepts /shop/ as post_logout_redirect_uri and
	// sends the browser back there.
	req, _ := http.NewRequest(http.MethodPost, public+"/shop/bff/logout", nil)
	req.Header.Set("X-Csrf", "1")
	resp, err = b.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, issuer) {
		t.Fatalf("logout: %d to %q, want the provider's end_session_endpoint", resp.StatusCode, loc)
	}
	for range 5 {
		resp = follow(t, b, loc, nil)
		next, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusFound || err != nil {
			t.Fatalf("logout at the provider: %d at %s", resp.StatusCode, loc)
		}
		loc = next.String()
		if !strings.HasPrefix(loc, issuer) {
			break
		}
	}
	if loc != public+"/shop/" {
		t.Errorf("after logout the provider sent the browser to %q, want %s/shop/", loc, public)
	}
}

// follow GETs u with b's cookies, without following redirects.
func follow(t *testing.T, b *oidctest.Browser, u string, h http.Header) *http.Response {
	t.Helper()
	if _, err := url.Parse(u); err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := b.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// signIn signs user in at the demo provider from the login URL start and
// follows the callback, whose response (body closed) it returns.
func signIn(t *testing.T, b *oidctest.Browser, start, user string) *http.Response {
	t.Helper()
	cb, _, err := b.Login(context.Background(), start, user, demo.Password)
	if err != nil {
		t.Fatal(err)
	}
	return follow(t, b, cb, nil)
}

// TestDemoOpenedOn127 (issue 9 item 2): the demo's public URL is
// http://localhost:PORT; a user who opens http://127.0.0.1:PORT, as
// -listen suggests, is taken to localhost for the page and the login, and
// the login works, instead of ending on "no login is pending".
func TestDemoOpenedOn127(t *testing.T) {
	out := startDemoPart(t, "demo", "-listen", "127.0.0.1:0", "-idp-listen", "127.0.0.1:0")
	page := out.field(t, "Open") // http://localhost:PORT/web/
	public := strings.TrimSuffix(page, "/web/")
	wrong := strings.Replace(public, "localhost", "127.0.0.1", 1)
	admin := out.field(t, "Log in as")

	// The page: a browser following redirects ends on localhost.
	b := oidctest.NewBrowser(t)
	client := &http.Client{Jar: b.Jar}
	req, _ := http.NewRequest(http.MethodGet, wrong+"/web/", nil)
	req.Header.Set("Accept", "text/html")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.String() != page {
		t.Fatalf("opening %s/web/ ended on %s (%d), want %s", wrong, resp.Request.URL, resp.StatusCode, page)
	}

	// The login button on the 127.0.0.1 page.
	cb, _, err := b.Login(context.Background(), wrong+"/web/bff/login?returnTo=%2Fweb%2F", admin, demo.Password)
	if err != nil {
		t.Fatalf("login started on 127.0.0.1: %v", err)
	}
	resp = follow(t, b, cb, nil)
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/web/" {
		t.Fatalf("callback: %d to %q, want 302 to /web/", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp = follow(t, b, public+"/web/bff/user", http.Header{"X-Csrf": {"1"}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/web/bff/user on localhost after the login: %d", resp.StatusCode)
	}
}
