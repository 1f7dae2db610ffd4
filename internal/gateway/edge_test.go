package gateway_test

import (
	"bufio"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bffgate/bffgate/config"
)

// lenientUpstream routes like the frameworks the security review attacked
// (issue 8 item 1): Tomcat and Jetty read ";x" as a path parameter and merge
// "//"; IIS and Windows servers drop a segment's trailing dots and spaces;
// Express routes without regard to case; a service behind a second decoding
// hop decodes twice. One service behind the routes /api/v1 (anyone),
// /api/v1/admin (roles: admin) and /api/v1/ro (GET only) records what its
// admin handler and its read-only resource were asked to do.
type lenientUpstream struct {
	*httptest.Server
	mu       sync.Mutex
	admin    []string // raw paths that reached the admin handler
	roWrites []string // raw "METHOD path" that changed the read-only resource
	other    []string
}

func newLenientUpstream(t *testing.T) *lenientUpstream {
	u := &lenientUpstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw := r.URL.EscapedPath()
		p := lenientPath(raw)
		u.mu.Lock()
		defer u.mu.Unlock()
		switch {
		case p == "/api/v1/admin" || strings.HasPrefix(p, "/api/v1/admin/"):
			u.admin = append(u.admin, raw)
		case (p == "/api/v1/ro" || strings.HasPrefix(p, "/api/v1/ro/")) && r.Method != http.MethodGet:
			u.roWrites = append(u.roWrites, r.Method+" "+raw)
		default:
			u.other = append(u.other, raw)
		}
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(u.Close)
	return u
}

// lenientPath is the path such a framework routes on.
func lenientPath(raw string) string {
	p := raw
	for range 2 { // a second decoding hop
		if d, err := url.PathUnescape(p); err == nil {
			p = d
		}
	}
	var segs []string
	for _, s := range strings.Split(p, "/") {
		s, _, _ = strings.Cut(s, ";")    // Tomcat path parameters
		s = strings.TrimRight(s, ". \t") // IIS trailing dots and spaces
		if s != "" {                     // merged "//"
			segs = append(segs, strings.ToLower(s)) // Express: case-insensitive
		}
	}
	return "/" + strings.Join(segs, "/")
}

func (u *lenientUpstream) hits() (admin, roWrites, other []string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.admin...), append([]string(nil), u.roWrites...), append([]string(nil), u.other...)
}

// rawRequest sends a request line exactly as given (Go's client would
// re-encode some spellings) with the session cookie and X-CSRF, and
// returns the status.
func rawRequest(t *testing.T, addr, method, target, cookie string, extra ...string) int {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	req := method + " " + target + " HTTP/1.1\r\nHost: " + addr + "\r\nX-CSRF: 1\r\nCookie: bff-web=" + cookie + "\r\n"
	for _, h := range extra {
		req += h + "\r\n"
	}
	req += "Connection: close\r\n\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func withNestedRoutes(up string) envOption {
	return withConfig(func(c *config.Config) {
		c.Frontends[0].Routes = append(c.Frontends[0].Routes,
			config.Route{Prefix: "/api/v1", Upstream: up},
			config.Route{Prefix: "/api/v1/admin", Upstream: up, Require: config.Require{Claims: map[string][]string{"roles": {"admin"}}}},
			config.Route{Prefix: "/api/v1/ro", Upstream: up, Methods: []string{"GET"}},
		)
	})
}

// Issue 8 item 1: no spelling of a path lets a user without the admin role
// reach the admin handler of an upstream that normalises paths like Tomcat,
// IIS or Express, nor write to a GET-only route. The gateway refuses every
// spelling whose meaning differs between it and such an upstream (400)
// before routing; the upstream serves exactly what was authorized.
func TestPathSpellingsNeverReachNestedRouteOfLenientUpstream(t *testing.T) {
	up := newLenientUpstream(t)
	e := newEnv(t, withNestedRoutes(up.URL))
	plain := e.browser()
	plain.login("/web", plainUser)
	ref := plain.cookie("bff-web").Value
	addr := strings.TrimPrefix(e.public, "http://")

	refused := []struct{ method, target string }{
		{"GET", "/web/api/v1/admin;x/users"},
		{"GET", "/web/api/v1/admin;/users"},
		{"GET", "/web/api/v1/admin%3bx/users"},
		{"GET", "/web/api/v1/admin%3Bx/users"},
		{"GET", "/web;x/api/v1/admin/users"},
		{"GET", "/web/api/v1//admin/users"},
		{"GET", "/web/api//v1/admin/users"},
		{"GET", "/web//api/v1/admin/users"},
		{"GET", "/web/api/v1/admin./users"},
		{"GET", "/web/api/v1/admin%2e/users"},
		{"GET", "/web/api/v1/admin%20/users"},
		{"GET", "/web/api/v1/admin%09/users"},
		{"GET", "/web/api/v1/admin.%20./users"},
		{"GET", "/web/api/v1/admin."},
		{"GET", "/web/api/v1/%2561dmin/users"},
		{"GET", "/web/api/v1/%252561dmin/users"},
		{"GET", "/web/api/v1/adm%2549n/users"},
		{"GET", "/web/api/v1/Admin/users"},
		{"GET", "/web/api/v1/ADMIN"},
		{"GET", "/web/api/v1/adm%49n/users"},
		{"GET", "/web/API/V1/admin/users"},
		{"DELETE", "/web/api/v1/ro;x/7"},
		{"DELETE", "/web/api/v1/ro%3b/7"},
		{"DELETE", "/web/api/v1//ro/7"},
		{"DELETE", "/web/api/v1/RO/7"},
		{"DELETE", "/web/api/v1/ro./7"},
		{"DELETE", "/web/api/v1/ro%20/7"},
		{"DELETE", "/web/api/v1/%2572o/7"},
	}
	for _, c := range refused {
		t.Run(c.method+" "+c.target, func(t *testing.T) {
			if st := rawRequest(t, addr, c.method, c.target, ref); st != http.StatusBadRequest {
				t.Errorf("status %d, want 400", st)
			}
		})
	}
	admin, roWrites, other := up.hits()
	if len(admin) != 0 || len(roWrites) != 0 {
		t.Fatalf("a user without admin reached the admin handler with %q and wrote to the read-only route with %q", admin, roWrites)
	}
	if len(other) != 0 {
		t.Errorf("refused spellings reached the upstream: %q", other)
	}

	// The checks hold for the ordinary spellings, and ordinary paths pass:
	// mixed case, dots and spaces inside a segment, a trailing slash.
	allowed := []struct {
		method, target string
		status         int
	}{
		{"GET", "/web/api/v1/admin/users", http.StatusForbidden},
		{"DELETE", "/web/api/v1/ro/7", http.StatusMethodNotAllowed},
		{"GET", "/web/api/v1/ro/7", http.StatusOK},
		{"GET", "/web/api/v1/Items/ABC", http.StatusOK},
		{"GET", "/web/api/v1/admins", http.StatusOK},
		{"GET", "/web/api/v1/v1.2/my%20file.txt", http.StatusOK},
		{"GET", "/web/api/v1/items/", http.StatusOK},
		{"GET", "/web/api/v1/100%25", http.StatusOK},
	}
	for _, c := range allowed {
		if st := rawRequest(t, addr, c.method, c.target, ref); st != c.status {
			t.Errorf("%s %s: status %d, want %d", c.method, c.target, st, c.status)
		}
	}
	if admin, roWrites, other := up.hits(); len(admin) != 0 || len(roWrites) != 0 || len(other) != 6 {
		t.Errorf("after the ordinary paths: admin %q, read-only writes %q, others %q (want 6 others)", admin, roWrites, other)
	}

	// The admin, whom the route allows, reaches the admin handler.
	adm := e.browser()
	adm.login("/web", e.admin())
	if st := rawRequest(t, addr, "GET", "/web/api/v1/admin/users", adm.cookie("bff-web").Value); st != http.StatusOK {
		t.Fatalf("admin: status %d", st)
	}
	if admin, _, _ := up.hits(); len(admin) != 1 || admin[0] != "/api/v1/admin/users" {
		t.Errorf("the admin handler saw %q, want exactly /api/v1/admin/users", admin)
	}
}

// switchingUpstream switches to any protocol it is asked for, like an h2c
// server, and then answers every line the tunnel carries: after a 101, the
// client talks to it past every check of the gateway.
func switchingUpstream(t *testing.T) (url string, seen func() []string) {
	var mu sync.Mutex
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Method+" "+r.URL.Path+" Upgrade="+r.Header.Get("Upgrade")+" bearer="+strconv.FormatBool(r.Header.Get("Authorization") != ""))
		mu.Unlock()
		if r.Header.Get("Upgrade") == "" {
			_, _ = w.Write([]byte("plain"))
			return
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + r.Header.Get("Upgrade") + "\r\n\r\n")
		_ = rw.Flush()
		for {
			line, err := rw.ReadString('\n')
			if err != nil {
				return
			}
			_, _ = rw.WriteString("tunnelled: " + line)
			_ = rw.Flush()
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), got...) }
}

// Issue 8 items 5 and 13: only WebSocket upgrades pass. An anonymous
// "Upgrade: h2c" on a public route got a 101 from an upstream that
// switches, and the tunnel then carried unrouted, unauthenticated requests.
func TestOnlyWebSocketUpgradesReachUpstreams(t *testing.T) {
	up, seen := switchingUpstream(t)
	e := newEnv(t, withConfig(func(c *config.Config) {
		c.Frontends[0].Routes = append(c.Frontends[0].Routes,
			config.Route{Prefix: "/static", Upstream: up, Token: config.TokenNone},
			config.Route{Prefix: "/api/sw", Upstream: up})
	}))
	b := e.browser()
	b.login("/web", e.admin())
	ref := b.cookie("bff-web").Value
	addr := strings.TrimPrefix(e.public, "http://")
	for _, c := range []struct{ target, upgrade string }{
		{"/web/static/app.js", "h2c"},
		{"/web/static/app.js", "H2C"},
		{"/web/static/app.js", "websocket, h2c"},
		{"/web/static/app.js", "TLS/1.2"},
		{"/web/api/sw/x", "h2c"},
		{"/web/api/sw/x", "spdy/3"},
	} {
		t.Run(c.upgrade+" "+c.target, func(t *testing.T) {
			if st := rawRequest(t, addr, "GET", c.target, ref, "Connection: Upgrade, HTTP2-Settings", "Upgrade: "+c.upgrade, "HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA"); st != http.StatusBadRequest {
				t.Errorf("status %d, want 400", st)
			}
			// Without Connection: Upgrade it is still no request to pass on.
			if st := rawRequest(t, addr, "GET", c.target, ref, "Upgrade: "+c.upgrade); st != http.StatusBadRequest {
				t.Errorf("without Connection: status %d, want 400", st)
			}
		})
	}
	if got := seen(); len(got) != 0 {
		t.Errorf("the upstream received %q", got)
	}
	// An ordinary request to the same routes passes.
	if st := rawRequest(t, addr, "GET", "/web/static/app.js", ref); st != http.StatusOK {
		t.Errorf("plain request: status %d", st)
	}
	if got := seen(); len(got) != 1 || strings.Contains(got[0], "Upgrade=h2c") {
		t.Errorf("the upstream received %q, want one plain request", got)
	}
}

// Issue 8 item 9: TRACE and TRACK are refused before anything is
// forwarded: an upstream that echoes TRACE would show the page's script
// the bearer token the gateway attached.
func TestTraceAndTrackAreRefusedBeforeForwarding(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	b.login("/web", e.admin())
	for _, method := range []string{"TRACE", "TRACK", "trace"} {
		for _, path := range []string{"/web/api/orders/1", "/web/api/public/x", "/web/bff/user", "/nowhere"} {
			resp := b.do(method, path, http.Header{"X-Csrf": {"1"}}, "")
			errorCode(t, resp, http.StatusMethodNotAllowed, "method_not_allowed")
			if allow := resp.Header.Get("Allow"); allow == "" || strings.Contains(allow, "TRACE") {
				t.Errorf("%s %s: Allow %q", method, path, allow)
			}
		}
	}
	if n := e.orders.count(); n != 0 {
		t.Errorf("the upstream received %d requests, the last %s %s with Authorization %q", n, e.orders.last(t).Method, e.orders.last(t).URL.Path, e.orders.last(t).Header.Get("Authorization"))
	}
}

// clientHeaders are identity and routing hints that upstream frameworks
// believe (issue 8 item 4): the client's address as CDNs and load
// balancers report it, the user an authenticating proxy vouches for, the
// original host and path.
var clientHeaders = []string{
	"X-Real-IP", "True-Client-IP", "CF-Connecting-IP", "X-Cluster-Client-IP", "Fastly-Client-IP", "X-Client-IP",
	"Remote-User", "X-Remote-User", "X-User", "X-Auth-Request-User", "X-Auth-Request-Email", "X-Forwarded-User",
	"X-Original-Host", "X-Host", "X-Original-URI", "X-Original-URL", "X-Rewrite-URL", "X-Envoy-Original-Path",
}

var methodOverrides = []string{"X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"}

// overridingUpstream acts on a method-override header the way Express's
// method-override, Rails and Laravel do, and records the method it acted on.
func overridingUpstream(t *testing.T) (string, func() []string) {
	var mu sync.Mutex
	var acted []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := r.Method
		for _, k := range methodOverrides {
			if v := r.Header.Get(k); v != "" && r.Method == http.MethodPost {
				m = strings.ToUpper(v)
			}
		}
		mu.Lock()
		acted = append(acted, m+" "+r.URL.Path)
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), acted...) }
}

// Issue 8 item 4: a POST with X-HTTP-Method-Override: DELETE deleted on a
// route limited to GET and POST; identity headers and the client's Host
// reached upstreams.
func TestClientIdentityAndMethodOverrideHeadersNeverReachUpstreams(t *testing.T) {
	for _, trusted := range []bool{false, true} {
		t.Run(map[bool]string{false: "untrusted client", true: "trusted proxy"}[trusted], func(t *testing.T) {
			up, acted := overridingUpstream(t)
			e := newEnv(t, withConfig(func(c *config.Config) {
				c.Frontends[0].Routes = append(c.Frontends[0].Routes,
					config.Route{Prefix: "/api/items", Upstream: up, Methods: []string{"GET", "POST"}})
				if trusted {
					c.Server.TrustedProxies = []string{"127.0.0.0/8"}
				}
			}))
			b := e.browser()
			b.login("/web", e.admin())

			for _, k := range methodOverrides {
				b.do(http.MethodPost, "/web/api/items/7", http.Header{"X-Csrf": {"1"}, k: {"DELETE"}}, "")
			}
			if got := acted(); len(got) != len(methodOverrides) || slices.ContainsFunc(got, func(s string) bool { return s != "POST /api/items/7" }) {
				t.Errorf("the upstream acted as %q, want only POST", got)
			}

			h := http.Header{"X-Csrf": {"1"}}
			for _, k := range clientHeaders {
				h.Set(k, "evil")
			}
			req, _ := http.NewRequest(http.MethodGet, e.public+"/web/api/orders/1", nil)
			req.Header = h
			req.Host = "evil.example"
			req.AddCookie(b.cookie("bff-web")) // the jar files cookies by Host
			resp, err := b.Client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d %s", resp.StatusCode, readBody(resp))
			}
			got := e.orders.last(t).Header
			for _, k := range clientHeaders {
				if v := got.Get(k); v != "" && !trusted {
					t.Errorf("the upstream received the client's %s: %q", k, v)
				} else if v != "evil" && trusted {
					t.Errorf("a trusted proxy's %s did not reach the upstream: %q", k, v)
				}
			}
			if xfh := got.Get("X-Forwarded-Host"); xfh != strings.TrimPrefix(e.public, "http://") {
				t.Errorf("X-Forwarded-Host = %q, want public_url's host, never the client's Host", xfh)
			}
			if xfp := got.Get("X-Forwarded-Proto"); xfp != "http" {
				t.Errorf("X-Forwarded-Proto = %q, want public_url's scheme", xfp)
			}
		})
	}
}

// Issue 8 item 8: an upstream cannot wipe the browser's site data (every
// frontend's session cookie and storage on the host), and its redirects to
// its own address, scheme-relative included, come back as the gateway's
// path; one outside the route is dropped rather than disclose the host.
func TestUpstreamCannotClearSiteDataOrDiscloseItsAddress(t *testing.T) {
	var self string
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Clear-Site-Data", `"cookies", "storage", "cache"`)
		w.Header().Set("Location", strings.ReplaceAll(r.URL.Query().Get("loc"), "SELF", self))
		w.WriteHeader(http.StatusFound)
	}))
	defer evil.Close()
	self = strings.TrimPrefix(evil.URL, "http://")
	e := newEnv(t, withConfig(func(c *config.Config) {
		c.Frontends[0].Routes = append(c.Frontends[0].Routes,
			config.Route{Prefix: "/evil", Upstream: evil.URL + "/base", StripPrefix: true, Token: config.TokenNone})
	}))
	b := e.browser()
	for _, c := range []struct{ loc, want string }{
		{"//SELF/base/next?x=1", "/web/evil/next?x=1"},
		{"http://SELF/base/next", "/web/evil/next"},
		{`/\SELF/base/next`, "/web/evil/next"},
		{"//SELF/internal/admin", ""},
		{"//SELF", ""},
		{"/web/elsewhere", "/web/elsewhere"},
	} {
		t.Run(c.loc, func(t *testing.T) {
			resp := b.get("/web/evil/x?loc="+url.QueryEscape(c.loc), nil)
			if resp.StatusCode != http.StatusFound {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if v := resp.Header.Values("Clear-Site-Data"); len(v) != 0 {
				t.Errorf("the upstream's Clear-Site-Data %q reached the browser", v)
			}
			loc := resp.Header.Get("Location")
			if loc != c.want {
				t.Errorf("Location = %q, want %q", loc, c.want)
			}
			if strings.Contains(loc, self) || strings.Contains(loc, "127.0.0.1") {
				t.Errorf("Location %q discloses the upstream's address", loc)
			}
		})
	}
}

// Issue 8 item 13: every answer the gateway writes itself carries
// X-Content-Type-Options: nosniff and may not be framed; /bff answers and
// errors are never cached. What an upstream answers keeps its own headers.
func TestGatewayOwnAnswersCarrySecurityHeaders(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	callback := b.login("/web", e.admin())
	anon := e.browser()
	csrf := http.Header{"X-Csrf": {"1"}}
	html := http.Header{"Accept": {"text/html"}}

	cases := []struct {
		name  string
		resp  func() *http.Response
		store bool // Cache-Control: no-store expected
	}{
		{"callback redirect", func() *http.Response { return callback }, true},
		{"login redirect", func() *http.Response { return anon.get("/web/bff/login", nil) }, true},
		{"user", func() *http.Response { return b.get("/web/bff/user", csrf) }, true},
		{"user without session", func() *http.Response { return anon.get("/web/bff/user", csrf) }, true},
		{"callback without state, for a browser", func() *http.Response { return anon.get("/web/bff/callback?code=x", html) }, true},
		{"unknown bff endpoint", func() *http.Response { return b.get("/web/bff/nothing", nil) }, true},
		{"route without session", func() *http.Response { return anon.get("/web/api/orders/1", csrf) }, true},
		{"route method not allowed", func() *http.Response { return b.do(http.MethodPost, "/web/api/readonly/x", csrf, "") }, true},
		{"no route in the frontend", func() *http.Response { return b.get("/web/nothing", html) }, true},
		{"no frontend", func() *http.Response { return b.get("/nowhere", html) }, true},
		{"refused path", func() *http.Response { return b.get("/web/api/orders/a;b", csrf) }, true},
		{"TRACE", func() *http.Response { return b.do("TRACE", "/web/api/orders/1", csrf, "") }, true},
		{"healthz", func() *http.Response { return anon.get("/healthz", nil) }, true},
		{"readyz", func() *http.Response { return anon.get("/readyz", nil) }, true},
		{"metrics", func() *http.Response { return anon.get("/metrics", nil) }, false},
		{"logout", func() *http.Response { return b.do(http.MethodPost, "/web/bff/logout", csrf, "") }, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := c.resp()
			h := resp.Header
			if got := h.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("status %d: X-Content-Type-Options %q", resp.StatusCode, got)
			}
			if got := h.Get("Cache-Control"); c.store && !strings.Contains(got, "no-store") {
				t.Errorf("status %d: Cache-Control %q", resp.StatusCode, got)
			}
			ct := h.Get("Content-Type")
			csp := h.Get("Content-Security-Policy")
			if (strings.HasPrefix(ct, "text/html") || strings.Contains(resp.Request.URL.Path, "/bff/")) && !strings.Contains(csp, "frame-ancestors 'none'") {
				t.Errorf("status %d (%s): Content-Security-Policy %q", resp.StatusCode, ct, csp)
			}
		})
	}

	// An upstream's answer is its own: the gateway adds no policy to it.
	resp := e.browser().get("/web/api/public/page", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("public route: %d", resp.StatusCode)
	}
	if v := resp.Header.Values("Content-Security-Policy"); len(v) != 0 {
		t.Errorf("the gateway added %q to an upstream's answer", v)
	}
}
