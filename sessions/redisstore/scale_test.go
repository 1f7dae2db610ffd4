package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bffgate/bffgate/internal/redistest"
	"github.com/bffgate/bffgate/sessions"
)

// TestScale is the issue-10 scale run, not a test of behaviour alone: it
// fills a dedicated redis-server with BFFGATE_SCALE_SESSIONS sessions
// (default 200,000) of a tenth as many users across three frontends,
// through the sessions package, each with about 1 KB of tokens, and logs
// Redis memory per session (indexes included), the p50/p99 of `sessions
// list --sub`, `sessions revoke --sub` and a back-channel logout by sub, and
// a streaming `sessions list --frontend`. Then it checks that sessions that
// time out leave no index key behind (20,000 sessions with a 20 s idle
// window, counted before and after it).
//
// It runs only with BFFGATE_SCALE=1 (minutes, and a few hundred MB of Redis):
//
//	BFFGATE_SCALE=1 go test -run TestScale -v -timeout 30m ./sessions/redisstore/
func TestScale(t *testing.T) {
	if os.Getenv("BFFGATE_SCALE") != "1" {
		t.Skip("set BFFGATE_SCALE=1 to run the 200,000-session scale run")
	}
	n := 200000
	if v := os.Getenv("BFFGATE_SCALE_SESSIONS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 300 {
			t.Fatalf("BFFGATE_SCALE_SESSIONS=%q: want a number >= 300", v)
		}
	}
	users := n / 10
	frontends := []string{"web", "admin", "mobile"}
	srv := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr, PoolSize: 32, ReadTimeout: 5 * time.Second})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := context.Background()
	m, err := sessions.NewManager(New(rdb), sessions.Options{
		KeyPrefix: "bffgate:",
		Keys:      []sessions.KeyPair{{Hash: random(32), Block: random(32)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	usedMemory := func() int64 {
		info, err := rdb.Info(ctx, "memory").Result()
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.Lines(info) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
				b, _ := strconv.ParseInt(v, 10, 64)
				return b
			}
		}
		t.Fatal("no used_memory in INFO memory")
		return 0
	}

	// Session i belongs to user i % users and frontend (i / users) % 3:
	// each user has ten sessions, three or four per frontend.
	tokens := func(n int) string { return base64.RawURLEncoding.EncodeToString(random(n * 3 / 4)) }
	mk := func(i int, idle time.Duration) *sessions.Session {
		u := i % users
		now := time.Now()
		return &sessions.Session{
			Frontend:    frontends[(i/users)%len(frontends)],
			Subject:     fmt.Sprintf("user-%06d-5f0c6d2e-8a4b", u),
			ProviderSID: fmt.Sprintf("sid-%08d-3c9e-4f1a-9d2b", i),
			Claims: []byte(fmt.Sprintf(`{"sub":"user-%06d","name":"User %d","email":"user%d@example.com","roles":["user"],"auth_time":%d}`,
				u, u, u, now.Unix())),
			IDToken: tokens(384), AccessToken: tokens(512), RefreshToken: tokens(128), TokenType: "Bearer",
			Expiry: now.Add(5 * time.Minute), IdleTimeout: idle, AbsoluteExpiry: now.Add(12 * time.Hour),
		}
	}
	fill := func(m *sessions.Manager, from, to int, idle time.Duration) time.Duration {
		start := time.Now()
		var next atomic.Int64
		next.Store(int64(from))
		var wg sync.WaitGroup
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := int(next.Add(1)) - 1; i < to; i = int(next.Add(1)) - 1 {
					s := mk(i, idle)
					if _, err := m.Create(ctx, "session:"+s.Frontend, s); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		return time.Since(start)
	}

	before := usedMemory()
	took := fill(m, 0, n, 30*time.Minute)
	after := usedMemory()
	keys, _ := rdb.DBSize(ctx).Result()
	t.Logf("filled %d sessions of %d users across %d frontends in %v (%d keys)", n, users, len(frontends), took.Round(time.Millisecond), keys)
	t.Logf("MEMORY used_memory +%d bytes: %.0f bytes per session, index sets included (target <= 2560)", after-before, float64(after-before)/float64(n))

	// Latencies over random users; each revoke and logout takes a user not
	// touched before, so every call ends sessions.
	const samples = 200
	pick := func(k int) (string, string) {
		u := (k * 7919) % users
		return frontends[k%len(frontends)], fmt.Sprintf("user-%06d-5f0c6d2e-8a4b", u)
	}
	measure := func(name string, from int, op func(frontend, sub string) (int, error)) {
		var ds []time.Duration
		total := 0
		for k := from; k < from+samples; k++ {
			fe, sub := pick(k)
			start := time.Now()
			got, err := op(fe, sub)
			ds = append(ds, time.Since(start))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			total += got
		}
		slices.Sort(ds)
		t.Logf("LATENCY %-40s p50 %8v  p99 %8v  max %8v  (%d calls, %d sessions)", name,
			ds[len(ds)/2].Round(time.Microsecond), ds[len(ds)*99/100].Round(time.Microsecond), ds[len(ds)-1].Round(time.Microsecond), samples, total)
		if total == 0 {
			t.Errorf("%s found no session at all", name)
		}
	}
	measure("sessions list --frontend F --sub S", 0, func(fe, sub string) (int, error) {
		found, err := m.Find(ctx, sessions.Filter{Frontend: fe, Subject: sub})
		return len(found), err
	})
	measure("sessions list --sub S (each frontend)", 0, func(_, sub string) (int, error) {
		n := 0
		for _, fe := range frontends {
			found, err := m.Find(ctx, sessions.Filter{Frontend: fe, Subject: sub})
			if err != nil {
				return n, err
			}
			n += len(found)
		}
		return n, nil
	})
	measure("sessions revoke --frontend F --sub S", samples, func(fe, sub string) (int, error) {
		return m.Revoke(ctx, sessions.Filter{Frontend: fe, Subject: sub})
	})
	measure("back-channel logout by sub", 2*samples, func(fe, sub string) (int, error) {
		return m.EndSessions(ctx, fe, "", sub)
	})

	// Streaming list of one frontend: one record at a time, whatever the
	// store's size.
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heapBefore := ms.HeapAlloc
	var peak uint64
	count := 0
	start := time.Now()
	err = m.Each(ctx, sessions.Filter{Frontend: "web"}, func(sessions.Found) error {
		count++
		if count%5000 == 0 {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapAlloc)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("STREAM sessions list --frontend web: %d sessions in %v (SCAN), heap at most %d KB above the start (the records would be ~%d KB)",
		count, time.Since(start).Round(time.Millisecond), (max(peak, heapBefore)-heapBefore)/1024, count*2)

	// Timeouts leave no index behind: sessions with a 20 s idle window (long
	// enough to create them all first) under a prefix of their own, then
	// nothing once it has passed.
	const idle = 20 * time.Second
	short, err := sessions.NewManager(New(rdb), sessions.Options{
		KeyPrefix: "bffgate-idle:",
		Keys:      []sessions.KeyPair{{Hash: random(32), Block: random(32)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	m2 := min(n/10, 20000)
	fill(short, 0, m2, idle)
	countKeys := func(pattern string) int {
		c := 0
		iter := rdb.Scan(ctx, 0, pattern, 1000).Iterator()
		for iter.Next(ctx) {
			c++
		}
		if err := iter.Err(); err != nil {
			t.Fatal(err)
		}
		return c
	}
	sets := countKeys("bffgate-idle:idx:*")
	t.Logf("ORPHANS before the idle timeout: %d records, %d index sets", countKeys("bffgate-idle:s:*"), sets)
	if sets == 0 {
		t.Fatal("no index sets at all: the run measures nothing")
	}
	time.Sleep(idle + time.Second)
	records, indexes := countKeys("bffgate-idle:s:*"), countKeys("bffgate-idle:idx:*")
	t.Logf("ORPHANS %v after the idle timeout: %d records, %d index sets left", idle, records, indexes)
	if records != 0 || indexes != 0 {
		t.Errorf("timed-out sessions left %d records and %d index sets", records, indexes)
	}
}

func random(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}
