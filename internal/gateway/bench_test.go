package gateway_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"

	"github.com/bffgate/bffgate/config"
)

// BenchmarkForward measures the hot path — cookie open, store read, decrypt,
// forward — against a bare httputil.ReverseProxy to the same upstream, in one
// run so the ratio means something on a shared machine:
//
//	go test -run '^$' -bench Forward -benchtime 3s ./internal/gateway/
func BenchmarkForward(b *testing.B) {
	fast := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"ok":true}`)
	}))
	defer fast.Close()
	route := func(c *config.Config) {
		c.Frontends[0].Routes = append(c.Frontends[0].Routes, config.Route{Prefix: "/api/fast", Upstream: fast.URL, StripPrefix: true})
	}

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
