package sessions_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/bffgate/bffgate/sessions"
	"github.com/bffgate/bffgate/sessions/memstore"
)

func sharedManager(t *testing.T, store sessions.Store) *sessions.Manager {
	t.Helper()
	k := sessions.KeyPair{Hash: make([]byte, 32), Block: make([]byte, 32)}
	_, _ = rand.Read(k.Hash)
	_, _ = rand.Read(k.Block)
	m, err := sessions.NewManager(store, sessions.Options{KeyPrefix: "p:", Keys: []sessions.KeyPair{k}})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSharedValues(t *testing.T) {
	ctx := context.Background()
	store := memstore.New()
	m := sharedManager(t, store)
	secret := []byte("client-access-token-value")

	if _, _, err := m.GetShared(ctx, "tok", time.Hour); !errors.Is(err, sessions.ErrNotFound) {
		t.Fatalf("absent value: %v, want ErrNotFound", err)
	}
	if err := m.PutShared(ctx, "tok", secret, time.Minute); err != nil {
		t.Fatal(err)
	}
	got, ttl, err := m.GetShared(ctx, "tok", time.Hour)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("GetShared = %q, %v", got, err)
	}
	if ttl <= 0 || ttl > time.Minute {
		t.Errorf("ttl %v", ttl)
	}
	raw, _, err := store.Get(ctx, "p:shared:{tok}")
	if err != nil {
		t.Fatalf("stored under %q: %v", "p:shared:{tok}", err)
	}
	if bytes.Contains(raw, secret) {
		t.Error("the shared value is stored in clear")
	}
	if m.SharedLockKey("tok") != "p:shared-lock:{tok}" {
		t.Errorf("lock key %q", m.SharedLockKey("tok"))
	}

	// Another name, or a manager with other keys, cannot open it.
	if _, _, err := m.GetShared(ctx, "other", time.Hour); !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("other name: %v", err)
	}
	if err := store.Set(ctx, "p:shared:{other}", raw, time.Minute, sessions.Always); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.GetShared(ctx, "other", time.Hour); !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("a value moved to another name opened: %v", err)
	}
	if _, _, err := sharedManager(t, store).GetShared(ctx, "tok", time.Hour); !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("other keys: %v, want ErrNotFound", err)
	}

	if err := m.PutShared(ctx, "tok", secret, 0); err == nil {
		t.Error("a zero ttl was accepted")
	}
	if err := m.DeleteShared(ctx, "tok"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.GetShared(ctx, "tok", time.Hour); !errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("after delete: %v", err)
	}
}
