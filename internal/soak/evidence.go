package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bffgate/bffgate/internal/faultidp"
)

// reuseCount sorts the refresh tokens the provider received more than once
// by what became of their first use.
type reuseCount struct {
	late      int // answered after provider_timeout: the gateway had given up
	cut       int // the answer never reached the gateway whole
	delivered int // answered in time: sending the token again is a gateway bug
}

// reuses prints one line per refresh token the provider received more than
// once, saying what happened to its first use, and counts them.
func reuses(uses []faultidp.Use, start time.Time, providerTimeout time.Duration) reuseCount {
	first := map[int]faultidp.Use{}
	var c reuseCount
	type modeStats struct {
		n, cut int
		top    time.Duration
	}
	byMode := map[faultidp.Mode]*modeStats{}
	uses = slices.DeleteFunc(uses, func(u faultidp.Use) bool { return u.Grant != "refresh_token" })
	for _, u := range uses {
		m := byMode[u.Mode]
		if m == nil {
			m = &modeStats{}
			byMode[u.Mode] = m
		}
		m.n++
		m.top = max(m.top, u.Took)
		if u.Cut {
			m.cut++
		}
	}
	for _, mode := range []faultidp.Mode{faultidp.Normal, faultidp.Late, faultidp.Slow, faultidp.Hang} {
		if m := byMode[mode]; m != nil {
			fmt.Printf("soak: refresh token uses the provider processed, arrived in %s: %d, slowest answer %v, answers cut %d\n",
				mode, m.n, m.top.Round(time.Millisecond), m.cut)
		}
	}
	for _, u := range uses {
		if u.N == 1 {
			first[u.Token] = u
			continue
		}
		f := first[u.Token]
		var why string
		switch {
		case f.Took > providerTimeout:
			c.late++
			why = "first answer after provider_timeout"
		case f.Cut:
			c.cut++
			why = "first answer cut"
			if f.Released {
				why += fmt.Sprintf(" (held by hang, processed on the switch to %s)", f.ReleasedTo)
			}
		default:
			c.delivered++
			why = "GATEWAY: first answer delivered in time"
		}
		fmt.Printf("soak: refresh token #%d use %d at t=%.1fs (%s) -> %d; its first use at t=%.1fs (%s) took %v -> %d: %s\n",
			u.Token, u.N, u.Arrived.Sub(start).Seconds(), u.Mode, u.Status,
			f.Arrived.Sub(start).Seconds(), f.Mode, f.Took.Round(time.Millisecond), f.Status, why)
	}
	return c
}

// gatewayLog reads the instances' log lines (JSON on their stderr). It
// keeps all but the per-request lines: it counts them by instance, level
// and message, and writes them to a file when asked, as the evidence
// behind a lost session.
type gatewayLog struct {
	mu     sync.Mutex
	w      io.WriteCloser // nil: not written
	counts map[string]int
	tail   map[int][]string // each instance's last lines
}

func newGatewayLog(path string) (*gatewayLog, error) {
	g := &gatewayLog{counts: map[string]int{}, tail: map[int][]string{}}
	if path != "" {
		f, err := os.Create(path)
		if err != nil {
			return nil, fmt.Errorf("-log: %w", err)
		}
		g.w = f
	}
	return g, nil
}

// read consumes instance n's output until it ends.
func (g *gatewayLog) read(n int, r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		g.line(n, sc.Text())
	}
}

func (g *gatewayLog) line(n int, line string) {
	var rec struct {
		Level          string `json:"level"`
		Msg            string `json:"msg"`
		OutcomeUnknown *bool  `json:"outcome_unknown"`
		Error          string `json:"error"`
	}
	key := fmt.Sprintf("instance %d ", n)
	if json.Unmarshal([]byte(line), &rec) != nil || rec.Msg == "" {
		key += "output: " + line
	} else {
		if rec.Level == "INFO" && rec.Msg == "request" {
			return
		}
		key += rec.Level + " " + rec.Msg
		if rec.OutcomeUnknown != nil {
			key += fmt.Sprintf(" outcome_unknown=%v", *rec.OutcomeUnknown)
		}
		if strings.Contains(rec.Error, "Timeout") || strings.Contains(rec.Error, "deadline") {
			key += " (timeout)"
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.counts[key]++
	t := append(g.tail[n], line)
	g.tail[n] = t[max(0, len(t)-5):]
	if g.w != nil {
		fmt.Fprintf(g.w, "%d %s\n", n, line)
	}
}

// last returns instance n's last log lines.
func (g *gatewayLog) last(n int) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return strings.Join(g.tail[n], " | ")
}

func (g *gatewayLog) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.w != nil {
		_ = g.w.Close()
		g.w = nil
	}
}

// print lists the counted records, most frequent first.
func (g *gatewayLog) print() {
	g.mu.Lock()
	defer g.mu.Unlock()
	keys := make([]string, 0, len(g.counts))
	for k := range g.counts {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		if c := g.counts[b] - g.counts[a]; c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	for _, k := range keys {
		fmt.Printf("soak: gateway log %6d x %s\n", g.counts[k], k)
	}
}
