package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files (want.txt, summary.txt) from the current output")

// Keys for the good config: 32 bytes in standard and in raw URL base64.
const (
	testHashKey  = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	testBlockKey = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA"
)

func setGoodEnv(t *testing.T) {
	t.Setenv("BFF_TEST_REDIS_PASSWORD", "hunter2")
	t.Setenv("BFF_TEST_HASH_KEY", testHashKey)
	t.Setenv("BFF_TEST_BLOCK_KEY", testBlockKey)
	// YAML would cut this short or choke on it if expanded as text.
	t.Setenv("WEB_BFFTEST_SECRET", `s3cr3t #not a comment: "quoted"`)
	unsetEnv(t, "BFF_TEST_ADMIN_SECRET", "BFF_TEST_MOBILE_SECRET")
}

// unsetEnv unsets variables for the test, restoring them afterwards.
func unsetEnv(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		t.Setenv(n, "")
		os.Unsetenv(n)
	}
}

// TestLoadBad loads each testdata/bad/<case>/gateway.yaml (from inside the
// case's directory, so messages carry short relative paths) and compares the
// problems with want.txt, line for line: every expected line must be there,
// and nothing else. Run with -update to rewrite want.txt, then review the diff.
func TestLoadBad(t *testing.T) {
	unsetEnv(t, "BFF_TEST_UNSET_LISTEN", "BFF_TEST_UNSET_MAX", "BFF_TEST_UNSET_SECRET", "NOT_EXPANDED")
	dirs, err := filepath.Glob("testdata/bad/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			t.Chdir(dir)
			c, err := Load("gateway.yaml")
			if err == nil {
				t.Fatal("Load succeeded; want problems")
			}
			if c != nil {
				t.Error("Load returned a Config along with problems")
			}
			for _, e := range unjoin(err) {
				var ce *Error
				if !errors.As(e, &ce) || ce.File == "" {
					t.Errorf("problem %q is not an *Error naming its file", e)
				}
			}
			got := strings.Split(err.Error(), "\n")
			if *update {
				if err := os.WriteFile("want.txt", []byte(strings.Join(got, "\n")+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			data, err := os.ReadFile("want.txt")
			if err != nil {
				t.Fatal(err)
			}
			want := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
			for _, w := range want {
				if !slices.Contains(got, w) {
					t.Errorf("missing problem:\n\t%s", w)
				}
			}
			for _, g := range got {
				if !slices.Contains(want, g) {
					t.Errorf("unexpected problem:\n\t%s", g)
				}
			}
		})
	}
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestLoadGood(t *testing.T) {
	setGoodEnv(t)
	t.Chdir("testdata/good")
	c, err := Load("gateway.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}

	checks := []struct {
		name      string
		got, want any
	}{
		{"Path", c.Path, "gateway.yaml"},
		{"Secure", c.Secure(), true},
		{"server.listen", c.Server.Listen, "127.0.0.1:8080"},
		{"server.public_url", c.Server.PublicURL, "https://app.example.com"},
		{"server.shutdown_timeout", c.Server.ShutdownTimeout, 20 * time.Second},
		{"server.max_body_bytes", c.Server.MaxBodyBytes, int64(10485760)},
		{"sessions.store", c.Sessions.Store, "redis"},
		{"sessions.redis.url", c.Sessions.Redis.URL, "redis://:hunter2@127.0.0.1:6379/0"},
		{"sessions.redis.key_prefix", c.Sessions.Redis.KeyPrefix, "bffgate:"},
		{"sessions.redis.dial_timeout", c.Sessions.Redis.DialTimeout, time.Second},
		{"sessions.redis.read_timeout", c.Sessions.Redis.ReadTimeout, 500 * time.Millisecond},
		{"sessions.redis.write_timeout", c.Sessions.Redis.WriteTimeout, 500 * time.Millisecond},
		{"sessions.redis.pool_size", c.Sessions.Redis.PoolSize, 10 * runtime.NumCPU()},
		{"sessions.idle_timeout", c.Sessions.IdleTimeout, 30 * time.Minute},
		{"sessions.absolute_timeout", c.Sessions.AbsoluteTimeout, 8 * time.Hour},
		{"sessions.refresh_margin", c.Sessions.RefreshMargin, 60 * time.Second},
		{"sessions.provider_timeout", c.Sessions.ProviderTimeout, 30 * time.Second},
		{"sessions.cookie_keys", c.Sessions.CookieKeys, []CookieKey{{testHashKey, testBlockKey}}},
		{"frontend names", names(c.Frontends), []string{"admin", "mobile", "web"}},
		{"frontend sources", sources(c.Frontends), []string{"gateway.yaml", "frontends/mobile.yml", "frontends/web.yaml"}},
	}
	admin, mobile, web := c.Frontends[0], c.Frontends[1], c.Frontends[2]
	checks = append(checks, []struct {
		name      string
		got, want any
	}{
		{"admin.kind", admin.Kind, KindSPA},
		{"admin.mount", admin.Mount, "/admin"},
		{"admin.oidc.client_secret", admin.OIDC.ClientSecret, "admin-dev-secret"},
		{"admin.oidc.scopes", admin.OIDC.Scopes, []string{"openid", "profile", "email", "offline_access"}},
		{"admin.cookie", admin.Cookie, Cookie{Name: "__Host-bff-admin", SameSite: "strict"}},
		{"admin.session", admin.Session, SessionOverrides{10 * time.Minute, 8 * time.Hour}},
		{"admin.after_login", admin.AfterLogin, "/admin/"},
		{"admin.after_logout", admin.AfterLogout, "/admin/"},
		{"admin.return_to", admin.ReturnTo, []string{"/admin/"}},
		{"admin.routes[0].token", admin.Routes[0].Token, TokenUser},
		{"admin.routes[0].timeout", admin.Routes[0].Timeout, 30 * time.Second},
		{"admin.routes[0].methods", admin.Routes[0].Methods, []string{"GET", "POST"}},
		{"admin.routes[0].require", admin.Routes[0].Require.Claims, map[string][]string{"realm_access.roles": {"admin"}}},

		{"mobile.kind", mobile.Kind, KindMobile},
		{"mobile.oidc.client_secret", mobile.OIDC.ClientSecret, "mobile-dev-secret"},
		{"mobile.oidc.scopes", mobile.OIDC.Scopes, []string{"openid", "offline_access"}},
		{"mobile.after_login", mobile.AfterLogin, "/m/"},
		{"mobile.after_logout", mobile.AfterLogout, "com.example.app:/logged-out"},
		{"mobile.return_to", mobile.ReturnTo, []string{"com.example.app:/callback", "http://127.0.0.1/cb"}},
		{"mobile.routes[0].token", mobile.Routes[0].Token, TokenClient},

		{"web.oidc.client_secret", web.OIDC.ClientSecret, `s3cr3t #not a comment: "quoted"`},
		{"web.oidc.auth_params", web.OIDC.AuthParams, map[string]string{"audience": "orders"}},
		{"web.session", web.Session, SessionOverrides{30 * time.Minute, 8 * time.Hour}},
		{"web.cors", web.CORS.AllowedOrigins, []string{"https://static.example.com"}},
		{"web.routes[0].timeout", web.Routes[0].Timeout, 10 * time.Second},
		{"web.routes[0].strip_prefix", web.Routes[0].StripPrefix, true},
		{"web.routes[1].token", web.Routes[1].Token, TokenNone},
		{"web.routes[1].methods", web.Routes[1].Methods, []string(nil)},
		{"web.routes[2].require", web.Routes[2].Require, Require{ACR: []string{"urn:example:mfa", "urn:example:hwk"}, MaxAge: 10 * time.Minute}},
		{"web.routes[2].token", web.Routes[2].Token, TokenUser},
		{"web.routes[3].exchange", web.Routes[3].Exchange, &Exchange{Audience: "payments-api", Resource: "https://payments.internal/", Scopes: []string{"payments.read"}}},
		{"web.aggregates[0].timeout", web.Aggregates[0].Timeout, 3 * time.Second},
		{"web.aggregates[0].parts.orders", web.Aggregates[0].Parts["orders"], Part{Upstream: "http://orders.internal:8080", Path: "/orders", Required: true}},
	}...)
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("%s = %#v, want %#v", ch.name, ch.got, ch.want)
		}
	}

	again := *c
	again.Frontends = slices.Clone(c.Frontends)
	again.ApplyDefaults()
	if !reflect.DeepEqual(&again, c) {
		t.Error("ApplyDefaults is not idempotent")
	}
}

func names(fs []Frontend) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Name)
	}
	return out
}

func sources(fs []Frontend) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Source)
	}
	return out
}

func TestSummary(t *testing.T) {
	setGoodEnv(t)
	t.Chdir("testdata/good")
	c, err := Load("gateway.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	got := c.Summary()
	if got != c.Summary() {
		t.Error("Summary is not deterministic")
	}
	for _, secret := range []string{"hunter2", "s3cr3t", "admin-dev-secret", "mobile-dev-secret", testHashKey, testBlockKey} {
		if strings.Contains(got, secret) {
			t.Errorf("Summary shows the secret %q", secret)
		}
	}
	if *update {
		if err := os.WriteFile("summary.txt", []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile("summary.txt")
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("Summary:\n%s\nwant:\n%s", got, want)
	}
}

func TestLoadFrontendsDir(t *testing.T) {
	setGoodEnv(t)
	dir := filepath.Join("testdata", "good", "frontends")
	fs, err := LoadFrontendsDir(dir, []string{"BFF_TEST_MOBILE_SECRET"})
	if err != nil {
		t.Fatalf("LoadFrontendsDir: %v", err)
	}
	want := []string{filepath.Join(dir, "mobile.yml"), filepath.Join(dir, "web.yaml")}
	if got := sources(fs); !reflect.DeepEqual(got, want) {
		t.Errorf("sources = %q, want %q (dot-files, subdirectories and other extensions skipped)", got, want)
	}
	if fs[1].Kind != "" {
		t.Errorf("LoadFrontendsDir applied defaults: kind = %q", fs[1].Kind)
	}

	if _, err := LoadFrontendsDir(filepath.Join("testdata", "bad", "frontend-file-syntax", "frontends"), nil); err == nil {
		t.Error("LoadFrontendsDir accepted a broken file")
	}
}

func TestLoadMissingFile(t *testing.T) {
	if _, err := Load(filepath.Join(t.TempDir(), "nope.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v, want ErrNotExist", err)
	}
}

// TestParseEnv checks expansion through the YAML decoder: values arrive
// verbatim, plain scalars are re-typed, and problems name variable, file,
// line and key.
func TestParseEnv(t *testing.T) {
	base := "server:\n  public_url: https://app.example.com\n%s\nfrontends:\n  - name: web\n    mount: /web\n    oidc: {issuer: \"https://idp.example.com\", client_id: c, client_secret: s}\n"
	tests := []struct {
		name    string
		env     map[string]string
		yaml    string
		check   func(*Config) any
		want    any
		wantErr string
	}{
		{
			name:  "set, plain scalar becomes a number",
			env:   map[string]string{"BFF_T_MAX": "2048"},
			yaml:  "  max_body_bytes: ${BFF_T_MAX}",
			check: func(c *Config) any { return c.Server.MaxBodyBytes },
			want:  int64(2048),
		},
		{
			name:  "set, duration",
			env:   map[string]string{"BFF_T_GRACE": "5s"},
			yaml:  "  shutdown_timeout: ${BFF_T_GRACE}",
			check: func(c *Config) any { return c.Server.ShutdownTimeout },
			want:  5 * time.Second,
		},
		{
			name:    "a value from a variable is never shown in a message",
			env:     map[string]string{"BFF_T_PROXY": "10.0.0.0/8, 192.168.0.0/16 # all"},
			yaml:    "  trusted_proxies: [\"${BFF_T_PROXY}\"]",
			wantErr: `inline.yaml:3: server.trusted_proxies[0]: "${BFF_T_PROXY}" (value hidden) is not an IP address or CIDR such as 10.0.0.0/8`,
		},
		{
			name:  "unset with default",
			yaml:  "  listen: ${BFF_T_UNSET:-0.0.0.0:9000}",
			check: func(c *Config) any { return c.Server.Listen },
			want:  "0.0.0.0:9000",
		},
		{
			name:  "empty with default",
			env:   map[string]string{"BFF_T_EMPTY": ""},
			yaml:  "  listen: \"${BFF_T_EMPTY:-0.0.0.0:9000}\"",
			check: func(c *Config) any { return c.Server.Listen },
			want:  "0.0.0.0:9000",
		},
		{
			name:    "$$ escapes",
			yaml:    "  listen: \"127.0.0.1:8080\"\n  admin_listen: \"$${BFF_T_UNSET}\"",
			wantErr: "inline.yaml:4: server.admin_listen: must be host:port, such as 127.0.0.1:8080",
		},
		{
			name:    "unset names variable, file, line and key",
			yaml:    "  listen: ${BFF_T_UNSET}",
			wantErr: "inline.yaml:3: server.listen: environment variable BFF_T_UNSET is not set (write ${BFF_T_UNSET:-default} to give a default)",
		},
		{
			name:    "unset in an int field is one problem, not two",
			yaml:    "  max_body_bytes: ${BFF_T_UNSET}",
			wantErr: "inline.yaml:3: server.max_body_bytes: environment variable BFF_T_UNSET is not set (write ${BFF_T_UNSET:-default} to give a default)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			unsetEnv(t, "BFF_T_UNSET")
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			c, err := Parse("inline.yaml", []byte(strings.Replace(base, "%s", tt.yaml, 1)))
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("err = %v\nwant %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := tt.check(c); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestExpandEnv(t *testing.T) {
	env := map[string]string{"A": "x", "EMPTY": "", "SPECIAL": "a: #b"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	tests := []struct {
		in, want string
		problems []string
	}{
		{in: "plain", want: "plain"},
		{in: "${A}", want: "x"},
		{in: "pre-${A}-${A}-post", want: "pre-x-x-post"},
		{in: "${SPECIAL}", want: "a: #b"},
		{in: "${EMPTY}", want: ""},
		{in: "${EMPTY:-d}", want: "d"},
		{in: "${UNSET:-d}", want: "d"},
		{in: "${UNSET:-}", want: ""},
		{in: "${A:-d}", want: "x"},
		{in: "${UNSET:-a:-b}", want: "a:-b"},
		{in: "$${A}", want: "${A}"},
		{in: "$$$$", want: "$$"},
		{in: "pa$word$", want: "pa$word$"},
		{in: "$A", want: "$A"},
		{in: "${UNSET}", want: "", problems: []string{"environment variable UNSET is not set (write ${UNSET:-default} to give a default)"}},
		{in: "${U1}${U2}", want: "", problems: []string{
			"environment variable U1 is not set (write ${U1:-default} to give a default)",
			"environment variable U2 is not set (write ${U2:-default} to give a default)",
		}},
		{in: "${1A}", want: "", problems: []string{"invalid variable reference ${1A}: want ${NAME}, ${NAME:-default} or ${file:PATH}"}},
		{in: "${A-d}", want: "", problems: []string{"invalid variable reference ${A-d}: want ${NAME}, ${NAME:-default} or ${file:PATH}"}},
		{in: "${}", want: "", problems: []string{"invalid variable reference ${}: want ${NAME}, ${NAME:-default} or ${file:PATH}"}},
		{in: "x${A", want: "x${A", problems: []string{`unterminated "${" (write $$ for a literal "$")`}},
	}
	for _, tt := range tests {
		got, problems := (&expander{lookup: lookup}).expand(tt.in, "server.listen")
		if problems == nil && got != tt.want {
			t.Errorf("expand(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if !reflect.DeepEqual(problems, tt.problems) {
			t.Errorf("expand(%q) problems = %q, want %q", tt.in, problems, tt.problems)
		}
	}
}

// TestAnchorsAndMerge checks that YAML anchors, aliases and merge keys decode,
// and that an unknown key inside an anchor is still reported.
func TestAnchorsAndMerge(t *testing.T) {
	src := `server:
  public_url: https://app.example.com
frontends:
  - &web
    name: web
    mount: /web
    oidc: &oidc {issuer: "https://idp.example.com", client_id: c, client_secret: s}
    routes:
      - &route {prefix: /api, upstream: "http://api.internal", timeout: 5s}
      - <<: *route
        prefix: /other
  - <<: *web
    name: admin
    mount: /admin
    oidc: {<<: *oidc, client_id: admin}
`
	c, err := Parse("anchors.yaml", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if got := c.Frontends[0].Routes[1]; got.Prefix != "/other" || got.Timeout != 5*time.Second {
		t.Errorf("merged route = %+v", got)
	}
	if got := c.Frontends[1].OIDC; got.ClientID != "admin" || got.ClientSecret != "s" {
		t.Errorf("merged oidc = %+v", got)
	}

	bad := strings.Replace(src, "timeout: 5s", "timeout: 5s, retries: 3", 1)
	_, err = Parse("anchors.yaml", []byte(bad))
	want := "anchors.yaml:9: frontends[0].routes[0].retries: unknown key"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want it to contain %q", err, want)
	}
	self := "server:\n  trusted_proxies: &x [*x]\n"
	if _, err := Parse("self.yaml", []byte(self)); err == nil {
		t.Error("self-referencing anchor accepted")
	}
}

// TestSpecExample loads the configuration shown in SPEC.md, which users copy.
func TestSpecExample(t *testing.T) {
	t.Setenv("BFF_COOKIE_HASH_KEY", testHashKey)
	t.Setenv("BFF_COOKIE_BLOCK_KEY", testBlockKey)
	t.Setenv("WEB_CLIENT_SECRET", "secret")
	t.Chdir("testdata/spec")
	c, err := Load("gateway.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if len(c.Frontends) != 1 || c.Frontends[0].Source != "frontends/web.yaml" || c.Frontends[0].Aggregates[0].Parts["orders"].Path != "/orders" {
		t.Errorf("frontends = %+v", c.Frontends)
	}
}

// TestWarnings loads each testdata/warn/<case>/gateway.yaml, which must be
// valid, and compares its warnings with want.txt (-update rewrites it).
func TestWarnings(t *testing.T) {
	dirs, err := filepath.Glob("testdata/warn/*")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			t.Chdir(dir)
			c, err := Load("gateway.yaml")
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			var got []string
			for _, w := range c.Warnings() {
				got = append(got, w.Error())
			}
			if *update {
				if err := os.WriteFile("want.txt", []byte(strings.Join(got, "\n")+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			data, err := os.ReadFile("want.txt")
			if err != nil {
				t.Fatal(err)
			}
			if want := strings.Split(strings.TrimRight(string(data), "\n"), "\n"); !slices.Equal(got, want) {
				t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}
