package gateway_test

import (
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"syscall"
	"testing"

	"github.com/bffgate/bffgate/config"
	"github.com/bffgate/bffgate/internal/gateway"
)

// fastUpstream is the benchmarks' upstream, a ~10-byte JSON answer, and the
// config change that routes /web/api/fast to it (prefix stripped).
func fastUpstream(b *testing.B) (*httptest.Server, func(*config.Config)) {
	fast := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	b.Cleanup(fast.Close)
	return fast, func(c *config.Config) {
		c.Frontends[0].Routes = append(c.Frontends[0].Routes, config.Route{Prefix: "/api/fast", Upstream: fast.URL, StripPrefix: true})
	}
}

// BenchmarkForward measures the hot path — cookie open, store read, decrypt,
// forward — against a bare httputil.ReverseProxy to the same upstream, in one
// run so the ratio means something on a shared machine:
//
//	go test -run '^$' -bench Forward -benchtime 3s ./internal/gateway/
func BenchmarkForward(b *testing.B) {
	fast, route := fastUpstream(b)

	target, _ := url.Parse(fast.URL)
	bare := httputil.NewSingleHostReverseProxy(target)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 256
	bare.Transport = tr
	bareSrv := httptest.NewServer(bare)
	defer bareSrv.Close()

	run := func(b *testing.B, url string, header http.Header) {
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req, _ := http.NewRequest(http.MethodGet, url, nil)
				req.Header = header.Clone()
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
			}
		})
	}

	b.Run("bare-reverse-proxy", func(b *testing.B) {
		run(b, bareSrv.URL+"/7", http.Header{})
	})
	for _, store := range []string{"redis", "memory"} {
		b.Run("bffgate-"+store, func(b *testing.B) {
			opts := []envOption{withConfig(route)}
			if store == "memory" {
				opts = append(opts, withMemoryStore())
			}
			e := newEnv(b, opts...)
			br := e.browser()
			br.login("/web", e.admin())
			cookie := br.cookie("bff-web")
			run(b, e.public+"/web/api/fast/7", http.Header{"X-Csrf": {"1"}, "Cookie": {cookie.Name + "=" + cookie.Value}})
		})
	}
}

// BenchmarkHotPath is the gateway's own cost per request without a client
// or listener in between: one authenticated GET served by the gateway's
// handler in this goroutine (cookie open, session cache or store read,
// decrypt, CSRF, routing, metrics, access log, forwarding), next to a bare
// httputil.ReverseProxy's handler to the same loopback upstream. The
// difference of the two is what the gateway adds; allocs/op is exact.
// cpu-ns/op is the CPU time the whole test process used per request
// (upstream and Redis client included, for both): unlike ns/op it hardly
// moves when other processes compete for the machine.
//
//	go test -run '^$' -bench HotPath -benchmem -count 5 ./internal/gateway/
//
// "gateway-redis" reads the session through the session cache (as in
// production after the first request), "gateway-redis-nocache" from Redis
// each time, "gateway-redis-logged" also writes the JSON access line
// (to io.Discard) as a production logger would.
func BenchmarkHotPath(b *testing.B) {
	fast, route := fastUpstream(b)

	serve := func(b *testing.B, h http.Handler, url string, header http.Header) {
		b.Helper()
		b.ReportAllocs()
		cpu0 := processCPU(b)
		for b.Loop() {
			req := httptest.NewRequest(http.MethodGet, url, nil)
			for k, v := range header {
				req.Header[k] = v
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				b.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
		}
		b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
	}

	b.Run("bare-reverse-proxy", func(b *testing.B) {
		target, _ := url.Parse(fast.URL)
		// A fixed Authorization header about as large as the demo
		// provider's access tokens, as scripts/load's baseline sends.
		fixed := "Bearer " + strings.Repeat("x", 700)
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 256
		bare := &httputil.ReverseProxy{Transport: tr, Rewrite: func(pr *httputil.ProxyRequest) {
			// What NewSingleHostReverseProxy's Director does (the target, the
			// X-Forwarded-For it adds), without its deprecated hook.
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
			if ip, _, err := net.SplitHostPort(pr.In.RemoteAddr); err == nil {
				pr.Out.Header.Set("X-Forwarded-For", ip)
			}
			pr.Out.Header.Set("Authorization", fixed)
		}}
		serve(b, bare, "http://bare.test/7", nil)
	})
	cases := []struct {
		name string
		opts []envOption
	}{
		{"gateway-redis", nil},
		{"gateway-redis-nocache", []envOption{withConfig(func(c *config.Config) {
			route(c)
			off := false
			c.Sessions.Cache.Enabled = &off
		})}},
		{"gateway-redis-logged", []envOption{withGatewayOptions(gateway.Options{
			Logger: slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})),
		})}},
		{"gateway-memory", []envOption{withMemoryStore()}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			opts := append([]envOption{withConfig(route)}, tc.opts...)
			e := newEnv(b, opts...)
			br := e.browser()
			br.login("/web", e.admin())
			cookie := br.cookie("bff-web")
			serve(b, e.gw.Handler(true), e.public+"/web/api/fast/7",
				http.Header{"X-Csrf": {"1"}, "Cookie": {cookie.Name + "=" + cookie.Value}})
		})
	}
}

// processCPU is the user+system CPU time this process has used, in ns.
func processCPU(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
