// Command loadenv is the environment scripts/load puts under load: on
// loopback, a trivial JSON upstream, the demo OpenID provider, a bffgate
// gateway with one spa frontend routing to the upstream, and a bare
// httputil.ReverseProxy to the same upstream that sets a fixed Authorization
// header as large as the gateway's (the baseline). It logs in once
// through the provider's login form and prints, on stdout,
//
//	GATEWAY_URL=http://127.0.0.1:P/web/api/fast/7
//	BARE_URL=http://127.0.0.1:Q/7
//	COOKIE='bff-web=...'
//	READY=1
//
// then serves until SIGINT or SIGTERM. Both URLs reach the upstream as GET
// /7; the gateway's also needs the cookie and "X-CSRF: 1". Sessions go to
// Redis under a fresh key prefix that is deleted on exit (-memory: the
// in-process store).
//
//	go run ./internal/loadenv [-redis URL | -memory] [-cpuprofile FILE] [-log]
//
// With -cpuprofile the CPU profile starts at the first SIGUSR1 (so the
// profile can cover only the gateway's run) and is written on exit.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bffgate/bffgate/config"
	"github.com/bffgate/bffgate/internal/gateway"
	"github.com/bffgate/bffgate/internal/localrun"
)

const (
	clientID     = "web-bff"
	clientSecret = "load-web-secret"
	mount        = "/web"
	routePrefix  = "/api/fast"
	upstreamPath = "/7"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "loadenv: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	redisURL := flag.String("redis", defaultRedisURL(), "Redis URL for sessions")
	memory := flag.Bool("memory", false, "keep sessions in memory instead of Redis")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile to `FILE` on exit, covering the time from the first SIGUSR1")
	logReqs := flag.Bool("log", false, "write the gateway's JSON logs (one access line per request) to stderr, as in production")
	tokenLifetime := flag.Duration("token-lifetime", 2*time.Hour, "access token lifetime; a short one (20s) makes the gateway refresh during the run, and loadenv reports the gateway's p99 inside and outside refresh windows on exit")
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", flag.Arg(0))
	}

	// The example provider logs every request on slog's default logger.
	slog.SetDefault(slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))

	// Listeners first: the issuer and the public URL name their ports.
	var lns [4]net.Listener
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer ln.Close()
		lns[i] = ln
	}
	upLn, idpLn, gwLn, bareLn := lns[0], lns[1], lns[2], lns[3]
	upURL := "http://" + upLn.Addr().String()
	issuer := "http://" + idpLn.Addr().String()
	public := "http://" + gwLn.Addr().String()
	bareURL := "http://" + bareLn.Addr().String()

	// The upstream notes the size of the first Authorization header it
	// gets (the gateway's check comes first) so that the baseline can send
	// one as large: the baseline is a proxy that sets a fixed
	// Authorization header, and a ~1 KB header costs the upstream and both
	// connections alike.
	var authLen atomic.Int64
	upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := r.Header.Get("Authorization"); a != "" {
			authLen.CompareAndSwap(0, int64(len(a)))
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	})

	// By default an access token that outlives the run: the load measures
	// the forwarding path, not refreshes.
	idp, err := localrun.NewIDP(issuer, clientID, clientSecret, public, mount, *tokenLifetime)
	if err != nil {
		return err
	}

	store := "redis"
	if *memory {
		store = "memory"
	}
	prefix := "bffgate-load:" + randomHex(8) + ":"
	cfg := &config.Config{
		Path: "loadenv",
		Server: config.Server{
			Listen:    gwLn.Addr().String(),
			PublicURL: public,
		},
		Sessions: config.Sessions{
			Store:      store,
			Redis:      config.Redis{URL: *redisURL, KeyPrefix: prefix},
			CookieKeys: []config.CookieKey{{Hash: randomKey(64), Block: randomKey(32)}},
		},
		Frontends: []config.Frontend{{
			Name: "web", Kind: config.KindSPA, Mount: mount, Source: "loadenv",
			OIDC:   config.OIDC{Issuer: issuer, ClientID: clientID, ClientSecret: clientSecret},
			Routes: []config.Route{{Prefix: routePrefix, Upstream: upURL, StripPrefix: true}},
		}},
	}
	if *tokenLifetime < time.Hour {
		// A quarter of the lifetime: each token is refreshed once, about
		// three quarters into its life, whatever the default margin.
		cfg.Sessions.RefreshMargin = *tokenLifetime / 4
	}
	cfg.ApplyDefaults()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}

	var opts gateway.Options
	if *logReqs {
		opts.Logger = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	var rdb redis.UniversalClient
	if store == "redis" {
		if rdb, err = gateway.NewRedisClient(cfg.Sessions.Redis); err != nil {
			return fmt.Errorf("redis: %w", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := rdb.Ping(ctx).Err()
		cancel()
		if err != nil {
			rdb.Close()
			return fmt.Errorf("redis at %s: %w (or use -memory)", *redisURL, err)
		}
		opts.Redis = rdb
	}
	gw, err := gateway.New(cfg, opts)
	if err != nil {
		if rdb != nil {
			rdb.Close()
		}
		return err
	}
	// Deferred calls run last-first: keys are deleted before the client closes.
	defer gw.Close()
	if c := gw.SessionCache(); c != nil {
		defer func() { fmt.Fprintf(os.Stderr, "CACHE %+v\n", c.Stats()) }()
	}
	if rdb != nil {
		defer deleteKeys(rdb, prefix)
	}

	// The baseline: what the gateway's route proxy is minus sessions, CSRF,
	// routing and observability (same transport pool size), setting a fixed
	// Authorization header as large as the gateway's once that is known.
	target, _ := url.Parse(upURL)
	var bareAuth atomic.Pointer[string]
	bare := baseline(target, &bareAuth)

	var (
		idpHandler http.Handler = idp
		gwHandler               = gw.Handler(true)
		windows    *refreshWindows
	)
	if *tokenLifetime < time.Hour {
		windows = &refreshWindows{}
		idpHandler = windows.provider(idp)
		gwHandler = windows.gateway(gwHandler, mount+routePrefix+upstreamPath)
		defer windows.report(os.Stderr)
	}
	for i, h := range []http.Handler{upstream, idpHandler, gwHandler, bare} {
		s := localrun.NewServer(h)
		go func() { _ = s.Serve(lns[i]) }()
		defer s.Close()
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if err := localrun.WaitReady(ctx, public+"/readyz"); err != nil {
		return err
	}
	cookie, err := localrun.LoginCookie(ctx, public, mount, "bff-web")
	if err != nil {
		return err
	}
	gatewayURL := public + mount + routePrefix + upstreamPath
	if err := check(ctx, gatewayURL, http.Header{"Cookie": {cookie}, "X-Csrf": {"1"}}); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	n := int(authLen.Load())
	if n <= len("Bearer ") {
		return fmt.Errorf("gateway: the upstream got no Authorization header")
	}
	fixed := "Bearer " + strings.Repeat("x", n-len("Bearer "))
	bareAuth.Store(&fixed)
	fmt.Fprintf(os.Stderr, "loadenv: the baseline sends a fixed Authorization header of %d bytes, as large as the gateway's\n", n)
	if err := check(ctx, bareURL+upstreamPath, nil); err != nil {
		return fmt.Errorf("bare proxy: %w", err)
	}

	if *cpuprofile != "" {
		stopProfile, err := profileOnSignal(ctx, *cpuprofile)
		if err != nil {
			return err
		}
		defer stopProfile()
	}

	fmt.Printf("GATEWAY_URL=%s\nBARE_URL=%s%s\nCOOKIE='%s'\nSTORE=%s\nREADY=1\n", gatewayURL, bareURL, upstreamPath, cookie, store)
	<-ctx.Done()
	fmt.Fprintln(os.Stderr, "loadenv: stopping")
	return nil
}

// baseline is the bare proxy: what NewSingleHostReverseProxy's Director
// does (the target, the incoming Host, the X-Forwarded-For it adds),
// without its deprecated hook, plus the fixed Authorization header in auth
// once it is set.
func baseline(target *url.URL, auth *atomic.Pointer[string]) *httputil.ReverseProxy {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 256
	return &httputil.ReverseProxy{Transport: tr, Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		pr.Out.Host = pr.In.Host
		if ip, _, err := net.SplitHostPort(pr.In.RemoteAddr); err == nil {
			pr.Out.Header.Set("X-Forwarded-For", ip)
		}
		if a := auth.Load(); a != nil {
			pr.Out.Header.Set("Authorization", *a)
		}
	}}
}

func defaultRedisURL() string {
	if a := os.Getenv("BFFGATE_TEST_REDIS"); a != "" {
		return "redis://" + a + "/0"
	}
	return "redis://127.0.0.1:6379/0"
}

// check makes sure u answers 200, so a load run never measures error answers.
func check(ctx context.Context, u string, h http.Header) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header = h
	if req.Header == nil {
		req.Header = http.Header{}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d: %s", u, resp.StatusCode, body)
	}
	return nil
}

// profileOnSignal starts the CPU profile at the first SIGUSR1; the returned
// function stops it and writes the file (nothing when no signal came).
func profileOnSignal(ctx context.Context, path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	started := make(chan struct{})
	go func() {
		select {
		case <-usr1:
			if err := pprof.StartCPUProfile(f); err != nil {
				fmt.Fprintf(os.Stderr, "loadenv: cpu profile: %v\n", err)
				return
			}
			fmt.Fprintln(os.Stderr, "loadenv: cpu profile started")
			close(started)
		case <-ctx.Done():
		}
	}()
	return func() {
		signal.Stop(usr1)
		select {
		case <-started:
			pprof.StopCPUProfile()
			fmt.Fprintf(os.Stderr, "loadenv: cpu profile written to %s\n", path)
		default:
			fmt.Fprintln(os.Stderr, "loadenv: no SIGUSR1 came, no cpu profile written")
		}
		f.Close()
	}, nil
}

// deleteKeys removes every key under this run's prefix.
func deleteKeys(rdb redis.UniversalClient, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n := 0
	iter := rdb.Scan(ctx, 0, prefix+"*", 500).Iterator()
	for iter.Next(ctx) {
		if rdb.Del(ctx, iter.Val()).Err() == nil {
			n++
		}
	}
	if err := iter.Err(); err != nil {
		fmt.Fprintf(os.Stderr, "loadenv: deleting keys %s*: %v\n", prefix, err)
		return
	}
	fmt.Fprintf(os.Stderr, "loadenv: deleted %d keys under %s\n", n, prefix)
}

func randomKey(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// refreshWindows records when the provider answered refresh grants and how
// long each gateway request took, to tell the latency of requests that ran
// while a refresh was under way from the others.
type refreshWindows struct {
	mu       sync.Mutex
	start    time.Time
	windows  [][2]time.Duration // refresh grant: start, end (since start)
	requests [][2]time.Duration // gateway request: start, end
}

func (rw *refreshWindows) since() time.Duration {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	if rw.start.IsZero() {
		rw.start = time.Now()
	}
	return time.Since(rw.start)
}

// provider wraps the provider's handler: each POST with
// grant_type=refresh_token is one refresh window.
func (rw *refreshWindows) provider(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.ParseForm() != nil || r.PostForm.Get("grant_type") != "refresh_token" {
			h.ServeHTTP(w, r)
			return
		}
		from := rw.since()
		h.ServeHTTP(w, r)
		to := rw.since()
		rw.mu.Lock()
		rw.windows = append(rw.windows, [2]time.Duration{from, to})
		rw.mu.Unlock()
	})
}

// gateway wraps the gateway's handler and times the requests to path.
func (rw *refreshWindows) gateway(h http.Handler, path string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != path {
			h.ServeHTTP(w, r)
			return
		}
		from := rw.since()
		h.ServeHTTP(w, r)
		to := rw.since()
		rw.mu.Lock()
		rw.requests = append(rw.requests, [2]time.Duration{from, to})
		rw.mu.Unlock()
	})
}

// report prints, for the gateway's requests, p50 and p99 of those that
// overlapped a refresh window (widened by 100ms after it, for the session
// write that follows) and of the others, as one line scripts/load picks up:
//
//	REFRESH refreshes=N inside: n=.. p50=..us p99=..us outside: n=.. p50=..us p99=..us
func (rw *refreshWindows) report(w io.Writer) {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	const after = 100 * time.Millisecond
	var in, out []time.Duration
	for _, r := range rw.requests {
		inside := slices.ContainsFunc(rw.windows, func(win [2]time.Duration) bool {
			return r[0] <= win[1]+after && r[1] >= win[0]
		})
		if inside {
			in = append(in, r[1]-r[0])
		} else {
			out = append(out, r[1]-r[0])
		}
	}
	pct := func(d []time.Duration, p float64) string {
		if len(d) == 0 {
			return "-"
		}
		slices.Sort(d)
		return fmt.Sprintf("%.1fus", float64(d[min(len(d)-1, int(float64(len(d))*p))].Nanoseconds())/1e3)
	}
	fmt.Fprintf(w, "REFRESH refreshes=%d inside: n=%d p50=%s p99=%s outside: n=%d p50=%s p99=%s (server-side time in the gateway handler)\n",
		len(rw.windows), len(in), pct(in, 0.50), pct(in, 0.99), len(out), pct(out, 0.50), pct(out, 0.99))
}
