package sessions_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"github.com/bffgate/bffgate/sessions"
	"github.com/bffgate/bffgate/sessions/memstore"
)

func TestSessionValues(t *testing.T) {
	ctx := context.Background()
	store := memstore.New()
	m := sharedManager(t, store)
	newSession := func() *sessions.Session {
		s := &sessions.Session{Frontend: "web", Subject: "u1", IdleTimeout: time.Hour, AbsoluteExpiry: time.Now().Add(time.Minute)}
		if _, err := m.Create(ctx, "spa:web", s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	s, other := newSession(), newSession()
	secret := []byte("exchanged-access-token-value")

	if _, err := m.GetValue(ctx, s, "x:pay"); !errors.Is(err, sessions.ErrNotFound) {
		t.Fatalf("absent value: %v, want ErrNotFound", err)
	}
	// Asked for an hour, kept no longer than the session's absolute expiry.
	if err := m.PutValue(ctx, s, "x:pay", secret, time.Hour); err != nil {
		t.Fatal(err)
	}
	if got, err := m.GetValue(ctx, s, "x:pay"); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("GetValue = %q, %v", got, err)
	}
	key := "p:sv:{" + s.ID() + "}:x:pay"
	raw, ttl, err := store.Get(ctx, key)
	if err != nil {
		t.Fatalf("stored under %q: %v", key, err)
	}
	if bytes.Contains(raw, secret) {
		t.Error("the value is stored in clear")
	}
	if ttl <= 0 || ttl > time.Minute {
		t.Errorf("ttl %v, want at most the minute left of the session", ttl)
	}
	if got, want := m.ValueLockKey(s, "x:pay"), "p:lock:{"+s.ID()+"}:x:pay"; got != want {
		t.Errorf("lock key %q, want %q", got, want)
	}

	// Another session, or the same bytes under another name, do not open.
	if _, err := m.GetValue(ctx, other, "x:pay"); !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("other session: %v", err)
	}
	if err := store.Set(ctx, "p:sv:{"+other.ID()+"}:x:pay", raw, time.Minute, sessions.Always); err != nil {
		t.Fatal(err)
	}
	if _, err := m.GetValue(ctx, other, "x:pay"); !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("a value moved to another session opened: %v", err)
	}

	if err := m.DeleteValues(ctx, s, "x:pay", "x:absent"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.GetValue(ctx, s, "x:pay"); !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("after delete: %v", err)
	}
	if err := m.PutValue(ctx, &sessions.Session{}, "x:pay", secret, time.Minute); err == nil {
		t.Error("a session the Manager never made was accepted")
	}
}
