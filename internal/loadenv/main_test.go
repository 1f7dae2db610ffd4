package main

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The baseline is what issue 10's targets are measured against: a bare
// proxy that sets a fixed Authorization header and nothing of the gateway's
// (no X-Forwarded-Host or -Proto, the client's Host kept).
func TestBaselineSendsOnlyTheFixedHeader(t *testing.T) {
	var got atomic.Pointer[http.Request]
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.Store(r)
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	t.Cleanup(up.Close)
	target, _ := url.Parse(up.URL)
	var auth atomic.Pointer[string]
	bare := httptest.NewServer(baseline(target, &auth))
	t.Cleanup(bare.Close)

	get := func() *http.Request {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, bare.URL+"/7", nil)
		req.Host = "public.example"
		req.Header.Set("Authorization", "Bearer from-the-client")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		return got.Load()
	}

	// Before the gateway's size is known: the client's header passes, as
	// through any bare proxy.
	if r := get(); r.Header.Get("Authorization") != "Bearer from-the-client" {
		t.Errorf("Authorization %q before the fixed header is set", r.Header.Get("Authorization"))
	}
	fixed := "Bearer " + strings.Repeat("x", 703)
	auth.Store(&fixed)
	r := get()
	if v := r.Header.Values("Authorization"); len(v) != 1 || v[0] != fixed {
		t.Errorf("Authorization %d values, want the fixed one", len(v))
	}
	if r.URL.Path != "/7" || r.Host != "public.example" || r.Header.Get("X-Forwarded-For") != "127.0.0.1" {
		t.Errorf("path %q host %q X-Forwarded-For %q", r.URL.Path, r.Host, r.Header.Get("X-Forwarded-For"))
	}
	for _, k := range []string{"X-Forwarded-Host", "X-Forwarded-Proto"} {
		if r.Header.Get(k) != "" {
			t.Errorf("%s %q: NewSingleHostReverseProxy does not send it", k, r.Header.Get(k))
		}
	}
}

// The environment scripts/load drives starts, logs in, serves both URLs,
// names the size of the baseline's header and stops on SIGTERM. The memory
// store keeps it independent of Redis; scripts/load's Redis path is the
// same but for the store.
func TestLoadenvServesBothURLs(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the load environment")
	}
	bin := filepath.Join(t.TempDir(), "loadenv")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-memory")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderrPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// stderr is read only once the copy is over: after the process ended,
	// or, on a failure, after it was killed.
	var errBuf bytes.Buffer
	copied := make(chan struct{})
	go func() { _, _ = io.Copy(&errBuf, stderrPipe); close(copied) }()
	stderr := func() string {
		_ = cmd.Process.Kill()
		<-copied
		return errBuf.String()
	}
	done := make(chan error, 1)
	// After a failure: the process must not outlive the test (a kill
	// after it exited is a harmless error).
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	vars := map[string]string{}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		<-copied // Wait closes the pipes: the reads come first
		done <- cmd.Wait()
	}()
	deadline := time.After(60 * time.Second)
	for vars["READY"] != "1" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("loadenv exited before READY: %s", stderr())
			}
			if k, v, found := strings.Cut(l, "="); found {
				vars[k] = strings.Trim(v, "'")
			}
		case <-deadline:
			t.Fatalf("no READY after 60s: %s", stderr())
		}
	}

	for _, c := range []struct {
		url    string
		header http.Header
	}{
		{vars["GATEWAY_URL"], http.Header{"Cookie": {vars["COOKIE"]}, "X-Csrf": {"1"}}},
		{vars["BARE_URL"], nil},
	} {
		req, _ := http.NewRequest(http.MethodGet, c.url, nil)
		for k, v := range c.header {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != `{"ok":true}` {
			t.Errorf("GET %s: %d %s", c.url, resp.StatusCode, body)
		}
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for range lines {
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("loadenv: %v\n%s", err, stderr())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("loadenv did not stop on SIGTERM")
	}
	m := regexp.MustCompile(`the baseline sends a fixed Authorization header of (\d+) bytes`).FindStringSubmatch(errBuf.String())
	if m == nil {
		t.Fatalf("no baseline line in stderr:\n%s", stderr())
	}
	if n, _ := strconv.Atoi(m[1]); n < 100 {
		t.Errorf("baseline header of %d bytes: shorter than any access token of the demo provider", n)
	}
}
