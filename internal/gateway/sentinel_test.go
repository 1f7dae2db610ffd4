package gateway_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bffgate/bffgate/config"
	"github.com/bffgate/bffgate/internal/gateway"
	"github.com/bffgate/bffgate/internal/redistest"
	"github.com/bffgate/bffgate/sessions"
	"github.com/bffgate/bffgate/sessions/cache"
)

// TestRedisSentinel: with addrs and master_name the gateway finds the master
// through a real Sentinel and keeps its sessions there.
func TestRedisSentinel(t *testing.T) {
	master := redistest.Start(t)
	sentinel := redistest.StartSentinel(t, "bffmaster", master.Addr)
	e := newEnv(t, withConfig(func(c *config.Config) {
		c.Sessions.Redis.URL = ""
		c.Sessions.Redis.Addrs = []string{sentinel}
		c.Sessions.Redis.MasterName = "bffmaster"
	}))
	b := e.browser()
	b.login("/web", e.admin())
	if resp := b.api(http.MethodGet, "/web/api/orders/1"); resp.StatusCode != http.StatusOK {
		t.Fatalf("API through Sentinel: %d %s", resp.StatusCode, readBody(resp))
	}
	id := e.session("web", b.cookie("bff-web").Value).ID()
	if n := existsOn(t, master.Addr, e.prefix+"s:{"+id+"}"); n != 1 {
		t.Fatalf("the session is not on the master Sentinel named (exists = %d)", n)
	}
	if resp := b.do(http.MethodPost, "/web/bff/logout", http.Header{"X-Csrf": {"1"}}, ""); resp.StatusCode != http.StatusFound {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	if n := existsOn(t, master.Addr, e.prefix+"s:{"+id+"}"); n != 0 {
		t.Fatal("the session survived logout on the master")
	}
}

// TestRedisSentinelWithPasswords: sentinels with their own requirepass in
// front of a master with another one. With sessions.redis.sentinel_password
// the gateway (and its session cache's sentinel checks) reach the master
// and keep sessions there; without it, it is not ready and says why,
// rather than serving sessions from nowhere.
func TestRedisSentinelWithPasswords(t *testing.T) {
	const masterPass, sentinelPass = "master-secret", "sentinel-secret"
	master := redistest.Start(t, "--requirepass", masterPass)
	sentinel := redistest.StartSentinels(t, redistest.Sentinels{Name: "bffmaster", Master: master.Addr,
		Password: sentinelPass, MasterPassword: masterPass})[0]
	sentinelConfig := func(sentinelPassword string) envOption {
		return withConfig(func(c *config.Config) {
			c.Sessions.Redis.URL = ""
			c.Sessions.Redis.Addrs = []string{sentinel}
			c.Sessions.Redis.MasterName = "bffmaster"
			c.Sessions.Redis.Password = masterPass
			c.Sessions.Redis.SentinelPassword = sentinelPassword
		})
	}

	e := newEnv(t, sentinelConfig(sentinelPass))
	b := e.browser()
	b.login("/web", e.admin())
	// The cache serves only while the sentinels confirm its master, which
	// takes the sentinels' password too.
	deadline := time.Now().Add(10 * time.Second)
	for e.gw.SessionCache().Stats().Hits == 0 {
		if resp := b.api(http.MethodGet, "/web/api/orders/1"); resp.StatusCode != http.StatusOK {
			t.Fatalf("API through a password-protected Sentinel: %d %s", resp.StatusCode, readBody(resp))
		}
		if time.Now().After(deadline) {
			t.Fatalf("the session cache never served: %+v", e.gw.SessionCache().Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
	c := redis.NewClient(&redis.Options{Addr: master.Addr, Password: masterPass})
	defer c.Close()
	id := e.session("web", b.cookie("bff-web").Value).ID()
	if n, err := c.Exists(t.Context(), e.prefix+"s:{"+id+"}").Result(); err != nil || n != 1 {
		t.Fatalf("the session is not on the master (exists = %d, %v)", n, err)
	}

	// The same without the sentinels' password: not ready.
	bad := newEnv(t, sentinelConfig(""))
	resp, err := http.Get(bad.public + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body := readBody(resp)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("readyz without the sentinels' password: %d %s", resp.StatusCode, body)
	}
	t.Logf("readyz without the sentinels' password: %d %s", resp.StatusCode, body)
}

func existsOn(t *testing.T, addr, key string) int64 {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	n, err := c.Exists(t.Context(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRedisSentinelFailover: two instances with the session cache on, in
// front of a master, a replica and three sentinels, while users keep
// calling both. The failover is forced with SENTINEL FAILOVER so that no
// election timing is involved: once right after the master was killed by
// its PID (what cuts the cache's invalidation channel), once gracefully
// with the old master still up (which cuts nothing: the subscriber must
// notice by itself that writes now go elsewhere). What users see:
//
//   - during the switch every call is 200 or 503 session_store_unavailable:
//     never a 401 for a live session, never a hang;
//   - a session logged out on A during or right after the switch is never
//     served again by either instance once the logout returned;
//   - sessions written before the switch (replicated, checked with WAIT)
//     are served on both instances afterwards;
//   - both caches subscribe on the new master, and a logout on A is refused
//     on B while B holds the session in its cache.
func TestRedisSentinelFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a master, a replica and three sentinels")
	}
	for _, tt := range []struct {
		name string
		kill bool
	}{
		{"master killed", true},
		{"graceful, old master still up", false},
	} {
		t.Run(tt.name, func(t *testing.T) { sentinelFailover(t, tt.kill) })
	}
}

// callSample is one API call made during a failover.
type callSample struct {
	user, inst int
	start, end time.Time
	status     int
	code       string
	err        error
}

func sentinelFailover(t *testing.T, kill bool) {
	const name = "bffmaster"
	master := redistest.Start(t)
	replica := redistest.StartReplica(t, master)
	sentinels := redistest.StartSentinels(t, redistest.Sentinels{
		Name: name, Master: master.Addr, Count: 3, Quorum: 2, Replicas: 1,
		// Only the forced failovers below, never one of a loaded machine's
		// slow PING answers.
		DownAfter: time.Minute,
	})
	e := newEnv(t, withConfig(func(c *config.Config) {
		c.Sessions.Redis.URL = ""
		c.Sessions.Redis.Addrs = sentinels
		c.Sessions.Redis.MasterName = name
	}))
	second, gwB := e.replica()
	bases := []string{e.public, second}
	caches := []*cache.Cache{e.gw.SessionCache(), gwB.SessionCache()}
	if caches[0] == nil || caches[1] == nil {
		t.Fatal("the session cache is off; sessions.cache defaults to on with Redis")
	}
	for i, c := range caches {
		waitCacheLive(t, c, fmt.Sprint("instance ", i))
	}

	// survivor lives through it all; victim is logged out on A during the
	// switch; late is logged out on A once both caches are back.
	const (
		survivor = iota
		victim
		late
	)
	users := make([]*browser, 3)
	refs := make([]string, 3)
	keys := make([]string, 3)
	for i := range users {
		users[i] = e.browser()
		users[i].login("/web", e.admin())
		refs[i] = users[i].cookie("bff-web").Value
		keys[i] = e.prefix + "s:{" + e.session("web", refs[i]).ID() + "}"
	}
	client := &http.Client{Timeout: 10 * time.Second} // a hang is a failure, not a wait
	call := func(user, inst int) callSample {
		s := callSample{user: user, inst: inst, start: time.Now()}
		req, _ := http.NewRequest(http.MethodGet, bases[inst]+"/web/api/orders/1", nil)
		req.Header.Set("X-Csrf", "1")
		req.Header.Set("Cookie", "bff-web="+refs[user])
		resp, err := client.Do(req)
		s.end = time.Now()
		if err != nil {
			s.err = err
			return s
		}
		defer resp.Body.Close()
		s.status = resp.StatusCode
		if resp.StatusCode != http.StatusOK {
			var body struct{ Error string }
			_ = json.NewDecoder(resp.Body).Decode(&body)
			s.code = body.Error
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return s
	}
	for user := range users {
		for inst := range bases {
			warmCache(t, caches[inst], func() callSample { return call(user, inst) })
		}
	}

	// Everything written so far is on the replica: WAIT returns once it
	// acknowledged a write made after them.
	raw := redis.NewClient(&redis.Options{Addr: master.Addr})
	defer raw.Close()
	if err := raw.Set(t.Context(), e.prefix+"barrier", "1", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := raw.Wait(t.Context(), 1, 2*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT 1 = %d, %v: the replica did not acknowledge the sessions", n, err)
	}
	before := []cache.Stats{caches[0].Stats(), caches[1].Stats()}

	var (
		mu       sync.Mutex
		samples  []callSample
		revoking = make([]time.Time, 3) // when the logout was sent
		revoked  = make([]time.Time, 3) // when it returned
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for user := range users {
		for inst := range bases {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					case <-time.After(10 * time.Millisecond):
					}
					s := call(user, inst)
					mu.Lock()
					samples = append(samples, s)
					mu.Unlock()
				}
			})
		}
	}
	stopped := false
	stopTraffic := func() {
		if !stopped {
			stopped = true
			close(stop)
			wg.Wait()
		}
	}
	defer stopTraffic()
	logoutOnA := func(user int) {
		t.Helper()
		mu.Lock()
		revoking[user] = time.Now()
		mu.Unlock()
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp := users[user].do(http.MethodPost, e.public+"/web/bff/logout", http.Header{"X-Csrf": {"1"}}, "")
			if resp.StatusCode == http.StatusFound {
				break
			}
			if resp.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) {
				t.Fatalf("logout on A: %d %s", resp.StatusCode, readBody(resp))
			}
			time.Sleep(20 * time.Millisecond)
		}
		mu.Lock()
		revoked[user] = time.Now()
		mu.Unlock()
	}

	sc := redis.NewSentinelClient(&redis.Options{Addr: sentinels[0]})
	defer sc.Close()
	if kill {
		master.Stop()
	}
	if err := sc.Failover(t.Context(), name).Err(); err != nil {
		t.Fatalf("SENTINEL FAILOVER: %v", err)
	}
	switched := time.Now()
	if !kill {
		// The old master takes writes until the clients hear of the switch
		// (and loses them when it becomes a replica): that window is
		// Sentinel's, not the cache's. So log out once both instances write
		// to the new master, and their caches have noticed that their
		// subscriber is still on the old one (which nothing disconnects
		// until Sentinel demotes it, seconds later).
		for i, gw := range []*gateway.Gateway{e.gw, gwB} {
			waitWritesReach(t, e, gw, replica.Addr)
			waitFor(t, 3*time.Second, fmt.Sprint("the cache of instance ", i, " notices the switch"), func() bool {
				return caches[i].Stats().Losses > before[i].Losses
			})
		}
	}
	logoutOnA(victim)
	t.Logf("victim logged out on A %v after the failover was asked", time.Since(switched).Round(time.Millisecond))
	if n := existsOn(t, replica.Addr, keys[victim]); n != 0 {
		t.Fatal("the logout did not reach the new master")
	}

	// Both caches subscribe on the new master and serve from it again.
	waitFor(t, 30*time.Second, "both instances subscribed on the new master", func() bool {
		c := redis.NewClient(&redis.Options{Addr: replica.Addr})
		defer c.Close()
		n, err := c.PubSubNumSub(t.Context(), cache.Channel(e.prefix)).Result()
		return err == nil && n[cache.Channel(e.prefix)] == 2
	})
	for i, c := range caches {
		waitCacheLive(t, c, fmt.Sprint("instance ", i))
	}
	t.Logf("both caches live %v after the failover was asked", time.Since(switched).Round(time.Millisecond))
	warmCache(t, caches[1], func() callSample { return call(late, 1) })
	logoutOnA(late)
	start := time.Now()
	waitFor(t, 5*time.Second, "B refuses the session logged out on A", func() bool {
		return call(late, 1).status == http.StatusUnauthorized
	})
	t.Logf("B refused the session %v after the logout on A returned", time.Since(start).Round(time.Microsecond))
	time.Sleep(300 * time.Millisecond) // keep the traffic going past the end
	stopTraffic()

	counts := map[string]int{}
	var bad []string
	for _, s := range samples {
		what := fmt.Sprintf("user %d on instance %d, %v after the failover was asked", s.user, s.inst, s.start.Sub(switched).Round(time.Millisecond))
		switch {
		case s.err != nil:
			bad = append(bad, fmt.Sprintf("%s: %v", what, s.err))
		case s.status == http.StatusOK:
			if !revoked[s.user].IsZero() && s.start.After(revoked[s.user]) {
				bad = append(bad, what+": 200 for a session whose logout had returned")
			}
		case s.status == http.StatusServiceUnavailable && s.code == "session_store_unavailable":
		case s.status == http.StatusUnauthorized && s.code == "unauthenticated":
			// A call answered after the logout began may see it.
			if revoking[s.user].IsZero() || s.end.Before(revoking[s.user]) {
				bad = append(bad, what+": 401 for a live session")
			}
		default:
			bad = append(bad, fmt.Sprintf("%s: %d %s", what, s.status, s.code))
		}
		counts[fmt.Sprint(s.status)]++
	}
	t.Logf("calls by status: %v", counts)
	if len(bad) > 0 {
		t.Errorf("%d of %d calls went wrong; the first: %s", len(bad), len(samples), strings.Join(bad[:min(len(bad), 10)], "; "))
	}
	if counts["200"] == 0 || counts["401"] == 0 {
		t.Errorf("the calls never saw a served or a refused session: %v", counts)
	}
	for inst := range bases {
		if s := call(survivor, inst); s.status != http.StatusOK {
			t.Errorf("survivor on instance %d after the failover: %d %s %v", inst, s.status, s.code, s.err)
		}
		if s := call(victim, inst); s.status != http.StatusUnauthorized {
			t.Errorf("victim on instance %d after the failover: %d %s %v", inst, s.status, s.code, s.err)
		}
	}
	if n := existsOn(t, replica.Addr, keys[survivor]); n != 1 {
		t.Error("the survivor's record is not on the new master")
	}
	for i, c := range caches {
		st := c.Stats()
		if st.Losses == before[i].Losses {
			t.Errorf("instance %d never lost its channel: %+v", i, st)
		}
		t.Logf("instance %d: %+v", i, st)
	}
}

// warmCache calls until c serves the session from its entries.
func warmCache(t *testing.T, c *cache.Cache, call func() callSample) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		hits := c.Stats().Hits
		// A 503 is what a user may still get while the clients converge.
		if s := call(); s.status != http.StatusOK && s.code != "session_store_unavailable" {
			t.Fatalf("warming the cache: %d %s %v", s.status, s.code, s.err)
		}
		if c.Stats().Hits > hits {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cache never served the session: %+v", c.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitCacheLive(t *testing.T, c *cache.Cache, what string) {
	t.Helper()
	waitFor(t, 30*time.Second, what+": cache live", c.Live)
}

// waitWritesReach returns once addr is a master and a write through gw's
// store lands there (before its promotion, addr would have it by
// replication).
func waitWritesReach(t *testing.T, e *env, gw *gateway.Gateway, addr string) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	key := e.prefix + "probe"
	waitFor(t, 30*time.Second, "writes reach "+addr, func() bool {
		if info, err := c.Info(t.Context(), "replication").Result(); err != nil || !strings.Contains(info, "role:master") {
			return false
		}
		v := randomKey(9)
		_ = gw.Sessions.Store().Set(t.Context(), key, []byte(v), time.Minute, sessions.Always)
		got, _ := c.Get(t.Context(), key).Result()
		return got == v
	})
}

func waitFor(t *testing.T, bound time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", bound, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
