package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bffgate/bffgate/internal/redistest"
	"github.com/bffgate/bffgate/sessions"
	"github.com/bffgate/bffgate/sessions/sessionstest"
)

// redisAddr finds a Redis for the conformance suite: the one on
// 127.0.0.1:6379 when it answers, else a private redis-server that lives as
// long as t. The suite writes under random prefixes and deletes its keys, so
// a shared server is safe; nothing here ever flushes a database.
func redisAddr(t *testing.T) string {
	t.Helper()
	if redistest.Pings(t.Context(), "127.0.0.1:6379") {
		return "127.0.0.1:6379"
	}
	return redistest.Start(t).Addr
}

func newClient(t *testing.T, addr string) redis.UniversalClient {
	t.Helper()
	c := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:        []string{addr},
		DialTimeout:  300 * time.Millisecond,
		ReadTimeout:  time.Second,
		WriteTimeout: time.Second,
		PoolSize:     30,
	})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestConformance(t *testing.T) {
	addr := redisAddr(t)
	sessionstest.Run(t, func(t *testing.T) sessionstest.Backend {
		return New(newClient(t, addr))
	})
}

// TestStoreDown checks that an unreachable Redis is reported as an error of
// its own, never as "session gone" or "bad cookie", that it is reported
// quickly, and that the client recovers once Redis is back.
func TestStoreDown(t *testing.T) {
	srv := redistest.Start(t)
	c := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:       []string{srv.Addr},
		DialTimeout: 200 * time.Millisecond,
		ReadTimeout: 200 * time.Millisecond,
		MaxRetries:  -1,
	})
	t.Cleanup(func() { _ = c.Close() })
	store := New(c)
	m, err := sessions.NewManager(store, sessions.Options{
		KeyPrefix: "bffgate-test:",
		Keys:      []sessions.KeyPair{{Hash: make([]byte, 32), Block: make([]byte, 32)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	s := &sessions.Session{Frontend: "web", Subject: "alice", AccessToken: "at", IdleTimeout: time.Hour}
	ref, err := m.Create(ctx, "session:web", s)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}

	srv.Stop()

	start := time.Now()
	_, err = m.Load(ctx, "session:web", ref)
	if err == nil || errors.Is(err, sessions.ErrNotFound) || errors.Is(err, sessions.ErrInvalidRef) {
		t.Fatalf("Load with Redis down = %v; want a store error", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Load with Redis down took %v", d)
	}
	t.Logf("Load with Redis down: %v", err)
	storeOps := []struct {
		name string
		op   func() error
	}{
		{"get", func() error { _, _, err := store.Get(ctx, "bffgate-test:k"); return err }},
		{"set", func() error { return store.Set(ctx, "bffgate-test:k", []byte("v"), time.Minute, sessions.IfPresent) }},
		{"expire", func() error { return store.Expire(ctx, "bffgate-test:k", time.Minute) }},
		{"take", func() error { _, err := store.Take(ctx, "bffgate-test:k"); return err }},
		{"delete", func() error { return store.Delete(ctx, "bffgate-test:a", "bffgate-test:b") }},
		{"ping", func() error { return store.Ping(ctx) }},
		{"acquire", func() error { _, err := store.Acquire(ctx, "bffgate-test:l", "t", time.Second); return err }},
		{"renew", func() error { _, err := store.Renew(ctx, "bffgate-test:l", "t", time.Second); return err }},
		{"release", func() error { return store.Release(ctx, "bffgate-test:l", "t") }},
		{"add to set", func() error { return store.AddToSet(ctx, "bffgate-test:set", "m", time.Minute) }},
		{"members", func() error { _, err := store.Members(ctx, "bffgate-test:set"); return err }},
		{"remove from set", func() error { return store.RemoveFromSet(ctx, "bffgate-test:set", "m") }},
		{"scan", func() error { return store.Scan(ctx, "bffgate-test:", func(string) error { return nil }) }},
		{"save", func() error { return m.Save(ctx, s) }},
		{"end sessions", func() error { _, err := m.EndSessions(ctx, "web", "", "alice"); return err }},
		{"find", func() error { _, err := m.Find(ctx, sessions.Filter{}); return err }},
		{"delete by id", func() error { return m.DeleteByID(ctx, s.ID()) }},
		{"take once", func() error { _, err := m.TakeOnce(ctx, "state", "x"); return err }},
	}
	for _, tt := range storeOps {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.op()
			if err == nil || errors.Is(err, sessions.ErrNotFound) || errors.Is(err, sessions.ErrExists) ||
				errors.Is(err, sessions.ErrInvalidRef) {
				t.Fatalf("%s with Redis down = %v; want a store error", tt.name, err)
			}
		})
	}

	srv.Restart() // same port, empty: no persistence
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := store.Ping(ctx)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Ping after restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := m.Load(ctx, "session:web", ref); !errors.Is(err, sessions.ErrNotFound) {
		t.Fatalf("Load after restart = %v; want ErrNotFound (the record died with the server)", err)
	}
}

// TestConformanceCluster runs the suite on a three-node Redis Cluster: the
// session record and its lock share a hash tag, and no command may span two
// slots (a multi-key DEL across slots fails with CROSSSLOT).
func TestConformanceCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node Redis Cluster")
	}
	addrs := redistest.StartCluster(t, 3)
	sessionstest.Run(t, func(t *testing.T) sessionstest.Backend {
		c := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: addrs, DialTimeout: time.Second, PoolSize: 30})
		if _, ok := c.(*redis.ClusterClient); !ok {
			t.Fatalf("UniversalClient over %d addrs is a %T, want *redis.ClusterClient", len(addrs), c)
		}
		t.Cleanup(func() { _ = c.Close() })
		return New(c)
	})
}

// The expiry schedule: Due lists what is due, earliest first and at most
// limit; Unschedule tells exactly one of several concurrent callers that
// it removed a member (what makes one instance report each expiry); and
// the schedule's own TTL only grows.
func TestExpirer(t *testing.T) {
	c := newClient(t, redisAddr(t))
	s := New(c)
	ctx := t.Context()
	key := "bffgate-test:" + t.Name() + ":" + time.Now().Format("150405.000000000")
	t.Cleanup(func() { c.Del(context.Background(), key) })
	now := time.Now()
	for i, d := range []time.Duration{-3 * time.Second, -time.Second, -2 * time.Second, time.Minute} {
		if err := s.Schedule(ctx, key, fmt.Sprintf("m%d", i), now.Add(d), time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	// m1 moves later: a Schedule of an existing member moves it.
	if err := s.Schedule(ctx, key, "m1", now.Add(-500*time.Millisecond), time.Minute); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		until time.Time
		limit int
		want  []string
	}{
		{"all due", now, 10, []string{"m0", "m2", "m1"}},
		{"limit", now, 2, []string{"m0", "m2"}},
		{"earlier", now.Add(-1500 * time.Millisecond), 10, []string{"m0", "m2"}},
		{"none", now.Add(-time.Hour), 10, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Due(ctx, key, tc.until, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Due = %v, want %v", got, tc.want)
			}
		})
	}
	if ttl := c.PTTL(ctx, key).Val(); ttl < 59*time.Minute {
		t.Errorf("schedule TTL %v: a shorter keep shrank it", ttl)
	}

	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			removed, err := s.Unschedule(ctx, key, "m0")
			if err != nil {
				t.Error(err)
			}
			if removed {
				wins.Add(1)
			}
		})
	}
	wg.Wait()
	if n := wins.Load(); n != 1 {
		t.Errorf("%d callers removed the same member, want 1", n)
	}
	if got, err := s.Due(context.Background(), "bffgate-test:absent-schedule", now, 10); err != nil || len(got) != 0 {
		t.Errorf("Due on an absent schedule = %v, %v; want none", got, err)
	}
}
