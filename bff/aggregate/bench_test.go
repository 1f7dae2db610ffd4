package aggregate

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/bffgate/bffgate/config"
)

// BenchmarkAggregate shows what fanning out costs: an aggregate of N parts,
// part i answering after (i+1) x step, against one direct call to the
// slowest part. It reports, besides ns/op, the p50 and p99 of
// (aggregate - slowest part's delay), the direct call's p50 over the same
// delay, and the difference of the two p50s (what the fan-out adds to one
// call of the slowest part), in milliseconds. The claim is that an aggregate costs the slowest
// part plus about a millisecond at p50; nothing asserts it (a benchmark, on
// a shared machine):
//
//	go test -run '^$' -bench Aggregate -benchtime 200x ./bff/aggregate/
func BenchmarkAggregate(b *testing.B) {
	const step = 5 * time.Millisecond
	for _, n := range []int{2, 4, 8} {
		b.Run(fmt.Sprintf("parts=%d", n), func(b *testing.B) {
			parts := map[string]config.Part{}
			var slowest string
			for i := range n {
				delay := time.Duration(i+1) * step
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					time.Sleep(delay)
					w.Header().Set("Content-Type", "application/json")
					_, _ = io.WriteString(w, `{"part":`+fmt.Sprint(i)+`,"items":[1,2,3,4,5,6,7,8,9,10]}`)
				}))
				b.Cleanup(srv.Close)
				parts[fmt.Sprintf("p%d", i)] = config.Part{Upstream: srv.URL, Path: "/x", Required: i == 0}
				slowest = srv.URL + "/x"
			}
			h := New(config.Aggregate{Path: "/agg", Timeout: 10 * time.Second, Parts: parts}, nil)
			slowestDelay := time.Duration(n) * step

			// Warm the connection pools of both clients.
			direct := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
			call := func() time.Duration {
				start := time.Now()
				resp, err := direct.Get(slowest)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return time.Since(start)
			}
			serve := func() time.Duration {
				req := httptest.NewRequest(http.MethodGet, "/agg", nil)
				rec := httptest.NewRecorder()
				start := time.Now()
				h.ServeHTTP(rec, req)
				d := time.Since(start)
				if rec.Code != http.StatusOK {
					b.Fatalf("aggregate: %d %s", rec.Code, rec.Body)
				}
				return d
			}
			for range 3 {
				call()
				serve()
			}

			var agg, dir []time.Duration
			b.ResetTimer()
			for range b.N {
				agg = append(agg, serve()-slowestDelay)
			}
			b.StopTimer()
			for range min(b.N, 200) {
				dir = append(dir, call()-slowestDelay)
			}
			pct := func(d []time.Duration, p float64) float64 {
				slices.Sort(d)
				return float64(d[min(len(d)-1, int(float64(len(d))*p))]) / float64(time.Millisecond)
			}
			b.ReportMetric(pct(agg, 0.50), "ms-over-slowest-p50")
			// What the fan-out adds to calling the slowest part directly.
			b.ReportMetric(pct(agg, 0.50)-pct(dir, 0.50), "ms-over-direct-p50")
			b.ReportMetric(pct(agg, 0.99), "ms-over-slowest-p99")
			b.ReportMetric(pct(dir, 0.50), "direct-ms-over-delay-p50")
		})
	}
}
