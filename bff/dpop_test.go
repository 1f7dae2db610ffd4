package bff

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bffgate/bffgate/dpop"
)

// An upstream that asks for its own nonce (a fake: such challenges on
// demand): the transport retries once with the nonce when the body is at
// most 64 KiB, remembers the nonce, and leaves key-less requests alone.
func TestDPoPTransport(t *testing.T) {
	key, _ := dpop.GenerateKey()
	v := &dpop.Verifier{Nonces: dpop.NewNonces(time.Minute)}
	var calls atomic.Int32
	upstream := httptest.NewServer(v.Middleware(func(context.Context, string) (string, any, error) {
		return key.Thumbprint(), nil, nil
	}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = w.Write(b)
	})))
	defer upstream.Close()
	counting := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		calls.Add(1)
		return http.DefaultTransport.RoundTrip(r)
	})
	tr := &dpopTransport{next: counting, now: time.Now, nonces: &sync.Map{}}
	send := func(body string, withKey bool) *http.Response {
		t.Helper()
		ctx := context.Background()
		if withKey {
			ctx = withDPoPKey(ctx, key)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, upstream.URL+"/orders?x=1", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer tok")
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	calls.Store(0)
	resp := send("small body", true)
	got, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(got) != "small body" || calls.Load() != 2 {
		t.Fatalf("first call: %d %q after %d requests, want 200 after one nonce retry", resp.StatusCode, got, calls.Load())
	}
	calls.Store(0)
	if resp := send("again", true); resp.StatusCode != 200 || calls.Load() != 1 {
		t.Fatalf("remembered nonce: %d after %d requests", resp.StatusCode, calls.Load())
	}
	// A body over 64 KiB is not kept: no retry, the 401 goes back.
	tr.nonces = &sync.Map{}
	calls.Store(0)
	big := strings.Repeat("x", maxDPoPRetryBody+1)
	if resp := send(big, true); resp.StatusCode != http.StatusUnauthorized || calls.Load() != 1 {
		t.Fatalf("big body: %d after %d requests", resp.StatusCode, calls.Load())
	}
	// Without a key the request is untouched (Bearer, no proof).
	calls.Store(0)
	if resp := send("x", false); resp.StatusCode != http.StatusUnauthorized || calls.Load() != 1 {
		t.Fatalf("no key: %d", resp.StatusCode)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
