package gateway_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bffgate/bffgate/config"
	"github.com/bffgate/bffgate/internal/demo"
	"github.com/bffgate/bffgate/internal/faultidp"
	"github.com/bffgate/bffgate/internal/gateway"
	"github.com/bffgate/bffgate/internal/observe/observetest"
)

// The user's view of a provider that misbehaves (SPEC section 4, issue 14):
// no 401 and no slow request while the access token is valid, a quick 503
// provider_unavailable once it has expired, the session kept, and the
// provider asked once per back-off step rather than once per request.

const (
	// servedWithin is the generous behavioural bound of a request that
	// must not wait for the provider: a request that waited would take
	// provider_timeout or the fault's delay (1.5 s and more here).
	servedWithin = time.Second
	// failFastWithin bounds the 503 of a request whose token expired.
	failFastWithin = 1500 * time.Millisecond
	// edge is the slack around the token's expiry where either answer is right.
	edge = 300 * time.Millisecond
)

// sample is one API request as the user saw it.
type sample struct {
	at     time.Time
	took   time.Duration
	status int
	code   string
}

// drive sends the browser's API requests for d, from one goroutine per
// instance base URL, one every 50 ms each, and returns what came back.
func drive(t *testing.T, b *browser, bases []string, d time.Duration) []sample {
	t.Helper()
	return drivePath(t, b, bases, "/web/api/orders/1", d)
}

// drivePath is drive on another route's path.
func drivePath(t *testing.T, b *browser, bases []string, path string, d time.Duration) []sample {
	t.Helper()
	var mu sync.Mutex
	var out []sample
	var wg sync.WaitGroup
	stop := time.Now().Add(d)
	for _, base := range bases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				req, _ := http.NewRequest(http.MethodGet, base+path, nil)
				req.Header.Set("X-Csrf", "1")
				start := time.Now()
				resp, err := b.Client.Do(req)
				s := sample{at: start}
				if err != nil {
					t.Errorf("request: %v", err)
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				s.took, s.status = time.Since(start), resp.StatusCode
				if resp.StatusCode != http.StatusOK {
					var e struct{ Error string }
					_ = json.Unmarshal(body, &e)
					s.code = e.Error
				}
				mu.Lock()
				out = append(out, s)
				mu.Unlock()
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}
	wg.Wait()
	return out
}

// once sends one API request of the browser's session to base.
func once(t *testing.T, b *browser, base string) sample {
	t.Helper()
	return oncePath(t, b, base, "/web/api/orders/1")
}

// oncePath is once on another route's path.
func oncePath(t *testing.T, b *browser, base, path string) sample {
	t.Helper()
	start := time.Now()
	resp := b.api(http.MethodGet, base+path)
	s := sample{at: start, took: time.Since(start), status: resp.StatusCode}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		_ = json.Unmarshal([]byte(readBody(resp)), &e)
		s.code = e.Error
	}
	return s
}

// servedWhileValid asserts that every request sent before validUntil was
// answered 200 within servedWithin, and returns how many there were.
func servedWhileValid(t *testing.T, samples []sample, validUntil time.Time) int {
	t.Helper()
	n := 0
	for _, s := range samples {
		if !s.at.Before(validUntil.Add(-edge)) {
			continue
		}
		n++
		if s.status != http.StatusOK {
			t.Errorf("request at %s (token valid %s more): %d %s, want 200", s.at.Format("15:04:05.000"), validUntil.Sub(s.at).Round(time.Millisecond), s.status, s.code)
		} else if s.took > servedWithin {
			t.Errorf("request at %s took %v while the token was valid, want under %v", s.at.Format("15:04:05.000"), s.took, servedWithin)
		}
	}
	return n
}

// refreshAttempts sums the gateways' refresh attempts that failed transiently.
func refreshAttempts(t *testing.T, gws ...*gateway.Gateway) float64 {
	t.Helper()
	n := 0.0
	for _, gw := range gws {
		n += observetest.Value(t, gw.Registry, "bffgate_token_refreshes_total", map[string]string{"frontend": "web", "outcome": "transient"})
	}
	return n
}

// faultEnv is a provider behind faults, 4 s access tokens (due after 2 s),
// provider_timeout 2.5 s, and two gateway instances on one Redis.
func faultEnv(t *testing.T, f *faultidp.Faults) (e *env, second string, gw2 *gateway.Gateway) {
	t.Helper()
	e = newEnv(t, withFaults(f),
		withIDP(demo.IDPOptions{AccessTokenLifetime: 4 * time.Second}),
		withConfig(func(c *config.Config) { c.Sessions.ProviderTimeout = 2500 * time.Millisecond }))
	second, gw2 = e.replica()
	// Both instances load the provider's metadata before the faults, so
	// that the faults meet the token requests.
	for _, base := range []string{e.public, second} {
		resp, err := http.Get(base + "/readyz")
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("readyz %s: %v %v", base, resp, err)
		}
		resp.Body.Close()
	}
	return e, second, gw2
}

func TestProviderFaultsNeverLogUsersOut(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mode  faultidp.Mode
		delay time.Duration
		// down: the provider cannot renew tokens at all in this mode
		down bool
	}{
		{name: "answers late within provider_timeout", mode: faultidp.Late, delay: 1500 * time.Millisecond},
		{name: "hangs", mode: faultidp.Hang, down: true},
		{name: "refuses connections", mode: faultidp.Refuse, down: true},
		{name: "answers 503", mode: faultidp.Unavailable, down: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := faultidp.New()
			e, second, gw2 := faultEnv(t, f)
			b := e.browser()
			b.login("/web", e.admin())
			ref := b.cookie("bff-web").Value
			login := e.session("web", ref)

			f.SetDelay(tc.delay)
			if err := f.SetMode(tc.mode); err != nil {
				t.Fatal(err)
			}
			// Until 2 s past the login token's expiry.
			samples := drive(t, b, []string{e.public, second}, time.Until(login.Expiry.Add(2*time.Second)))
			if err := f.SetMode(faultidp.Normal); err != nil {
				t.Fatal(err)
			}

			valid := servedWhileValid(t, samples, login.Expiry)
			if valid < 20 {
				t.Fatalf("only %d requests while the token was valid; the test proves little", valid)
			}
			expired := 0
			for _, s := range samples {
				if s.at.Before(login.Expiry.Add(edge)) {
					continue
				}
				expired++
				switch {
				case !tc.down && s.status != http.StatusOK:
					t.Errorf("request after the first token expired: %d %s; the late refresh should have renewed it", s.status, s.code)
				case tc.down && (s.status != http.StatusServiceUnavailable || s.code != "provider_unavailable"):
					t.Errorf("request with an expired token, provider down: %d %s, want 503 provider_unavailable", s.status, s.code)
				case tc.down && s.took > failFastWithin:
					t.Errorf("503 after %v, want within %v", s.took, failFastWithin)
				}
			}
			if tc.down {
				// Attempts at about +2 s, +3 s, +5 s after login with a fast
				// failure (1 s, 2 s back-off); fewer when each hangs 2.5 s.
				attempts := int(refreshAttempts(t, e.gw, gw2))
				if n := f.Attempts("refresh_token"); n > attempts {
					t.Errorf("the provider saw %d refresh attempts, the gateways counted %d", n, attempts)
				}
				if attempts < 1 || attempts > 4 {
					t.Errorf("%d refresh attempts during the outage for %d requests, want 1 to 4 (one per back-off step)", attempts, valid+expired)
				}
			}

			// Back to normal: the same session is served again, once the
			// back-off step ends.
			var last sample
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
				if last = once(t, b, e.public); last.status == http.StatusOK {
					break
				}
			}
			if last.status != http.StatusOK {
				t.Fatalf("after the provider recovered: %d %s; the session was lost", last.status, last.code)
			}
			if n := f.MaxRefreshTokenUses(); n != 1 {
				t.Errorf("a refresh token was presented to the provider %d times, want once per rotation", n)
			}
		})
	}
}

// A refresh whose answer never arrives (the provider rotated the token
// but answered after provider_timeout) is retried with the same refresh
// token, which the provider then refuses. That refusal does not end the
// session while its access token is valid; it ends, as session_expired,
// when that token expires.
func TestLostRefreshAnswerKeepsSessionUntilTokenExpires(t *testing.T) {
	f := faultidp.New()
	e := newEnv(t, withFaults(f),
		withIDP(demo.IDPOptions{AccessTokenLifetime: 6 * time.Second}),
		withConfig(func(c *config.Config) { c.Sessions.ProviderTimeout = time.Second }))
	second := e.instance()
	b := e.browser()
	b.login("/web", e.admin())
	login := e.session("web", b.cookie("bff-web").Value)

	f.SetDelay(2 * time.Second)
	_ = f.SetMode(faultidp.Late)
	go func() { // only the first refresh answers late
		for f.Attempts("refresh_token") == 0 {
			time.Sleep(10 * time.Millisecond)
		}
		_ = f.SetMode(faultidp.Normal)
	}()
	samples := drive(t, b, []string{e.public, second}, time.Until(login.Expiry.Add(time.Second)))

	servedWhileValid(t, samples, login.Expiry)
	endedAfterExpiry(t, samples, login.Expiry)
	if n := f.Attempts("refresh_token"); n != 2 {
		t.Errorf("%d refresh attempts, want 2 (the lost one and its retry)", n)
	}
}

// endedAfterExpiry asserts that the session ended once its token expired
// at expiry: every later request is 401, and the one that found it ending
// (requests of both instances race for that) was told session_expired.
func endedAfterExpiry(t *testing.T, samples []sample, expiry time.Time) {
	t.Helper()
	told := false
	for _, s := range samples {
		if s.at.Before(expiry.Add(-edge)) {
			continue
		}
		if s.at.After(expiry.Add(edge)) && s.status != http.StatusUnauthorized {
			t.Errorf("request after the token expired: %d %s, want 401", s.status, s.code)
		}
		told = told || s.code == "session_expired"
	}
	if !told {
		t.Error("no request was told session_expired")
	}
}

// An instance that dies holding a session's refresh lock stalls nobody:
// requests go on with the valid token, and once the lock lapses another
// instance refreshes. When the dead instance had already spent the refresh
// token at the provider (it recorded the attempt before sending), the
// provider's refusal keeps the session until its token expires.
func TestInstanceDiesHoldingRefreshLock(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spent bool // the dead instance's refresh reached the provider
	}{
		{name: "before sending"},
		{name: "after the provider rotated the token", spent: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := faultidp.New()
			e := newEnv(t, withFaults(f), withIDP(demo.IDPOptions{AccessTokenLifetime: 6 * time.Second}))
			second := e.instance()
			b := e.browser()
			b.login("/web", e.admin())
			s := e.session("web", b.cookie("bff-web").Value)

			// The dead instance took the lock when the token became due
			// (after 3 s) and died with 2 s of lease left.
			time.Sleep(time.Until(s.Expiry.Add(-3 * time.Second)))
			ctx := context.Background()
			if err := e.rdb.Set(ctx, e.gw.Sessions.LockKey(s), "dead-instance", 2*time.Second).Err(); err != nil {
				t.Fatal(err)
			}
			if tc.spent {
				if st := e.refreshDirectly(s.RefreshToken); st != http.StatusOK {
					t.Fatalf("direct refresh: %d", st)
				}
				s.RefreshUnsure = true
				if err := e.gw.Sessions.Save(ctx, s); err != nil {
					t.Fatal(err)
				}
			}
			samples := drive(t, b, []string{e.public, second}, time.Until(s.Expiry.Add(time.Second)))

			servedWhileValid(t, samples, s.Expiry)
			var after []sample
			for _, x := range samples {
				if x.at.After(s.Expiry.Add(edge)) {
					after = append(after, x)
				}
			}
			if len(after) == 0 {
				t.Fatal("no request after the first token expired")
			}
			if tc.spent {
				endedAfterExpiry(t, samples, s.Expiry)
				return
			}
			for _, x := range after {
				if x.status != http.StatusOK {
					t.Fatalf("after the lock lapsed: %d %s, want the refreshed session served", x.status, x.code)
				}
			}
			if n := f.Attempts("refresh_token"); n != 1 {
				t.Errorf("%d refresh grants, want 1", n)
			}
		})
	}
}

// The effective refresh margin is at most half the token's lifetime: with
// 4 s tokens and the default 60 s margin, requests in the first half of the
// token's life do not refresh it (issue 8 item 10).
func TestShortLivedTokensAreNotRefreshedOnEveryRequest(t *testing.T) {
	f := faultidp.New()
	e := newEnv(t, withFaults(f), withIDP(demo.IDPOptions{AccessTokenLifetime: 4 * time.Second}))
	b := e.browser()
	b.login("/web", e.admin())
	s := e.session("web", b.cookie("bff-web").Value)
	if e.cfg.Sessions.RefreshMargin < 4*time.Second {
		t.Fatalf("refresh_margin %v; the test needs it above the token lifetime", e.cfg.Sessions.RefreshMargin)
	}

	samples := drive(t, b, []string{e.public}, time.Until(s.Expiry.Add(-2*time.Second-edge)))
	if len(samples) < 5 {
		t.Fatalf("only %d requests", len(samples))
	}
	if n := f.Attempts("refresh_token"); n != 0 {
		t.Errorf("%d refreshes during the first half of the token's life, want none", n)
	}
	time.Sleep(time.Until(s.Expiry.Add(-2*time.Second + edge)))
	drive(t, b, []string{e.public}, 500*time.Millisecond)
	if n := f.Attempts("refresh_token"); n != 1 {
		t.Errorf("%d refreshes in the second half, want 1", n)
	}
}

// The frontend's client-credentials token (`token: client` routes) follows
// the refresh's discipline across instances: while the cached token is
// valid no request fails or waits, one instance fetches the next one for
// both, and while the provider cannot answer both together make one
// attempt per back-off step.
func TestClientTokenProviderFaults(t *testing.T) {
	const svc = "/web/api/svc/x"
	for _, tc := range []struct {
		name  string
		mode  faultidp.Mode
		delay time.Duration
		down  bool // the provider cannot issue tokens at all in this mode
	}{
		{name: "answers late within provider_timeout", mode: faultidp.Late, delay: 1500 * time.Millisecond},
		{name: "hangs", mode: faultidp.Hang, down: true},
		{name: "refuses connections", mode: faultidp.Refuse, down: true},
		{name: "answers 503", mode: faultidp.Unavailable, down: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := faultidp.New()
			// Each instance's log counts its failed fetches: refused
			// connections never reach the provider to be counted there.
			var logs [2]logBuffer
			logger := func(i int) *slog.Logger {
				return slog.New(slog.NewJSONHandler(&logs[i], &slog.HandlerOptions{Level: slog.LevelWarn}))
			}
			e := newEnv(t, withFaults(f),
				withIDP(demo.IDPOptions{AccessTokenLifetime: 4 * time.Second}),
				withClientRoute(func(c *config.Config) { c.Sessions.ProviderTimeout = 2500 * time.Millisecond }),
				withGatewayOptions(gateway.Options{Logger: logger(0)}))
			second, _ := e.replicaWith(gateway.Options{Logger: logger(1)})
			for _, base := range []string{e.public, second} {
				resp, err := http.Get(base + "/readyz")
				if err != nil || resp.StatusCode != http.StatusOK {
					t.Fatalf("readyz %s: %v %v", base, resp, err)
				}
				resp.Body.Close()
			}
			b := e.browser()
			b.login("/web", e.admin())

			// The first client token, fetched while the provider is well.
			fetchStart := time.Now()
			if resp := b.api(http.MethodGet, e.public+svc); resp.StatusCode != http.StatusOK {
				t.Fatalf("first client route call: %d %s", resp.StatusCode, readBody(resp))
			}
			fetchEnd := time.Now()
			first := upstreamBearer(t, e.orders)
			// The gateway's expiry is fetch time + expires_in, which the
			// provider rounds down to whole seconds: 3 or 4 s.
			validUntil, expiredAfter := fetchStart.Add(3*time.Second), fetchEnd.Add(4*time.Second)
			grantsBefore := f.Attempts("client_credentials")

			f.SetDelay(tc.delay)
			if err := f.SetMode(tc.mode); err != nil {
				t.Fatal(err)
			}
			// Late: until just past the first token's expiry, before the
			// second one is due. Down: 2 s past the expiry.
			until := expiredAfter.Add(time.Second)
			if tc.down {
				until = expiredAfter.Add(2 * time.Second)
			}
			samples := drivePath(t, b, []string{e.public, second}, svc, time.Until(until))
			grants := f.Attempts("client_credentials") - grantsBefore
			if err := f.SetMode(faultidp.Normal); err != nil {
				t.Fatal(err)
			}

			if valid := servedWhileValid(t, samples, validUntil); valid < 20 {
				t.Fatalf("only %d requests while the client token was valid; the test proves little", valid)
			}
			for _, s := range samples {
				if s.at.Before(expiredAfter.Add(edge)) {
					continue
				}
				switch {
				case !tc.down && s.status != http.StatusOK:
					t.Errorf("request after the first client token expired: %d %s; the late fetch should have renewed it", s.status, s.code)
				case tc.down && (s.status != http.StatusServiceUnavailable || s.code != "provider_unavailable"):
					t.Errorf("request with an expired client token, provider down: %d %s, want 503 provider_unavailable", s.status, s.code)
				case tc.down && s.took > failFastWithin:
					t.Errorf("503 after %v, want within %v", s.took, failFastWithin)
				}
			}
			failed := 0
			for i := range logs {
				failed += strings.Count(logs[i].String(), `"msg":"client token fetch failed; retried after a back-off"`)
			}
			if !tc.down {
				// One grant per expiry across both instances: each next
				// one no sooner than the token it replaced was due.
				if grants < 1 || grants > 2 || failed != 0 {
					t.Errorf("%d client_credentials grants (%d failed) across two instances for one or two expiries", grants, failed)
				}
				var prev *faultidp.Use
				for _, u := range f.Uses() {
					if u.Grant != "client_credentials" {
						continue
					}
					if prev != nil && u.Arrived.Before(prev.Arrived.Add(prev.Took+time.Second)) {
						t.Errorf("a client_credentials grant %v after the previous one's answer, want one per expiry (its next margin is over 1 s away)", u.Arrived.Sub(prev.Arrived.Add(prev.Took)))
					}
					prev = &u
				}
			} else {
				// Due after about 2 s; attempts at about +2 s, +3 s, +5 s
				// with a fast failure (1 s, 2 s back-off); fewer when each
				// hangs 2.5 s. One may still be in flight at the end.
				if grants > failed+1 {
					t.Errorf("the provider saw %d client_credentials grants, the gateways logged %d failures", grants, failed)
				}
				if n := max(grants, failed); n < 1 || n > 4 {
					t.Errorf("%d client token fetches during the outage for %d requests across two instances, want 1 to 4 (one per back-off step)", n, len(samples))
				}
			}

			// Back to normal: served again once the back-off step ends.
			var last sample
			for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
				if last = oncePath(t, b, second, svc); last.status == http.StatusOK {
					break
				}
			}
			if last.status != http.StatusOK {
				t.Fatalf("after the provider recovered: %d %s", last.status, last.code)
			}
			if upstreamBearer(t, e.orders) == first {
				t.Error("after the outage the upstream still got the expired client token")
			}
		})
	}
}
