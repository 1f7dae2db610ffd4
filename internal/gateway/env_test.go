package gateway_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bffgate/bffgate/config"
	"github.com/bffgate/bffgate/internal/demo"
	"github.com/bffgate/bffgate/internal/faultidp"
	"github.com/bffgate/bffgate/internal/gateway"
	"github.com/bffgate/bffgate/internal/oidctest"
	"github.com/bffgate/bffgate/sessions"
)

// Users of the demo provider.
const (
	plainUser = demo.UserUsername
	password  = demo.Password
)

// upstream records what a microservice receives.
type upstream struct {
	*httptest.Server
	mu   sync.Mutex
	reqs []*http.Request
}

func newUpstream(t testing.TB) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r2 := r.Clone(context.Background())
		r2.Body = io.NopCloser(strings.NewReader(string(body)))
		u.mu.Lock()
		u.reqs = append(u.reqs, r2)
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"path": r.URL.Path, "query": r.URL.RawQuery, "body": string(body)})
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) last(t *testing.T) *http.Request {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.reqs) == 0 {
		t.Fatal("the upstream received no request")
	}
	return u.reqs[len(u.reqs)-1]
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.reqs)
}

// env is one gateway in front of the demo provider, a recording upstream
// and the real Redis.
type env struct {
	t        testing.TB
	public   string
	issuer   string
	idp      *demo.IDP
	srv      *httptest.Server
	gw       *gateway.Gateway
	cfg      *config.Config
	orders   *upstream
	rdb      *redis.Client
	prefix   string
	idpOpts  demo.IDPOptions
	wrapIDP  func(http.Handler) http.Handler
	mutate   func(*config.Config)
	memStore bool
	gwOpts   gateway.Options
	faults   *faultidp.Faults
}

type envOption func(*env)

func withIDP(o demo.IDPOptions) envOption                     { return func(e *env) { e.idpOpts = o } }
func withIDPWrap(w func(http.Handler) http.Handler) envOption { return func(e *env) { e.wrapIDP = w } }
func withConfig(m func(*config.Config)) envOption             { return func(e *env) { e.mutate = m } }
func withMemoryStore() envOption                              { return func(e *env) { e.memStore = true } }

// withFaults puts the provider behind switchable faults.
func withFaults(f *faultidp.Faults) envOption { return func(e *env) { e.faults = f } }

const (
	webSecret   = "web-secret"
	adminSecret = "admin-secret"
)

// redisAddr is the Redis the suite uses (scripts/test makes sure it runs).
func redisAddr() string {
	if a := os.Getenv("BFFGATE_TEST_REDIS"); a != "" {
		return a
	}
	return "127.0.0.1:6379"
}

func testRedis(t testing.TB) *redis.Client {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr()})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Fatalf("these tests need Redis at %s (scripts/test starts it): %v", redisAddr(), err)
	}
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

func randomKey(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

func newEnv(t testing.TB, opts ...envOption) *env {
	t.Helper()
	e := &env{t: t}
	for _, o := range opts {
		o(e)
	}
	e.srv = httptest.NewUnstartedServer(nil)
	e.public = "http://" + e.srv.Listener.Addr().String()
	clients := []demo.Client{
		{ID: "web-bff", Secret: webSecret, RedirectURIs: []string{e.public + "/web/bff/callback"}, PostLogoutRedirectURIs: []string{e.public + "/web/"},
			ExchangeAudiences: []string{exchangeAudience}},
		{ID: "admin-bff", Secret: adminSecret, RedirectURIs: []string{e.public + "/admin/bff/callback"}, PostLogoutRedirectURIs: []string{e.public + "/admin/"}},
		{ID: "app-bff", Secret: "app-secret", RedirectURIs: []string{e.public + "/app/bff/callback"}, PostLogoutRedirectURIs: []string{e.public + "/app/"}},
	}
	if e.faults != nil {
		e.idp = oidctest.StartFaultyProvider(t, clients, e.idpOpts, e.faults)
	} else {
		e.idp = oidctest.StartProvider(t, clients, e.idpOpts, e.wrapIDP)
	}
	e.issuer = e.idp.Issuer()
	e.orders = newUpstream(t)

	e.rdb = testRedis(t)
	e.prefix = "bffgate-test:" + strings.NewReplacer("/", "", "+", "", "=", "").Replace(randomKey(9)) + ":"
	t.Cleanup(func() { e.cleanupKeys() })

	store := "redis"
	if e.memStore {
		store = "memory"
	}
	e.cfg = &config.Config{
		Path: "test.yaml",
		Server: config.Server{
			Listen:    e.srv.Listener.Addr().String(),
			PublicURL: e.public,
		},
		Sessions: config.Sessions{
			Store:      store,
			Redis:      config.Redis{URL: "redis://" + redisAddr() + "/0", KeyPrefix: e.prefix},
			CookieKeys: []config.CookieKey{{Hash: randomKey(32), Block: randomKey(32)}},
		},
		Frontends: []config.Frontend{
			{
				Name: "web", Mount: "/web", Source: "frontends/web.yaml",
				OIDC: config.OIDC{Issuer: e.issuer, ClientID: "web-bff", ClientSecret: webSecret},
				Routes: []config.Route{
					{Prefix: "/api/orders", Upstream: e.orders.URL, StripPrefix: true},
					{Prefix: "/api/full", Upstream: e.orders.URL + "/base"},
					{Prefix: "/api/admin", Upstream: e.orders.URL, StripPrefix: true,
						Require: config.Require{Claims: map[string][]string{"roles": {"admin"}}}},
					{Prefix: "/api/public", Upstream: e.orders.URL, StripPrefix: true, Token: config.TokenNone},
					{Prefix: "/api/readonly", Upstream: e.orders.URL, StripPrefix: true, Methods: []string{"GET"}},
				},
			},
			{
				Name: "admin", Mount: "/admin", Source: "frontends/admin.yaml",
				OIDC: config.OIDC{Issuer: e.issuer, ClientID: "admin-bff", ClientSecret: adminSecret},
				Routes: []config.Route{
					{Prefix: "/api/orders", Upstream: e.orders.URL, StripPrefix: true},
				},
			},
		},
	}
	if e.mutate != nil {
		e.mutate(e.cfg)
	}
	e.cfg.ApplyDefaults()
	if err := e.cfg.Validate(); err != nil {
		t.Fatalf("test config invalid: %v", err)
	}
	gw, err := gateway.New(e.cfg, e.gwOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	e.gw = gw
	e.srv.Config.Handler = gw.Handler(true)
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	return e
}

func (e *env) cleanupKeys() {
	ctx := context.Background()
	iter := e.rdb.Scan(ctx, 0, e.prefix+"*", 500).Iterator()
	for iter.Next(ctx) {
		e.rdb.Del(ctx, iter.Val())
	}
}

// keys lists every Redis key under this test's prefix.
func (e *env) keys() []string {
	ctx := context.Background()
	var out []string
	iter := e.rdb.Scan(ctx, 0, e.prefix+"*", 500).Iterator()
	for iter.Next(ctx) {
		out = append(out, iter.Val())
	}
	return out
}

// admin is the provider's admin user (its name carries the issuer host).
func (e *env) admin() string { return demo.AdminUsername(e.issuer) }

// browser is a cookie-keeping client that does not follow redirects.
type browser struct {
	*oidctest.Browser
	e *env
}

func (e *env) browser() *browser {
	return &browser{Browser: oidctest.NewBrowser(e.t), e: e}
}

// callback starts a login at the gateway path login (query included), signs
// user in at the provider and returns the callback URL, not yet followed. It
// fails t, so that a subtest fails itself and not its parent.
func (b *browser) callback(t testing.TB, login, user string) string {
	t.Helper()
	cb, _, err := b.Login(context.Background(), b.e.public+login, user, password)
	if err != nil {
		t.Fatalf("login: %v", err)
	}
	return cb
}

// login runs the whole code flow for frontend mount m and returns the
// callback's response.
func (b *browser) login(mount, user string) *http.Response {
	b.e.t.Helper()
	resp := b.get(b.callback(b.e.t, mount+"/bff/login", user), nil)
	if resp.StatusCode != http.StatusFound {
		b.e.t.Fatalf("callback: status %d, body %s", resp.StatusCode, readBody(resp))
	}
	return resp
}

func (b *browser) get(u string, h http.Header) *http.Response {
	return b.do(http.MethodGet, u, h, "")
}

func (b *browser) do(method, u string, h http.Header, body string) *http.Response {
	b.e.t.Helper()
	if strings.HasPrefix(u, "/") {
		u = b.e.public + u
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		b.e.t.Fatal(err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := b.Client.Do(req)
	if err != nil {
		b.e.t.Fatalf("%s %s: %v", method, u, err)
	}
	b.e.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// api calls a route with the CSRF header a SPA sends.
func (b *browser) api(method, path string) *http.Response {
	return b.do(method, path, http.Header{"X-Csrf": {"1"}}, "")
}

func (b *browser) cookie(name string) *http.Cookie {
	u, _ := url.Parse(b.e.public + "/")
	for _, c := range b.Jar.Cookies(u) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func readBody(resp *http.Response) string {
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func decodeJSON(t testing.TB, resp *http.Response) map[string]any {
	t.Helper()
	var m map[string]any
	body := readBody(resp)
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("body is not JSON: %v: %q", err, body)
	}
	return m
}

// errorCode asserts an error answer's status and JSON code.
func errorCode(t testing.TB, resp *http.Response, status int, code string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, status, readBody(resp))
	}
	m := decodeJSON(t, resp)
	if m["error"] != code {
		t.Fatalf("error = %v, want %q (message %v)", m["error"], code, m["message"])
	}
	if m["message"] == "" || m["message"] == nil {
		t.Fatal("error answer has no message")
	}
}

// session reads the stored session behind a cookie value.
func (e *env) session(frontend, ref string) *sessions.Session {
	e.t.Helper()
	s, err := e.gw.Sessions.Load(context.Background(), "spa:"+frontend, ref)
	if err != nil {
		e.t.Fatalf("load session: %v", err)
	}
	return s
}

func bufioReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }

// instance starts another gateway on the same config and store, as a second
// replica behind a load balancer; it returns its base URL. Cookies are per
// host, not per port, so a browser logged in on the first instance sends
// its cookie here too.
func (e *env) instance() string {
	e.t.Helper()
	url, _ := e.replica()
	return url
}

// replica is instance returning the second gateway too (for its metrics).
func (e *env) replica() (string, *gateway.Gateway) {
	e.t.Helper()
	return e.replicaWith(gateway.Options{})
}

// replicaWith is replica with its own gateway options (a logger of its own).
func (e *env) replicaWith(o gateway.Options) (string, *gateway.Gateway) {
	e.t.Helper()
	gw, err := gateway.New(e.cfg, o)
	if err != nil {
		e.t.Fatal(err)
	}
	srv := httptest.NewServer(gw.Handler(true))
	e.t.Cleanup(func() { srv.Close(); gw.Close() })
	return srv.URL, gw
}

// withGatewayOptions passes o to gateway.New (for instance a Logger that
// writes to a buffer the test reads).
func withGatewayOptions(o gateway.Options) envOption { return func(e *env) { e.gwOpts = o } }

// burst sends n concurrent API GETs with the CSRF header, request i to
// urlFor(i), and returns their statuses (0 for a transport error, which is
// also reported).
func (b *browser) burst(t testing.TB, n int, urlFor func(i int) string) []int {
	t.Helper()
	statuses := make([]int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, urlFor(i), nil)
			req.Header.Set("X-Csrf", "1")
			resp, err := b.Client.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			statuses[i] = resp.StatusCode
			if resp.StatusCode != http.StatusOK {
				t.Logf("request %d: %d %s", i, resp.StatusCode, body)
			}
		}()
	}
	wg.Wait()
	return statuses
}
