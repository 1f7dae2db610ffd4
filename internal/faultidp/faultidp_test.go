package faultidp_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/bffgate/bffgate/internal/faultidp"
)

func TestModes(t *testing.T) {
	f := faultidp.New()
	f.SetDelay(300 * time.Millisecond)
	srv := httptest.NewUnstartedServer(f.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	})))
	srv.Listener = f.Listener(srv.Listener)
	srv.Start()
	t.Cleanup(srv.Close)
	client := &http.Client{Timeout: time.Second}
	refresh := func(token string) (int, time.Duration, error) {
		start := time.Now()
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}}
		resp, err := client.Post(srv.URL+"/token", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		if err != nil {
			return 0, time.Since(start), err
		}
		resp.Body.Close()
		return resp.StatusCode, time.Since(start), nil
	}

	for _, tc := range []struct {
		mode    faultidp.Mode
		status  int
		minTime time.Duration
		refused bool
		timeout bool
	}{
		{mode: faultidp.Normal, status: 200},
		{mode: faultidp.Late, status: 200, minTime: 300 * time.Millisecond},
		{mode: faultidp.Unavailable, status: 503},
		{mode: faultidp.Hang, timeout: true},
		{mode: faultidp.Refuse, refused: true},
		{mode: faultidp.Normal, status: 200},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			if err := f.SetMode(tc.mode); err != nil {
				t.Fatal(err)
			}
			client.CloseIdleConnections()
			st, took, err := refresh("rt-" + tc.mode.String())
			switch {
			case tc.refused:
				if !errors.Is(err, syscall.ECONNREFUSED) {
					t.Fatalf("err = %v, want connection refused", err)
				}
			case tc.timeout:
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					t.Fatalf("err = %v, want a client timeout", err)
				}
			case err != nil:
				t.Fatal(err)
			case st != tc.status || took < tc.minTime:
				t.Fatalf("status %d after %v, want %d after at least %v", st, took, tc.status, tc.minTime)
			}
		})
	}
	// "rt-normal" was presented twice; the hung and refused requests
	// never reached the provider.
	if n := f.MaxRefreshTokenUses(); n != 2 {
		t.Errorf("max uses of one refresh token = %d, want 2", n)
	}
	if n := f.Attempts("refresh_token"); n != 5 {
		t.Errorf("attempts = %d, want 5 (all but the refused one)", n)
	}
}

// TestUsesAndSlow checks the evidence a soak reads: each refresh token use
// with its timing and whether its answer was cut, and that Slow drops a
// request whose client gave up before the provider took it in.
func TestUsesAndSlow(t *testing.T) {
	f := faultidp.New()
	f.SetDelay(400 * time.Millisecond)
	srv := httptest.NewUnstartedServer(f.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	})))
	srv.Listener = f.Listener(srv.Listener)
	srv.Start()
	t.Cleanup(srv.Close)
	refresh := func(token string, timeout time.Duration) error {
		c := &http.Client{Timeout: timeout, Transport: &http.Transport{}}
		defer c.CloseIdleConnections()
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}}
		resp, err := c.Post(srv.URL+"/token", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
		if err != nil {
			return err
		}
		return resp.Body.Close()
	}
	waitIdle := func() {
		deadline := time.Now().Add(5 * time.Second)
		for f.InFlight() > 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}

	// Late, the client waiting long enough: processed and delivered.
	_ = f.SetMode(faultidp.Late)
	if err := refresh("a", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// Late, the client giving up first: processed, the answer cut.
	if err := refresh("b", 100*time.Millisecond); err == nil {
		t.Fatal("the client got the late answer within 100ms")
	}
	waitIdle()
	// Slow, the client giving up first: never processed.
	_ = f.SetMode(faultidp.Slow)
	if err := refresh("c", 100*time.Millisecond); err == nil {
		t.Fatal("the client got the slow answer within 100ms")
	}
	waitIdle()
	// Slow, the client waiting: processed after the delay.
	if err := refresh("a", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	waitIdle() // the use is recorded once its answer is written

	if n := f.Dropped(); n != 1 {
		t.Errorf("dropped = %d, want 1", n)
	}
	uses := f.Uses()
	if len(uses) != 3 {
		t.Fatalf("uses = %+v, want 3 (a, b, a again)", uses)
	}
	for i, want := range []struct {
		token, n int
		mode     faultidp.Mode
		cut      bool
	}{{1, 1, faultidp.Late, false}, {2, 1, faultidp.Late, true}, {1, 2, faultidp.Slow, false}} {
		u := uses[i]
		if u.Grant != "refresh_token" || u.Token != want.token || u.N != want.n || u.Mode != want.mode || u.Cut != want.cut || u.Status != http.StatusOK {
			t.Errorf("use %d = %+v, want token %d use %d mode %s cut %v status 200", i, u, want.token, want.n, want.mode, want.cut)
		}
		if u.Took < 400*time.Millisecond {
			t.Errorf("use %d took %v, want at least the 400ms delay", i, u.Took)
		}
	}
}

// TestHangThenSwitch checks that a request held by Hang is handled as the
// mode it is switched to says: a switch to Refuse cuts it before the
// provider sees it (a frozen provider that is killed spends no refresh
// token), a switch to Normal lets the provider process it.
func TestHangThenSwitch(t *testing.T) {
	for _, tc := range []struct {
		to        faultidp.Mode
		processed bool
	}{
		{to: faultidp.Refuse, processed: false},
		{to: faultidp.Unavailable, processed: false},
		{to: faultidp.Normal, processed: true},
	} {
		t.Run(tc.to.String(), func(t *testing.T) {
			f := faultidp.New()
			var seen atomic.Int32
			srv := httptest.NewUnstartedServer(f.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				seen.Add(1)
				_, _ = io.WriteString(w, "ok")
			})))
			srv.Listener = f.Listener(srv.Listener)
			srv.Start()
			t.Cleanup(srv.Close)
			_ = f.SetMode(faultidp.Hang)
			done := make(chan error, 1)
			go func() {
				c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
				form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"held"}}
				resp, err := c.Post(srv.URL+"/token", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
				if err == nil {
					resp.Body.Close()
				}
				done <- err
			}()
			for f.InFlight() == 0 {
				time.Sleep(5 * time.Millisecond)
			}
			_ = f.SetMode(tc.to)
			err := <-done
			for f.InFlight() > 0 {
				time.Sleep(5 * time.Millisecond)
			}
			if got := seen.Load() == 1; got != tc.processed || (err == nil) != (tc.to != faultidp.Refuse) {
				t.Fatalf("provider saw it: %v (want %v); client error %v", got, tc.processed, err)
			}
			uses := f.Uses()
			if tc.processed && (len(uses) != 1 || !uses[0].Released || uses[0].ReleasedTo != tc.to || uses[0].Mode != faultidp.Hang) {
				t.Errorf("uses = %+v, want one released from hang to %s", uses, tc.to)
			}
			if !tc.processed && len(uses) != 0 {
				t.Errorf("uses = %+v, want none", uses)
			}
		})
	}
}
