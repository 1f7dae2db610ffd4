package cache

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bffgate/bffgate/internal/redistest"
	"github.com/bffgate/bffgate/sessions"
	"github.com/bffgate/bffgate/sessions/redisstore"
	"github.com/bffgate/bffgate/sessions/sessionstest"
)

// The bounds below are generous on purpose: they say how long a test waits
// for a behaviour, never how fast it must be (the machine is shared).
const (
	waitLive   = 10 * time.Second
	waitRefuse = 2 * time.Second
)

func randHex(t testing.TB) string {
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func newClient(t testing.TB, addrs []string, master string) redis.UniversalClient {
	t.Helper()
	c := redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:        addrs,
		MasterName:   master,
		DialTimeout:  300 * time.Millisecond,
		ReadTimeout:  time.Second,
		WriteTimeout: time.Second,
		PoolSize:     20,
	})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// sharedOrPrivate is the Redis on 127.0.0.1:6379 when it answers (the tests
// write under random prefixes and channels), else a private one.
func sharedOrPrivate(t *testing.T) string {
	t.Helper()
	if redistest.Pings(t.Context(), "127.0.0.1:6379") {
		return "127.0.0.1:6379"
	}
	return redistest.Start(t).Addr
}

func waitForLive(t testing.TB, c *Cache) {
	t.Helper()
	deadline := time.Now().Add(waitLive)
	for !c.Live() {
		if time.Now().After(deadline) {
			t.Fatalf("cache not live after %v: %+v", waitLive, c.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func startCache(t testing.TB, client redis.UniversalClient, prefix, channel string) *Cache {
	t.Helper()
	c, err := New(redisstore.New(client), client, Options{Prefix: prefix, Channel: channel})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	waitForLive(t, c)
	return c
}

// TestConformance runs the store suite through a cache that caches every
// key (Prefix ""), so each Get, write and expiry of the suite goes through
// the cache's own paths, and checks that it did serve from its entries.
func TestConformance(t *testing.T) {
	addr := sharedOrPrivate(t)
	channel := "bffgate-test:" + randHex(t) + ":invalidate"
	var (
		mu     sync.Mutex
		caches []*Cache
	)
	t.Run("suite", func(t *testing.T) {
		sessionstest.Run(t, func(t *testing.T) sessionstest.Backend {
			c := startCache(t, newClient(t, []string{addr}, ""), "", channel)
			mu.Lock()
			caches = append(caches, c)
			mu.Unlock()
			return c
		})
	})
	var hits uint64
	for _, c := range caches {
		hits += c.Stats().Hits
	}
	if hits == 0 {
		t.Fatalf("the suite ran through %d caches and none served a read from its entries", len(caches))
	}
	t.Logf("%d caches, %d reads served from entries", len(caches), hits)
}

// TestConformanceCluster runs the suite through caches on a three-master
// Redis Cluster: the invalidations travel by a plain PUBLISH, which the
// cluster bus carries to every node's subscribers.
func TestConformanceCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node Redis Cluster")
	}
	addrs := redistest.StartCluster(t, 3)
	channel := "bffgate-test:" + randHex(t) + ":invalidate"
	sessionstest.Run(t, func(t *testing.T) sessionstest.Backend {
		return startCache(t, newClient(t, addrs, ""), "", channel)
	})
}

// instance is one gateway instance's view: a Manager over its own cache over
// its own Redis client.
type instance struct {
	m *sessions.Manager
	c *Cache
}

type world struct {
	keyPrefix, channel string
	keys               []sessions.KeyPair
}

func newWorld(t testing.TB) world {
	return world{
		keyPrefix: "bffgate-test:" + randHex(t) + ":",
		channel:   "bffgate-test:" + randHex(t) + ":invalidate",
		keys:      []sessions.KeyPair{{Hash: bytes.Repeat([]byte{1}, 32), Block: bytes.Repeat([]byte{2}, 32)}},
	}
}

func (w world) instance(t testing.TB, client redis.UniversalClient) instance {
	t.Helper()
	c := startCache(t, client, sessions.RecordKeyPrefix(w.keyPrefix), w.channel)
	m, err := sessions.NewManager(c, sessions.Options{KeyPrefix: w.keyPrefix, Keys: w.keys})
	if err != nil {
		t.Fatal(err)
	}
	return instance{m: m, c: c}
}

// publisher is what the operator CLI uses: no cache, but it publishes.
func (w world) publisher(t testing.TB, client redis.UniversalClient) *sessions.Manager {
	t.Helper()
	p, err := NewPublisher(redisstore.New(client), client, Options{Prefix: sessions.RecordKeyPrefix(w.keyPrefix), Channel: w.channel})
	if err != nil {
		t.Fatal(err)
	}
	m, err := sessions.NewManager(p, sessions.Options{KeyPrefix: w.keyPrefix, Keys: w.keys})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func newSession(sub, sid string, idle time.Duration) *sessions.Session {
	return &sessions.Session{
		Frontend: "web", Subject: sub, ProviderSID: sid,
		Claims: []byte(`{"sub":"` + sub + `"}`), IDToken: "idt-" + sub, AccessToken: "at-" + sub,
		RefreshToken: "rt-" + sub, Expiry: time.Now().Add(time.Hour), IdleTimeout: idle,
		AbsoluteExpiry: time.Now().Add(time.Hour),
	}
}

// cached loads ref on b until a read is served from b's cache, so that the
// test that follows is about a session b holds.
func (b instance) cached(t testing.TB, ref string) {
	t.Helper()
	deadline := time.Now().Add(waitLive)
	for {
		before := b.c.Stats().Hits
		if _, err := b.m.Load(t.Context(), "session:web", ref); err != nil {
			t.Fatalf("Load on B: %v", err)
		}
		if b.c.Stats().Hits > before {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("B never served the session from its cache: %+v", b.c.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// refusedWithin polls b until ref is refused and returns how long that took;
// it fails if that takes longer than the generous bound.
func (b instance) refusedWithin(t testing.TB, ref string, from time.Time) time.Duration {
	t.Helper()
	for {
		_, err := b.m.Load(context.Background(), "session:web", ref)
		if errors.Is(err, sessions.ErrNotFound) {
			return time.Since(from)
		}
		if err != nil {
			t.Fatalf("Load on B: %v; want the session or ErrNotFound", err)
		}
		if time.Since(from) > waitRefuse {
			t.Fatalf("B still serves the ended session after %v (%+v)", waitRefuse, b.c.Stats())
		}
		time.Sleep(time.Millisecond)
	}
}

// TestRevocationReachesOtherInstance ends a session on A in each way the
// gateway ends one and checks that B, which serves it from its cache, refuses
// it. The time it took is logged (the contract says 100 ms; the poll bound
// here is generous).
func TestRevocationReachesOtherInstance(t *testing.T) {
	addr := sharedOrPrivate(t)
	w := newWorld(t)
	a := w.instance(t, newClient(t, []string{addr}, ""))
	b := w.instance(t, newClient(t, []string{addr}, ""))
	cli := w.publisher(t, newClient(t, []string{addr}, ""))

	tests := []struct {
		name string
		end  func(t *testing.T, s *sessions.Session)
	}{
		{"logout or refresh rejected (Delete)", func(t *testing.T, s *sessions.Session) {
			if err := a.m.Delete(t.Context(), s); err != nil {
				t.Fatal(err)
			}
		}},
		{"back-channel logout by sid", func(t *testing.T, s *sessions.Session) {
			if n, err := a.m.EndSessions(t.Context(), "web", s.ProviderSID, ""); err != nil || n != 1 {
				t.Fatalf("EndSessions = %d, %v", n, err)
			}
		}},
		{"back-channel logout by sub", func(t *testing.T, s *sessions.Session) {
			if n, err := a.m.EndSessions(t.Context(), "web", "", s.Subject); err != nil || n != 1 {
				t.Fatalf("EndSessions = %d, %v", n, err)
			}
		}},
		{"sessions revoke --sub (CLI)", func(t *testing.T, s *sessions.Session) {
			if n, err := cli.Revoke(t.Context(), sessions.Filter{Frontend: "web", Subject: s.Subject}); err != nil || n != 1 {
				t.Fatalf("Revoke = %d, %v", n, err)
			}
		}},
		{"sessions revoke --id (CLI)", func(t *testing.T, s *sessions.Session) {
			if err := cli.DeleteByID(t.Context(), s.ID()); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSession(fmt.Sprint("user", i), fmt.Sprint("sid", i), time.Hour)
			ref, err := a.m.Create(t.Context(), "session:web", s)
			if err != nil {
				t.Fatal(err)
			}
			b.cached(t, ref)
			start := time.Now()
			tt.end(t, s)
			t.Logf("refused on B %v after the end on A returned", b.refusedWithin(t, ref, start).Round(time.Microsecond))
		})
	}

	t.Run("refresh on A is seen on B", func(t *testing.T) {
		s := newSession("refresher", "sid-r", time.Hour)
		ref, err := a.m.Create(t.Context(), "session:web", s)
		if err != nil {
			t.Fatal(err)
		}
		b.cached(t, ref)
		s.AccessToken, s.RefreshToken = "at-new", "rt-new"
		if err := a.m.Save(t.Context(), s); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(waitRefuse)
		for {
			got, err := b.m.Load(t.Context(), "session:web", ref)
			if err != nil {
				t.Fatal(err)
			}
			if got.RefreshToken == "rt-new" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("B still has refresh token %q", got.RefreshToken)
			}
			time.Sleep(time.Millisecond)
		}
	})
}

// TestTimeouts: a session B holds in its cache ends on B when its idle
// window runs out in Redis, and the idle window slides while A and B take
// turns using it (B's touches reach Redis).
func TestTimeouts(t *testing.T) {
	addr := sharedOrPrivate(t)
	w := newWorld(t)
	a := w.instance(t, newClient(t, []string{addr}, ""))
	b := w.instance(t, newClient(t, []string{addr}, ""))
	const idle = 1500 * time.Millisecond

	s := newSession("slider", "sid-s", idle)
	ref, err := a.m.Create(t.Context(), "session:web", s)
	if err != nil {
		t.Fatal(err)
	}
	// Three idle windows of use, mostly on B and served from its cache: the
	// session must stay alive throughout.
	until := time.Now().Add(3 * idle)
	for i := 0; time.Now().Before(until); i++ {
		on := b
		if i%10 == 0 {
			on = a
		}
		if _, err := on.m.Load(t.Context(), "session:web", ref); err != nil {
			t.Fatalf("Load after %d uses: %v (the idle window did not slide)", i, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if b.c.Stats().Hits == 0 {
		t.Fatal("B never served the session from its cache")
	}
	b.cached(t, ref)
	// Now nobody uses it: once the idle window has passed, B refuses it
	// although it was in B's cache.
	time.Sleep(idle + 200*time.Millisecond)
	if _, err := b.m.Load(t.Context(), "session:web", ref); !errors.Is(err, sessions.ErrNotFound) {
		t.Fatalf("Load on B after the idle timeout = %v; want ErrNotFound", err)
	}
	if _, err := a.m.Load(t.Context(), "session:web", ref); !errors.Is(err, sessions.ErrNotFound) {
		t.Fatalf("Load on A after the idle timeout = %v; want ErrNotFound", err)
	}
}

// watchNeverServed polls b with ref from now until stop is closed. It
// counts every time b served it once b had noticed the loss of its channel
// (strict: a session ended while b's channel was down must not be served
// then, neither before the resubscription nor after it), and separately the
// times it was served before b could know (the kernel had not yet told it
// its connection was gone: the same propagation delay as a message in
// flight). Store errors (Redis down) are refusals.
func (b instance) watchNeverServed(ref string, lossesBefore uint64, stop <-chan struct{}) <-chan [2]int {
	served := make(chan [2]int, 1)
	go func() {
		var n [2]int
		for {
			select {
			case <-stop:
				served <- n
				return
			default:
			}
			noticed := b.c.Stats().Losses > lossesBefore
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			if _, err := b.m.Load(ctx, "session:web", ref); err == nil {
				if noticed {
					n[0]++
				} else {
					n[1]++
				}
			}
			cancel()
			time.Sleep(time.Millisecond)
		}
	}()
	return served
}

// resubscribed waits until b has confirmed more subscriptions than before and
// serves from its cache again (a fresh session, read twice).
func (b instance) resubscribed(t *testing.T, a instance, before uint64) {
	t.Helper()
	deadline := time.Now().Add(waitLive)
	for b.c.Stats().Subscriptions <= before || !b.c.Live() {
		if time.Now().After(deadline) {
			t.Fatalf("B did not subscribe again: %+v", b.c.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	fresh, err := a.m.Create(t.Context(), "session:web", newSession("fresh", "sid-fresh", time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	b.cached(t, fresh)
}

// TestChannelLoss ends a session B holds in its cache at the very moment
// B's invalidation channel is lost, so the message about it never reaches B,
// and checks that B does not serve it at any time afterwards: neither while
// it is resubscribing nor once it is (the loss emptied the cache).
func TestChannelLoss(t *testing.T) {
	tests := []struct {
		name string
		// end ends the session under key, on server srv, so that B misses
		// the message; a is the instance that ends it when Redis is up.
		end func(t *testing.T, srv *redistest.Server, raw *redis.Client, a instance, s *sessions.Session, key, channel string)
	}{
		{"CLIENT KILL TYPE pubsub with the end in the same transaction", func(t *testing.T, _ *redistest.Server, raw *redis.Client, _ instance, _ *sessions.Session, key, channel string) {
			// One MULTI: the subscribers are marked for closing, then the
			// record is deleted and the deletion published, which the killed
			// connections never receive. Nothing can order the loss and the
			// write more tightly against B.
			_, err := raw.TxPipelined(t.Context(), func(p redis.Pipeliner) error {
				p.Do(t.Context(), "client", "kill", "type", "pubsub")
				p.Del(t.Context(), key)
				p.Publish(t.Context(), channel, key)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}},
		{"Redis restart, then logout on A before B resubscribes", func(t *testing.T, srv *redistest.Server, _ *redis.Client, a instance, s *sessions.Session, _, _ string) {
			srv.Stop()
			srv.Restart() // the append-only file keeps the session
			if err := a.m.Delete(t.Context(), s); err != nil {
				t.Fatalf("logout on A right after the restart: %v", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
			raw := redis.NewClient(&redis.Options{Addr: srv.Addr})
			t.Cleanup(func() { _ = raw.Close() })
			w := newWorld(t)
			a := w.instance(t, newClient(t, []string{srv.Addr}, ""))
			b := w.instance(t, newClient(t, []string{srv.Addr}, ""))

			s := newSession("victim", "sid-v", time.Hour)
			ref, err := a.m.Create(t.Context(), "session:web", s)
			if err != nil {
				t.Fatal(err)
			}
			b.cached(t, ref)
			before := b.c.Stats()

			tt.end(t, srv, raw, a, s, sessions.RecordKeyPrefix(w.keyPrefix)+s.ID()+"}", w.channel)
			stop := make(chan struct{})
			served := b.watchNeverServed(ref, before.Losses, stop)
			b.resubscribed(t, a, before.Subscriptions)
			time.Sleep(200 * time.Millisecond) // keep watching past the resubscription
			close(stop)
			n := <-served
			if n[0] > 0 {
				t.Fatalf("B served the ended session %d times after it noticed the loss (%+v)", n[0], b.c.Stats())
			}
			t.Logf("served before B's kernel reported the loss: %d", n[1])
			if _, err := b.m.Load(t.Context(), "session:web", ref); !errors.Is(err, sessions.ErrNotFound) {
				t.Fatalf("Load on B after resubscription = %v; want ErrNotFound", err)
			}
			st := b.c.Stats()
			if st.Losses == 0 {
				t.Fatalf("B never noticed the loss: %+v", st)
			}
			t.Logf("B: %+v", st)
		})
	}
}

// TestNoStaleInsert races reads on B against writes on A of one key: after
// the last write, B must converge on the last value and stay there, which
// fails if a read that left before a write is inserted after its
// invalidation was applied.
func TestNoStaleInsert(t *testing.T) {
	addr := sharedOrPrivate(t)
	prefix := "bffgate-test:" + randHex(t) + ":"
	channel := prefix + "invalidate"
	a := startCache(t, newClient(t, []string{addr}, ""), prefix, channel)
	b := startCache(t, newClient(t, []string{addr}, ""), prefix, channel)
	key := prefix + "k"
	t.Cleanup(func() { _ = a.Delete(context.Background(), key) })

	for round := range 30 {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
						_, _, _ = b.Get(context.Background(), key)
					}
				}
			}()
		}
		last := ""
		for i := range 20 {
			last = fmt.Sprintf("round %d write %d", round, i)
			if err := a.Set(t.Context(), key, []byte(last), time.Minute, sessions.Always); err != nil {
				t.Fatal(err)
			}
		}
		close(stop)
		wg.Wait()
		deadline := time.Now().Add(waitRefuse)
		for {
			v, _, err := b.Get(t.Context(), key)
			if err != nil {
				t.Fatal(err)
			}
			if string(v) == last {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("B stuck on %q after the last write %q (%+v)", v, last, b.Stats())
			}
			time.Sleep(time.Millisecond)
		}
		// And it stays there (no stale entry resurfacing).
		for range 20 {
			if v, _, _ := b.Get(t.Context(), key); string(v) != last {
				t.Fatalf("B went back to %q after converging on %q", v, last)
			}
		}
	}
	t.Logf("B: %+v", b.Stats())
}

// TestFreshReadBypasses: a FreshRead context reads Redis itself. A write
// that bypasses the cache and publishes nothing shows the difference.
func TestFreshReadBypasses(t *testing.T) {
	addr := sharedOrPrivate(t)
	prefix := "bffgate-test:" + randHex(t) + ":"
	client := newClient(t, []string{addr}, "")
	c := startCache(t, client, prefix, prefix+"invalidate")
	key := prefix + "k"
	t.Cleanup(func() { _ = client.Del(context.Background(), key).Err() })
	// The cache may drop everything when the machine stalls its PINGs: try
	// until a read is served from an entry.
	deadline := time.Now().Add(waitLive)
	for {
		if err := c.Set(t.Context(), key, []byte("old"), time.Minute, sessions.Always); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.Get(t.Context(), key); err != nil { // fills the entry
			t.Fatal(err)
		}
		if err := client.Set(t.Context(), key, "new", time.Minute).Err(); err != nil { // unpublished
			t.Fatal(err)
		}
		hits := c.Stats().Hits
		v, _, err := c.Get(t.Context(), key)
		if err != nil {
			t.Fatal(err)
		}
		if c.Stats().Hits > hits {
			if string(v) != "old" {
				t.Fatalf("Get served from an entry = %q; want the cached %q", v, "old")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no read served from the cache: %+v", c.Stats())
		}
	}
	if v, _, _ := c.Get(sessions.FreshRead(t.Context()), key); string(v) != "new" {
		t.Fatalf("FreshRead Get = %q; want %q from Redis", v, "new")
	}
}

// TestCluster and TestSentinel: revocation reaches the other instance on a
// three-master Redis Cluster (a plain PUBLISH reaches every node's
// subscribers) and through Sentinel, and a killed subscriber connection on
// a cluster node empties the cache there too.
func TestCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node Redis Cluster")
	}
	addrs := redistest.StartCluster(t, 3)
	w := newWorld(t)
	a := w.instance(t, newClient(t, addrs, ""))
	b := w.instance(t, newClient(t, addrs, ""))
	// Sessions whose records land on different nodes than the channel.
	for i := range 6 {
		s := newSession(fmt.Sprint("c", i), fmt.Sprint("sid-c", i), time.Hour)
		ref, err := a.m.Create(t.Context(), "session:web", s)
		if err != nil {
			t.Fatal(err)
		}
		b.cached(t, ref)
		start := time.Now()
		if err := a.m.Delete(t.Context(), s); err != nil {
			t.Fatal(err)
		}
		t.Logf("cluster: refused on B %v after the logout on A", b.refusedWithin(t, ref, start).Round(time.Microsecond))
	}
	// Kill the pubsub connections on every node while a session is ended.
	s := newSession("ck", "sid-ck", time.Hour)
	ref, err := a.m.Create(t.Context(), "session:web", s)
	if err != nil {
		t.Fatal(err)
	}
	b.cached(t, ref)
	before := b.c.Stats()
	for _, addr := range addrs {
		c := redis.NewClient(&redis.Options{Addr: addr})
		_ = c.Do(t.Context(), "client", "kill", "type", "pubsub").Err()
		_ = c.Close()
	}
	if err := a.m.Delete(t.Context(), s); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	served := b.watchNeverServed(ref, before.Losses, stop)
	b.resubscribed(t, a, before.Subscriptions)
	close(stop)
	if n := <-served; n[0] > 0 {
		t.Fatalf("B served the ended session %d times after it noticed the loss", n[0])
	}
}

func TestSentinel(t *testing.T) {
	master := redistest.Start(t)
	sentinel := redistest.StartSentinel(t, "bffgate", master.Addr)
	w := newWorld(t)
	a := w.instance(t, newClient(t, []string{sentinel}, "bffgate"))
	b := w.instance(t, newClient(t, []string{sentinel}, "bffgate"))
	s := newSession("sen", "sid-sen", time.Hour)
	ref, err := a.m.Create(t.Context(), "session:web", s)
	if err != nil {
		t.Fatal(err)
	}
	b.cached(t, ref)
	start := time.Now()
	if n, err := a.m.EndSessions(t.Context(), "web", "sid-sen", ""); err != nil || n != 1 {
		t.Fatalf("EndSessions = %d, %v", n, err)
	}
	t.Logf("sentinel: refused on B %v after the back-channel logout on A", b.refusedWithin(t, ref, start).Round(time.Microsecond))
}
