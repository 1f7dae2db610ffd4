package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMain lets a test run this package's main() as the real binary would
// (BFFGATE_TEST_MAIN=1 re-executes the test binary as bffgate), for what
// only main sets up: the process-wide library loggers.
func TestMain(m *testing.M) {
	if os.Getenv("BFFGATE_TEST_MAIN") == "1" {
		os.Args = append([]string{"bffgate"}, strings.Fields(os.Getenv("BFFGATE_TEST_ARGS"))...)
		main()
		return
	}
	os.Exit(m.Run())
}

// jsonLines splits out into the lines that are JSON objects and the others.
func jsonLines(t *testing.T, out string) (objs []map[string]any, plain []string) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			objs = append(objs, m)
		} else if sc.Text() != "" {
			plain = append(plain, sc.Text())
		}
	}
	return objs, plain
}

// withLogLevel adds server.log_level to a config file written by
// writeSessionsConfig.
func withLogLevel(t *testing.T, path, level string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.Replace(b, []byte("server:\n"), []byte("server:\n  log_level: "+level+"\n"), 1)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// `sessions revoke` logs a "revoked" audit event per session it ends, as
// JSON on stderr at the config's log level; stdout keeps only the count.
func TestSessionsRevokeLogsRevokedEvents(t *testing.T) {
	for _, tc := range []struct {
		level string
		want  int
	}{
		{"info", 2},
		{"error", 0}, // the operator asked for errors only
	} {
		t.Run(tc.level, func(t *testing.T) {
			e := newSessionsEnv(t)
			withLogLevel(t, e.cfg, tc.level)
			e.create("web", "alice", "sid-1")
			e.create("admin", "alice", "sid-2")
			e.create("web", "bob", "sid-3")
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), []string{"sessions", "revoke", "-config", e.cfg, "--sub", "alice"}, &stdout, &stderr); code != exitOK {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			if got := stdout.String(); got != "2 sessions revoked\n" {
				t.Errorf("stdout = %q", got)
			}
			objs, plain := jsonLines(t, stderr.String())
			if len(plain) > 0 {
				t.Errorf("plain lines on stderr: %q", plain)
			}
			sids := map[string]string{}
			for _, l := range objs {
				if l["event"] != "revoked" {
					t.Errorf("unexpected line %v", l)
					continue
				}
				if l["sub"] != "alice" || l["level"] != "INFO" || l["client_ip"] != "" {
					t.Errorf("revoked event %v", l)
				}
				sids[l["sid"].(string)] = l["frontend"].(string)
			}
			if len(objs) != tc.want {
				t.Fatalf("%d revoked events, want %d: %s", len(objs), tc.want, stderr.String())
			}
			if tc.want > 0 && (sids["sid-1"] != "web" || sids["sid-2"] != "admin") {
				t.Errorf("revoked events name %v, want sid-1 of web and sid-2 of admin", sids)
			}
		})
	}
}

// go-redis's own messages (here: a pool that cannot dial) come out of the
// real binary as JSON lines tagged with the library, never as go-redis's
// plain "redis: 2026/..." text, on the stderr of the sessions CLI.
func TestLibraryLogsAreJSON(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	cfg := writeSessionsConfig(t, "redis", "bffgate-libtest:", randomKey(t, 32), randomKey(t, 32))
	b, _ := os.ReadFile(cfg)
	if err := os.WriteFile(cfg, bytes.ReplaceAll(b, []byte(sessionsTestRedis), []byte(dead)), 0o600); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "BFFGATE_TEST_MAIN=1", "BFFGATE_TEST_ARGS=sessions list -config "+cfg)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != exitFail {
		t.Fatalf("sessions list against a dead Redis: %v, want exit %d; stderr %s", err, exitFail, stderr.String())
	}
	objs, plain := jsonLines(t, stderr.String())
	library := 0
	for _, l := range objs {
		if l["library"] == "go-redis" {
			library++
			if l["level"] != slog.LevelWarn.String() || strings.HasPrefix(fmt.Sprint(l["msg"]), "redis:") {
				t.Errorf("go-redis line %v", l)
			}
		}
	}
	if library == 0 {
		t.Errorf("no go-redis line went through the JSON handler; stderr:\n%s", stderr.String())
	}
	for _, p := range plain {
		if !strings.HasPrefix(p, "bffgate sessions") {
			t.Errorf("a plain line that is not the CLI's own message: %q", p)
		}
	}
	if strings.Contains(stdout.String()+stderr.String(), "redis: 20") {
		t.Errorf("go-redis's plain logger wrote:\n%s%s", stdout.String(), stderr.String())
	}
}

func TestLogLevel(t *testing.T) {
	for in, want := range map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError} {
		if got := logLevel(in); got != want {
			t.Errorf("logLevel(%q) = %v, want %v", in, got, want)
		}
	}
}

// server.log_level decides what serve writes: at info each request has its
// access line; at warn the info lines (access lines, "listening") are gone
// while warnings stay (here: the provider that cannot be reached at start).
func TestServeLogLevel(t *testing.T) {
	for _, tc := range []struct {
		level  string
		access bool
	}{
		{"info", true},
		{"warn", false},
	} {
		t.Run(tc.level, func(t *testing.T) {
			addr, dead := freeAddr(t), freeAddr(t)
			cfg := fmt.Sprintf(`server:
  listen: %q
  public_url: "http://localhost:8080"
  log_level: %s
frontends:
  - name: web
    mount: /web
    oidc: {issuer: "http://%s", client_id: web-bff, client_secret: s}
    routes:
      - prefix: /api
        upstream: "http://%s"
        token: none
`, addr, tc.level, dead, dead)
			path := filepath.Join(t.TempDir(), "gateway.yaml")
			if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			stderr := &syncBuffer{}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan int, 1)
			go func() { done <- run(ctx, []string{"serve", "-config", path}, io.Discard, stderr) }()
			base := "http://" + addr
			for i := 0; ; i++ {
				if resp, err := http.Get(base + "/healthz"); err == nil {
					resp.Body.Close()
					break
				}
				if i > 200 {
					t.Fatalf("serve did not start: %s", stderr.String())
				}
				time.Sleep(50 * time.Millisecond)
			}
			resp, err := http.Get(base + "/nowhere")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			// The startup watch warns at once of the unreachable provider.
			for deadline := time.Now().Add(10 * time.Second); !strings.Contains(stderr.String(), `"level":"WARN"`); {
				if time.Now().After(deadline) {
					t.Fatalf("no warning in 10 s: %s", stderr.String())
				}
				time.Sleep(50 * time.Millisecond)
			}
			cancel()
			if code := <-done; code != exitOK {
				t.Fatalf("exit %d", code)
			}
			objs, plain := jsonLines(t, stderr.String())
			if len(plain) > 0 {
				t.Errorf("plain lines: %q", plain)
			}
			access, below := 0, 0
			for _, l := range objs {
				if l["msg"] == "request" && l["path"] == "/nowhere" {
					access++
				}
				if l["level"] == "INFO" || l["level"] == "DEBUG" {
					below++
				}
			}
			if tc.access && access != 1 {
				t.Errorf("%d access lines for one request at %s: %s", access, tc.level, stderr.String())
			}
			if !tc.access && below != 0 {
				t.Errorf("%d lines below warn at %s: %s", below, tc.level, stderr.String())
			}
		})
	}
}
