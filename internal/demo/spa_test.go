package demo_test

import (
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/bffgate/bffgate/internal/demo"
)

func TestSPAHandler(t *testing.T) {
	h := demo.SPAHandler()
	var first string
	for _, path := range []string{"/", "/index.html", "/orders/7", "/favicon.ico"} {
		t.Run(path, func(t *testing.T) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
			if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
				t.Fatalf("%d %q", rec.Code, rec.Header().Get("Content-Type"))
			}
			body := rec.Body.String()
			if first == "" {
				first = body
			} else if body != first {
				t.Error("not the same page on every path")
			}
		})
	}

	for _, id := range []string{"login", "logout", "user-name", "call-orders", "call-reports", "orders-result", "reports-result", "status",
		"call-dashboard", "dashboard-result", "mobile-demo", "call-recent", "recent-result", "call-payments", "payments-result"} {
		if !strings.Contains(first, `id="`+id+`"`) {
			t.Errorf("no element #%s", id)
		}
	}
	for _, want := range []string{`name="bff-mount"`, "/bff/user", "'X-CSRF': '1'", "/bff/login?returnTo=", "/api/orders/", "/api/reports/", "logout_url", "session_expires_in", "Tokens never reach the browser",
		// Step-up: the 401's acr_values and max_age go to a new login.
		"/api/recent/", "'step_up_required'", "'acr_values=' + encodeURIComponent(body.acr_values)", "'max_age=' + encodeURIComponent(String(body.max_age))"} {
		if !strings.Contains(first, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// Closed network: nothing may be loaded from elsewhere.
	if m := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?(https?:)?//`).FindString(first); m != "" {
		t.Errorf("external reference %q", m)
	}

	t.Run("CSP admits the inline script and style", func(t *testing.T) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		wantInlineHashes(t, "CSP", rec.Header().Get("Content-Security-Policy"), first)
	})

	t.Run("HEAD", func(t *testing.T) {
		srv := httptest.NewServer(h)
		defer srv.Close()
		resp, err := http.Head(srv.URL + "/web/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || len(b) != 0 || resp.ContentLength != int64(len(first)) {
			t.Errorf("HEAD: %d, %d body bytes, Content-Length %d", resp.StatusCode, len(b), resp.ContentLength)
		}
	})

	t.Run("mobile page", func(t *testing.T) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, demo.MobilePage, nil))
		body := rec.Body.String()
		if rec.Code != http.StatusOK || body == first {
			t.Fatalf("%s: %d, the index page: %v", demo.MobilePage, rec.Code, body == first)
		}
		for _, id := range []string{"app-login", "app-call-orders", "app-call-user", "app-logout", "app-log", "app-handle", "app-result"} {
			if !strings.Contains(body, `id="`+id+`"`) {
				t.Errorf("mobile page has no element #%s", id)
			}
		}
		for _, want := range []string{`name="bff-app-mount" content="/app"`, "/bff/login?response_type=code", "&redirect_uri=", "&state=",
			"code_challenge_method=S256", "crypto.subtle.digest('SHA-256'", "/bff/session", "grant_type: 'authorization_code'",
			"code_verifier", "'Authorization': 'Bearer '", "/bff/revoke", "clearResult()"} {
			if !strings.Contains(body, want) {
				t.Errorf("mobile page lacks %q", want)
			}
		}
		if m := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?(https?:)?//`).FindString(body); m != "" {
			t.Errorf("external reference %q", m)
		}
		wantInlineHashes(t, "mobile CSP", rec.Header().Get("Content-Security-Policy"), body)
	})

	t.Run("POST", func(t *testing.T) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))
		if rec.Code != http.StatusMethodNotAllowed {
			t.Errorf("POST: %d", rec.Code)
		}
	})
}

// wantInlineHashes fails unless csp (named what in the messages) admits the
// page's inline script and style by their SHA-256, as browsers hash them.
func wantInlineHashes(t *testing.T, what, csp, page string) {
	t.Helper()
	for _, tag := range []string{"script", "style"} {
		_, rest, _ := strings.Cut(page, "<"+tag+">")
		inline, _, _ := strings.Cut(rest, "</"+tag+">")
		sum := sha256.Sum256([]byte(inline))
		if want := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"; !strings.Contains(csp, tag+"-src "+want) {
			t.Errorf("%s %q lacks %s-src %s", what, csp, tag, want)
		}
	}
}
