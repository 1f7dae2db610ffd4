package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bffgate/bffgate/internal/demo"
	"github.com/bffgate/bffgate/internal/oidctest"
)

// entries returns the JSON log lines whose msg is msg.
func (l *syncBuffer) entries(msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(l.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// reloadWriteFile replaces path in one step (write aside, rename), so a
// reload never reads a half-written file. The temporary name is a dot-file,
// which frontends_dir skips.
func reloadWriteFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func reloadFrontend(issuer, upstream string, prefixes ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "name: web\nmount: /web\noidc:\n  issuer: %q\n  client_id: web-bff\n  client_secret: s3cret\nroutes:\n", issuer)
	for _, p := range prefixes {
		fmt.Fprintf(&b, "  - prefix: %s\n    upstream: %q\n    strip_prefix: true\n    token: none\n", p, upstream)
	}
	return b.String()
}

// TestServeReloadsOnSIGHUP runs `bffgate serve` in this process and sends
// the process SIGHUP: a valid edit of a frontend file is swapped in, an
// invalid one is logged and the running routes stay.
func TestServeReloadsOnSIGHUP(t *testing.T) {
	// While this test runs, SIGHUP is caught (here and by serve), never the
	// default action, which would end the test binary.
	guard := make(chan os.Signal, 1)
	signal.Notify(guard, syscall.SIGHUP)
	defer signal.Stop(guard)

	issuer := oidctest.StartIDP(t, []demo.Client{{ID: "web-bff", Secret: "s3cret", RedirectURIs: []string{"http://127.0.0.1:8080/web/bff/callback"}}}, demo.IDPOptions{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "upstream %s", r.URL.Path)
	}))
	t.Cleanup(up.Close)

	dir := t.TempDir()
	fdir := filepath.Join(dir, "frontends")
	if err := os.Mkdir(fdir, 0o700); err != nil {
		t.Fatal(err)
	}
	webFile := filepath.Join(fdir, "web.yaml")
	reloadWriteFile(t, webFile, reloadFrontend(issuer, up.URL, "/api/a"))
	cfgFile := filepath.Join(dir, "bffgate.yaml")
	reloadWriteFile(t, cfgFile, `server:
  listen: "127.0.0.1:0"
  public_url: "http://127.0.0.1:8080"
  shutdown_timeout: 2s
sessions:
  store: memory
frontends_dir: ./frontends
`)

	ctx, cancel := context.WithCancel(context.Background())
	var stdout bytes.Buffer
	stderr := &syncBuffer{}
	exited := make(chan int, 1)
	go func() { exited <- run(ctx, []string{"serve", "-config", cfgFile}, &stdout, stderr) }()
	defer func() {
		cancel()
		select {
		case code := <-exited:
			if code != exitOK {
				t.Errorf("serve exited %d; log:\n%s", code, stderr)
			}
		case <-time.After(10 * time.Second):
			t.Error("serve did not stop")
		}
	}()

	var base string
	waitFor(t, "serve to listen", stderr, func() bool {
		if l := stderr.entries("bffgate listening"); len(l) > 0 {
			base = "http://" + l[0]["addr"].(string)
			return true
		}
		return false
	})
	get := func(path string) int {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("/web/api/a/1"); code != http.StatusOK {
		t.Fatalf("initial route: %d", code)
	}
	if code := get("/web/api/b/1"); code != http.StatusNotFound {
		t.Fatalf("route b before reload: %d", code)
	}

	// serve's own signal.Notify comes after its listener opens; SIGHUP is
	// sent until the reload shows, which also covers that window.
	hupUntil := func(what string, done func() bool) {
		t.Helper()
		waitFor(t, what, stderr, func() bool {
			if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(300 * time.Millisecond)
			for time.Now().Before(deadline) {
				if done() {
					return true
				}
				time.Sleep(20 * time.Millisecond)
			}
			return false
		})
	}

	t.Run("valid edit", func(t *testing.T) {
		reloadWriteFile(t, webFile, reloadFrontend(issuer, up.URL, "/api/a", "/api/b"))
		hupUntil("the new route", func() bool { return get("/web/api/b/1") == http.StatusOK })
		if code := get("/web/api/a/1"); code != http.StatusOK {
			t.Errorf("kept route after reload: %d", code)
		}
		if len(stderr.entries("frontends reloaded")) == 0 {
			t.Error("the reload was not logged")
		}
	})

	t.Run("invalid edit", func(t *testing.T) {
		invalid := reloadFrontend(issuer, "not-a-url", "/api/a", "/api/b", "/api/c") + "bogus_key: 1\n"
		reloadWriteFile(t, webFile, invalid)
		hupUntil("the reload failure", func() bool { return len(stderr.entries("reload failed; keeping the running frontends")) > 0 })
		problems := fmt.Sprint(stderr.entries("reload failed; keeping the running frontends")[0]["problems"])
		for _, want := range []string{"web.yaml", "routes[0].upstream", "bogus_key"} {
			if !strings.Contains(problems, want) {
				t.Errorf("logged problems lack %q: %s", want, problems)
			}
		}
		for path, want := range map[string]int{"/web/api/a/1": 200, "/web/api/b/1": 200, "/web/api/c/1": 404} {
			if code := get(path); code != want {
				t.Errorf("after a failed reload %s: %d, want %d", path, code, want)
			}
		}
	})
}

func waitFor(t *testing.T, what string, log *syncBuffer, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; log:\n%s", what, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
