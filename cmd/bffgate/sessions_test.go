package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bffgate/bffgate/sessions"
	"github.com/bffgate/bffgate/sessions/redisstore"
)

const sessionsTestRedis = "127.0.0.1:6379"

// sessionsEnv is a config file over the local Redis with a key prefix of its
// own, and a Manager that writes sessions the way the gateway would.
type sessionsEnv struct {
	t      *testing.T
	cfg    string
	rdb    *redis.Client
	prefix string
	m      *sessions.Manager
}

func randomKey(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func writeSessionsConfig(t *testing.T, store, prefix string, hash, block []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "bffgate.yaml")
	cfg := fmt.Sprintf(`server:
  public_url: "https://app.example.com"
sessions:
  store: %s
  redis:
    url: "redis://%s/0"
    key_prefix: %q
  cookie_keys:
    - hash: %q
      block: %q
frontends:
  - name: web
    mount: /web
    oidc: {issuer: "https://idp.example.com", client_id: web-bff, client_secret: s}
  - name: admin
    mount: /admin
    oidc: {issuer: "https://idp.example.com", client_id: admin-bff, client_secret: s}
`, store, sessionsTestRedis, prefix, base64.StdEncoding.EncodeToString(hash), base64.StdEncoding.EncodeToString(block))
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func newSessionsEnv(t *testing.T) *sessionsEnv {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: sessionsTestRedis, DialTimeout: 300 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if err := rdb.Ping(ctx).Err(); err != nil {
		t.Skipf("no Redis on %s: %v", sessionsTestRedis, err)
	}
	prefix := "bffgate-clitest-" + hex.EncodeToString(randomKey(t, 6)) + ":"
	t.Cleanup(func() {
		// Every key under this test's prefix, and nothing else: never FLUSHDB.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			_ = rdb.Del(ctx, iter.Val()).Err()
		}
		if err := iter.Err(); err != nil {
			t.Logf("cleanup of %s*: %v", prefix, err)
		}
	})
	hash, block := randomKey(t, 32), randomKey(t, 32)
	m, err := sessions.NewManager(redisstore.New(rdb), sessions.Options{
		KeyPrefix: prefix,
		Keys:      []sessions.KeyPair{{Hash: hash, Block: block}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &sessionsEnv{t: t, cfg: writeSessionsConfig(t, "redis", prefix, hash, block), rdb: rdb, prefix: prefix, m: m}
}

func (e *sessionsEnv) create(frontend, sub, sid string) *sessions.Session {
	e.t.Helper()
	return e.createWithClaims(frontend, sub, sid, "")
}

func (e *sessionsEnv) createWithClaims(frontend, sub, sid, claims string) *sessions.Session {
	e.t.Helper()
	now := time.Now()
	s := &sessions.Session{
		Frontend: frontend, Subject: sub, ProviderSID: sid, Claims: []byte(claims),
		AccessToken: "at", IdleTimeout: 30 * time.Minute, AbsoluteExpiry: now.Add(12 * time.Hour),
	}
	if _, err := e.m.Create(e.t.Context(), "session:"+frontend, s); err != nil {
		e.t.Fatalf("Create: %v", err)
	}
	return s
}

// run runs the command line and returns the exit code and both outputs.
func (e *sessionsEnv) run(args ...string) (int, string, string) {
	e.t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(e.t.Context(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func (e *sessionsEnv) wantRun(wantCode int, args ...string) string {
	e.t.Helper()
	code, stdout, stderr := e.run(args...)
	if code != wantCode {
		e.t.Fatalf("bffgate %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, wantCode, stdout, stderr)
	}
	return stdout
}

// wantStored fails unless exactly the live sessions are in Redis.
func (e *sessionsEnv) wantStored(live map[*sessions.Session]bool, all ...*sessions.Session) {
	e.t.Helper()
	for _, s := range all {
		n, err := e.rdb.Exists(e.t.Context(), e.m.SessionKeyPrefix()+s.ID()+"}").Result()
		if err != nil {
			e.t.Fatal(err)
		}
		if got := n == 1; got != live[s] {
			e.t.Errorf("session %s/%s/%s stored = %v, want %v", s.Frontend, s.Subject, s.ProviderSID, got, live[s])
		}
	}
}

var idleLeft = regexp.MustCompile(`\b(30m0s|29m[0-9]+s)\b`)

func TestSessionsListRevoke(t *testing.T) {
	e := newSessionsEnv(t)
	a1 := e.create("web", "alice", "sid-1")
	a2 := e.create("web", "alice", "sid-2")
	b3 := e.create("web", "bob", "sid-3")
	adm := e.create("admin", "alice", "sid-4")
	all := []*sessions.Session{a1, a2, b3, adm}

	out := e.wantRun(exitOK, "sessions", "list", "-config", e.cfg)
	if !strings.Contains(out, "4 sessions") {
		t.Errorf("list: no count line of 4 sessions:\n%s", out)
	}
	for _, s := range all {
		line := findLine(out, s.ID())
		if line == "" {
			t.Errorf("list: no line with the whole id of %s:\n%s", s.ProviderSID, out)
		}
		created := s.CreatedAt.UTC().Format(time.RFC3339)
		for _, want := range []string{s.Frontend, s.Subject, s.ProviderSID, created} {
			if !strings.Contains(line, want) {
				t.Errorf("list line %q lacks %q", line, want)
			}
		}
		// The idle window is 30m; the store's TTL has run down a little by
		// the time the list reads it, more so on a loaded machine.
		if !idleLeft.MatchString(line) {
			t.Errorf("list line %q lacks an expiry within the 30m idle window", line)
		}
	}

	out = e.wantRun(exitOK, "sessions", "list", "-config", e.cfg, "--frontend", "web", "--sub", "alice")
	if !strings.Contains(out, "2 sessions") || !strings.Contains(out, a1.ID()) || !strings.Contains(out, a2.ID()) {
		t.Errorf("list --frontend web --sub alice:\n%s", out)
	}

	// Revoking everything takes an explicit --all.
	code, _, stderr := e.run("sessions", "revoke", "-config", e.cfg)
	if code != exitUsage || !strings.Contains(stderr, "--all") {
		t.Fatalf("revoke without a filter: exit %d, stderr %q; want %d naming --all", code, stderr, exitUsage)
	}
	e.wantStored(map[*sessions.Session]bool{a1: true, a2: true, b3: true, adm: true}, all...)

	// --sid without --frontend searches every frontend.
	if out := e.wantRun(exitOK, "sessions", "revoke", "-config", e.cfg, "--sid", "sid-1"); out != "1 session revoked\n" {
		t.Errorf("revoke --sid: %q", out)
	}
	e.wantStored(map[*sessions.Session]bool{a2: true, b3: true, adm: true}, all...)

	if out := e.wantRun(exitOK, "sessions", "revoke", "-config", e.cfg, "-sub", "alice", "-frontend", "web"); out != "1 session revoked\n" {
		t.Errorf("revoke --sub --frontend: %q", out)
	}
	e.wantStored(map[*sessions.Session]bool{b3: true, adm: true}, all...)

	if out := e.wantRun(exitOK, "sessions", "revoke", "-config", e.cfg, "--sub", "alice"); out != "1 session revoked\n" {
		t.Errorf("revoke --sub: %q", out)
	}
	e.wantStored(map[*sessions.Session]bool{b3: true}, all...)

	if out := e.wantRun(exitOK, "sessions", "revoke", "-config", e.cfg, "--sub", "alice"); out != "0 sessions revoked\n" {
		t.Errorf("revoke --sub again: %q", out)
	}
	out = e.wantRun(exitOK, "sessions", "list", "-config", e.cfg)
	if !strings.Contains(out, "\n1 session\n") || !strings.Contains(out, b3.ID()) {
		t.Errorf("list after revoking alice:\n%s", out)
	}

	if out := e.wantRun(exitOK, "sessions", "revoke", "-config", e.cfg, "--all"); out != "1 session revoked\n" {
		t.Errorf("revoke --all: %q", out)
	}
	e.wantStored(nil, all...)
	// Ended sessions leave no index members behind.
	var left []string
	iter := e.rdb.Scan(t.Context(), 0, e.prefix+"idx:*", 1000).Iterator()
	for iter.Next(t.Context()) {
		left = append(left, iter.Val())
	}
	if err := iter.Err(); err != nil || len(left) != 0 {
		t.Errorf("index keys left: %q, %v", left, err)
	}
}

func findLine(out, s string) string {
	for line := range strings.Lines(out) {
		if strings.Contains(line, s) {
			return line
		}
	}
	return ""
}

func TestSessionsUsageAndConfigErrors(t *testing.T) {
	e := newSessionsEnv(t)
	s := e.create("web", "alice", "sid-1")
	mem := writeSessionsConfig(t, "memory", e.prefix, randomKey(t, 32), randomKey(t, 32))
	tests := []struct {
		name     string
		args     []string
		want     int
		inStderr string
	}{
		{"no subcommand", []string{"sessions"}, exitUsage, "missing subcommand"},
		{"unknown subcommand", []string{"sessions", "purge", "-config", e.cfg}, exitUsage, `unknown subcommand "purge"`},
		{"unknown flag", []string{"sessions", "list", "-config", e.cfg, "--user", "alice"}, exitUsage, "-user"},
		{"extra argument", []string{"sessions", "list", "-config", e.cfg, "alice"}, exitUsage, `unexpected argument "alice"`},
		{"revoke without filter", []string{"sessions", "revoke", "-config", e.cfg}, exitUsage, "--all"},
		{"revoke all with a filter", []string{"sessions", "revoke", "-config", e.cfg, "--all", "--sub", "alice"}, exitUsage, "--all"},
		{"list takes no --all", []string{"sessions", "list", "-config", e.cfg, "--all"}, exitUsage, "-all"},
		{"memory store", []string{"sessions", "list", "-config", mem}, exitFail, "memory store lives inside the serving process"},
		{"memory store revoke", []string{"sessions", "revoke", "-config", mem, "--sub", "alice"}, exitFail, "memory"},
		{"missing config", []string{"sessions", "list", "-config", filepath.Join(t.TempDir(), "none.yaml")}, exitFail, "none.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := e.run(tt.args...)
			if code != tt.want || !strings.Contains(stderr, tt.inStderr) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, stderr, tt.want, tt.inStderr)
			}
		})
	}
	e.wantStored(map[*sessions.Session]bool{s: true}, s)

	if out := e.wantRun(exitOK, "sessions", "help"); !strings.Contains(out, "sessions revoke") {
		t.Errorf("sessions help: %q", out)
	}
}

func TestPrintable(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "-"},
		{"alice", "alice"},
		{"a b", `"a b"`},
		{"evil\x1b[2J", `"evil\x1b[2J"`},
		{"tab\there", `"tab\there"`},
		{"ünïcode", "ünïcode"},
	}
	for _, tt := range tests {
		if got := printable(tt.in); got != tt.want {
			t.Errorf("printable(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestSessionsIDNameJSON: list prints whole ids that revoke --id takes (a
// unique prefix is enough, an ambiguous one is refused with the matches), a
// name / email column, and --json.
func TestSessionsIDNameJSON(t *testing.T) {
	e := newSessionsEnv(t)
	alice := e.createWithClaims("web", "alice", "sid-1", `{"sub":"alice","name":"Alice Liddell","email":"alice@example.com"}`)
	bob := e.createWithClaims("web", "bob", "sid-2", `{"sub":"bob","preferred_username":"bob","email":"bob@example.com"}`)
	carol := e.createWithClaims("admin", "carol", "", `{"sub":"carol","name":"evil\u001b[2J"}`)
	all := []*sessions.Session{alice, bob, carol}

	out := e.wantRun(exitOK, "sessions", "list", "-config", e.cfg)
	for _, tt := range []struct {
		s    *sessions.Session
		want string
	}{
		{alice, "Alice Liddell <alice@example.com>"},
		{bob, "bob <bob@example.com>"},
		{carol, `"evil\x1b[2J"`},
	} {
		if line := findLine(out, tt.s.ID()); !strings.Contains(line, tt.want) {
			t.Errorf("list line of %s = %q; want the whole id and %q", tt.s.Subject, line, tt.want)
		}
	}
	if !strings.Contains(out, "NAME / EMAIL") {
		t.Errorf("list: no NAME / EMAIL column:\n%s", out)
	}

	var got []struct {
		ID, Frontend, Sub, Sid, Name, Email string
		ExpiresIn                           int64 `json:"expires_in"`
	}
	out = e.wantRun(exitOK, "sessions", "list", "-config", e.cfg, "--json", "--frontend", "web")
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("list --json: %v\n%s", err, out)
	}
	if len(got) != 2 {
		t.Fatalf("list --json --frontend web: %d sessions, want 2:\n%s", len(got), out)
	}
	for _, g := range got {
		want := map[string]*sessions.Session{alice.ID(): alice, bob.ID(): bob}[g.ID]
		if want == nil || g.Sub != want.Subject || g.Sid != want.ProviderSID || g.Email == "" || g.ExpiresIn <= 0 {
			t.Errorf("list --json entry %+v", g)
		}
	}
	if out := e.wantRun(exitOK, "sessions", "list", "-config", e.cfg, "--json", "--frontend", "none"); strings.TrimSpace(out) != "[]" {
		t.Errorf("list --json of nothing = %q; want []", out)
	}

	prefix := commonPrefix(alice.ID(), bob.ID())
	tests := []struct {
		name     string
		args     []string
		want     int
		inStderr []string
		live     map[*sessions.Session]bool
	}{
		{"bad characters", []string{"--id", "a*"}, exitUsage, []string{"A-Z a-z 0-9 - _"}, map[*sessions.Session]bool{alice: true, bob: true, carol: true}},
		{"no such id", []string{"--id", flip(alice.ID())}, exitFail, []string{"no live session"}, map[*sessions.Session]bool{alice: true, bob: true, carol: true}},
		{"id of another frontend", []string{"--id", alice.ID(), "--frontend", "admin"}, exitFail, []string{"no live session"}, map[*sessions.Session]bool{alice: true, bob: true, carol: true}},
		{"unique prefix", []string{"--id", alice.ID()[:8]}, exitOK, nil, map[*sessions.Session]bool{bob: true, carol: true}},
		{"whole id", []string{"--id", bob.ID()}, exitOK, nil, map[*sessions.Session]bool{carol: true}},
	}
	if prefix != "" {
		// Only when two ids happen to share a first character.
		tests = append([]struct {
			name     string
			args     []string
			want     int
			inStderr []string
			live     map[*sessions.Session]bool
		}{{"ambiguous prefix", []string{"--id", prefix}, exitFail, []string{"matches several", alice.ID(), bob.ID()}, map[*sessions.Session]bool{alice: true, bob: true, carol: true}}}, tests...)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := e.run(append([]string{"sessions", "revoke", "-config", e.cfg}, tt.args...)...)
			if code != tt.want {
				t.Fatalf("exit %d, want %d\nstdout %q\nstderr %q", code, tt.want, stdout, stderr)
			}
			for _, w := range tt.inStderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q lacks %q", stderr, w)
				}
			}
			if tt.want == exitOK && stdout != "1 session revoked\n" {
				t.Errorf("stdout %q", stdout)
			}
			e.wantStored(tt.live, all...)
		})
	}
}

// TestSessionsAmbiguousID makes two sessions share an id prefix for sure:
// a prefix of one character is shared by some pair among 70 sessions.
func TestSessionsAmbiguousID(t *testing.T) {
	e := newSessionsEnv(t)
	byFirst := map[byte][]*sessions.Session{}
	var pair []*sessions.Session
	for i := 0; pair == nil; i++ {
		s := e.create("web", fmt.Sprint("u", i), "")
		byFirst[s.ID()[0]] = append(byFirst[s.ID()[0]], s)
		if l := byFirst[s.ID()[0]]; len(l) == 2 {
			pair = l
		}
	}
	code, _, stderr := e.run("sessions", "revoke", "-config", e.cfg, "--id", pair[0].ID()[:1])
	if code != exitFail || !strings.Contains(stderr, "matches several") ||
		!strings.Contains(stderr, pair[0].ID()) || !strings.Contains(stderr, pair[1].ID()) {
		t.Fatalf("ambiguous --id: exit %d, stderr %q", code, stderr)
	}
	e.wantStored(map[*sessions.Session]bool{pair[0]: true, pair[1]: true}, pair...)
}

func commonPrefix(a, b string) string {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return a[:i]
}

// flip returns id with its last character changed: a well-formed id of no
// session.
func flip(id string) string {
	last := id[len(id)-1]
	c := byte('A')
	if last == 'A' {
		c = 'B'
	}
	return id[:len(id)-1] + string(c)
}
