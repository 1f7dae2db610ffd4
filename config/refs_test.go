package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeFiles creates each file (path relative to dir -> content) with its
// folders.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

const refsGateway = `server:
  public_url: "https://app.example.com"
frontend_env: [BFF_T_SHARED_ISSUER]
frontends_dir: frontends
frontends:
  - name: admin
    mount: /admin
    oidc:
      issuer: "https://idp.example.com"
      client_id: "${BFF_T_ANY:-admin}"
      client_secret: "${file:secrets/admin}"
`

const refsWeb = `name: web
mount: /web
oidc:
  issuer: "${BFF_T_SHARED_ISSUER}"
  client_id: "${WEB_T_CLIENT_ID}"
  client_secret: "${file:web/client_secret}"
`

// TestFrontendFileReferences covers SPEC sections 2 and 4 for ${NAME} and
// ${file:PATH}: what each kind of file may read, and how files are read.
func TestFrontendFileReferences(t *testing.T) {
	t.Setenv("BFF_T_SHARED_ISSUER", "https://shared.example.com")
	t.Setenv("WEB_T_CLIENT_ID", "web-bff")
	unsetEnv(t, "BFF_T_ANY")
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"gateway.yaml":                refsGateway,
		"secrets/admin":               "admin-secret\n",
		"frontends/web.yaml":          refsWeb,
		"frontends/web/client_secret": "web-secret\n\n", // one newline removed, not two
	})
	c, err := Load(filepath.Join(dir, "gateway.yaml"))
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	admin, web := c.Frontends[0], c.Frontends[1]
	checks := []struct{ name, got, want string }{
		{"inline: any file, relative to the gateway file", admin.OIDC.ClientSecret, "admin-secret"},
		{"inline: any variable", admin.OIDC.ClientID, "admin"},
		{"frontend file: frontend_env", web.OIDC.Issuer, "https://shared.example.com"},
		{"frontend file: own prefix", web.OIDC.ClientID, "web-bff"},
		{"frontend file: own folder, one trailing newline removed", web.OIDC.ClientSecret, "web-secret\n"},
		{"source is a path from here", web.Source, filepath.Join(dir, "frontends", "web.yaml")},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s: got %q, want %q", ch.name, ch.got, ch.want)
		}
	}
	summary := c.Summary()
	for _, secret := range []string{"admin-secret", "web-secret", "shared.example.com", "web-bff"} {
		if strings.Contains(summary, secret) {
			t.Errorf("Summary shows %q, a value from a variable or file:\n%s", secret, summary)
		}
	}
	if !strings.Contains(summary, "${BFF_T_SHARED_ISSUER}") {
		t.Errorf("Summary does not show the reference as written:\n%s", summary)
	}
}

// TestFileReferenceSymlinks: a frontend's folder may be a Kubernetes volume,
// whose files are links through "..data" inside it (allowed), but a link out
// of the folder is refused like a path out of it.
func TestFileReferenceSymlinks(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"gateway.yaml":                      "server: {public_url: \"https://app.example.com\"}\nfrontends_dir: frontends\n",
		"frontends/..2026_12_01/web/secret": "from-volume",
		"outside/secret":                    "not-yours",
	})
	fdir := filepath.Join(dir, "frontends")
	for _, l := range [][2]string{
		{"..2026_12_01", filepath.Join(fdir, "..data")},
		{filepath.Join("..data", "web"), filepath.Join(fdir, "web")},
	} {
		if err := os.Symlink(l[0], l[1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join("..", "..", "..", "outside", "secret"), filepath.Join(fdir, "..2026_12_01", "web", "escape")); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, ref, wantErr string }{
		{"volume link inside the folder", "${file:web/secret}", ""},
		{"link out of the folder", "${file:web/escape}", "is outside " + filepath.Join(fdir, "web") + "/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			writeFiles(t, dir, map[string]string{"frontends/web.yaml": "name: web\nmount: /web\noidc: {issuer: \"https://idp.example.com\", client_id: web, client_secret: \"" + tt.ref + "\"}\n"})
			c, err := Load(filepath.Join(dir, "gateway.yaml"))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Load: %v", err)
			case tt.wantErr == "" && c.Frontends[0].OIDC.ClientSecret != "from-volume":
				t.Errorf("client_secret = %q", c.Frontends[0].OIDC.ClientSecret)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("err = %v, want it to contain %q", err, tt.wantErr)
			case tt.wantErr != "" && strings.Contains(err.Error(), "not-yours"):
				t.Errorf("the error shows the file's content: %v", err)
			}
		})
	}
}

// TestFrontendFile is the helper other keys naming files (private_key_file)
// use to apply the same rule as ${file:}.
func TestFrontendFile(t *testing.T) {
	c := &Config{Path: filepath.Join("conf", "gateway.yaml")}
	web := &Frontend{Name: "web", Source: filepath.Join("conf", "frontends", "web.yaml")}
	inline := &Frontend{Name: "admin", Source: c.Path}
	tests := []struct {
		name    string
		f       *Frontend
		p, want string
		wantErr bool
	}{
		{"own folder, relative to the frontend file", web, "web/key.pem", filepath.Join("conf", "frontends", "web", "key.pem"), false},
		{"another team's folder", web, "admin/key.pem", "", true},
		{"dot-dot out", web, "web/../../gateway.yaml", "", true},
		{"absolute elsewhere", web, "/etc/ssl/key.pem", "", true},
		{"inline may name any file", inline, "/etc/ssl/key.pem", "/etc/ssl/key.pem", false},
		{"inline, relative to the gateway file", inline, "keys/admin.pem", filepath.Join("conf", "keys", "admin.pem"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.FrontendFile(tt.f, tt.p)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("FrontendFile(%q) = %q, %v; want %q, error %v", tt.p, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// TestMessagesHideReferencedValues: values from variables are hidden even
// where a message names them in a sentence (another frontend's mount).
func TestMessagesHideReferencedValues(t *testing.T) {
	t.Setenv("BFF_T_MOUNT", "/secret-mount-4f1c")
	src := `server: {public_url: "https://app.example.com"}
frontends:
  - {name: a, mount: "${BFF_T_MOUNT}", oidc: {issuer: "https://idp.example.com", client_id: a, client_secret: s}}
  - {name: b, mount: "${BFF_T_MOUNT}", oidc: {issuer: "https://idp.example.com", client_id: b, client_secret: s}}
`
	_, err := Parse("gateway.yaml", []byte(src))
	if err == nil {
		t.Fatal("duplicate mounts accepted")
	}
	if strings.Contains(err.Error(), "secret-mount-4f1c") || !strings.Contains(err.Error(), "${BFF_T_MOUNT}") {
		t.Errorf("err = %v: want the mount shown as written", err)
	}
}
