// Command soak is the reliability run behind scripts/soak: on loopback, a
// redis-server it starts itself (AOF on, a free port, a temporary dir), the
// demo OpenID provider behind internal/faultidp's switches, two bffgate
// instances sharing that Redis, a trivial upstream, and N sessions logged in
// through the real login flow with short-lived access tokens, so that
// refreshes happen all the time. A paced load generator sends GETs that
// alternate between the two instances, while the provider goes through the
// phases normal, late (token answers processed but sent late), hang,
// refuse (connections refused), unavailable (503) and recovery.
//
// Every second it prints one line: phase, answers by status, p50/p99
// latency, the process's RSS, goroutines and Redis DBSIZE. Its last lines
// summarise each phase, ending with "sessions lost: N" (sessions that got a
// 401 in that phase). Everything it starts (the redis-server by PID, the
// listeners) is stopped before it exits, also on SIGINT/SIGTERM.
//
//	go run ./internal/soak [-phase 20s] [-sessions 8] [-rate 100] [-token-lifetime 30s] ...
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
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bffgate/bffgate/config"
	"github.com/bffgate/bffgate/internal/demo"
	"github.com/bffgate/bffgate/internal/faultidp"
	"github.com/bffgate/bffgate/internal/gateway"
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
}

var phases = []phase{
	{"normal", faultidp.Normal},
	{"late", faultidp.Late},
	{"hang", faultidp.Hang},
	{"refuse", faultidp.Refuse},
	{"unavailable", faultidp.Unavailable},
	{"recovery", faultidp.Normal},
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "soak: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	phaseLen := flag.Duration("phase", 20*time.Second, "length of each phase but recovery")
	recoveryLen := flag.Duration("recovery", 40*time.Second, "length of the recovery phase: longer than the gateway's 30s maximum refresh back-off, so that sessions whose refresh failed during the outage are seen to recover")
	nSessions := flag.Int("sessions", 8, "sessions logged in before the run")
	rate := flag.Int("rate", 100, "requests per second, all sessions and both instances together")
	lifetime := flag.Duration("token-lifetime", 30*time.Second, "access token lifetime at the provider")
	margin := flag.Duration("refresh-margin", 0, "gateway refresh margin (0: a third of the token lifetime)")
	providerTimeout := flag.Duration("provider-timeout", 2*time.Second, "gateway sessions.provider_timeout")
	late := flag.Duration("late", 1500*time.Millisecond, "how late the provider answers token requests in the late phase")
	reqTimeout := flag.Duration("request-timeout", 10*time.Second, "client timeout of one request")
	redisBin := flag.String("redis-server", "redis-server", "redis-server binary")
	flag.Parse()
	switch {
	case flag.NArg() > 0:
		return fmt.Errorf("unexpected argument %q", flag.Arg(0))
	case *phaseLen < 2*time.Second || *phaseLen > 15*time.Minute:
		return errors.New("-phase: between 2s and 15m")
	case *recoveryLen < 2*time.Second || *recoveryLen > 15*time.Minute:
		return errors.New("-recovery: between 2s and 15m")
	case *nSessions < 1 || *nSessions > 1000:
		return errors.New("-sessions: 1..1000")
	case *rate < 1 || *rate > 5000:
		return errors.New("-rate: 1..5000")
	case *lifetime < 2*time.Second:
		return errors.New("-token-lifetime: at least 2s")
	}
	if *margin == 0 {
		*margin = *lifetime / 3
	}

	// The example provider logs every request on slog's default logger.
	slog.SetDefault(slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

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
	var gwLns [2]net.Listener
	for i := range gwLns {
		if gwLns[i], err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return err
		}
		defer gwLns[i].Close()
	}
	issuer := "http://" + fln.Addr().String()
	public := "http://" + gwLns[0].Addr().String()
	bases := [2]string{public, "http://" + gwLns[1].Addr().String()}

	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	defer upstream.Close()

	idp, err := demo.NewIDP(issuer, []demo.Client{{
		ID: clientID, Secret: clientSecret,
		RedirectURIs:           []string{public + mount + "/bff/callback"},
		PostLogoutRedirectURIs: []string{public + mount + "/"},
	}}, demo.IDPOptions{AccessTokenLifetime: *lifetime})
	if err != nil {
		return err
	}
	idpSrv := localrun.NewServer(faults.Handler(idp))
	go func() { _ = idpSrv.Serve(fln) }()
	defer idpSrv.Close()

	cfg := &config.Config{
		Path:   "soak",
		Server: config.Server{Listen: gwLns[0].Addr().String(), PublicURL: public},
		Sessions: config.Sessions{
			Store:           "redis",
			Redis:           config.Redis{URL: "redis://" + rdb.Options().Addr + "/0", KeyPrefix: "bffgate-soak:"},
			CookieKeys:      []config.CookieKey{{Hash: randomKey(64), Block: randomKey(32)}},
			RefreshMargin:   *margin,
			ProviderTimeout: *providerTimeout,
		},
		Frontends: []config.Frontend{{
			Name: "web", Kind: config.KindSPA, Mount: mount, Source: "soak",
			OIDC:   config.OIDC{Issuer: issuer, ClientID: clientID, ClientSecret: clientSecret},
			Routes: []config.Route{{Prefix: "/api/fast", Upstream: upstream.URL, StripPrefix: true}},
		}},
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	// Two instances on one config and one Redis, as two replicas behind a
	// load balancer; each builds its own Redis client from the config.
	for i := range gwLns {
		gw, err := gateway.New(cfg, gateway.Options{})
		if err != nil {
			return fmt.Errorf("gateway %d: %w", i+1, err)
		}
		defer gw.Close()
		s := localrun.NewServer(gw.Handler(true))
		go func() { _ = s.Serve(gwLns[i]) }()
		defer s.Close()
	}
	for _, b := range bases {
		if err := localrun.WaitReady(ctx, b+"/readyz"); err != nil {
			return err
		}
	}

	cookies := make([]string, *nSessions)
	for i := range cookies {
		if cookies[i], err = localrun.LoginCookie(ctx, public, mount, "bff-web"); err != nil {
			return fmt.Errorf("session %d: %w", i+1, err)
		}
	}
	fmt.Printf("soak: redis %s (AOF), provider %s, gateways %s %s, %d sessions, %d req/s, token lifetime %v, refresh margin %v, provider timeout %v, %d phases of %v and recovery %v\n",
		rdb.Options().Addr, issuer, bases[0], bases[1], *nSessions, *rate, *lifetime, *margin, *providerTimeout, len(phases)-1, *phaseLen, *recoveryLen)

	st := newStats(len(phases))
	client := &http.Client{
		Timeout:   *reqTimeout,
		Transport: &http.Transport{MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	defer client.CloseIdleConnections()

	var wg sync.WaitGroup
	start := time.Now()
	tick := time.NewTicker(time.Second / time.Duration(*rate))
	defer tick.Stop()
	second := time.NewTicker(time.Second)
	defer second.Stop()
	cur := -1
	n := 0
	interrupted := false
loop:
	for {
		p := min(int(time.Since(start) / *phaseLen), len(phases)-1)
		if time.Since(start) >= time.Duration(len(phases)-1)**phaseLen+*recoveryLen {
			break
		}
		if p != cur {
			cur = p
			if err := faults.SetMode(phases[p].mode); err != nil {
				fmt.Fprintf(os.Stderr, "soak: provider mode %s: %v\n", phases[p].mode, err)
			}
			fmt.Printf("--- phase %s (provider %s) at %s\n", phases[p].name, phases[p].mode, time.Since(start).Truncate(time.Second))
		}
		select {
		case <-ctx.Done():
			interrupted = true
			break loop
		case <-second.C:
			st.printSecond(time.Since(start), phases[cur].name, rdb)
		case <-tick.C:
			sess, inst := n%*nSessions, (n / *nSessions)%2
			n++
			wg.Add(1)
			go func(p int) {
				defer wg.Done()
				t0 := time.Now()
				code := get(ctx, client, bases[inst]+apiPath, cookies[sess])
				st.record(p, sess, code, time.Since(t0))
			}(cur)
		}
	}
	// Let the provider answer again so requests in flight finish.
	_ = faults.SetMode(faultidp.Normal)
	wg.Wait()
	st.printSecond(time.Since(start), "end", rdb)
	if interrupted {
		fmt.Println("soak: interrupted; the summary covers the phases run so far")
	}
	st.summary()
	fmt.Printf("soak: provider refresh grants received %d, most uses of one refresh token %d\n",
		faults.Attempts("refresh_token"), faults.MaxRefreshTokenUses())
	return nil
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
	phases []bucket
	lost   []map[int]bool // per phase: sessions that got a 401
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

// pct returns the p-quantile of the sorted latencies.
func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

func newStats(n int) *stats {
	s := &stats{phases: make([]bucket, n), lost: make([]map[int]bool, n)}
	for i := range s.lost {
		s.lost[i] = map[int]bool{}
	}
	return s
}

func (s *stats) record(p, sess, code int, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sec.add(code, d)
	s.phases[p].add(code, d)
	if code == http.StatusUnauthorized {
		s.lost[p][sess] = true
	}
}

func (s *stats) printSecond(at time.Duration, phase string, rdb *redis.Client) {
	s.mu.Lock()
	b := s.sec
	s.sec = bucket{}
	s.mu.Unlock()
	slices.Sort(b.lat)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	keys, err := rdb.DBSize(ctx).Result()
	cancel()
	dbsize := strconv.FormatInt(keys, 10)
	if err != nil {
		dbsize = "?"
	}
	fmt.Printf("t=%4ds %-11s n=%-4d %-24s p50=%-9s p99=%-9s rss=%s goroutines=%d redis_keys=%s\n",
		int(at.Seconds()), phase, len(b.lat), b.statuses(), ms(pct(b.lat, 0.50)), ms(pct(b.lat, 0.99)),
		rss(), runtime.NumGoroutine(), dbsize)
}

func (s *stats) summary() {
	s.mu.Lock()
	defer s.mu.Unlock()
	all := map[int]bool{}
	for i, b := range s.phases {
		slices.Sort(b.lat)
		var maxLat time.Duration
		if len(b.lat) > 0 {
			maxLat = b.lat[len(b.lat)-1]
		}
		for k := range s.lost[i] {
			all[k] = true
		}
		fmt.Printf("SUMMARY phase=%-11s requests=%-5d statuses=%-24s p50=%-9s p99=%-9s max=%-9s sessions lost: %d\n",
			phases[i].name, len(b.lat), b.statuses(), ms(pct(b.lat, 0.50)), ms(pct(b.lat, 0.99)), ms(maxLat), len(s.lost[i]))
	}
	fmt.Printf("SUMMARY all phases: sessions lost: %d\n", len(all))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1e3) }

// rss is VmRSS from /proc/self/status.
func rss() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "?"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			return strings.ReplaceAll(strings.TrimSpace(v), " ", "")
		}
	}
	return "?"
}

func randomKey(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}
