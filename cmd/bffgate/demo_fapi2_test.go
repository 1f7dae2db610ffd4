package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/bffgate/bffgate/dpop"
	"github.com/bffgate/bffgate/internal/oidctest"
	"github.com/bffgate/bffgate/internal/panva"
)

// hopRecorder sits in front of the demo services and keeps the credentials
// of the last call the services accepted: what an attacker on the
// gateway-to-service hop would steal.
type hopRecorder struct {
	mu                  sync.Mutex
	authorization, dpop string
}

func (h *hopRecorder) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		if rec.status == http.StatusOK && strings.HasPrefix(r.URL.Path, demoOrdersPath+"/") {
			h.mu.Lock()
			h.authorization, h.dpop = r.Header.Get("Authorization"), r.Header.Get("DPoP")
			h.mu.Unlock()
		}
	})
}

func (h *hopRecorder) last() (authorization, proof string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.authorization, h.dpop
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) { s.status = code; s.ResponseWriter.WriteHeader(code) }

// TestDemoFAPI2 runs `bffgate demo -fapi2` (panva's oidc-provider in its
// FAPI 2.0 mode, frontends in profile fapi2, DPoP-verifying services),
// logs in through HTTP, calls the services through the gateway (a route and
// the aggregate), and then calls a service directly with a stolen token:
// without a proof, as Bearer, with the stolen proof replayed, and with a
// proof of another key. The service refuses each.
func TestDemoFAPI2(t *testing.T) {
	panva.Install(t) // skips without node and npm; CI has them
	hop := &hopRecorder{}
	f := demoFAPI2Flags{listen: "127.0.0.1:0", idpListen: "127.0.0.1:0", panvaDir: panva.Dir(), wrapServices: hop.wrap}
	d := startDemoFunc(t, []string{"demo", "-fapi2"}, func(ctx context.Context, stdout, stderr io.Writer) int {
		return cmdDemoFAPI2(ctx, f, stdout, stderr)
	})
	page := d.field(t, "Open")
	gw := strings.TrimSuffix(page, "/web/")
	op := &panva.Provider{Issuer: d.field(t, "Provider")}
	ordersURL := d.field(t, "Services")
	if admin := d.field(t, "Log in as"); admin != "admin" {
		t.Errorf("banner: log in as %q", admin)
	}
	ctx := context.Background()

	login := func(name string) *oidctest.Browser {
		t.Helper()
		b := oidctest.NewBrowser(t)
		callback, authz, err := op.Login(ctx, b, gw+"/web/bff/login", name)
		if err != nil {
			t.Fatal(err)
		}
		if q := authz.Query(); len(q) != 2 || q.Get("request_uri") == "" {
			t.Fatalf("authorization request %s: want only client_id and request_uri (PAR)", authz.Redacted())
		}
		resp, err := b.Follow(ctx, callback)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/web/" {
			t.Fatalf("callback: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		return b
	}
	type echo struct {
		Subject   string `json:"subject"`
		TokenType string `json:"token_type"`
		JKT       string `json:"jkt"`
	}
	call := func(b *oidctest.Browser, path string, want int, out any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, gw+path, nil)
		req.Header.Set("X-CSRF", "1")
		resp, err := b.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("GET %s: %d %.300s", path, resp.StatusCode, body)
		}
		if out != nil {
			if err := json.Unmarshal(body, out); err != nil {
				t.Fatalf("GET %s: %v: %.300s", path, err, body)
			}
		}
	}

	admin := login("admin")
	var orders, reports echo
	call(admin, "/web/api/orders/latest", http.StatusOK, &orders)
	call(admin, "/web/api/reports/summary", http.StatusOK, &reports)
	if orders.Subject != "admin" || orders.TokenType != "DPoP" || orders.JKT == "" || reports.JKT != orders.JKT {
		t.Fatalf("the services saw orders %+v, reports %+v", orders, reports)
	}
	var dash struct{ Orders, Reports echo }
	call(admin, "/web/api/dashboard", http.StatusOK, &dash)
	if dash.Orders.JKT != orders.JKT || dash.Reports.JKT != orders.JKT || dash.Orders.TokenType != "DPoP" {
		t.Fatalf("the aggregate's parts saw %+v", dash)
	}

	// oidc-provider has no token-exchange grant: the payments route's
	// exchange is refused by the provider, a 403, and nothing else breaks.
	var refused struct{ Error string }
	call(admin, "/web/api/payments/recent", http.StatusForbidden, &refused)
	if refused.Error != "token_exchange_failed" {
		t.Fatalf("payments under -fapi2: error %q, want token_exchange_failed", refused.Error)
	}

	// A second session has its own key; role user only, so reports says 403.
	user := login("bob")
	var bob echo
	call(user, "/web/api/orders/latest", http.StatusOK, &bob)
	if bob.Subject != "bob" || bob.JKT == "" || bob.JKT == orders.JKT {
		t.Fatalf("bob's call %+v: two sessions must have two keys (admin's %s)", bob, orders.JKT)
	}
	call(user, "/web/api/reports/summary", http.StatusForbidden, nil)

	// Now bob's token and proof, as seen on the hop, used by someone else.
	authorization, proof := hop.last()
	token, ok := strings.CutPrefix(authorization, "DPoP ")
	if !ok || proof == "" {
		t.Fatalf("the gateway sent %q with proof %q", authorization, proof)
	}
	target := ordersURL + "/latest"
	other, err := dpop.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	otherProof, err := other.Proof(http.MethodGet, target, dpop.ProofOptions{AccessToken: token})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, authorization, proof, wantError string
	}{
		{"token without a proof", "DPoP " + token, "", dpop.CodeInvalidProof},
		{"token as Bearer", "Bearer " + token, "", dpop.CodeInvalidToken},
		{"the stolen proof replayed", "DPoP " + token, proof, dpop.CodeInvalidProof},
		{"a proof of another key", "DPoP " + token, otherProof, dpop.CodeInvalidToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, target, nil)
			req.Header.Set("Authorization", tc.authorization)
			if tc.proof != "" {
				req.Header.Set("DPoP", tc.proof)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var body struct {
				Error string `json:"error"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "DPoP ") || body.Error != tc.wantError {
				t.Fatalf("%d %q %q, want 401 %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body.Error, tc.wantError)
			}
		})
	}
	// The session itself still works: the refusals were about the caller.
	call(user, "/web/api/orders/latest", http.StatusOK, &bob)
}

// TestDemoFAPI2Prerequisites: without the launcher, node or its
// node_modules, `demo -fapi2` stops before listening and says what to run.
func TestDemoFAPI2Prerequisites(t *testing.T) {
	noModules := t.TempDir()
	for _, name := range []string{"launcher.js", "package.json", "package-lock.json"} {
		b, err := os.ReadFile(filepath.Join(panva.Dir(), name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(noModules, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	empty := t.TempDir()
	for _, tc := range []struct {
		name      string
		args      []string
		path      string // PATH, when set
		code      int
		wantError string
	}{
		{"not the launcher folder", []string{"demo", "-fapi2", "-panva-dir", empty}, "", exitFail, "no launcher.js"},
		{"no node_modules", []string{"demo", "-fapi2", "-panva-dir", noModules}, "", exitFail, "cd " + noModules + " && npm ci"},
		{"no node", []string{"demo", "-dpop", "-panva-dir", noModules}, empty, exitFail, "node is not on PATH"},
		{"-panva-dir without -fapi2", []string{"demo", "-panva-dir", noModules}, "", exitUsage, "-panva-dir needs -fapi2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.path != "" {
				t.Setenv("PATH", tc.path)
			}
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, &stdout, &stderr)
			if code != tc.code || !strings.Contains(stderr.String(), tc.wantError) {
				t.Fatalf("exit %d, want %d; stderr does not say %q:\n%s", code, tc.code, tc.wantError, &stderr)
			}
			if stdout.Len() != 0 {
				t.Errorf("printed a banner:\n%s", &stdout)
			}
		})
	}
}
