package memstore

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bffgate/bffgate/sessions"
	"github.com/bffgate/bffgate/sessions/sessionstest"
)

func TestConformance(t *testing.T) {
	sessionstest.Run(t, func(t *testing.T) sessionstest.Backend {
		return New()
	})
}

// TestSweep checks that expired keys nobody reads again do not pile up.
func TestSweep(t *testing.T) {
	var offset atomic.Int64
	s := New()
	s.Now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	ctx := t.Context()
	for i := range 1000 {
		if err := s.Set(ctx, fmt.Sprint("old", i), []byte("v"), time.Minute, sessions.Always); err != nil {
			t.Fatal(err)
		}
	}
	offset.Add(int64(2 * time.Minute)) // every "old" key has expired
	for i := range 3000 {
		if err := s.Set(ctx, fmt.Sprint("new", i%1000), []byte("v"), time.Hour, sessions.Always); err != nil {
			t.Fatal(err)
		}
	}
	s.mu.Lock()
	n := len(s.data)
	s.mu.Unlock()
	if n != 1000 {
		t.Fatalf("%d keys held, want the 1000 live ones", n)
	}
	if _, _, err := s.Get(ctx, "old1"); !errors.Is(err, sessions.ErrNotFound) {
		t.Fatalf("Get(expired) = %v", err)
	}
	if _, ttl, err := s.Get(ctx, "new1"); err != nil || ttl <= 59*time.Minute {
		t.Fatalf("Get(live) = %v, %v", ttl, err)
	}
}

// TestCancelledContext checks that a cancelled request gets its context
// error, not ErrNotFound, like it would from Redis.
func TestCancelledContext(t *testing.T) {
	s := New()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := s.Get(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Get with a cancelled context = %v, want context.Canceled", err)
	}
}
