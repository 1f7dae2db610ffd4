// Package deploy_test checks docker-compose.yml and the files it mounts
// without a Docker engine: the compose file loads and validates with
// compose-spec/compose-go, the services are wired to each other, and every
// gateway config it mounts passes the same validation as `bffgate check`.
package deploy_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/bffgate/bffgate/config"
	"github.com/bffgate/bffgate/internal/demo"
)

// repoRoot is the compose project's working directory, seen from deploy/.
const repoRoot = ".."

// loadProject loads docker-compose.yml as `docker compose` would in the
// repository root, with env as the only environment.
func loadProject(t *testing.T, env ...string) *types.Project {
	t.Helper()
	// The cookie keys are required (issue 8 item 14); later entries win.
	env = append([]string{
		"BFF_COOKIE_HASH_KEY=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
		"BFF_COOKIE_BLOCK_KEY=ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=",
	}, env...)
	p, err := loadProjectEnv(env)
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return p
}

// loadProjectEnv is loadProject with exactly env as the environment.
func loadProjectEnv(env []string) (*types.Project, error) {
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(repoRoot, "docker-compose.yml")},
		cli.WithWorkingDirectory(repoRoot),
		cli.WithEnv(env),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		return nil, err
	}
	return opts.LoadProject(context.Background())
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, err := p.GetService(name)
	if err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return s
}

// flagValues returns every value of -name (written -name=v or -name v) in
// a command.
func flagValues(cmd []string, name string) []string {
	var vals []string
	for i := 0; i < len(cmd); i++ {
		a := strings.TrimPrefix(strings.TrimPrefix(cmd[i], "-"), "-")
		if a == cmd[i] {
			continue
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			vals = append(vals, v)
		} else if a == name && i+1 < len(cmd) {
			vals = append(vals, cmd[i+1])
			i++
		}
	}
	return vals
}

func flagValue(t *testing.T, s types.ServiceConfig, name string) string {
	t.Helper()
	v := flagValues(s.Command, name)
	if len(v) != 1 {
		t.Fatalf("service %s: command %q: want one -%s, got %q", s.Name, s.Command, name, v)
	}
	return v[0]
}

func TestComposeServices(t *testing.T) {
	p := loadProject(t)

	for _, name := range []string{"redis", "idp", "services", "gateway", "lb"} {
		service(t, p, name)
	}
	if img := service(t, p, "redis").Image; !strings.HasPrefix(img, "redis:7") {
		t.Errorf("redis image %q, want redis:7-*", img)
	}
	bffgate := map[string][]string{
		"idp":      {"demo", "idp"},
		"services": {"demo", "services"},
		"gateway":  {"serve"},
	}
	for name, prefix := range bffgate {
		s := service(t, p, name)
		if s.Build == nil {
			t.Errorf("service %s: no build: it must run the image built from the Dockerfile", name)
		}
		if len(s.Command) < len(prefix) || !slices.Equal(s.Command[:len(prefix)], prefix) {
			t.Errorf("service %s: command %q, want it to start with %q", name, s.Command, prefix)
		}
	}

	gw := service(t, p, "gateway")
	if n := gw.GetScale(); n != 2 {
		t.Errorf("gateway: %d replicas, want 2", n)
	}
	if v := flagValue(t, gw, "config"); v != "/etc/bffgate/gateway.yaml" {
		t.Errorf("gateway: -config %q", v)
	}
}

// TestComposeRequiresCookieKeys (issue 8 item 14): compose no longer falls
// back to published cookie keys; without them it stops and says how to make
// them.
func TestComposeRequiresCookieKeys(t *testing.T) {
	_, err := loadProjectEnv(nil)
	if err == nil || !strings.Contains(err.Error(), "openssl rand -base64 32") {
		t.Errorf("docker-compose.yml without cookie keys: err = %v, want the keys required, naming openssl", err)
	}
}

// TestComposeEnvOverrides: the cookie keys come from the caller's environment
// when set.
func TestComposeEnvOverrides(t *testing.T) {
	p := loadProject(t, "BFF_COOKIE_HASH_KEY=from-env-hash", "BFF_COOKIE_BLOCK_KEY=from-env-block")
	env := service(t, p, "gateway").Environment
	if v := env["BFF_COOKIE_HASH_KEY"]; v == nil || *v != "from-env-hash" {
		t.Errorf("BFF_COOKIE_HASH_KEY = %v", v)
	}
	if v := env["BFF_COOKIE_BLOCK_KEY"]; v == nil || *v != "from-env-block" {
		t.Errorf("BFF_COOKIE_BLOCK_KEY = %v", v)
	}
}

// TestComposeMounts: every bind mount's source exists.
func TestComposeMounts(t *testing.T) {
	p := loadProject(t)
	for _, s := range p.Services {
		for _, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("service %s: bind mount %s -> %s: %v", s.Name, v.Source, v.Target, err)
			}
			if !v.ReadOnly {
				t.Errorf("service %s: bind mount %s -> %s is writable; config mounts are read-only", s.Name, v.Source, v.Target)
			}
		}
	}
}

// hostPath maps a path inside service s's containers to the host through its
// bind mounts (the longest matching target wins).
func hostPath(t *testing.T, s types.ServiceConfig, inContainer string) string {
	t.Helper()
	best, host := "", ""
	for _, v := range s.Volumes {
		if v.Type != types.VolumeTypeBind || len(v.Target) <= len(best) {
			continue
		}
		if rel, err := filepath.Rel(v.Target, inContainer); err == nil && !strings.HasPrefix(rel, "..") {
			best, host = v.Target, filepath.Join(v.Source, rel)
		}
	}
	if host == "" {
		t.Fatalf("service %s: %s is not under any bind mount", s.Name, inContainer)
	}
	return host
}

// containerEnv makes the process environment exactly service s's: nothing of
// the test runner's own (restored after the test), so a ${VAR} the compose
// file forgets fails here as it would in the container.
func containerEnv(t *testing.T, s types.ServiceConfig) {
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		t.Setenv(k, "") // registers the restore
		os.Unsetenv(k)
	}
	for k, v := range s.Environment {
		if v != nil {
			t.Setenv(k, *v)
		}
	}
}

// loadGatewayConfig loads the config service s runs with, as `bffgate check`
// does inside its container.
func loadGatewayConfig(t *testing.T, s types.ServiceConfig) *config.Config {
	t.Helper()
	path := hostPath(t, s, flagValue(t, s, "config"))
	containerEnv(t, s)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("service %s: %s does not pass `bffgate check`:\n%v", s.Name, path, err)
	}
	return cfg
}

func TestComposeGatewayConfigValid(t *testing.T) {
	p := loadProject(t)
	n := 0
	for _, s := range p.Services {
		if len(s.Command) > 0 && (s.Command[0] == "serve" || s.Command[0] == "check") {
			t.Run(s.Name, func(t *testing.T) { loadGatewayConfig(t, s) })
			n++
		}
	}
	if n == 0 {
		t.Fatal("no service runs `bffgate serve`")
	}
}

// TestComposeWiring checks that the pieces point at each other: the issuer,
// the public URL, the upstreams, Redis and the load balancer's upstream.
func TestComposeWiring(t *testing.T) {
	p := loadProject(t)
	idp, svcs, gw, lb := service(t, p, "idp"), service(t, p, "services"), service(t, p, "gateway"), service(t, p, "lb")
	cfg := loadGatewayConfig(t, gw)

	// One issuer everywhere, resolvable in the containers (a network alias
	// of idp or its name) and published on the same port for the browser.
	issuer := flagValue(t, idp, "issuer")
	if v := flagValue(t, svcs, "issuer"); v != issuer {
		t.Errorf("services: -issuer %q, idp: -issuer %q", v, issuer)
	}
	for _, fe := range cfg.Frontends {
		if fe.OIDC.Issuer != issuer {
			t.Errorf("%s: oidc.issuer %q, idp: -issuer %q", fe.Source, fe.OIDC.Issuer, issuer)
		}
	}
	iu, err := url.Parse(issuer)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"idp"}
	for _, n := range idp.Networks {
		if n != nil {
			names = append(names, n.Aliases...)
		}
	}
	if !slices.Contains(names, iu.Hostname()) {
		t.Errorf("issuer host %q is neither the idp service nor one of its aliases %q", iu.Hostname(), names)
	}
	if !publishes(idp, iu.Port(), iu.Port()) {
		t.Errorf("idp: must publish %s:%s so the browser reaches the issuer", iu.Port(), iu.Port())
	}
	if _, port, _ := net.SplitHostPort(flagValue(t, idp, "listen")); port != iu.Port() {
		t.Errorf("idp: -listen %q, issuer port %s", flagValue(t, idp, "listen"), iu.Port())
	}

	// The provider accepts the gateway's redirect URIs; the load balancer
	// publishes the public URL's port.
	if pubs := flagValues(idp.Command, "public-url"); !slices.Contains(pubs, cfg.Server.PublicURL) {
		t.Errorf("idp: -public-url %q does not include server.public_url %q", pubs, cfg.Server.PublicURL)
	}
	pu, _ := url.Parse(cfg.Server.PublicURL)
	if !publishes(lb, pu.Port(), "") {
		t.Errorf("lb: does not publish port %s of server.public_url", pu.Port())
	}

	// The gateway listens on every interface of its container.
	if host, _, _ := net.SplitHostPort(cfg.Server.Listen); host != "" && host != "0.0.0.0" && host != "::" {
		t.Errorf("server.listen %q: unreachable from the load balancer", cfg.Server.Listen)
	}

	// Upstreams and Redis are compose services, on the ports they listen on.
	_, svcPort, _ := net.SplitHostPort(flagValue(t, svcs, "listen"))
	listens := map[string]string{"services": svcPort, "redis": "6379"}
	check := func(where, raw string) {
		u, err := url.Parse(raw)
		if err != nil {
			t.Errorf("%s: %v", where, err)
			return
		}
		if want, ok := listens[u.Hostname()]; !ok || u.Port() != want {
			t.Errorf("%s: %q is not a compose service on its port (%v)", where, raw, listens)
		}
	}
	for _, fe := range cfg.Frontends {
		for i, r := range fe.Routes {
			check(fmt.Sprintf("%s: routes[%d].upstream", fe.Source, i), r.Upstream)
		}
		for _, a := range fe.Aggregates {
			for name, part := range a.Parts {
				check(fmt.Sprintf("%s: aggregates %s parts.%s", fe.Source, a.Path, name), part.Upstream)
			}
		}
	}
	check("sessions.redis.url", cfg.Sessions.Redis.URL)
	if cfg.Sessions.Store != "redis" {
		t.Errorf("sessions.store %q: the replicas must share Redis", cfg.Sessions.Store)
	}

	// The load balancer forwards to the gateway's listen port.
	var conf string
	for _, v := range lb.Volumes {
		if v.Target == "/etc/nginx/nginx.conf" {
			b, err := os.ReadFile(v.Source)
			if err != nil {
				t.Fatal(err)
			}
			conf = string(b)
		}
	}
	_, gwPort, _ := net.SplitHostPort(cfg.Server.Listen)
	if !regexp.MustCompile(`(?m)^\s*server\s+gateway:` + gwPort + `\b`).MatchString(conf) {
		t.Errorf("lb: nginx.conf has no upstream server gateway:%s", gwPort)
	}
	if strings.Contains(conf, "ip_hash") || strings.Contains(conf, "sticky") {
		t.Error("lb: sessions live in Redis; the load balancer must not be sticky")
	}
}

// publishes reports whether s publishes container port target, on host port
// published unless that is "".
func publishes(s types.ServiceConfig, target, published string) bool {
	for _, p := range s.Ports {
		if strconv.FormatUint(uint64(p.Target), 10) == target && (published == "" || p.Published == published) {
			return true
		}
	}
	return false
}

// TestComposeMatchesDemo: the frontends mounted into the gateway are the
// all-in-one demo's (demo.Config), with the compose service URLs, so
// `docker compose up` shows what `bffgate demo` shows and the two do not
// drift apart.
func TestComposeMatchesDemo(t *testing.T) {
	p := loadProject(t)
	idp, svcs, gw := service(t, p, "idp"), service(t, p, "services"), service(t, p, "gateway")
	got := loadGatewayConfig(t, gw)

	_, svcPort, _ := net.SplitHostPort(flagValue(t, svcs, "listen"))
	base := "http://" + svcs.Name + ":" + svcPort
	want := demo.Config(demo.Endpoints{
		PublicURL:  got.Server.PublicURL,
		Issuer:     flagValue(t, idp, "issuer"),
		OrdersURL:  base + "/orders",
		ReportsURL: base + "/reports",
		SPAURL:     base + "/spa",
	}, "")
	want.ApplyDefaults()

	if len(got.Frontends) != len(want.Frontends) {
		t.Fatalf("%d frontends mounted, the demo has %d", len(got.Frontends), len(want.Frontends))
	}
	byName := map[string]config.Frontend{}
	for _, fe := range got.Frontends {
		byName[fe.Name] = fe
	}
	for _, w := range want.Frontends {
		g, ok := byName[w.Name]
		if !ok {
			t.Errorf("frontend %q of the demo is not mounted", w.Name)
			continue
		}
		src := g.Source
		g.Source, w.Source = "", ""
		if !reflect.DeepEqual(g, w) {
			t.Errorf("%s differs from demo.Config's frontend %q:\n got  %+v\n want %+v", src, w.Name, g, w)
		}
	}
}
