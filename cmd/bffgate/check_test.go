package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The README's example files must stay valid.
func TestCheckExamples(t *testing.T) {
	t.Setenv("BFF_COOKIE_HASH_KEY", strings.Repeat("A", 86))
	t.Setenv("BFF_COOKIE_BLOCK_KEY", strings.Repeat("B", 43))
	t.Setenv("WEB_CLIENT_SECRET", "s1")
	t.Setenv("APP_CLIENT_SECRET", "s2")
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"check", "-config", "../../examples/gateway.yaml"}, &out, &errb)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"frontend web (spa)", "frontend app (mobile)", "/web/api/orders", "configuration is valid"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "s1") && strings.Contains(out.String(), "secret") {
		t.Error("check printed a client secret")
	}
}

func TestCheckReportsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("gateway.yaml", "server:\n  public_url: http://localhost:8080\nfrontends_dir: ./frontends\n")
	write("frontends/web.yaml", `name: web
mount: /web
oidc: {issuer: "http://localhost:9998", client_id: web, client_secret: s}
routes:
  - prefix: /api/a
    upstream: "http://a.internal"
  - prefix: /api/b
    upstream: "not a url"
  - prefix: /api/c
    upstrem: "http://c.internal"
`)
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"check", "-config", filepath.Join(dir, "gateway.yaml")}, &out, &errb)
	if code != exitFail {
		t.Fatalf("exit %d, want 1; stdout %s", code, out.String())
	}
	for _, want := range []string{"frontends/web.yaml", "routes[1].upstream", "routes[2].upstrem"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("problems lack %q:\n%s", want, errb.String())
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"bogus"}, {"check", "-nope"}, {"serve", "extra-arg"}} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), args, &out, &errb); code != exitUsage {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	var out bytes.Buffer
	if code := run(context.Background(), []string{"version"}, &out, &out); code != exitOK || !strings.HasPrefix(out.String(), "bffgate ") {
		t.Errorf("version: %d %q", code, out.String())
	}
}

// TestCheckNeverPrintsReferencedValues (issue 8 item 2): values that came from
// a variable or a file appear nowhere in check's output, valid or not, even
// where check shows the offending value of a bad key.
func TestCheckNeverPrintsReferencedValues(t *testing.T) {
	const envSecret, fileSecret, badValue = "env-s3cret-9f2c", "file-s3cret-77ab", "env-notanurl-41d0"
	t.Setenv("WEB_CLIENT_SECRET", envSecret)
	t.Setenv("WEB_UPSTREAM", badValue)
	t.Setenv("BFF_COOKIE_HASH_KEY", strings.Repeat("A", 43))
	dir := t.TempDir()
	files := map[string]string{
		"gateway.yaml": `server: {public_url: "https://app.example.com"}
sessions:
  cookie_keys: [{hash: "${BFF_COOKIE_HASH_KEY}", block: "${file:secrets/block}"}]
frontends_dir: frontends
`,
		"secrets/block":           strings.Repeat("B", 43) + "\n",
		"frontends/web/client_id": fileSecret + "\n",
		"frontends/web.yaml": `name: web
mount: /web
oidc:
  issuer: "https://idp.example.com"
  client_id: "${file:web/client_id}"
  client_secret: "${WEB_CLIENT_SECRET}"
  auth_params: {ui_locales: "${WEB_CLIENT_SECRET}|${file:web/client_id}"}
routes:
  - prefix: /api
    upstream: "http://orders.internal"
`,
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	secrets := []string{envSecret, fileSecret, badValue, strings.Repeat("A", 43), strings.Repeat("B", 43)}
	for _, tt := range []struct {
		name     string
		upstream string
		want     int
	}{
		{"valid", "http://orders.internal", exitOK},
		{"invalid, the bad value from a variable", "${WEB_UPSTREAM}", exitFail},
	} {
		t.Run(tt.name, func(t *testing.T) {
			web := strings.Replace(files["frontends/web.yaml"], "http://orders.internal", tt.upstream, 1)
			if err := os.WriteFile(filepath.Join(dir, "frontends/web.yaml"), []byte(web), 0o600); err != nil {
				t.Fatal(err)
			}
			var out, errb bytes.Buffer
			code := run(context.Background(), []string{"check", "-config", filepath.Join(dir, "gateway.yaml")}, &out, &errb)
			if code != tt.want {
				t.Fatalf("exit %d, want %d\n%s%s", code, tt.want, out.String(), errb.String())
			}
			all := out.String() + errb.String()
			for _, s := range secrets {
				if strings.Contains(all, s) {
					t.Errorf("check printed %q, a value from a variable or file:\n%s", s, all)
				}
			}
			shown := "client_id ${file:web/client_id}"
			if tt.want == exitFail {
				shown = `routes[0].upstream: "${WEB_UPSTREAM}" (value hidden) is not an absolute http(s) URL`
			}
			if !strings.Contains(all, shown) {
				t.Errorf("check output lacks %q, the reference as written:\n%s", shown, all)
			}
		})
	}
}

// TestCheckWarnsAboutPlainHTTPUpstreams (issue 8 item 14): valid, so exit 0,
// but the warning is printed with its file, line and key.
func TestCheckWarnsAboutPlainHTTPUpstreams(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(cfg, []byte(`server: {public_url: "https://app.example.com"}
frontends:
  - name: web
    mount: /web
    oidc: {issuer: "https://idp.example.com", client_id: web, client_secret: s}
    routes:
      - {prefix: /api, upstream: "http://orders.internal:8080"}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"check", "-config", cfg}, &out, &errb); code != exitOK {
		t.Fatalf("exit %d, want 0: %s", code, errb.String())
	}
	want := "warning: " + cfg + ":7: frontends[0].routes[0].upstream: \"http://orders.internal:8080\" is plain http under an https server.public_url"
	if !strings.Contains(errb.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, errb.String())
	}
	if !strings.Contains(out.String(), "configuration is valid, with 1 warning(s)") {
		t.Errorf("stdout: %s", out.String())
	}
}

// check shows a route's step-up requirements, and names the file and key
// of a bad one (issue 12 item 3).
func TestCheckStepUp(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(cfg, []byte("server: {public_url: \"https://app.example.com\"}\nfrontends_dir: frontends\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "frontends"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, require string
		code          int
		want          string
	}{
		{"good", "{acr: [urn:example:mfa], max_age: 10m}", exitOK,
			"route      ANY /web/api/payments -> https://payments.internal token=user acr=urn:example:mfa max_age=10m timeout=30s"},
		{"negative max_age", "{max_age: -10m}", exitFail,
			"frontends/web.yaml:7: routes[0].require.max_age: must not be negative"},
		{"max_age without unit", "\n      max_age: 600", exitFail,
			"frontends/web.yaml:8: routes[0].require.max_age: `600` is not a duration"},
		{"acr as a string", "\n      acr: urn:example:mfa", exitFail,
			"frontends/web.yaml:8: routes[0].require.acr: must be a list, not a single value"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			web := "name: web\nmount: /web\noidc: {issuer: \"https://idp.example.com\", client_id: web, client_secret: s}\nroutes:\n" +
				"  - prefix: /api/payments\n    upstream: \"https://payments.internal\"\n    require: " + tt.require + "\n"
			if err := os.WriteFile(filepath.Join(dir, "frontends", "web.yaml"), []byte(web), 0o600); err != nil {
				t.Fatal(err)
			}
			var out, errb bytes.Buffer
			code := run(context.Background(), []string{"check", "-config", cfg}, &out, &errb)
			if code != tt.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, tt.code, out.String(), errb.String())
			}
			if all := out.String() + errb.String(); !strings.Contains(all, tt.want) {
				t.Errorf("output lacks %q:\n%s", tt.want, all)
			}
		})
	}
}

// TestCheckExplainsExchangeRoutes: each token: exchange mistake is named in
// the frontend file with its key path, and a valid exchange route is shown
// with what it asks the provider for.
func TestCheckExplainsExchangeRoutes(t *testing.T) {
	tests := []struct {
		name  string
		route string
		want  string // on stderr (exit 1), or on stdout when ok
		ok    bool
	}{
		{
			name:  "valid",
			route: `{prefix: /api/pay, upstream: "http://pay.internal", token: exchange, exchange: {audience: pay-api, scopes: [pay]}}`,
			want:  "token=exchange (audience=pay-api scopes=pay)",
			ok:    true,
		},
		{
			name:  "missing exchange block",
			route: `{prefix: /api/pay, upstream: "http://pay.internal", token: exchange}`,
			want:  "frontends/web.yaml:6: routes[0].exchange: is required with token: exchange",
		},
		{
			name:  "no target",
			route: `{prefix: /api/pay, upstream: "http://pay.internal", token: exchange, exchange: {scopes: [pay]}}`,
			want:  "frontends/web.yaml:6: routes[0].exchange: needs audience or resource (or both)",
		},
		{
			name:  "relative resource",
			route: `{prefix: /api/pay, upstream: "http://pay.internal", token: exchange, exchange: {resource: /pay}}`,
			want:  `frontends/web.yaml:6: routes[0].exchange.resource: "/pay" must be an absolute URI with a scheme (RFC 8707)`,
		},
		{
			name:  "exchange on a user route is ignored, with a warning",
			route: `{prefix: /api/pay, upstream: "http://pay.internal", exchange: {audience: pay-api}}`,
			ok:    true,
			want:  "frontends/web.yaml:6: routes[0].exchange: is ignored: it only applies to token: exchange, and this route has token: user",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			files := map[string]string{
				"gateway.yaml": "server:\n  public_url: http://localhost:8080\nfrontends_dir: ./frontends\n",
				"frontends/web.yaml": "name: web\nmount: /web\n" +
					`oidc: {issuer: "http://localhost:9998", client_id: web, client_secret: s}` + "\n" +
					"routes:\n  # the route under test\n  - " + tt.route + "\n",
			}
			for name, body := range files {
				p := filepath.Join(dir, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var out, errb bytes.Buffer
			code := run(context.Background(), []string{"check", "-config", filepath.Join(dir, "gateway.yaml")}, &out, &errb)
			got, wantCode := errb.String(), exitFail
			if tt.ok {
				// warnings go to stderr, the summary to stdout
				got, wantCode = out.String()+errb.String(), exitOK
			}
			if code != wantCode {
				t.Fatalf("exit %d, want %d; stdout %s; stderr %s", code, wantCode, out.String(), errb.String())
			}
			if !strings.Contains(got, tt.want) {
				t.Errorf("output lacks %q:\n%s", tt.want, got)
			}
		})
	}
}
