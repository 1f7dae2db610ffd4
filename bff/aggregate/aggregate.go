// Package aggregate answers one frontend call by calling several upstream
// services in parallel and composing their JSON bodies into one object.
// Like bff/proxy it takes the bearer token from the request context and
// knows nothing of sessions.
package aggregate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/bffgate/bffgate/bff/httperr"
	"github.com/bffgate/bffgate/bff/proxy"
	"github.com/bffgate/bffgate/config"
)

// MaxPartBytes bounds one part's body so a runaway service cannot make the
// gateway buffer without limit.
const MaxPartBytes = 4 << 20

type part struct {
	name     string
	url      string
	required bool
}

// Handler serves one configured aggregate.
type Handler struct {
	// RequestID returns the id of the request in ctx, which each part
	// request carries as X-Request-Id; nil (or "") copies the client's.
	RequestID func(context.Context) string

	parts   []part
	timeout time.Duration
	client  *http.Client
	log     *slog.Logger
}

// New builds the handler for a (validated) aggregate.
func New(a config.Aggregate, logger *slog.Logger) *Handler {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.MaxIdleConnsPerHost = 64
	h := &Handler{timeout: a.Timeout, client: &http.Client{
		Transport: tr,
		// A redirect is the part's answer: following it could carry the
		// user's bearer token to wherever it points.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, log: logger}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	for name, p := range a.Parts {
		h.parts = append(h.parts, part{name: name, url: strings.TrimSuffix(p.Upstream, "/") + p.Path, required: p.Required})
	}
	sort.Slice(h.parts, func(i, j int) bool { return h.parts[i].name < h.parts[j].name })
	return h
}

type result struct {
	body   json.RawMessage
	status int
	err    error
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), h.timeout)
	defer cancel()
	results := make([]result, len(h.parts))
	done := make(chan int, len(h.parts))
	for i, p := range h.parts {
		go func() {
			results[i] = h.call(ctx, r, p)
			done <- i
		}()
	}
	failed := -1
	for range h.parts {
		i := <-done
		// A failed required part decides the answer: cancel the rest, which
		// then return at once.
		if failed < 0 && results[i].err != nil && h.parts[i].required {
			failed = i
			cancel()
		}
	}
	if failed >= 0 {
		e := h.fail(h.parts[failed], results[failed])
		h.log.WarnContext(r.Context(), "aggregate required part failed", "part", h.parts[failed].name, "status", e.Status, "error", results[failed].err)
		httperr.Write(w, e)
		return
	}
	out := make(map[string]json.RawMessage, len(h.parts))
	for i, p := range h.parts {
		res := results[i]
		if res.err != nil {
			h.log.WarnContext(r.Context(), "aggregate part failed", "part", p.name, "error", res.err)
			// "status" is the upstream's answer; absent when there was none.
			v := map[string]any{"error": errorText(res)}
			if res.status != 0 {
				v["status"] = res.status
			}
			e, _ := json.Marshal(v)
			out[p.name] = e
			continue
		}
		out[p.name] = res.body
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	_ = json.NewEncoder(w).Encode(out)
}

func (h *Handler) call(ctx context.Context, in *http.Request, p part) result {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return result{err: err}
	}
	req.Header.Set("Accept", "application/json")
	if tok := proxy.Token(in.Context()); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	for _, k := range []string{"X-Request-Id", "Traceparent", "Tracestate", "Accept-Language"} {
		if v := in.Header.Get(k); v != "" {
			req.Header.Set(k, v)
		}
	}
	if h.RequestID != nil {
		if id := h.RequestID(in.Context()); id != "" {
			req.Header.Set("X-Request-Id", id)
		}
	}
	if host, _, err := net.SplitHostPort(in.RemoteAddr); err == nil {
		req.Header.Set("X-Forwarded-For", host)
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return result{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxPartBytes+1))
	if err != nil {
		return result{err: err, status: resp.StatusCode}
	}
	if len(body) > MaxPartBytes {
		return result{err: fmt.Errorf("body larger than %d bytes", MaxPartBytes), status: resp.StatusCode}
	}
	if resp.StatusCode >= 400 {
		return result{err: fmt.Errorf("status %d", resp.StatusCode), status: resp.StatusCode}
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || !json.Valid(trimmed) {
		// Not JSON: embed it as a string rather than corrupt the answer.
		s, _ := json.Marshal(string(body))
		return result{body: s, status: resp.StatusCode}
	}
	return result{body: trimmed, status: resp.StatusCode}
}

func timedOut(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

func errorText(res result) string {
	switch {
	case timedOut(res.err):
		return "timeout"
	case res.status >= 400:
		return fmt.Sprintf("upstream answered %d", res.status)
	default:
		return "unavailable"
	}
}

func (h *Handler) fail(p part, res result) *httperr.Error {
	if timedOut(res.err) {
		return httperr.Wrap(http.StatusGatewayTimeout, httperr.CodeUpstreamTimeout,
			fmt.Sprintf("the required part %q did not answer in time", p.name), res.err)
	}
	return httperr.Wrap(http.StatusBadGateway, httperr.CodeUpstreamUnavailable,
		fmt.Sprintf("the required part %q failed: %s", p.name, errorText(res)), res.err)
}
