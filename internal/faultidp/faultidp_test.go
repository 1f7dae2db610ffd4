package faultidp_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
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
