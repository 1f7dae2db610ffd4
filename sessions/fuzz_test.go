package sessions_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/bffgate/bffgate/sessions"
	"github.com/bffgate/bffgate/sessions/memstore"
)

// fuzzManager is a Manager over a memory store with fixed keys and clock,
// so a fuzz run is deterministic; it holds one live session whose reference
// is returned.
func fuzzManager(f *testing.F) (*sessions.Manager, string, time.Time) {
	now := time.Unix(1_800_000_000, 0)
	key := bytes.Repeat([]byte{7}, 32)
	store := memstore.New()
	store.Now = func() time.Time { return now }
	m, err := sessions.NewManager(store, sessions.Options{
		KeyPrefix: "fuzz:", Keys: []sessions.KeyPair{{Hash: key, Block: key}}, Now: func() time.Time { return now },
	})
	if err != nil {
		f.Fatal(err)
	}
	ref, err := m.Create(context.Background(), "spa:web", &sessions.Session{
		Frontend: "web", Subject: "alice", Claims: json.RawMessage(`{}`), AccessToken: "at",
		AbsoluteExpiry: now.Add(time.Hour), IdleTimeout: time.Hour,
	})
	if err != nil {
		f.Fatal(err)
	}
	return m, ref, now
}

// FuzzLoad: a cookie or mobile handle that is not exactly a reference the
// Manager sealed for that binding opens no session, and never panics.
func FuzzLoad(f *testing.F) {
	m, ref, _ := fuzzManager(f)
	for _, s := range []string{ref, ref[:len(ref)-1], ref + "A", strings.ToUpper(ref), "", "garbage", "====",
		strings.Repeat("A", 5000), "MTc2NDYxNjQwMHxabc|def", "\x00\xff"} {
		f.Add(s, "spa:web")
	}
	f.Add(ref, "spa:admin")
	f.Add(ref, "mobile:web")
	f.Fuzz(func(t *testing.T, candidate, binding string) {
		s, err := m.Load(context.Background(), binding, candidate)
		if err == nil {
			if binding != "spa:web" || s.Subject != "alice" {
				t.Fatalf("Load(%q, %q) opened a session", binding, candidate)
			}
			return
		}
		if s != nil {
			t.Fatal("a session with an error")
		}
		if !errors.Is(err, sessions.ErrInvalidRef) && !errors.Is(err, sessions.ErrNotFound) {
			t.Fatalf("Load(%q, %q) = %v: neither invalid nor not found (a store error would mean 503)", binding, candidate, err)
		}
	})
}

// FuzzOpen: Open returns only what Seal sealed under the same name, within
// its age; garbage is ErrInvalidRef.
func FuzzOpen(f *testing.F) {
	m, _, _ := fuzzManager(f)
	sealed, err := m.Seal("login:web", []byte(`{"st":"s"}`))
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{sealed, sealed[:len(sealed)-2], "", "x", strings.Repeat("A", 5000), "a|b|c"} {
		f.Add(s, "login:web")
	}
	f.Add(sealed, "handoff:web")
	f.Fuzz(func(t *testing.T, candidate, name string) {
		got, err := m.Open(name, candidate, 10*time.Minute)
		if err != nil {
			if !errors.Is(err, sessions.ErrInvalidRef) {
				t.Fatalf("Open(%q, %q) = %v, want ErrInvalidRef", name, candidate, err)
			}
			return
		}
		// (Seal is randomised: a fuzz worker's own seal differs from the
		// seed's, and both are genuine.)
		if name != "login:web" || string(got) != `{"st":"s"}` {
			t.Fatalf("Open(%q, %q) accepted a value it did not seal: %q", name, candidate, got)
		}
	})
}
