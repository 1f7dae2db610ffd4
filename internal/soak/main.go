// Command soak is the reliability run behind scripts/soak: on loopback, a
// redis-server it starts itself (AOF on, a free port, a temporary dir), the
// demo OpenID provider behind internal/faultidp's switches, two bffgate
// instances (`bffgate serve` child processes, one gateway file each) sharing
// that Redis, a trivial upstream, and N sessions logged in through the real
// login flow with short-lived access tokens, so that refreshes happen all
// the time. A paced load generator sends GETs that alternate between the
// two instances, while the provider goes through the phases normal, late
// (token answers processed but sent late), kill (instance 2 SIGKILLed while
// its refreshes are in flight at a slow provider, restarted later), hang,
// refuse (connections refused), unavailable (503) and recovery.
//
// Every second it prints one line: phase, answers by status, p50/p99
// latency, each instance's RSS and goroutines and Redis DBSIZE. Its last
// lines summarise each phase, ending with "sessions lost: N" (sessions that
// got a 401 in that phase), then sort every refresh token the provider saw
// twice by what became of its first use, so that a loss the faults caused
// (an answer that never reached the gateway) is told from a gateway loss.
// Everything it starts (the redis-server and the instances, by PID; the
// listeners) is stopped before it exits, also on SIGINT/SIGTERM.
//
//	go run ./internal/soak -bffgate BIN [-phase 20s] [-sessions 8] [-rate 100] ...
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bffgate/bffgate/config"
	"github.com/bffgate/bffgate/internal/faultidp"
	"github.com/bffgate/bffgate/internal/localrun"
)

const (
	clientID     = "web-bff"
	clientSecret = "soak-web-secret"
	mount        = "/web"
	apiPath      = "/web/api/fast/7"
)

type phase struct {
	name string
	mode faultidp.Mode
	kill bool // instance 2 is killed and restarted; the phase lasts as long as that takes
}

// The kill phase comes early, while the sessions are healthy, so that what
// it shows is the kill alone and not the back-off of a provider outage.
// Its provider is slow to take requests in (faultidp.Slow), so the
// refreshes the killed instance had sent were not processed: a provider
// that processed them and answered late (faultidp.Late) would have spent
// those refresh tokens with no answer reaching anyone, an outcome SPEC
// section 4 calls unknown, where the session lasts only as long as its
// access token.
var allPhases = []phase{
	{name: "normal", mode: faultidp.Normal},
	{name: "late", mode: faultidp.Late},
	{name: "kill", mode: faultidp.Slow, kill: true},
	{name: "hang", mode: faultidp.Hang},
	{name: "refuse", mode: faultidp.Refuse},
	{name: "unavailable", mode: faultidp.Unavailable},
	{name: "recovery", mode: faultidp.Normal},
}

// Where the load generator sends requests: both instances in turn, as a
// load balancer would, or only one while the other is being killed or is
// down (a balancer's health check takes a dead replica out).
const (
	routeBoth int32 = iota
	routeOnly1
	routeOnly2
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "soak: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	bin := flag.String("bffgate", "", "the bffgate binary run as the two instances (scripts/soak builds it)")
	phaseLen := flag.Duration("phase", 20*time.Second, "length of each phase but kill and recovery")
	recoveryLen := flag.Duration("recovery", 40*time.Second, "length of the recovery phase: longer than the gateway's 30s maximum refresh back-off, so that sessions whose refresh failed during the outage are seen to recover")
	kill := flag.Bool("kill", true, "run the kill phase: SIGKILL instance 2 while its refreshes are in flight, restart it after -down")
	killProvider := flag.String("kill-provider", "slow", "the provider in the kill phase: slow (takes token requests in -late late; the killed instance's refreshes are never processed) or late (processes them and answers -late late: their refresh tokens are spent with no answer, and those sessions end when their access tokens expire, as SPEC section 4 says)")
	down := flag.Duration("down", 15*time.Second, "how long instance 2 stays dead in the kill phase: longer than the gateway's 10s lock lease, so that instance 1 must take over the refreshes the dead one held locks for")
	nSessions := flag.Int("sessions", 8, "sessions logged in before the run")
	rate := flag.Int("rate", 100, "requests per second, all sessions and both instances together")
	lifetime := flag.Duration("token-lifetime", 30*time.Second, "access token lifetime at the provider")
	margin := flag.Duration("refresh-margin", 0, "gateway refresh margin (0: half the token lifetime, the most the gateway uses)")
	providerTimeout := flag.Duration("provider-timeout", 2*time.Second, "gateway sessions.provider_timeout")
	late := flag.Duration("late", 500*time.Millisecond, "how late the provider answers token requests in the late phase, and how long it takes them in in the kill phase; keep it well below -provider-timeout, or answers that a busy machine delays past it count as lost")
	reqTimeout := flag.Duration("request-timeout", 10*time.Second, "client timeout of one request")
	redisBin := flag.String("redis-server", "redis-server", "redis-server binary")
	logFile := flag.String("log", "", "write the instances' log lines (all but the per-request lines) to this file")
	flag.Parse()
	switch {
	case flag.NArg() > 0:
		return fmt.Errorf("unexpected argument %q", flag.Arg(0))
	case *bin == "":
		return errNoBinary
	case *phaseLen < 2*time.Second || *phaseLen > 15*time.Minute:
		return errors.New("-phase: between 2s and 15m")
	case *recoveryLen < 2*time.Second || *recoveryLen > 15*time.Minute:
		return errors.New("-recovery: between 2s and 15m")
	case *down < time.Second || *down > 15*time.Minute:
		return errors.New("-down: between 1s and 15m")
	case *nSessions < 1 || *nSessions > 1000:
		return errors.New("-sessions: 1..1000")
	case *rate < 1 || *rate > 5000:
		return errors.New("-rate: 1..5000")
	case *lifetime < 2*time.Second:
		return errors.New("-token-lifetime: at least 2s")
	case *late >= *providerTimeout:
		return errors.New("-late: below -provider-timeout (the late phase is a provider that answers in time)")
	}
	if *margin == 0 {
		*margin = *lifetime / 2
	}
	phases := slices.Clone(allPhases)
	if !*kill {
		phases = slices.DeleteFunc(phases, func(p phase) bool { return p.kill })
	}
	switch *killProvider {
	case "slow":
	case "late":
		for i := range phases {
			if phases[i].kill {
				phases[i].mode = faultidp.Late
			}
		}
	default:
		return errors.New("-kill-provider: slow or late")
	}

	// The example provider logs every request on slog's default logger.
	slog.SetDefault(slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	dir, err := os.MkdirTemp("", "bffgate-soak.")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	// Redis with AOF, on a free port, in a temporary dir; killed by PID.
	rdb, stopRedis, err := startRedis(ctx, *redisBin)
	if err != nil {
		return err
	}
	defer stopRedis()
	defer rdb.Close()

	// Listeners first: the issuer and the public URL name their ports.
	idpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	faults := faultidp.New()
	faults.SetDelay(*late)
	fln := faults.Listener(idpLn)
	defer fln.Close()
	issuer := "http://" + fln.Addr().String()
	var addrs [2]string
	for i := range addrs {
		if addrs[i], err = freeAddr(); err != nil {
			return err
		}
	}
	public := "http://" + addrs[0]
	bases := [2]string{public, "http://" + addrs[1]}

	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	defer upstream.Close()

	idp, err := localrun.NewIDP(issuer, clientID, clientSecret, public, mount, *lifetime)
	if err != nil {
		return err
	}
	idpSrv := localrun.NewServer(faults.Handler(idp))
	go func() { _ = idpSrv.Serve(fln) }()
	defer idpSrv.Close()

	glog, err := newGatewayLog(*logFile)
	if err != nil {
		return err
	}
	defer glog.close()
	// Two replicas behind a load balancer: one gateway file each, the same
	// but for the listen address, so one Redis, one set of cookie keys.
	hashKey, blockKey := randomKey(64), randomKey(32)
	var inst [2]*instance
	for i := range inst {
		path := filepath.Join(dir, fmt.Sprintf("gateway-%d.yaml", i+1))
		if err := writeConfig(path, instanceConfig{
			n: i + 1, listen: addrs[i], public: public, redisURL: "redis://" + rdb.Options().Addr + "/0",
			issuer: issuer, upstream: upstream.URL, hashKey: hashKey, blockKey: blockKey,
			margin: *margin, providerTimeout: *providerTimeout,
		}); err != nil {
			return err
		}
		// Refused here with every problem, rather than by a child whose
		// readiness then never comes.
		if _, err := config.Load(path); err != nil {
			return fmt.Errorf("instance config: %w", err)
		}
		inst[i] = &instance{n: i + 1, bin: *bin, config: path, addr: addrs[i], logs: glog}
		defer inst[i].stop(syscall.SIGTERM, 10*time.Second)
		if _, err := inst[i].start(ctx); err != nil {
			return err
		}
	}

	cookies := make([]string, *nSessions)
	for i := range cookies {
		if cookies[i], err = localrun.LoginCookie(ctx, public, mount, "bff-web"); err != nil {
			return fmt.Errorf("session %d: %w", i+1, err)
		}
	}
	names := make([]string, len(phases))
	for i, p := range phases {
		names[i] = p.name
	}
	fmt.Printf("soak: redis %s (AOF), provider %s, instances %s %s, %d sessions, %d req/s, token lifetime %v, refresh margin %v, provider timeout %v, late %v; phases %s: %v each, kill: until a refresh is in flight then %v down, recovery %v\n",
		rdb.Options().Addr, issuer, bases[0], bases[1], *nSessions, *rate, *lifetime, *margin, *providerTimeout, *late,
		strings.Join(names, ","), *phaseLen, *down, *recoveryLen)

	st := newStats(len(phases))
	client := &http.Client{
		Timeout:   *reqTimeout,
		Transport: &http.Transport{MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	defer client.CloseIdleConnections()
	probe := &http.Client{Timeout: 500 * time.Millisecond}

	var route atomic.Int32
	var wg sync.WaitGroup
	start := time.Now()
	tick := time.NewTicker(time.Second / time.Duration(*rate))
	defer tick.Stop()
	second := time.NewTicker(time.Second)
	defer second.Stop()
	cur := -1
	var phaseStart time.Time
	var killDone chan killReport
	var kr *killReport
	n := 0
	interrupted := false
loop:
	for {
		next := cur < 0
		if cur >= 0 {
			switch p := phases[cur]; {
			case p.kill:
				select {
				case r := <-killDone:
					kr, next = &r, true
				default:
				}
			case cur == len(phases)-1:
				if time.Since(phaseStart) >= *recoveryLen {
					break loop
				}
			default:
				next = time.Since(phaseStart) >= *phaseLen
			}
		}
		if next {
			cur++
			phaseStart = time.Now()
			p := phases[cur]
			if err := faults.SetMode(p.mode); err != nil {
				fmt.Fprintf(os.Stderr, "soak: provider mode %s: %v\n", p.mode, err)
			}
			fmt.Printf("--- phase %s (provider %s) at %s\n", p.name, p.mode, time.Since(start).Truncate(time.Second))
			if p.kill {
				killDone = make(chan killReport, 1)
				go func() {
					killDone <- killPhase(ctx, inst[1], faults, &route, st, cur, start, *lifetime, *late, *down, *phaseLen)
				}()
			}
		}
		select {
		case <-ctx.Done():
			interrupted = true
			break loop
		case <-second.C:
			st.printSecond(time.Since(start), phases[cur].name, rdb, inst, probe)
		case <-tick.C:
			sess := n % *nSessions
			i := (n / *nSessions) % 2
			switch route.Load() {
			case routeOnly1:
				i = 0
			case routeOnly2:
				i = 1
			}
			alone := route.Load() == routeOnly1
			n++
			wg.Add(1)
			go func(p int) {
				defer wg.Done()
				t0 := time.Now()
				code := get(ctx, client, bases[i]+apiPath, cookies[sess])
				st.record(p, sess, i, alone, code, time.Since(t0))
			}(cur)
		}
	}
	// Let the provider answer again so requests in flight finish.
	_ = faults.SetMode(faultidp.Normal)
	wg.Wait()
	if killDone != nil && kr == nil {
		r := <-killDone // bounded: -down plus a restart
		kr = &r
	}
	st.printSecond(time.Since(start), "end", rdb, inst, probe)
	if interrupted {
		fmt.Println("soak: interrupted; the summary covers the phases run so far")
	}
	explained := reuses(faults.Uses(), start, *providerTimeout)
	st.summary(phases[:cur+1], explained, kr)
	fmt.Printf("soak: provider refresh grants received %d, most uses of one refresh token %d, dropped unprocessed (client gone) %d\n",
		faults.Attempts("refresh_token"), faults.MaxRefreshTokenUses(), faults.Dropped())
	glog.print()
	return nil
}

// killReport is what the kill phase did.
type killReport struct {
	pid       int           // the killed process
	at        time.Duration // since the start of the run
	inFlight  int           // refresh requests in flight at the provider when it was killed
	waited    time.Duration // from the start of the phase to the kill
	readyIn   time.Duration // from the restart to /readyz 200
	restarted bool
	err       error
}

// killPhase sends all the load to instance 2 until one of its refreshes is
// in flight at the provider (which, slow, holds it -late), waits a moment
// so that the other sessions due at the same time are in flight too, and
// SIGKILLs it: it dies holding their refresh locks. Instance 1 alone takes
// the load for down, then instance 2 is started again and both share the
// load for the rest of a phase.
func killPhase(ctx context.Context, in *instance, faults *faultidp.Faults, route *atomic.Int32, st *stats, p int,
	start time.Time, lifetime, late, down, phaseLen time.Duration) (r killReport) {
	t0 := time.Now()
	route.Store(routeOnly2)
	// A session's token is refreshed once per half lifetime at most.
	deadline := t0.Add(lifetime)
	for faults.InFlight() == 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	// Every request goes to instance 2 now, and the sessions come round
	// every few milliseconds: the others due are sent within this pause.
	time.Sleep(min(late/4, 100*time.Millisecond))
	r.inFlight = faults.InFlight()
	route.Store(routeOnly1)
	r.pid = in.stop(syscall.SIGKILL, 5*time.Second)
	r.at, r.waited = time.Since(start), time.Since(t0)
	fmt.Printf("soak: instance 2 pid %d SIGKILLed at t=%.1fs with %d refresh requests in flight at the provider\n", r.pid, r.at.Seconds(), r.inFlight)
	select {
	case <-ctx.Done():
		return r
	case <-time.After(down):
	}
	r.readyIn, r.err = in.start(ctx)
	if r.err != nil {
		fmt.Printf("soak: instance 2 restart failed: %v\n", r.err)
		return r
	}
	r.restarted = true
	fmt.Printf("soak: instance 2 restarted, ready in %v\n", r.readyIn.Round(time.Millisecond))
	route.Store(routeBoth)
	select {
	case <-ctx.Done():
	case <-time.After(phaseLen / 2):
	}
	return r
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startRedis starts redis-server with AOF on a free loopback port and a
// temporary dir, and returns a client and the function that kills it by PID.
func startRedis(ctx context.Context, bin string) (*redis.Client, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir, err := os.MkdirTemp("", "bffgate-soak-redis.")
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--appendonly", "yes",
		"--dir", dir, "--save", "", "--daemonize", "no", "--logfile", dir+"/redis.log")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // should the soak die unstopped
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	pid := cmd.Process.Pid
	stop := func() {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(pid, syscall.SIGKILL)
			<-done
		}
		os.RemoveAll(dir)
		fmt.Printf("soak: redis-server pid %d stopped, %s removed\n", pid, dir)
	}
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(port)})
	for i := 0; ; i++ {
		c, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		err = rdb.Ping(c).Err()
		cancel()
		if err == nil {
			break
		}
		if i == 50 || ctx.Err() != nil {
			rdb.Close()
			stop()
			return nil, nil, fmt.Errorf("redis-server on port %d: %w", port, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if v, err := rdb.ConfigGet(ctx, "appendonly").Result(); err != nil || v["appendonly"] != "yes" {
		rdb.Close()
		stop()
		return nil, nil, fmt.Errorf("redis-server on port %d: appendonly not on (%v, %v)", port, v, err)
	}
	fmt.Printf("soak: redis-server pid %d on 127.0.0.1:%d, appendonly yes, dir %s\n", pid, port, dir)
	return rdb, stop, nil
}

// get sends one API GET with the session cookie and the CSRF header and
// returns its status, 0 for a transport error or timeout.
func get(ctx context.Context, c *http.Client, u, cookie string) int {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0
	}
	req.Header.Set("Cookie", cookie)
	req.Header.Set("X-CSRF", "1")
	resp, err := c.Do(req)
	if err != nil {
		return 0
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// stats keeps the current second's answers and each phase's.
type stats struct {
	mu     sync.Mutex
	sec    bucket
	phases []phaseStats
}

type phaseStats struct {
	all   bucket
	inst  [2]bucket    // by the instance asked
	alone bucket       // instance 1's while instance 2 was dead
	lost  map[int]bool // sessions that got a 401
}

type bucket struct {
	codes map[int]int
	lat   []time.Duration
}

func (b *bucket) add(code int, d time.Duration) {
	if b.codes == nil {
		b.codes = map[int]int{}
	}
	b.codes[code]++
	b.lat = append(b.lat, d)
}

func (b *bucket) statuses() string {
	keys := make([]int, 0, len(b.codes))
	for k := range b.codes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		name := strconv.Itoa(k)
		if k == 0 {
			name = "err"
		}
		parts = append(parts, fmt.Sprintf("%s=%d", name, b.codes[k]))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ",")
}

// latencies returns p50, p99 and max.
func (b *bucket) latencies() (p50, p99, top time.Duration) {
	slices.Sort(b.lat)
	if len(b.lat) == 0 {
		return 0, 0, 0
	}
	return pct(b.lat, 0.50), pct(b.lat, 0.99), b.lat[len(b.lat)-1]
}

// pct returns the p-quantile of the sorted latencies.
func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

func newStats(n int) *stats {
	s := &stats{phases: make([]phaseStats, n)}
	for i := range s.phases {
		s.phases[i].lost = map[int]bool{}
	}
	return s
}

func (s *stats) record(p, sess, inst int, alone bool, code int, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sec.add(code, d)
	ps := &s.phases[p]
	ps.all.add(code, d)
	ps.inst[inst].add(code, d)
	if alone {
		ps.alone.add(code, d)
	}
	if code == http.StatusUnauthorized {
		ps.lost[sess] = true
	}
}

func (s *stats) printSecond(at time.Duration, phase string, rdb *redis.Client, inst [2]*instance, probe *http.Client) {
	s.mu.Lock()
	b := s.sec
	s.sec = bucket{}
	s.mu.Unlock()
	p50, p99, _ := b.latencies()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	keys, err := rdb.DBSize(ctx).Result()
	cancel()
	dbsize := strconv.FormatInt(keys, 10)
	if err != nil {
		dbsize = "?"
	}
	fmt.Printf("t=%4ds %-11s n=%-4d %-24s p50=%-9s p99=%-9s rss=%s/%s goroutines=%s/%s redis_keys=%s\n",
		int(at.Seconds()), phase, len(b.lat), b.statuses(), ms(p50), ms(p99),
		inst[0].rss(), inst[1].rss(), inst[0].goroutines(probe), inst[1].goroutines(probe), dbsize)
}

func (s *stats) summary(phases []phase, r reuseCount, kr *killReport) {
	s.mu.Lock()
	defer s.mu.Unlock()
	all := map[int]bool{}
	for i, ph := range phases {
		ps := &s.phases[i]
		p50, p99, top := ps.all.latencies()
		for k := range ps.lost {
			all[k] = true
		}
		fmt.Printf("SUMMARY phase=%-11s requests=%-5d statuses=%-24s p50=%-9s p99=%-9s max=%-9s sessions lost: %d\n",
			ph.name, len(ps.all.lat), ps.all.statuses(), ms(p50), ms(p99), ms(top), len(ps.lost))
		if ph.kill && kr != nil {
			_, a99, amax := ps.alone.latencies()
			restart := "not restarted"
			if kr.restarted {
				restart = "restarted, ready in " + kr.readyIn.Round(time.Millisecond).String()
			}
			fmt.Printf("SUMMARY kill: instance 2 pid %d SIGKILLed at t=%.1fs with %d refresh requests in flight; instance 1 alone: requests=%d statuses=%s p99=%s max=%s; instance 2 %s; instance 2's statuses in the phase %s\n",
				kr.pid, kr.at.Seconds(), kr.inFlight, len(ps.alone.lat), ps.alone.statuses(), ms(a99), ms(amax), restart, ps.inst[1].statuses())
		}
	}
	fmt.Printf("SUMMARY refresh tokens sent again: %d (first answer later than provider_timeout: %d, first answer cut by a fault: %d, first answer delivered in time: %d)\n",
		r.late+r.cut+r.delivered, r.late, r.cut, r.delivered)
	// A refresh token whose first answer never reached the gateway (or came
	// after provider_timeout) is sent again, refused, and its session ends
	// when its access token expires: SPEC section 4's outcome for a refresh
	// of unknown outcome. Only the rest would be the gateway's fault. The
	// match is by count: the soak does not know which token was whose.
	fault := min(len(all), r.late+r.cut)
	fmt.Printf("SUMMARY all phases: sessions lost: %d (after a refresh answer the faults kept from the gateway: %d; gateway losses: %d)\n",
		len(all), fault, len(all)-fault)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1e3) }

func randomKey(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}
