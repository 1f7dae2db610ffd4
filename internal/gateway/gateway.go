// Package gateway assembles a running bffgate from a validated Config: the
// session store (the one place that picks a concrete store), the session
// manager, the frontends and the HTTP handlers. It is the composition root
// shared by cmd/bffgate and the end-to-end tests, which is why it lives
// apart from main.
package gateway

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/bffgate/bffgate/bff"
	"github.com/bffgate/bffgate/bff/httperr"
	"github.com/bffgate/bffgate/bff/proxy"
	"github.com/bffgate/bffgate/config"
	"github.com/bffgate/bffgate/frontends"
	"github.com/bffgate/bffgate/internal/observe"
	"github.com/bffgate/bffgate/sessions"
	"github.com/bffgate/bffgate/sessions/cache"
	"github.com/bffgate/bffgate/sessions/memstore"
	"github.com/bffgate/bffgate/sessions/redisstore"
)

// store is what the gateway needs of a concrete store.
type store interface {
	sessions.Store
	sessions.Locker
}

// Gateway is one running instance.
type Gateway struct {
	Config   *config.Config
	Sessions *sessions.Manager
	Router   *frontends.Router
	Registry *prometheus.Registry

	store     store
	redis     redis.UniversalClient
	cache     *cache.Cache     // nil: no session cache
	sentinels *sentinelMasters // the cache's view of the Sentinel master; nil without Sentinel
	logger    *slog.Logger
	metrics   *observe.Metrics
	front     http.Handler // Router behind the request id, access log and request metrics

	stopSweep context.CancelFunc // nil: no expiry sweep runs
	swept     chan struct{}      // closed when the sweep has stopped
}

// Options are the process-level collaborators.
type Options struct {
	Logger *slog.Logger
	// HTTPClient talks to identity providers; nil → a client whose timeout
	// is sessions.provider_timeout.
	HTTPClient *http.Client
	// Redis overrides the client built from the config (tests).
	Redis redis.UniversalClient
	// TracerProvider, when set, traces every request (server.tracing:
	// cmd builds it with observe.NewTracerProvider; tests pass one that
	// records in memory). Nil: no spans, and the client's traceparent
	// reaches upstreams untouched.
	TracerProvider trace.TracerProvider
	// ExpirySweep is how often this instance looks for sessions the store
	// expired by their TTL, to log them (session_expired); zero means
	// DefaultExpirySweep. Only the Redis store keeps the schedule it reads.
	ExpirySweep time.Duration
}

// New builds a gateway from cfg, which must have passed Validate.
func New(cfg *config.Config, o Options) (*Gateway, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	// Every line a request logs carries its request_id.
	o.Logger = slog.New(observe.NewContextHandler(o.Logger.Handler()))
	g := &Gateway{Config: cfg, logger: o.Logger, Registry: prometheus.NewRegistry()}
	g.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	g.metrics = observe.NewMetrics(g.Registry)

	switch cfg.Sessions.Store {
	case "redis":
		c := o.Redis
		if c == nil {
			var err error
			if c, err = NewRedisClient(cfg.Sessions.Redis); err != nil {
				return nil, fmt.Errorf("%s: sessions.redis: %w", cfg.Path, err)
			}
		}
		g.redis = c
		rs := redisstore.New(c)
		g.store = rs
		if cfg.Sessions.Cache.On(cfg.Sessions.Store) {
			prefix := cfg.Sessions.Redis.KeyPrefix
			co := cache.Options{
				Prefix:     sessions.RecordKeyPrefix(prefix),
				Channel:    cache.Channel(prefix),
				MaxEntries: cfg.Sessions.Cache.MaxEntries,
				Logger:     o.Logger,
			}
			if cfg.Sessions.Redis.MasterName != "" {
				sm, err := newSentinelMasters(cfg.Sessions.Redis)
				if err != nil {
					return nil, fmt.Errorf("%s: sessions.redis: %w", cfg.Path, err)
				}
				g.sentinels, co.MasterAddrs = sm, sm.addrs
			}
			ch, err := cache.New(rs, c, co)
			if err != nil {
				return nil, fmt.Errorf("%s: sessions.cache: %w", cfg.Path, err)
			}
			g.cache, g.store = ch, ch
			registerCacheMetrics(g.Registry, ch)
		}
	default:
		g.store = memstore.New()
	}

	g.store = observe.InstrumentStore(g.store, g.metrics)

	keys, err := cookieKeys(cfg, o.Logger)
	if err != nil {
		return nil, err
	}
	g.Sessions, err = sessions.NewManager(g.store, sessions.Options{KeyPrefix: cfg.Sessions.Redis.KeyPrefix, Keys: keys})
	if err != nil {
		return nil, err
	}
	trusted, err := proxy.ParseTrusted(cfg.Server.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("%s: server.trusted_proxies: %w", cfg.Path, err)
	}
	hc := o.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: cfg.Sessions.ProviderTimeout}
	}
	var tracing observe.Tracing
	if o.TracerProvider != nil {
		tracing = observe.Tracing{Tracer: o.TracerProvider.Tracer(observe.TracerName), Propagator: observe.Propagator()}
	}
	g.Router, err = frontends.New(cfg, bff.Deps{
		Tracer:          tracing.Tracer,
		Propagator:      tracing.Propagator,
		Sessions:        g.Sessions,
		Locker:          g.store,
		HTTPClient:      hc,
		Logger:          o.Logger,
		PublicURL:       cfg.Server.PublicURL,
		RefreshMargin:   cfg.Sessions.RefreshMargin,
		ProviderTimeout: cfg.Sessions.ProviderTimeout,
		TrustedProxies:  trusted,
		Observer:        g.metrics,
		RequestID:       observe.RequestID,
		// The sealing pair is what every instance is sure to share.
		KeySecret:       slices.Concat(keys[0].Hash, keys[0].Block),
		OlderKeySecrets: olderKeySecrets(keys[1:]),
	})
	if err != nil {
		return nil, err
	}
	g.metrics.InitFrontends(cfg.Frontends)
	g.front = observe.Handler(g.Router, o.Logger, g.metrics, tracing)
	if g.Sessions.ReportsExpiry() {
		interval := o.ExpirySweep
		if interval <= 0 {
			interval = DefaultExpirySweep
		}
		ctx, cancel := context.WithCancel(context.Background())
		g.stopSweep, g.swept = cancel, make(chan struct{})
		go func() {
			defer close(g.swept)
			g.sweepExpired(ctx, interval)
		}()
	}
	return g, nil
}

// SessionCache returns the in-process session cache, nil when there is none
// (memory store, or sessions.cache.enabled: false).
func (g *Gateway) SessionCache() *cache.Cache { return g.cache }

// Reload swaps in newly loaded frontends; the running set stays on error.
func (g *Gateway) Reload(fes []config.Frontend) error {
	if err := g.Router.Swap(fes); err != nil {
		g.metrics.ConfigReload("failure")
		return err
	}
	g.metrics.InitFrontends(fes)
	g.metrics.ConfigReload("success")
	return nil
}

// ReloadFailed counts a reload whose files did not load or validate, so
// never reached Reload (bffgate_config_reloads_total{result="failure"}).
func (g *Gateway) ReloadFailed() { g.metrics.ConfigReload("failure") }

// Close stops the expiry sweep and releases the store connection.
func (g *Gateway) Close() error {
	if g.stopSweep != nil {
		g.stopSweep()
		<-g.swept
	}
	if g.cache != nil {
		_ = g.cache.Close()
	}
	if g.sentinels != nil {
		g.sentinels.close()
	}
	if g.redis != nil {
		return g.redis.Close()
	}
	return nil
}

// Handler serves the frontends, plus the admin endpoints when withAdmin.
// No http.ServeMux in front of the router: it would answer dot-segment
// paths with a redirect to the cleaned path instead of letting the router
// refuse them.
func (g *Gateway) Handler(withAdmin bool) http.Handler {
	if !withAdmin {
		return g.front
	}
	admin := g.adminEndpoints()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h, ok := admin[r.URL.Path]; ok {
			h.ServeHTTP(w, r)
			return
		}
		g.front.ServeHTTP(w, r)
	})
}

// AdminHandler serves /healthz, /readyz and /metrics alone (admin_listen).
func (g *Gateway) AdminHandler() http.Handler {
	admin := g.adminEndpoints()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h, ok := admin[r.URL.Path]; ok {
			h.ServeHTTP(w, r)
			return
		}
		httperr.Write(w, httperr.New(http.StatusNotFound, httperr.CodeNotFound, "admin endpoints: /healthz /readyz /metrics"))
	})
}

func (g *Gateway) adminEndpoints() map[string]http.Handler {
	getOnly := func(h http.HandlerFunc) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				httperr.Write(w, httperr.New(http.StatusMethodNotAllowed, httperr.CodeMethodNotAllowed, "use GET"))
				return
			}
			h(w, r)
		})
	}
	metrics := promhttp.HandlerFor(g.Registry, promhttp.HandlerOpts{})
	metricsNoSniff := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		metrics.ServeHTTP(w, r)
	}
	return map[string]http.Handler{
		"/healthz": getOnly(func(w http.ResponseWriter, r *http.Request) {
			writeJSON(w, http.StatusOK, `{"status":"ok"}`)
		}),
		"/readyz": getOnly(func(w http.ResponseWriter, r *http.Request) {
			if failing, err := g.Ready(r.Context()); err != nil {
				// The causes name internal hosts and resolvers: they go to the
				// log; the answer (often on the public listener) names parts.
				// Debug only: a probe every few seconds must not flood the log;
				// WatchStartup warns of each failing part on its own schedule.
				g.logger.Debug("not ready", "error", err)
				body, _ := json.Marshal(map[string]any{"status": "unavailable", "failing": failing})
				writeJSON(w, http.StatusServiceUnavailable, string(body))
				return
			}
			writeJSON(w, http.StatusOK, `{"status":"ready"}`)
		}),
		"/metrics": getOnly(metricsNoSniff),
	}
}

// Ready: the store answers and every frontend's provider metadata is loaded.
// It returns the failing parts ("session store", "frontend web: identity
// provider") and the joined causes.
func (g *Gateway) Ready(ctx context.Context) (failing []string, err error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var errs []error
	if err := g.store.Ping(ctx); err != nil {
		failing = append(failing, "session store")
		errs = append(errs, fmt.Errorf("session store: %w", err))
	}
	for _, b := range g.Router.BFFs() {
		if err := b.Ready(ctx); err != nil {
			failing = append(failing, "frontend "+b.Name()+": identity provider")
			errs = append(errs, fmt.Errorf("frontend %q: %w", b.Name(), err))
		}
	}
	return failing, errors.Join(errs...)
}

func writeJSON(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body + "\n"))
}

// NewRedisClient builds the go-redis UniversalClient: a single node from
// url, a cluster from addrs, Sentinel from addrs plus master_name. Timeouts
// and pool sizes are explicit so an outage fails fast instead of queueing.
func NewRedisClient(rc config.Redis) (redis.UniversalClient, error) {
	o, err := redisOptions(rc)
	if err != nil {
		return nil, err
	}
	return redis.NewUniversalClient(o), nil
}

func redisOptions(rc config.Redis) (*redis.UniversalOptions, error) {
	o := &redis.UniversalOptions{
		Addrs:      rc.Addrs,
		MasterName: rc.MasterName,
		Username:   rc.Username,
		Password:   rc.Password,
		// Only read with MasterName (config refuses them without).
		SentinelUsername: rc.SentinelUsername,
		SentinelPassword: rc.SentinelPassword,
		DB:               rc.DB,
		DialTimeout:      rc.DialTimeout,
		ReadTimeout:      rc.ReadTimeout,
		WriteTimeout:     rc.WriteTimeout,
		PoolSize:         rc.PoolSize,
		MinIdleConns:     rc.MinIdleConns,
		PoolTimeout:      rc.DialTimeout + rc.ReadTimeout,
		MaxRetries:       1,
		// One dial attempt per command: with the default of five, a
		// blackholed Redis would hold a request for five dial timeouts
		// before the 503.
		DialerRetries:      1,
		DialerRetryTimeout: 50 * time.Millisecond,
	}
	if o.PoolSize == 0 {
		o.PoolSize = 10 * runtime.NumCPU()
	}
	if rc.URL != "" {
		u, err := redis.ParseURL(rc.URL)
		if err != nil {
			return nil, fmt.Errorf("url: %w", err)
		}
		o.Addrs = []string{u.Addr}
		if u.Username != "" {
			o.Username = u.Username
		}
		if u.Password != "" {
			o.Password = u.Password
		}
		if u.DB != 0 {
			o.DB = u.DB
		}
		o.TLSConfig = u.TLSConfig
	}
	if rc.TLS && o.TLSConfig == nil {
		o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return o, nil
}

// cookieKeys decodes sessions.cookie_keys; a memory store without keys gets
// random ones, since its sessions die with the process anyway.
// olderKeySecrets are the BFFs' key secrets (see bff.Deps.KeySecret) of
// the pairs after the first, newest first.
func olderKeySecrets(pairs []sessions.KeyPair) [][]byte {
	var out [][]byte
	for _, k := range pairs {
		out = append(out, slices.Concat(k.Hash, k.Block))
	}
	return out
}

func cookieKeys(cfg *config.Config, logger *slog.Logger) ([]sessions.KeyPair, error) {
	var out []sessions.KeyPair
	for i, k := range cfg.Sessions.CookieKeys {
		h, err := decodeKey(k.Hash)
		if err != nil {
			return nil, fmt.Errorf("%s: sessions.cookie_keys[%d].hash: %w", cfg.Path, i, err)
		}
		b, err := decodeKey(k.Block)
		if err != nil {
			return nil, fmt.Errorf("%s: sessions.cookie_keys[%d].block: %w", cfg.Path, i, err)
		}
		out = append(out, sessions.KeyPair{Hash: h, Block: b})
	}
	if len(out) == 0 {
		if cfg.Sessions.Store == "redis" {
			return nil, fmt.Errorf("%s: sessions.cookie_keys: required with the redis store", cfg.Path)
		}
		logger.Warn("sessions.cookie_keys not set: using random keys; sessions end when the process stops")
		out = append(out, sessions.KeyPair{Hash: random(64), Block: random(32)})
	}
	return out, nil
}

func decodeKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("not valid base64")
}

func random(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// registerCacheMetrics exposes the session cache's counters.
func registerCacheMetrics(reg *prometheus.Registry, c *cache.Cache) {
	counter := func(name, help string, v func(cache.Stats) uint64) {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "bffgate_session_cache_" + name, Help: help},
			func() float64 { return float64(v(c.Stats())) }))
	}
	counter("hits_total", "Session reads served from the in-process cache.", func(s cache.Stats) uint64 { return s.Hits })
	counter("misses_total", "Session reads that went to Redis while the cache was live.", func(s cache.Stats) uint64 { return s.Misses })
	counter("bypassed_total", "Session reads that went to Redis because the invalidation channel was not live.", func(s cache.Stats) uint64 { return s.Bypassed })
	counter("invalidations_total", "Invalidation messages applied.", func(s cache.Stats) uint64 { return s.Invalidations })
	counter("channel_losses_total", "Times the invalidation channel was lost (the cache was emptied).", func(s cache.Stats) uint64 { return s.Losses })
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "bffgate_session_cache_entries", Help: "Session records held in the in-process cache."},
		func() float64 { return float64(c.Stats().Entries) }))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "bffgate_session_cache_live", Help: "1 while the cache may serve (invalidation channel subscribed), else 0."},
		func() float64 {
			if c.Live() {
				return 1
			}
			return 0
		}))
}
