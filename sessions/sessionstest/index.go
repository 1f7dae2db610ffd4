package sessionstest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bffgate/bffgate/sessions"
)

// wantMembers fails unless the set at key holds exactly want.
func wantMembers(t *testing.T, ix sessions.Indexer, key string, want ...string) {
	t.Helper()
	got, err := ix.Members(t.Context(), key)
	if err != nil {
		t.Fatalf("Members(%q): %v", key, err)
	}
	slices.Sort(got)
	want = slices.Clone(want)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("Members(%q) = %q, want %q", key, got, want)
	}
}

func mustAdd(t *testing.T, ix sessions.Indexer, key, member string, ttl time.Duration) {
	t.Helper()
	if err := ix.AddToSet(t.Context(), key, member, ttl); err != nil {
		t.Fatalf("AddToSet(%q, %q): %v", key, member, err)
	}
}

func runIndexer(t *testing.T, newStore func(t *testing.T) Backend) {
	parallel(t, newStore, "absent set has no members", func(t *testing.T, e *env) {
		wantMembers(t, e.store, e.key("none"))
	})

	parallel(t, newStore, "add members remove", func(t *testing.T, e *env) {
		k := e.key("set")
		mustAdd(t, e.store, k, "a", time.Minute)
		mustAdd(t, e.store, k, "b", time.Minute)
		mustAdd(t, e.store, k, "a", time.Minute) // a set: no duplicate
		wantMembers(t, e.store, k, "a", "b")
		if err := e.store.RemoveFromSet(t.Context(), k, "a", "never-added"); err != nil {
			t.Fatalf("RemoveFromSet: %v", err)
		}
		wantMembers(t, e.store, k, "b")
		if err := e.store.RemoveFromSet(t.Context(), k); err != nil {
			t.Fatalf("RemoveFromSet(no members) = %v", err)
		}
		if err := e.store.RemoveFromSet(t.Context(), e.key("absent"), "x"); err != nil {
			t.Fatalf("RemoveFromSet(absent set) = %v", err)
		}
		if err := e.store.RemoveFromSet(t.Context(), k, "b"); err != nil {
			t.Fatal(err)
		}
		wantMembers(t, e.store, k)
		// The emptied set is gone, so a new member starts a new set.
		mustAdd(t, e.store, k, "c", time.Minute)
		wantMembers(t, e.store, k, "c")
	})

	parallel(t, newStore, "non-positive ttl is refused", func(t *testing.T, e *env) {
		for _, ttl := range []time.Duration{0, -time.Second} {
			if err := e.store.AddToSet(t.Context(), e.key("s"), "m", ttl); err == nil {
				t.Errorf("AddToSet with ttl %v succeeded", ttl)
			}
		}
		wantMembers(t, e.store, e.key("s"))
	})

	parallel(t, newStore, "set expires", func(t *testing.T, e *env) {
		k := e.key("short")
		mustAdd(t, e.store, k, "a", 150*time.Millisecond)
		wantMembers(t, e.store, k, "a")
		time.Sleep(400 * time.Millisecond)
		wantMembers(t, e.store, k)
	})

	parallel(t, newStore, "ttl only grows", func(t *testing.T, e *env) {
		grows, keeps := e.key("grows"), e.key("keeps")
		mustAdd(t, e.store, grows, "a", 150*time.Millisecond)
		mustAdd(t, e.store, grows, "b", 10*time.Second) // extends the set
		mustAdd(t, e.store, keeps, "a", 10*time.Second)
		mustAdd(t, e.store, keeps, "b", 150*time.Millisecond) // must not shorten it
		time.Sleep(400 * time.Millisecond)
		wantMembers(t, e.store, grows, "a", "b")
		wantMembers(t, e.store, keeps, "a", "b")
	})
}

func runScanner(t *testing.T, newStore func(t *testing.T) Backend) {
	scan := func(t *testing.T, sc sessions.Scanner, prefix string) []string {
		t.Helper()
		seen := map[string]bool{}
		err := sc.Scan(t.Context(), prefix, func(key string) error {
			seen[key] = true
			return nil
		})
		if err != nil {
			t.Fatalf("Scan(%q): %v", prefix, err)
		}
		keys := make([]string, 0, len(seen))
		for k := range seen {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		return keys
	}

	parallel(t, newStore, "prefix", func(t *testing.T, e *env) {
		var want []string
		for i := range 1500 { // more than one SCAN batch
			k := e.key(fmt.Sprintf("s:{%04d}", i))
			mustSet(t, e.store, k, "v", time.Minute)
			want = append(want, k)
		}
		mustAdd(t, e.store, e.key("s:{set}"), "m", time.Minute) // any kind of key
		want = append(want, e.key("s:{set}"))
		mustSet(t, e.store, e.key("other"), "v", time.Minute)
		mustSet(t, e.store, e.key("s"), "v", time.Minute)
		slices.Sort(want)
		if got := scan(t, e.store, e.key("s:{")); !slices.Equal(got, want) {
			t.Fatalf("Scan found %d keys, want %d", len(got), len(want))
		}
		if got := scan(t, e.store, e.key("nothing:")); len(got) != 0 {
			t.Fatalf("Scan(nothing) = %q", got)
		}
	})

	parallel(t, newStore, "glob characters in the prefix are literal", func(t *testing.T, e *env) {
		for _, k := range []string{`p*:1`, `pXY:2`, `p?:3`, `pa:4`, `p[ab]:5`, `pb:6`, `p\x:7`, `px:8`} {
			mustSet(t, e.store, e.key(k), "v", time.Minute)
		}
		tests := []struct{ prefix, want string }{
			{`p*`, `p*:1`},
			{`p?`, `p?:3`},
			{`p[ab]`, `p[ab]:5`},
			{`p\x`, `p\x:7`},
		}
		for _, tt := range tests {
			got := scan(t, e.store, e.key(tt.prefix))
			if !slices.Equal(got, []string{e.key(tt.want)}) {
				t.Errorf("Scan(%q) = %q, want only %q", tt.prefix, got, tt.want)
			}
		}
	})

	parallel(t, newStore, "callback error stops the walk", func(t *testing.T, e *env) {
		for i := range 5 {
			mustSet(t, e.store, e.key(fmt.Sprint("k", i)), "v", time.Minute)
		}
		stop := errors.New("stop")
		calls := 0
		err := e.store.Scan(t.Context(), e.key("k"), func(string) error {
			calls++
			return stop
		})
		if !errors.Is(err, stop) || calls != 1 {
			t.Fatalf("Scan = %v after %d calls; want the callback's error after 1", err, calls)
		}
	})
}

// indexKey is the documented layout of the Manager's index sets.
func indexKey(prefix, frontend, dim, value string) string {
	sum := sha256.Sum256([]byte(value))
	return prefix + "idx:{" + frontend + "}:" + dim + ":" + hex.EncodeToString(sum[:])
}

func sessionOf(t *testing.T, frontend, sub, sid string) *sessions.Session {
	t.Helper()
	s := newSession(t, time.Now())
	s.Frontend, s.Subject, s.ProviderSID = frontend, sub, sid
	return s
}

// live reports whether the session's record is still in the store.
func (e *env) live(m *sessions.Manager, s *sessions.Session) bool {
	e.t.Helper()
	_, _, err := e.store.Get(e.t.Context(), m.SessionKeyPrefix()+s.ID()+"}")
	if errors.Is(err, sessions.ErrNotFound) {
		return false
	}
	if err != nil {
		e.t.Fatalf("Get: %v", err)
	}
	return true
}

func (e *env) wantLive(m *sessions.Manager, want map[string]bool, all ...*sessions.Session) {
	e.t.Helper()
	for _, s := range all {
		if got := e.live(m, s); got != want[s.ID()] {
			e.t.Errorf("session %s/%s/%s live = %v, want %v", s.Frontend, s.Subject, s.ProviderSID, got, want[s.ID()])
		}
	}
}

func (e *env) endSessions(m *sessions.Manager, frontend, sid, sub string, want int) {
	e.t.Helper()
	n, err := m.EndSessions(e.t.Context(), frontend, sid, sub)
	if err != nil || n != want {
		e.t.Fatalf("EndSessions(%q, %q, %q) = %d, %v; want %d", frontend, sid, sub, n, err, want)
	}
}

// hideIndex hides every capability but Store from the Manager.
type hideIndex struct{ sessions.Store }

// failing answers record reads (Get) or index and key listings (Members,
// Scan) with a store error, once told to.
type failing struct {
	Backend
	getDown, listDown bool
}

var errDown = errors.New("store down (test)")

func (f *failing) Get(ctx context.Context, key string) ([]byte, time.Duration, error) {
	if f.getDown {
		return nil, 0, errDown
	}
	return f.Backend.Get(ctx, key)
}

func (f *failing) Members(ctx context.Context, key string) ([]string, error) {
	if f.listDown {
		return nil, errDown
	}
	return f.Backend.Members(ctx, key)
}

func (f *failing) Scan(ctx context.Context, prefix string, fn func(string) error) error {
	if f.listDown {
		return errDown
	}
	return f.Backend.Scan(ctx, prefix, fn)
}

func runManagerIndexes(t *testing.T, newStore func(t *testing.T) Backend) {
	parallel(t, newStore, "end sessions by sid then by sub", func(t *testing.T, e *env) {
		m := e.newManager()
		sub := "user-" + randHex(t, 4)
		a := sessionOf(t, "web", sub, "sid-a")
		b := sessionOf(t, "web", sub, "sid-b")
		admin := sessionOf(t, "admin", sub, "sid-a") // same sub and sid, other frontend
		other := sessionOf(t, "web", "someone-else", "sid-x")
		for _, s := range []*sessions.Session{a, b, admin, other} {
			e.create(m, web, s)
		}
		all := []*sessions.Session{a, b, admin, other}

		e.endSessions(m, "web", "sid-a", sub, 1) // sid wins over sub
		e.wantLive(m, map[string]bool{b.ID(): true, admin.ID(): true, other.ID(): true}, all...)
		e.endSessions(m, "web", "sid-a", "", 0) // already ended

		c := sessionOf(t, "web", sub, "")
		e.create(m, web, c)
		all = append(all, c)
		e.endSessions(m, "web", "", sub, 2) // b and c
		e.wantLive(m, map[string]bool{admin.ID(): true, other.ID(): true}, all...)

		e.endSessions(m, "admin", "", sub, 1)
		e.wantLive(m, map[string]bool{other.ID(): true}, all...)
		for _, k := range []string{
			indexKey(e.prefix, "web", "sub", sub), indexKey(e.prefix, "web", "sid", "sid-a"),
			indexKey(e.prefix, "web", "sid", "sid-b"), indexKey(e.prefix, "admin", "sub", sub),
			indexKey(e.prefix, "admin", "sid", "sid-a"),
		} {
			wantMembers(t, e.store, k) // ended sessions leave their indexes
		}
		wantMembers(t, e.store, indexKey(e.prefix, "web", "sub", "someone-else"), other.ID())

		for _, args := range [][3]string{{"", "sid-x", ""}, {"web", "", ""}} {
			if n, err := m.EndSessions(t.Context(), args[0], args[1], args[2]); err == nil {
				t.Errorf("EndSessions%q = %d, nil; want an error", args, n)
			}
		}
	})

	// Back-Channel Logout with sid and sub, from a provider whose ID tokens
	// carried no sid (the zitadel example OP): the sessions made from them
	// have only a subject, and must end too.
	parallel(t, newStore, "end sessions by sid and sub ends the subject's sessions without sid", func(t *testing.T, e *env) {
		m := e.newManager()
		sub := "user-" + randHex(t, 4)
		bySID := sessionOf(t, "web", "another-sub", "sid-a")
		noSID := sessionOf(t, "web", sub, "")
		otherSID := sessionOf(t, "web", sub, "sid-b") // another login of the subject: stays
		adminNoSID := sessionOf(t, "admin", sub, "")
		all := []*sessions.Session{bySID, noSID, otherSID, adminNoSID}
		for _, s := range all {
			e.create(m, web, s)
		}
		e.endSessions(m, "web", "sid-a", sub, 2)
		e.wantLive(m, map[string]bool{otherSID.ID(): true, adminNoSID.ID(): true}, all...)
		wantMembers(t, e.store, indexKey(e.prefix, "web", "sub", sub), otherSID.ID())
	})

	parallel(t, newStore, "index keys", func(t *testing.T, e *env) {
		m := e.newManager()
		sub, sid := "alice@example.com", "provider-session-"+randHex(t, 4)
		s := sessionOf(t, "web", sub, sid)
		e.create(m, web, s)
		wantMembers(t, e.store, indexKey(e.prefix, "web", "sid", sid), s.ID())
		wantMembers(t, e.store, indexKey(e.prefix, "web", "sub", sub), s.ID())
		e.store.mu.Lock()
		for k := range e.store.keys {
			if strings.Contains(k, sub) || strings.Contains(k, sid) {
				t.Errorf("key %q names the subject or provider sid", k)
			}
		}
		e.store.mu.Unlock()

		anon := sessionOf(t, "web", "", "") // nothing to index by
		e.create(m, web, anon)
		n := e.store.keyCount()
		if n != 4 { // two records, two index sets
			t.Errorf("%d keys written, want 4", n)
		}
	})

	parallel(t, newStore, "indexes slide with a session that has no absolute expiry", func(t *testing.T, e *env) {
		m := e.manager([]sessions.KeyPair{newKeyPair(t)}, nil, 50*time.Millisecond)
		s := sessionOf(t, "web", "user-"+randHex(t, 4), "sid-"+randHex(t, 4))
		s.IdleTimeout, s.AbsoluteExpiry = 600*time.Millisecond, time.Time{}
		ref := e.create(m, web, s)
		for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); {
			time.Sleep(200 * time.Millisecond)
			e.load(m, web, ref)
		}
		e.endSessions(m, "web", s.ProviderSID, "", 1)
	})

	parallel(t, newStore, "delete leaves the indexes", func(t *testing.T, e *env) {
		m := e.newManager()
		sub := "user-" + randHex(t, 4)
		a, b := sessionOf(t, "web", sub, "sid-a"), sessionOf(t, "web", sub, "sid-b")
		e.create(m, web, a)
		e.create(m, web, b)
		if err := m.Delete(t.Context(), a); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		wantMembers(t, e.store, indexKey(e.prefix, "web", "sid", "sid-a"))
		wantMembers(t, e.store, indexKey(e.prefix, "web", "sub", sub), b.ID())
		if err := m.DeleteByID(t.Context(), b.ID()); err != nil {
			t.Fatalf("DeleteByID: %v", err)
		}
		wantMembers(t, e.store, indexKey(e.prefix, "web", "sid", "sid-b"))
		wantMembers(t, e.store, indexKey(e.prefix, "web", "sub", sub))
		if err := m.DeleteByID(t.Context(), b.ID()); err != nil {
			t.Fatalf("DeleteByID of a gone session = %v", err)
		}
	})

	parallel(t, newStore, "stale members are skipped and pruned", func(t *testing.T, e *env) {
		m := e.newManager()
		sub := "user-" + randHex(t, 4)
		live := sessionOf(t, "web", sub, "sid-live")
		short := sessionOf(t, "web", sub, "sid-short")
		short.IdleTimeout = 150 * time.Millisecond // the sub set outlives it: live keeps it
		stranger := sessionOf(t, "web", "someone-else", "sid-other")
		for _, s := range []*sessions.Session{live, short, stranger} {
			e.create(m, web, s)
		}
		subKey := indexKey(e.prefix, "web", "sub", sub)
		// A member that is no id, one whose record never existed, and a live
		// session that is not this subject's: none may be ended.
		mustAdd(t, e.store, subKey, "not-an-id*", time.Minute)
		mustAdd(t, e.store, subKey, "AAAAAAAAAAAAAAAAAAAAAA", time.Minute)
		mustAdd(t, e.store, subKey, stranger.ID(), time.Minute)
		time.Sleep(400 * time.Millisecond)

		found, err := m.Find(t.Context(), sessions.Filter{Frontend: "web", Subject: sub})
		if err != nil || len(found) != 1 || found[0].ID != live.ID() {
			t.Fatalf("Find = %+v, %v; want only the live session", found, err)
		}
		wantMembers(t, e.store, subKey, live.ID(), short.ID(), "not-an-id*", "AAAAAAAAAAAAAAAAAAAAAA", stranger.ID()) // Find only reads

		e.endSessions(m, "web", "", sub, 1)
		e.wantLive(m, map[string]bool{stranger.ID(): true}, live, short, stranger)
		wantMembers(t, e.store, subKey) // ended and stale members alike are gone
		wantMembers(t, e.store, indexKey(e.prefix, "web", "sub", "someone-else"), stranger.ID())
	})

	parallel(t, newStore, "find and revoke filters", func(t *testing.T, e *env) {
		m := e.newManager()
		u1, u2 := "u1-"+randHex(t, 4), "u2-"+randHex(t, 4)
		now := time.Now()
		mk := func(frontend, sub, sid string, age time.Duration) *sessions.Session {
			s := sessionOf(t, frontend, sub, sid)
			s.CreatedAt = now.Add(-age).Round(0)
			e.create(m, web, s)
			return s
		}
		w1a := mk("web", u1, "sid-a", 2*time.Minute)
		w1b := mk("web", u1, "sid-b", time.Minute)
		w2c := mk("web", u2, "sid-c", 0)
		a1d := mk("admin", u1, "sid-d", 0)

		ids := func(found []sessions.Found) []string {
			out := make([]string, len(found))
			for i, f := range found {
				out[i] = f.ID
			}
			return out
		}
		tests := []struct {
			name string
			f    sessions.Filter
			want []*sessions.Session // in Find's order: frontend, subject, created
		}{
			{"all", sessions.Filter{}, []*sessions.Session{a1d, w1a, w1b, w2c}},
			{"frontend", sessions.Filter{Frontend: "web"}, []*sessions.Session{w1a, w1b, w2c}},
			{"subject everywhere", sessions.Filter{Subject: u1}, []*sessions.Session{a1d, w1a, w1b}},
			{"subject of a frontend", sessions.Filter{Frontend: "web", Subject: u1}, []*sessions.Session{w1a, w1b}},
			{"sid of a frontend", sessions.Filter{Frontend: "web", ProviderSID: "sid-b"}, []*sessions.Session{w1b}},
			{"sid everywhere", sessions.Filter{ProviderSID: "sid-d"}, []*sessions.Session{a1d}},
			{"sid and subject", sessions.Filter{Frontend: "web", Subject: u2, ProviderSID: "sid-a"}, nil},
			{"sid of another frontend", sessions.Filter{Frontend: "admin", ProviderSID: "sid-a"}, nil},
			{"unknown frontend", sessions.Filter{Frontend: "nope"}, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				found, err := m.Find(t.Context(), tt.f)
				if err != nil {
					t.Fatalf("Find: %v", err)
				}
				want := make([]string, len(tt.want))
				for i, s := range tt.want {
					want[i] = s.ID()
				}
				if got := ids(found); !slices.Equal(got, want) {
					t.Fatalf("Find(%+v) = %q, want %q", tt.f, got, want)
				}
			})
		}

		found, err := m.Find(t.Context(), sessions.Filter{Frontend: "web", ProviderSID: "sid-a"})
		if err != nil || len(found) != 1 {
			t.Fatalf("Find = %+v, %v", found, err)
		}
		meta := found[0].Meta
		if meta.Frontend != "web" || meta.Subject != u1 || meta.ProviderSID != "sid-a" ||
			!meta.CreatedAt.Equal(w1a.CreatedAt) || !meta.AbsoluteExpiry.Equal(w1a.AbsoluteExpiry) {
			t.Errorf("Found.Meta = %+v", meta)
		}
		wantTTL(t, found[0].TTL, 30*time.Minute)

		if n, err := m.Revoke(t.Context(), sessions.Filter{Frontend: "web", Subject: u1}); err != nil || n != 2 {
			t.Fatalf("Revoke(web, u1) = %d, %v; want 2", n, err)
		}
		e.wantLive(m, map[string]bool{w2c.ID(): true, a1d.ID(): true}, w1a, w1b, w2c, a1d)
		if n, err := m.Revoke(t.Context(), sessions.Filter{Subject: u1}); err != nil || n != 1 {
			t.Fatalf("Revoke(u1) = %d, %v; want 1", n, err)
		}
		wantMembers(t, e.store, indexKey(e.prefix, "admin", "sub", u1)) // a scan-found session leaves its indexes too
		if n, err := m.Revoke(t.Context(), sessions.Filter{}); err != nil || n != 1 {
			t.Fatalf("Revoke(all) = %d, %v; want 1", n, err)
		}
		if found, err := m.Find(t.Context(), sessions.Filter{}); err != nil || len(found) != 0 {
			t.Fatalf("Find after revoking all = %+v, %v", found, err)
		}
	})

	parallel(t, newStore, "store errors propagate", func(t *testing.T, e *env) {
		f := &failing{Backend: e.store}
		m, err := sessions.NewManager(f, sessions.Options{KeyPrefix: e.prefix, Keys: []sessions.KeyPair{newKeyPair(t)}})
		if err != nil {
			t.Fatal(err)
		}
		s := sessionOf(t, "web", "user-"+randHex(t, 4), "sid-"+randHex(t, 4))
		e.create(m, web, s)
		ops := []struct {
			name string
			op   func() error
		}{
			{"end by sid", func() error { _, err := m.EndSessions(t.Context(), "web", s.ProviderSID, ""); return err }},
			{"end by sub", func() error { _, err := m.EndSessions(t.Context(), "web", "", s.Subject); return err }},
			{"find indexed", func() error {
				_, err := m.Find(t.Context(), sessions.Filter{Frontend: "web", Subject: s.Subject})
				return err
			}},
			{"find scan", func() error { _, err := m.Find(t.Context(), sessions.Filter{}); return err }},
			{"revoke", func() error { _, err := m.Revoke(t.Context(), sessions.Filter{Subject: s.Subject}); return err }},
			{"delete by id", func() error { return m.DeleteByID(t.Context(), s.ID()) }},
		}
		for _, down := range []struct {
			name        string
			get, listed bool
		}{{"get", true, false}, {"members and scan", false, true}} {
			f.getDown, f.listDown = down.get, down.listed
			for _, op := range ops {
				if op.name == "delete by id" && !down.get {
					continue // reads no index
				}
				if err := op.op(); !errors.Is(err, errDown) {
					t.Errorf("%s with %s down = %v; want the store's error", op.name, down.name, err)
				}
			}
		}
		f.getDown, f.listDown = false, false
		if !e.live(m, s) {
			t.Fatal("the session did not survive a store outage")
		}
		// A record that could not be read is not stale: its members stay.
		wantMembers(t, e.store, indexKey(e.prefix, "web", "sid", s.ProviderSID), s.ID())
		wantMembers(t, e.store, indexKey(e.prefix, "web", "sub", s.Subject), s.ID())
	})

	parallel(t, newStore, "store without indexes", func(t *testing.T, e *env) {
		m, err := sessions.NewManager(hideIndex{e.store}, sessions.Options{KeyPrefix: e.prefix, Keys: []sessions.KeyPair{newKeyPair(t)}})
		if err != nil {
			t.Fatal(err)
		}
		s := sessionOf(t, "web", "user-"+randHex(t, 4), "sid-"+randHex(t, 4))
		e.create(m, web, s)
		n := e.store.keyCount()
		if n != 1 {
			t.Fatalf("%d keys written, want only the record", n)
		}
		if n, err := m.EndSessions(t.Context(), "web", s.ProviderSID, ""); err == nil {
			t.Fatalf("EndSessions on a store that can neither index nor scan = %d, nil; want an error", n)
		}
		if err := m.DeleteByID(t.Context(), s.ID()); err != nil {
			t.Fatalf("DeleteByID: %v", err)
		}
		if e.live(m, s) {
			t.Fatal("DeleteByID left the session")
		}
	})
}
