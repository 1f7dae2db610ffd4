// Package sessionstest is the one conformance suite every sessions.Store runs:
// the store contract (conditional writes, expiry, single-use takes, locks,
// index sets, prefix scans) and the Manager's behaviour over that store
// (sealing, rotation, idle and absolute expiry, no tokens at rest, the
// indexes behind back-channel logout and operator revocation). memstore and
// redisstore call Run from
// their tests, so both backends are held to exactly the same behaviour.
package sessionstest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bffgate/bffgate/sessions"
)

// Backend is what Run tests: every capability the Manager uses. An alias, so
// callers may also write the interface literal.
type Backend = interface {
	sessions.Store
	sessions.Locker
	sessions.Indexer
	sessions.Scanner
}

// Run runs the suite. newStore is called once per subtest; stores may be
// shared underneath (one Redis): every subtest writes under its own random
// key prefix and deletes every key it wrote when it ends.
func Run(t *testing.T, newStore func(t *testing.T) Backend) {
	t.Run("store", func(t *testing.T) { runStore(t, newStore) })
	t.Run("locker", func(t *testing.T) { runLocker(t, newStore) })
	t.Run("index", func(t *testing.T) { runIndexer(t, newStore) })
	t.Run("scan", func(t *testing.T) { runScanner(t, newStore) })
	t.Run("manager", func(t *testing.T) { runManager(t, newStore) })
	t.Run("manager indexes", func(t *testing.T) { runManagerIndexes(t, newStore) })
}

// recorder wraps the store under test: it remembers every key and value
// written, to clean up shared stores and to scan what reached the store.
type recorder struct {
	Backend
	mu      sync.Mutex
	keys    map[string]bool
	values  [][]byte
	expires atomic.Int64 // Expire calls, to count Load's writes
}

func (r *recorder) note(key string, value []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keys[key] = true
	if value != nil {
		r.values = append(r.values, bytes.Clone(value))
	}
}

func (r *recorder) Set(ctx context.Context, key string, value []byte, ttl time.Duration, mode sessions.SetMode) error {
	r.note(key, value)
	return r.Backend.Set(ctx, key, value, ttl, mode)
}

func (r *recorder) Expire(ctx context.Context, key string, ttl time.Duration) error {
	r.expires.Add(1)
	return r.Backend.Expire(ctx, key, ttl)
}

func (r *recorder) Acquire(ctx context.Context, key, token string, ttl time.Duration) (bool, error) {
	r.note(key, nil)
	return r.Backend.Acquire(ctx, key, token, ttl)
}

func (r *recorder) AddToSet(ctx context.Context, key, member string, ttl time.Duration) error {
	r.note(key, nil)
	return r.Backend.AddToSet(ctx, key, member, ttl)
}

// keyCount is how many distinct keys were written so far.
func (r *recorder) keyCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.keys)
}

// written returns a copy of every value written so far.
func (r *recorder) written() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.values...)
}

// env is one subtest's world: its store and its private key prefix.
type env struct {
	t      *testing.T
	store  *recorder
	prefix string
}

func newEnv(t *testing.T, newStore func(t *testing.T) Backend) *env {
	t.Helper()
	s := newStore(t)
	if s == nil {
		t.Fatal("newStore returned nil")
	}
	r := &recorder{Backend: s, keys: make(map[string]bool)}
	t.Cleanup(func() {
		// t.Context is already cancelled when cleanups run.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r.mu.Lock()
		keys := make([]string, 0, len(r.keys))
		for k := range r.keys {
			keys = append(keys, k)
		}
		r.mu.Unlock()
		if err := s.Delete(ctx, keys...); err != nil {
			t.Logf("cleanup: deleting %d keys: %v", len(keys), err)
		}
	})
	return &env{t: t, store: r, prefix: "bffgate-test:" + randHex(t, 8) + ":"}
}

func (e *env) key(name string) string { return e.prefix + name }

// parallel runs f as a parallel subtest of t, in an env of its own.
func parallel(t *testing.T, newStore func(t *testing.T) Backend, name string, f func(t *testing.T, e *env)) {
	t.Run(name, func(t *testing.T) {
		t.Parallel()
		f(t, newEnv(t, newStore))
	})
}

func randHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func mustSet(t *testing.T, s sessions.Store, key, value string, ttl time.Duration) {
	t.Helper()
	if err := s.Set(t.Context(), key, []byte(value), ttl, sessions.Always); err != nil {
		t.Fatalf("Set(%q): %v", key, err)
	}
}

// wantValue fails unless key holds value.
func wantValue(t *testing.T, s sessions.Store, key, value string) time.Duration {
	t.Helper()
	got, ttl, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	if string(got) != value {
		t.Fatalf("Get(%q) = %q, want %q", key, got, value)
	}
	return ttl
}

// wantGone fails unless key is absent.
func wantGone(t *testing.T, s sessions.Store, key string) {
	t.Helper()
	if v, _, err := s.Get(t.Context(), key); !errors.Is(err, sessions.ErrNotFound) {
		t.Fatalf("Get(%q) = %q, %v; want ErrNotFound", key, v, err)
	}
}

func wantTTL(t *testing.T, got, want time.Duration) {
	t.Helper()
	// Redis reports whole milliseconds; a slow CI machine loses a few hundred.
	if got > want || got < want-2*time.Second {
		t.Fatalf("ttl = %v, want about %v", got, want)
	}
}

func runStore(t *testing.T, newStore func(t *testing.T) Backend) {
	parallel(t, newStore, "get missing", func(t *testing.T, e *env) {
		wantGone(t, e.store, e.key("missing"))
	})

	parallel(t, newStore, "set get roundtrip", func(t *testing.T, e *env) {
		value := string([]byte{0, 1, 2, 255, 'x'}) // binary-safe
		mustSet(t, e.store, e.key("a"), value, 10*time.Second)
		wantTTL(t, wantValue(t, e.store, e.key("a"), value), 10*time.Second)
		// A value handed out must not alias the stored one.
		got, _, _ := e.store.Get(t.Context(), e.key("a"))
		got[0] = 'z'
		wantValue(t, e.store, e.key("a"), value)
	})

	t.Run("set modes", func(t *testing.T) {
		tests := []struct {
			name      string
			preexists bool
			mode      sessions.SetMode
			wantErr   error
			want      string // value afterwards; "" = absent
		}{
			{"always on missing", false, sessions.Always, nil, "new"},
			{"always on existing", true, sessions.Always, nil, "new"},
			{"if absent on missing", false, sessions.IfAbsent, nil, "new"},
			{"if absent on existing", true, sessions.IfAbsent, sessions.ErrExists, "old"},
			{"if present on missing", false, sessions.IfPresent, sessions.ErrNotFound, ""},
			{"if present on existing", true, sessions.IfPresent, nil, "new"},
		}
		for _, tt := range tests {
			parallel(t, newStore, tt.name, func(t *testing.T, e *env) {
				k := e.key("k")
				if tt.preexists {
					mustSet(t, e.store, k, "old", time.Minute)
				}
				err := e.store.Set(t.Context(), k, []byte("new"), 20*time.Second, tt.mode)
				if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
					t.Fatalf("Set = %v, want %v", err, tt.wantErr)
				}
				if tt.want == "" {
					wantGone(t, e.store, k)
					return
				}
				ttl := wantValue(t, e.store, k, tt.want)
				if tt.want == "new" {
					wantTTL(t, ttl, 20*time.Second) // a write sets the new ttl
				}
			})
		}
	})

	parallel(t, newStore, "non-positive ttl is refused", func(t *testing.T, e *env) {
		for _, ttl := range []time.Duration{0, -time.Second} {
			err := e.store.Set(t.Context(), e.key("k"), []byte("v"), ttl, sessions.Always)
			if err == nil || errors.Is(err, sessions.ErrNotFound) {
				t.Errorf("Set with ttl %v = %v, want a usage error", ttl, err)
			}
		}
		wantGone(t, e.store, e.key("k"))
	})

	parallel(t, newStore, "expire", func(t *testing.T, e *env) {
		if err := e.store.Expire(t.Context(), e.key("missing"), time.Minute); !errors.Is(err, sessions.ErrNotFound) {
			t.Fatalf("Expire(missing) = %v, want ErrNotFound", err)
		}
		mustSet(t, e.store, e.key("a"), "v", 5*time.Second)
		if err := e.store.Expire(t.Context(), e.key("a"), time.Hour); err != nil {
			t.Fatalf("Expire: %v", err)
		}
		wantTTL(t, wantValue(t, e.store, e.key("a"), "v"), time.Hour)
	})

	parallel(t, newStore, "ttl expiry", func(t *testing.T, e *env) {
		k := e.key("short")
		if err := e.store.Set(t.Context(), k, []byte("v"), 150*time.Millisecond, sessions.Always); err != nil {
			t.Fatal(err)
		}
		wantValue(t, e.store, k, "v")
		time.Sleep(400 * time.Millisecond)
		wantGone(t, e.store, k)
		if _, err := e.store.Take(t.Context(), k); !errors.Is(err, sessions.ErrNotFound) {
			t.Errorf("Take(expired) = %v, want ErrNotFound", err)
		}
		if err := e.store.Expire(t.Context(), k, time.Minute); !errors.Is(err, sessions.ErrNotFound) {
			t.Errorf("Expire(expired) = %v, want ErrNotFound", err)
		}
		// An expired key counts as absent for conditional writes.
		if err := e.store.Set(t.Context(), k, []byte("w"), time.Minute, sessions.IfAbsent); err != nil {
			t.Errorf("Set IfAbsent over expired key = %v", err)
		}
	})

	parallel(t, newStore, "take once", func(t *testing.T, e *env) {
		mustSet(t, e.store, e.key("t"), "once", time.Minute)
		got, err := e.store.Take(t.Context(), e.key("t"))
		if err != nil || string(got) != "once" {
			t.Fatalf("Take = %q, %v", got, err)
		}
		if _, err := e.store.Take(t.Context(), e.key("t")); !errors.Is(err, sessions.ErrNotFound) {
			t.Fatalf("second Take = %v, want ErrNotFound", err)
		}
		wantGone(t, e.store, e.key("t"))
	})

	parallel(t, newStore, "concurrent take has one winner", func(t *testing.T, e *env) {
		mustSet(t, e.store, e.key("race"), "prize", time.Minute)
		var wins, misses atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		for range 20 {
			wg.Go(func() {
				<-start
				v, err := e.store.Take(context.Background(), e.key("race"))
				switch {
				case err == nil && string(v) == "prize":
					wins.Add(1)
				case errors.Is(err, sessions.ErrNotFound):
					misses.Add(1)
				default:
					t.Errorf("Take = %q, %v", v, err)
				}
			})
		}
		close(start)
		wg.Wait()
		if wins.Load() != 1 || misses.Load() != 19 {
			t.Fatalf("wins = %d, misses = %d; want 1 and 19", wins.Load(), misses.Load())
		}
	})

	parallel(t, newStore, "delete", func(t *testing.T, e *env) {
		var keys []string
		for i := range 5 {
			k := e.key(fmt.Sprintf("d%d", i))
			mustSet(t, e.store, k, "v", time.Minute)
			keys = append(keys, k)
		}
		mustSet(t, e.store, e.key("keep"), "v", time.Minute)
		if err := e.store.Delete(t.Context(), append(keys, e.key("never-written"))...); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		for _, k := range keys {
			wantGone(t, e.store, k)
		}
		wantValue(t, e.store, e.key("keep"), "v")
		if err := e.store.Delete(t.Context(), e.key("keep")); err != nil {
			t.Fatalf("Delete one: %v", err)
		}
		wantGone(t, e.store, e.key("keep"))
		if err := e.store.Delete(t.Context()); err != nil {
			t.Fatalf("Delete(no keys) = %v", err)
		}
	})

	parallel(t, newStore, "ping", func(t *testing.T, e *env) {
		if err := e.store.Ping(t.Context()); err != nil {
			t.Fatalf("Ping: %v", err)
		}
	})
}

func runLocker(t *testing.T, newStore func(t *testing.T) Backend) {
	acquire := func(t *testing.T, l sessions.Locker, key, token string, ttl time.Duration) bool {
		t.Helper()
		ok, err := l.Acquire(t.Context(), key, token, ttl)
		if err != nil {
			t.Fatalf("Acquire(%s): %v", token, err)
		}
		return ok
	}

	parallel(t, newStore, "acquire contend renew release", func(t *testing.T, e *env) {
		k := e.key("lock")
		if !acquire(t, e.store, k, "a", 5*time.Second) {
			t.Fatal("Acquire on a free lock = false")
		}
		if acquire(t, e.store, k, "b", 5*time.Second) {
			t.Fatal("Acquire on a held lock = true")
		}
		if ok, err := e.store.Renew(t.Context(), k, "b", time.Minute); err != nil || ok {
			t.Fatalf("Renew with the wrong token = %v, %v; want false", ok, err)
		}
		wantTTL(t, wantValue(t, e.store, k, "a"), 5*time.Second)
		if ok, err := e.store.Renew(t.Context(), k, "a", time.Minute); err != nil || !ok {
			t.Fatalf("Renew with the right token = %v, %v; want true", ok, err)
		}
		wantTTL(t, wantValue(t, e.store, k, "a"), time.Minute)
		if err := e.store.Release(t.Context(), k, "b"); err != nil {
			t.Fatalf("Release with the wrong token: %v", err)
		}
		if acquire(t, e.store, k, "b", 5*time.Second) {
			t.Fatal("a release with the wrong token freed the lock")
		}
		if err := e.store.Release(t.Context(), k, "a"); err != nil {
			t.Fatalf("Release: %v", err)
		}
		if !acquire(t, e.store, k, "b", 5*time.Second) {
			t.Fatal("Acquire after release = false")
		}
	})

	parallel(t, newStore, "lease expires", func(t *testing.T, e *env) {
		k := e.key("lease")
		if !acquire(t, e.store, k, "a", 150*time.Millisecond) {
			t.Fatal("Acquire = false")
		}
		time.Sleep(400 * time.Millisecond)
		if ok, err := e.store.Renew(t.Context(), k, "a", time.Minute); err != nil || ok {
			t.Fatalf("Renew after the lease ran out = %v, %v; want false", ok, err)
		}
		if !acquire(t, e.store, k, "b", 5*time.Second) {
			t.Fatal("Acquire after the lease ran out = false")
		}
		// The old holder's late release must not free b's lock.
		if err := e.store.Release(t.Context(), k, "a"); err != nil {
			t.Fatal(err)
		}
		wantValue(t, e.store, k, "b")
	})

	parallel(t, newStore, "concurrent acquire has one winner", func(t *testing.T, e *env) {
		k := e.key("contended")
		e.store.note(k, nil)
		var wins atomic.Int32
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Go(func() {
				ok, err := e.store.Backend.Acquire(context.Background(), k, fmt.Sprint(i), time.Minute)
				if err != nil {
					t.Errorf("Acquire: %v", err)
				}
				if ok {
					wins.Add(1)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("%d winners, want 1", wins.Load())
		}
	})
}

// clock is a settable offset from the real time: the stores expire keys in
// real time, while the Manager's absolute expiry and seal ages follow this.
type clock struct{ offset atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *clock) Advance(d time.Duration) { c.offset.Add(int64(d)) }
func newKeyPair(t *testing.T) sessions.KeyPair {
	t.Helper()
	return sessions.KeyPair{Hash: randBytes(t, 64), Block: randBytes(t, 32)}
}

func randBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func (e *env) manager(keys []sessions.KeyPair, now func() time.Time, touch time.Duration) *sessions.Manager {
	e.t.Helper()
	m, err := sessions.NewManager(e.store, sessions.Options{
		KeyPrefix:     e.prefix,
		Keys:          keys,
		Now:           now,
		TouchInterval: touch,
	})
	if err != nil {
		e.t.Fatalf("NewManager: %v", err)
	}
	return m
}

// newManager is a Manager over the env's store with one fresh key, the real
// clock and the default touch interval.
func (e *env) newManager() *sessions.Manager {
	e.t.Helper()
	return e.manager([]sessions.KeyPair{newKeyPair(e.t)}, nil, 0)
}

// newSession returns a session whose token strings are unique, to search for.
func newSession(t *testing.T, now time.Time) *sessions.Session {
	t.Helper()
	return &sessions.Session{
		Frontend:       "web",
		Subject:        "user-" + randHex(t, 4),
		ProviderSID:    "sid-" + randHex(t, 4),
		Claims:         json.RawMessage(`{"sub":"alice","roles":["admin"]}`),
		IDToken:        "idtoken-" + randHex(t, 16),
		AccessToken:    "accesstoken-" + randHex(t, 16),
		RefreshToken:   "refreshtoken-" + randHex(t, 16),
		TokenType:      "Bearer",
		Expiry:         now.Add(5 * time.Minute).Round(0),
		CreatedAt:      now.Round(0),
		AbsoluteExpiry: now.Add(12 * time.Hour).Round(0),
		IdleTimeout:    30 * time.Minute,
	}
}

func tokens(s *sessions.Session) []string {
	return []string{s.IDToken, s.AccessToken, s.RefreshToken}
}

func (e *env) create(m *sessions.Manager, binding string, s *sessions.Session) string {
	e.t.Helper()
	ref, err := m.Create(e.t.Context(), binding, s)
	if err != nil {
		e.t.Fatalf("Create: %v", err)
	}
	return ref
}

// loadFiveTimesOneExpire loads ref five times, wants exactly one Expire
// among the five (the store's count was 0 before), and returns the record's
// TTL after them.
func (e *env) loadFiveTimesOneExpire(m *sessions.Manager, binding, ref, key string) time.Duration {
	e.t.Helper()
	for range 5 {
		e.load(m, binding, ref)
	}
	if n := e.store.expires.Load(); n != 1 {
		e.t.Fatalf("%d Expire calls, want 1", n)
	}
	_, ttl, err := e.store.Get(e.t.Context(), key)
	if err != nil {
		e.t.Fatal(err)
	}
	return ttl
}

func (e *env) load(m *sessions.Manager, binding, ref string) *sessions.Session {
	e.t.Helper()
	s, err := m.Load(e.t.Context(), binding, ref)
	if err != nil {
		e.t.Fatalf("Load: %v", err)
	}
	return s
}

func (e *env) wantLoadErr(m *sessions.Manager, binding, ref string, want error) {
	e.t.Helper()
	s, err := m.Load(e.t.Context(), binding, ref)
	if !errors.Is(err, want) {
		e.t.Fatalf("Load = %v, %v; want %v", s, err, want)
	}
}

// refAlphabet is what cookies, URLs and bearer tokens all accept unescaped.
var refAlphabet = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

const web = "session:web"

func runManager(t *testing.T, newStore func(t *testing.T) Backend) {
	parallel(t, newStore, "create load roundtrip", func(t *testing.T, e *env) {
		m := e.newManager()
		in := newSession(t, time.Now())
		ref := e.create(m, web, in)
		if !refAlphabet.MatchString(ref) || len(ref) >= 250 {
			t.Fatalf("ref %q (%d bytes): want < 250 bytes of [A-Za-z0-9_-]", ref, len(ref))
		}
		for _, tok := range tokens(in) {
			if strings.Contains(ref, tok) {
				t.Fatal("ref contains a token")
			}
		}
		if len(in.ID()) < 22 || strings.Contains(ref, in.ID()) {
			t.Fatalf("ID() = %q: want >= 128 bits, not visible in the ref", in.ID())
		}
		if d := time.Until(in.ExpiresAt()); d < 29*time.Minute || d > 30*time.Minute {
			t.Fatalf("ExpiresAt in %v, want ~30m", d)
		}
		out := e.load(m, web, ref)
		if out.ID() != in.ID() {
			t.Errorf("ID = %q, want %q", out.ID(), in.ID())
		}
		inJSON, _ := json.Marshal(in)
		outJSON, _ := json.Marshal(out)
		if !bytes.Equal(inJSON, outJSON) {
			t.Errorf("loaded session differs:\n got %s\nwant %s", outJSON, inJSON)
		}
		if !out.AbsoluteExpiry.Equal(in.AbsoluteExpiry) || out.IdleTimeout != in.IdleTimeout {
			t.Errorf("timeouts differ: %v %v", out.AbsoluteExpiry, out.IdleTimeout)
		}
		// Refs are never reused: every Create is a new session.
		if ref2 := e.create(m, web, newSession(t, time.Now())); ref2 == ref {
			t.Fatal("two Creates returned the same ref")
		}
	})

	parallel(t, newStore, "create refuses a session that never ends", func(t *testing.T, e *env) {
		m := e.newManager()
		s := newSession(t, time.Now())
		s.IdleTimeout, s.AbsoluteExpiry = 0, time.Time{}
		if _, err := m.Create(t.Context(), web, s); err == nil {
			t.Fatal("Create without any timeout succeeded")
		}
		s = newSession(t, time.Now())
		s.AbsoluteExpiry = time.Now().Add(-time.Second)
		if _, err := m.Create(t.Context(), web, s); err == nil {
			t.Fatal("Create of an already expired session succeeded")
		}
	})

	parallel(t, newStore, "invalid refs", func(t *testing.T, e *env) {
		m := e.newManager()
		ref := e.create(m, web, newSession(t, time.Now()))
		flip := func(i int) string {
			b := []byte(ref)
			if b[i] == 'A' {
				b[i] = 'B'
			} else {
				b[i] = 'A'
			}
			return string(b)
		}
		tests := []struct{ name, binding, ref string }{
			{"empty", web, ""},
			{"garbage", web, "not-a-ref"},
			{"not base64", web, "!!!!" + ref[4:]},
			{"flipped first byte", web, flip(0)},
			{"flipped middle byte", web, flip(len(ref) / 2)},
			{"truncated", web, ref[:len(ref)-8]},
			{"extended", web, ref + "AAAA"},
			{"other binding", "handle:app", ref},
			{"other frontend", "session:admin", ref},
			{"empty binding", "", ref},
			{"sealed value is no ref", web, mustSeal(t, m, web, make([]byte, 48))},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				e := &env{t: t, store: e.store, prefix: e.prefix}
				e.wantLoadErr(m, tt.binding, tt.ref, sessions.ErrInvalidRef)
			})
		}
		e.load(m, web, ref) // the original still opens
	})

	parallel(t, newStore, "key rotation", func(t *testing.T, e *env) {
		oldKey, newKey := newKeyPair(t), newKeyPair(t)
		before := e.manager([]sessions.KeyPair{oldKey}, nil, 0)
		during := e.manager([]sessions.KeyPair{newKey, oldKey}, nil, 0)
		after := e.manager([]sessions.KeyPair{newKey}, nil, 0)

		oldRef := e.create(before, web, newSession(t, time.Now()))
		newRef := e.create(during, web, newSession(t, time.Now()))
		e.load(during, web, oldRef) // old first key now second: still opens
		e.load(during, web, newRef)
		e.load(after, web, newRef)
		e.wantLoadErr(after, web, oldRef, sessions.ErrInvalidRef)  // key removed
		e.wantLoadErr(before, web, newRef, sessions.ErrInvalidRef) // key unknown
	})

	parallel(t, newStore, "absolute expiry deletes the record", func(t *testing.T, e *env) {
		var c clock
		keys := []sessions.KeyPair{newKeyPair(t)}
		m := e.manager(keys, c.Now, 0)
		s := newSession(t, c.Now())
		s.AbsoluteExpiry = c.Now().Add(time.Hour)
		ref := e.create(m, web, s)
		c.Advance(time.Hour + time.Second)
		e.wantLoadErr(m, web, ref, sessions.ErrNotFound)
		wantGone(t, e.store, m.SessionKeyPrefix()+s.ID()+"}")
		if err := m.Save(t.Context(), s); !errors.Is(err, sessions.ErrNotFound) {
			t.Fatalf("Save after absolute expiry = %v, want ErrNotFound", err)
		}
	})

	parallel(t, newStore, "absolute expiry bounds the store ttl", func(t *testing.T, e *env) {
		m := e.newManager()
		s := newSession(t, time.Now())
		s.AbsoluteExpiry = time.Now().Add(300 * time.Millisecond)
		ref := e.create(m, web, s)
		e.load(m, web, ref)
		time.Sleep(500 * time.Millisecond)
		e.wantLoadErr(m, web, ref, sessions.ErrNotFound)
	})

	parallel(t, newStore, "idle expiry", func(t *testing.T, e *env) {
		m := e.newManager()
		s := newSession(t, time.Now())
		s.IdleTimeout = 300 * time.Millisecond
		ref := e.create(m, web, s)
		e.load(m, web, ref)
		time.Sleep(500 * time.Millisecond)
		e.wantLoadErr(m, web, ref, sessions.ErrNotFound)
	})

	parallel(t, newStore, "sliding idle window", func(t *testing.T, e *env) {
		m := e.manager([]sessions.KeyPair{newKeyPair(t)}, nil, 50*time.Millisecond)
		s := newSession(t, time.Now())
		s.IdleTimeout = 600 * time.Millisecond
		ref := e.create(m, web, s)
		for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); {
			time.Sleep(200 * time.Millisecond)
			e.load(m, web, ref)
		}
		time.Sleep(900 * time.Millisecond)
		e.wantLoadErr(m, web, ref, sessions.ErrNotFound)
	})

	parallel(t, newStore, "load writes at most once per touch interval", func(t *testing.T, e *env) {
		m := e.newManager() // default: 1m for 30m idle
		s := newSession(t, time.Now())
		ref := e.create(m, web, s)
		key := m.SessionKeyPrefix() + s.ID() + "}"
		for range 5 {
			e.load(m, web, ref)
		}
		if n := e.store.expires.Load(); n != 0 {
			t.Fatalf("%d Expire calls for fresh loads, want 0", n)
		}
		// Pretend the last extension was 5 minutes ago.
		if err := e.store.Backend.Expire(t.Context(), key, 25*time.Minute); err != nil {
			t.Fatal(err)
		}
		ttl := e.loadFiveTimesOneExpire(m, web, ref, key)
		wantTTL(t, ttl, 30*time.Minute)
	})

	parallel(t, newStore, "a session in use lives until its absolute expiry", func(t *testing.T, e *env) {
		m := e.newManager() // default: 1m for 30m idle
		s := newSession(t, time.Now())
		s.AbsoluteExpiry = time.Now().Add(29*time.Minute + 30*time.Second).Round(0)
		ref := e.create(m, web, s)
		key := m.SessionKeyPrefix() + s.ID() + "}"
		// Pretend the last extension was 50 s ago, while the idle window was
		// the bound: the record expires 20 s before AbsoluteExpiry unless a
		// load moves it there, although that is short of the touch interval.
		if err := e.store.Backend.Expire(t.Context(), key, 29*time.Minute+10*time.Second); err != nil {
			t.Fatal(err)
		}
		ttl := e.loadFiveTimesOneExpire(m, web, ref, key)
		// Not wantTTL: the memory store mixes the monotonic and the wall
		// clock, so its TTL may exceed AbsoluteExpiry's by microseconds.
		if d := time.Until(s.AbsoluteExpiry) - ttl; d < -50*time.Millisecond || d > 2*time.Second {
			t.Fatalf("ttl = %v, want about %v (until AbsoluteExpiry)", ttl, time.Until(s.AbsoluteExpiry))
		}
	})

	parallel(t, newStore, "save", func(t *testing.T, e *env) {
		m := e.newManager()
		ref := e.create(m, web, newSession(t, time.Now()))
		s := e.load(m, web, ref)
		s.AccessToken, s.RefreshToken = "accesstoken-"+randHex(t, 16), "refreshtoken-"+randHex(t, 16)
		if err := m.Save(t.Context(), s); err != nil {
			t.Fatalf("Save: %v", err)
		}
		got := e.load(m, web, ref)
		if got.AccessToken != s.AccessToken || got.RefreshToken != s.RefreshToken {
			t.Fatal("Save did not persist the new tokens")
		}
		if err := m.Save(t.Context(), &sessions.Session{}); err == nil {
			t.Fatal("Save of a session not from the Manager succeeded")
		}
	})

	parallel(t, newStore, "save after delete does not resurrect", func(t *testing.T, e *env) {
		m := e.newManager()
		ref := e.create(m, web, newSession(t, time.Now()))
		s := e.load(m, web, ref)
		if err := m.Delete(t.Context(), s); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if err := m.Save(t.Context(), s); !errors.Is(err, sessions.ErrNotFound) {
			t.Fatalf("Save after Delete = %v, want ErrNotFound", err)
		}
		e.wantLoadErr(m, web, ref, sessions.ErrNotFound)
	})

	parallel(t, newStore, "delete by id", func(t *testing.T, e *env) {
		m := e.newManager()
		s := newSession(t, time.Now())
		ref := e.create(m, web, s)
		// Operators find sessions by scanning for the prefix.
		key := m.SessionKeyPrefix() + s.ID() + "}"
		id, ok := m.SessionIDFromKey(key)
		if !ok || id != s.ID() {
			t.Fatalf("SessionIDFromKey(%q) = %q, %v", key, id, ok)
		}
		for _, k := range []string{m.LockKey(s), key + "x", e.prefix + "s:{short}"} {
			if _, ok := m.SessionIDFromKey(k); ok {
				t.Errorf("SessionIDFromKey(%q) = ok", k)
			}
		}
		if err := m.DeleteByID(t.Context(), id); err != nil {
			t.Fatalf("DeleteByID: %v", err)
		}
		e.wantLoadErr(m, web, ref, sessions.ErrNotFound)
		if err := m.DeleteByID(t.Context(), id); err != nil {
			t.Fatalf("DeleteByID of a gone session = %v, want nil", err)
		}
		if err := m.DeleteByID(t.Context(), "*"); !errors.Is(err, sessions.ErrInvalidRef) {
			t.Fatalf("DeleteByID(malformed) = %v, want ErrInvalidRef", err)
		}
	})

	parallel(t, newStore, "lock key shares the hash tag", func(t *testing.T, e *env) {
		m := e.newManager()
		s := newSession(t, time.Now())
		e.create(m, web, s)
		lk := m.LockKey(s)
		if !strings.HasPrefix(lk, e.prefix) || !strings.HasSuffix(lk, "{"+s.ID()+"}") ||
			strings.HasPrefix(lk, m.SessionKeyPrefix()) {
			t.Fatalf("LockKey = %q", lk)
		}
	})

	parallel(t, newStore, "no token text at rest", func(t *testing.T, e *env) {
		m := e.newManager()
		s := newSession(t, time.Now())
		ref := e.create(m, web, s)
		loaded := e.load(m, web, ref)
		loaded.AccessToken = "accesstoken-" + randHex(t, 16)
		if err := m.Save(t.Context(), loaded); err != nil {
			t.Fatal(err)
		}
		secrets := append(tokens(s), loaded.AccessToken, ref)
		stored, _, err := e.store.Get(t.Context(), m.SessionKeyPrefix()+s.ID()+"}")
		if err != nil {
			t.Fatal(err)
		}
		for i, v := range append(e.store.written(), stored) {
			for _, secret := range secrets {
				if bytes.Contains(v, []byte(secret)) {
					t.Fatalf("stored value %d contains %q", i, secret)
				}
			}
		}
		// The clear metadata is what operators list.
		meta, err := sessions.ReadMeta(stored)
		if err != nil {
			t.Fatalf("ReadMeta: %v", err)
		}
		want := sessions.Meta{Frontend: s.Frontend, Subject: s.Subject, ProviderSID: s.ProviderSID,
			CreatedAt: s.CreatedAt, AbsoluteExpiry: s.AbsoluteExpiry}
		if meta.Frontend != want.Frontend || meta.Subject != want.Subject || meta.ProviderSID != want.ProviderSID ||
			!meta.CreatedAt.Equal(want.CreatedAt) || !meta.AbsoluteExpiry.Equal(want.AbsoluteExpiry) {
			t.Fatalf("ReadMeta = %+v, want %+v", meta, want)
		}
	})

	parallel(t, newStore, "record moved to another key does not open", func(t *testing.T, e *env) {
		m := e.newManager()
		a, b := newSession(t, time.Now()), newSession(t, time.Now())
		e.create(m, web, a)
		refB := e.create(m, web, b)
		recA, _, err := e.store.Get(t.Context(), m.SessionKeyPrefix()+a.ID()+"}")
		if err != nil {
			t.Fatal(err)
		}
		mustSet(t, e.store, m.SessionKeyPrefix()+b.ID()+"}", string(recA), time.Minute)
		e.wantLoadErr(m, web, refB, sessions.ErrInvalidRef)
	})

	parallel(t, newStore, "put once take once", func(t *testing.T, e *env) {
		m := e.newManager()
		id, value := "code-"+randHex(t, 16), []byte("handoff-"+randHex(t, 16))
		if err := m.PutOnce(t.Context(), "handoff", id, value, time.Minute); err != nil {
			t.Fatalf("PutOnce: %v", err)
		}
		if err := m.PutOnce(t.Context(), "handoff", id, []byte("other"), time.Minute); !errors.Is(err, sessions.ErrExists) {
			t.Fatalf("second PutOnce = %v, want ErrExists", err)
		}
		if _, err := m.TakeOnce(t.Context(), "state", id); !errors.Is(err, sessions.ErrNotFound) {
			t.Fatalf("TakeOnce of another kind = %v, want ErrNotFound", err)
		}
		for i, v := range e.store.written() {
			if bytes.Contains(v, []byte(id)) || bytes.Contains(v, value) {
				t.Fatalf("stored value %d holds the id or value in clear", i)
			}
		}
		got, err := m.TakeOnce(t.Context(), "handoff", id)
		if err != nil || !bytes.Equal(got, value) {
			t.Fatalf("TakeOnce = %q, %v", got, err)
		}
		if _, err := m.TakeOnce(t.Context(), "handoff", id); !errors.Is(err, sessions.ErrNotFound) {
			t.Fatalf("second TakeOnce = %v, want ErrNotFound", err)
		}

		if err := m.PutOnce(t.Context(), "state", id, value, 150*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		time.Sleep(400 * time.Millisecond)
		if _, err := m.TakeOnce(t.Context(), "state", id); !errors.Is(err, sessions.ErrNotFound) {
			t.Fatalf("TakeOnce after expiry = %v, want ErrNotFound", err)
		}
	})

	parallel(t, newStore, "seal open", func(t *testing.T, e *env) {
		var c clock
		oldKey, newKey := newKeyPair(t), newKeyPair(t)
		m := e.manager([]sessions.KeyPair{newKey, oldKey}, c.Now, 0)
		old := e.manager([]sessions.KeyPair{oldKey}, c.Now, 0)
		value := []byte(`{"state":"s","nonce":"n"}`)
		sealed := mustSeal(t, m, "login:web", value)
		if !refAlphabet.MatchString(sealed) {
			t.Fatalf("sealed value %q is not cookie and URL safe", sealed)
		}
		if bytes.Contains([]byte(sealed), value) {
			t.Fatal("sealed value is readable")
		}
		got, err := m.Open("login:web", sealed, 10*time.Minute)
		if err != nil || !bytes.Equal(got, value) {
			t.Fatalf("Open = %q, %v", got, err)
		}
		if _, err := m.Open("login:web", mustSeal(t, old, "login:web", value), time.Minute); err != nil {
			t.Fatalf("Open of a value sealed under the second key: %v", err)
		}
		tampered := []byte(sealed)
		tampered[len(tampered)/2] ^= 'A' ^ 'B'
		tests := []struct {
			name, openAs, sealed string
			advance              time.Duration
		}{
			{"wrong name", "login:admin", sealed, 0},
			{"session binding", web, sealed, 0},
			{"tampered", "login:web", string(tampered), 0},
			{"empty", "login:web", "", 0},
			{"removed key", "login:web", mustSeal(t, e.manager([]sessions.KeyPair{newKeyPair(t)}, c.Now, 0), "login:web", value), 0},
			{"too old", "login:web", sealed, 10*time.Minute + time.Second},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c.Advance(tt.advance)
				defer c.Advance(-tt.advance)
				if got, err := m.Open(tt.openAs, tt.sealed, 10*time.Minute); !errors.Is(err, sessions.ErrInvalidRef) {
					t.Fatalf("Open = %q, %v; want ErrInvalidRef", got, err)
				}
			})
		}
		if _, err := m.Open("login:web", sealed, 0); err == nil {
			t.Fatal("Open with maxAge 0 succeeded")
		}
	})
}

func mustSeal(t *testing.T, m *sessions.Manager, name string, value []byte) string {
	t.Helper()
	s, err := m.Seal(name, value)
	if err != nil {
		t.Fatalf("Seal: %v", err)
	}
	return s
}
