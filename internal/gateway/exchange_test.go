package gateway_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/bffgate/bffgate/bff"
	"github.com/bffgate/bffgate/config"
	"github.com/bffgate/bffgate/internal/demo"
	"github.com/bffgate/bffgate/internal/faultidp"
	"github.com/bffgate/bffgate/internal/observe/observetest"
)

// Issue 12 item 2: token: exchange routes (RFC 8693). The demo provider is
// the real zitadel/oidc OP; its token-exchange policy (internal/demo) lets
// web-bff ask for exchangeAudience only, and refuses any other audience
// with invalid_target, so refusals are real provider answers too.

const (
	exchangeAudience = "payments-api"
	grantExchange    = "urn:ietf:params:oauth:grant-type:token-exchange"
)

// withExchangeRoutes adds /web/api/pay (token: exchange for
// exchangeAudience) and /web/api/ledger (an audience the provider refuses)
// to the web frontend, both to the recording upstream.
func withExchangeRoutes(extra func(*config.Config)) func(*config.Config) {
	return func(c *config.Config) {
		web := &c.Frontends[0]
		up := web.Routes[0].Upstream
		web.Routes = append(web.Routes,
			config.Route{Prefix: "/api/pay", Upstream: up, StripPrefix: true, Token: config.TokenExchange,
				Exchange: &config.Exchange{Audience: exchangeAudience, Resource: "https://payments.internal/", Scopes: []string{"payments"}}},
			config.Route{Prefix: "/api/ledger", Upstream: up, StripPrefix: true, Token: config.TokenExchange,
				Exchange: &config.Exchange{Audience: "ledger-api"}})
		if extra != nil {
			extra(c)
		}
	}
}

func audiences(claims map[string]any) []string {
	switch v := claims["aud"].(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, a := range v {
			s, _ := a.(string)
			out = append(out, s)
		}
		return out
	}
	return nil
}

// valueKeys lists the session values (exchanged tokens) in Redis.
func (e *env) valueKeys() []string {
	var out []string
	for _, k := range e.keys() {
		if strings.HasPrefix(k, e.prefix+"sv:") {
			out = append(out, k)
		}
	}
	return out
}

func TestExchangeRouteSendsAnAudienceRestrictedToken(t *testing.T) {
	grants := &tokenGrants{}
	logs := &logBuffer{}
	e := newEnv(t, withIDPWrap(grants.wrap), withLogBuffer(logs), withConfig(withExchangeRoutes(nil)))
	b := e.browser()
	b.login("/web", e.admin())
	user := e.session("web", b.cookie("bff-web").Value)

	resp := b.api(http.MethodGet, "/web/api/pay/balance")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d %s", resp.StatusCode, readBody(resp))
	}
	exchanged := upstreamBearer(t, e.orders)
	if exchanged == user.AccessToken {
		t.Fatal("the upstream received the user's own token")
	}
	claims, userClaims := jwtClaims(t, exchanged), jwtClaims(t, user.AccessToken)
	if got := audiences(claims); !slices.Equal(got, []string{exchangeAudience}) {
		t.Errorf("exchanged token aud = %v, want [%s]", got, exchangeAudience)
	}
	if claims["sub"] != userClaims["sub"] || claims["iss"] != e.issuer {
		t.Errorf("exchanged token sub %v iss %v, want the user's %v from %s", claims["sub"], claims["iss"], userClaims["sub"], e.issuer)
	}
	if slices.Contains(audiences(userClaims), exchangeAudience) {
		t.Fatal("the user's own token already names the exchange audience; the test proves nothing")
	}

	// The next calls reuse the exchanged token kept with the session.
	for i := range 3 {
		if resp := b.api(http.MethodGet, "/web/api/pay/"+strconv.Itoa(i)); resp.StatusCode != http.StatusOK {
			t.Fatalf("call %d: %d %s", i, resp.StatusCode, readBody(resp))
		}
		if got := upstreamBearer(t, e.orders); got != exchanged {
			t.Fatalf("call %d: the upstream received another token", i)
		}
	}
	if got := grants.count(grantExchange); got != 1 {
		t.Errorf("token exchanges at the provider = %d, want 1", got)
	}
	// Other routes still get the user's token.
	b.api(http.MethodGet, "/web/api/orders/1")
	if got := upstreamBearer(t, e.orders); got != user.AccessToken {
		t.Error("a token: user route did not receive the user's token")
	}

	// Kept encrypted with the session: Redis holds no token text.
	if keys := e.valueKeys(); len(keys) != 1 {
		t.Fatalf("session values in Redis: %v, want the one exchanged token", keys)
	}
	for _, k := range e.keys() {
		raw, _ := e.rdb.Get(context.Background(), k).Bytes()
		if strings.Contains(string(raw), exchanged) || strings.Contains(string(raw), strings.Split(exchanged, ".")[2]) {
			t.Errorf("Redis key %s holds the exchanged token in clear", k)
		}
	}
	// Nor does any log line.
	sec := secrets{}
	sec.add("exchanged token", exchanged)
	sec.add("user access token", user.AccessToken)
	for name, v := range sec {
		if strings.Contains(logs.String(), v) {
			t.Errorf("the logs contain the %s", name)
		}
	}

	// Logout drops it at once.
	if resp := b.do(http.MethodPost, "/web/bff/logout", http.Header{"X-Csrf": {"1"}}, ""); resp.StatusCode != http.StatusFound {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	if keys := e.valueKeys(); len(keys) != 0 {
		t.Errorf("session values left after logout: %v", keys)
	}
}

// Many concurrent calls on two instances sharing one Redis cause one
// exchange at the provider, like the refresh race.
func TestConcurrentExchangeHappensOnceAcrossInstances(t *testing.T) {
	grants := &tokenGrants{}
	e := newEnv(t, withIDPWrap(grants.wrap), withConfig(withExchangeRoutes(nil)))
	second := e.instance()
	b := e.browser()
	b.login("/web", e.admin())
	// Both instances load the provider metadata first, so the burst meets
	// the exchange and not discovery.
	b.api(http.MethodGet, second+"/web/api/orders/warm")

	statuses := b.burst(t, 50, func(i int) string {
		base := e.public
		if i%2 == 1 {
			base = second
		}
		return base + "/web/api/pay/" + strconv.Itoa(i)
	})
	for i, st := range statuses {
		if st != http.StatusOK {
			t.Errorf("request %d: status %d", i, st)
		}
	}
	if got := grants.count(grantExchange); got != 1 {
		t.Fatalf("token exchanges at the provider = %d, want exactly 1", got)
	}
	e.orders.mu.Lock()
	defer e.orders.mu.Unlock()
	tokens := map[string]bool{}
	for _, r := range e.orders.reqs {
		if strings.HasPrefix(r.URL.Path, "/warm") {
			continue
		}
		tokens[r.Header.Get("Authorization")] = true
	}
	if len(tokens) != 1 {
		t.Errorf("the upstream received %d different tokens, want the one exchanged token", len(tokens))
	}
}

// A refresh of the user's token drops the exchanged token: the next call
// exchanges the new user token.
func TestRefreshDropsExchangedTokens(t *testing.T) {
	grants := &tokenGrants{}
	var subjects subjectLog
	e := newEnv(t,
		withIDP(demo.IDPOptions{AccessTokenLifetime: shortTokenLifetime}),
		withIDPWrap(func(h http.Handler) http.Handler { return grants.wrap(subjects.wrap(h)) }),
		withConfig(withExchangeRoutes(func(c *config.Config) { c.Sessions.RefreshMargin = shortRefreshMargin })))
	b := e.browser()
	b.login("/web", e.admin())
	ref := b.cookie("bff-web").Value
	before := e.session("web", ref)
	if resp := b.api(http.MethodGet, "/web/api/pay/1"); resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d %s", resp.StatusCode, readBody(resp))
	}
	first := upstreamBearer(t, e.orders)
	if keys := e.valueKeys(); len(keys) != 1 {
		t.Fatalf("session values: %v, want one", keys)
	}

	waitUntilDue()
	// A token: user call makes the refresh happen, beside it.
	b.api(http.MethodGet, "/web/api/orders/1")
	after := e.waitForRefresh(ref, before.AccessToken)
	deadline := time.Now().Add(3 * time.Second)
	for len(e.valueKeys()) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the exchanged token was not dropped after the refresh: %v", e.valueKeys())
		}
		time.Sleep(20 * time.Millisecond)
	}

	if resp := b.api(http.MethodGet, "/web/api/pay/2"); resp.StatusCode != http.StatusOK {
		t.Fatalf("after the refresh: %d %s", resp.StatusCode, readBody(resp))
	}
	if got := upstreamBearer(t, e.orders); got == first || got == after.AccessToken {
		t.Error("after the refresh the upstream did not receive a newly exchanged token")
	}
	if got := grants.count(grantExchange); got != 2 {
		t.Errorf("token exchanges = %d, want 2", got)
	}
	if got := subjects.all(); len(got) != 2 || got[0] != before.AccessToken || got[1] != after.AccessToken {
		t.Error("the exchanges did not present the user's token of their time (before, then after the refresh)")
	}
}

// A refusal by the provider (here invalid_target: an audience web-bff may
// not ask for) is 403 token_exchange_failed, and the user's session and
// other routes are unaffected.
func TestExchangeRefusedIs403(t *testing.T) {
	grants := &tokenGrants{}
	logs := &logBuffer{}
	e := newEnv(t, withIDPWrap(grants.wrap), withLogBuffer(logs), withConfig(withExchangeRoutes(nil)))
	b := e.browser()
	b.login("/web", e.admin())
	user := e.session("web", b.cookie("bff-web").Value)
	before := e.orders.count()

	resp := b.api(http.MethodGet, "/web/api/ledger/entries")
	errorCode(t, resp, http.StatusForbidden, "token_exchange_failed")
	if e.orders.count() != before {
		t.Error("the upstream was called although the exchange was refused")
	}
	// Within the back-off the provider is not asked again.
	errorCode(t, b.api(http.MethodGet, "/web/api/ledger/entries"), http.StatusForbidden, "token_exchange_failed")
	if got := grants.count(grantExchange); got != 1 {
		t.Errorf("token exchanges at the provider = %d, want 1 (the second call is inside the back-off)", got)
	}
	if resp := b.api(http.MethodGet, "/web/api/pay/1"); resp.StatusCode != http.StatusOK {
		t.Errorf("an allowed exchange route after a refused one: %d %s", resp.StatusCode, readBody(resp))
	}
	if resp := b.api(http.MethodGet, "/web/api/orders/1"); resp.StatusCode != http.StatusOK {
		t.Errorf("a token: user route after a refused exchange: %d", resp.StatusCode)
	}
	var refusal map[string]any
	for _, l := range logs.lines(t) {
		if strings.Contains(l["msg"].(string), "refused the token exchange") {
			refusal = l
		}
	}
	if refusal == nil || refusal["error_code"] != "invalid_target" || refusal["route"] != "/api/ledger" {
		t.Errorf("no warning naming the route and the provider's error code: %v", refusal)
	}
	if strings.Contains(logs.String(), user.AccessToken) {
		t.Error("the logs contain the user's access token")
	}
}

// A provider that cannot be reached, or answers 503, is 502 for an
// exchange route (SPEC section 5), the session is kept, and the route
// works again once the provider is back and the back-off has passed.
// faultidp stands in for the outage, which a provider will not produce on
// demand.
func TestExchangeProviderUnreachableIs502(t *testing.T) {
	for _, mode := range []faultidp.Mode{faultidp.Refuse, faultidp.Unavailable} {
		t.Run(mode.String(), func(t *testing.T) {
			f := faultidp.New()
			e := newEnv(t, withFaults(f), withConfig(withExchangeRoutes(nil)))
			b := e.browser()
			b.login("/web", e.admin())
			if err := f.SetMode(mode); err != nil {
				t.Fatal(err)
			}
			errorCode(t, b.api(http.MethodGet, "/web/api/pay/1"), http.StatusBadGateway, "upstream_unavailable")
			if resp := b.api(http.MethodGet, "/web/api/orders/1"); resp.StatusCode != http.StatusOK {
				t.Fatalf("the session did not survive the outage: %d %s", resp.StatusCode, readBody(resp))
			}
			if err := f.SetMode(faultidp.Normal); err != nil {
				t.Fatal(err)
			}
			// The first back-off step is 1 s.
			deadline := time.Now().Add(5 * time.Second)
			for {
				resp := b.api(http.MethodGet, "/web/api/pay/2")
				if resp.StatusCode == http.StatusOK {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the exchange route did not recover: %d %s", resp.StatusCode, readBody(resp))
				}
				time.Sleep(200 * time.Millisecond)
			}
		})
	}
}

// subjectLog records the subject_token of each token exchange the provider
// receives, in order.
type subjectLog struct {
	mu       sync.Mutex
	subjects []string
}

func (s *subjectLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/oauth/token" {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			if form, _ := url.ParseQuery(string(body)); form.Get("grant_type") == grantExchange {
				s.mu.Lock()
				s.subjects = append(s.subjects, form.Get("subject_token"))
				s.mu.Unlock()
			}
		}
		h.ServeHTTP(w, r)
	})
}

func (s *subjectLog) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.subjects)
}

// An exchange is traced as session.token_exchange (route named) with the
// provider call as its child, counted by outcome, and no span carries the
// user's or the exchanged token.
func TestExchangeIsTracedAndCounted(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	e := newEnv(t, withSpanRecorder(rec), withConfig(withExchangeRoutes(nil)))
	b := e.browser()
	b.login("/web", e.admin())
	user := e.session("web", b.cookie("bff-web").Value)
	for range 2 {
		if resp := b.api(http.MethodGet, "/web/api/pay/1"); resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d %s", resp.StatusCode, readBody(resp))
		}
	}
	exchanged := upstreamBearer(t, e.orders)
	errorCode(t, b.api(http.MethodGet, "/web/api/ledger/1"), http.StatusForbidden, "token_exchange_failed")

	x := waitSpan(t, rec, bff.SpanExchange)
	route := ""
	for _, a := range x.Attributes() {
		if a.Key == "bffgate.route" {
			route = a.Value.AsString()
		}
	}
	if route != "/api/pay" && route != "/api/ledger" {
		t.Errorf("exchange span route %q", route)
	}
	children := 0
	for _, s := range rec.Ended() {
		if s.Parent().SpanID() == x.SpanContext().SpanID() && strings.HasPrefix(s.Name(), "provider ") {
			children++
		}
	}
	if children == 0 {
		t.Error("the exchange span has no provider call as its child")
	}
	for _, s := range rec.Ended() {
		text := spanText(s)
		for name, v := range map[string]string{"user token": user.AccessToken, "exchanged token": exchanged} {
			if strings.Contains(text, v) || strings.Contains(text, strings.Split(v, ".")[2]) {
				t.Errorf("span %s carries the %s", s.Name(), name)
			}
		}
	}

	for outcome, want := range map[string]float64{"ok": 1, "refused": 1} {
		route := map[string]string{"ok": "/api/pay", "refused": "/api/ledger"}[outcome]
		if got := observetest.Value(t, e.gw.Registry, "bffgate_token_exchanges_total",
			map[string]string{"frontend": "web", "route": route, "outcome": outcome}); got != want {
			t.Errorf("bffgate_token_exchanges_total{route=%q,outcome=%q} = %v, want %v", route, outcome, got, want)
		}
	}
}
