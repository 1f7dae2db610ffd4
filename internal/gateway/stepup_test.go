package gateway_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bffgate/bffgate/config"
	"github.com/bffgate/bffgate/internal/demo"
)

// Step-up (issue 12 item 3, SPEC §5): a route that needs an acr the session
// lacks answers 401 step_up_required with what to ask for; the login that
// asks for it is refused when the provider's ID token does not carry it
// (the demo provider issues no acr, so that is what it shows), and a route
// that needs a recent login accepts a fresh one.
func TestStepUpRequiredAndRefusedWhenNotSatisfied(t *testing.T) {
	e := newEnv(t, withConfig(func(c *config.Config) {
		up := c.Frontends[0].Routes[0].Upstream
		c.Frontends[0].Routes = append(c.Frontends[0].Routes,
			config.Route{Prefix: "/api/mfa", Upstream: up, Require: config.Require{ACR: []string{"urn:example:mfa"}, MaxAge: 10 * time.Minute}},
			config.Route{Prefix: "/api/recent", Upstream: up, Require: config.Require{MaxAge: 10 * time.Minute}},
		)
	}))
	b := e.browser()
	b.login("/web", e.admin())
	before := e.orders.count()

	resp := b.api(http.MethodGet, "/web/api/mfa/x")
	m := decodeJSON(t, resp)
	if resp.StatusCode != http.StatusUnauthorized || m["error"] != "step_up_required" ||
		m["acr_values"] != "urn:example:mfa" || m["max_age"] != float64(600) {
		t.Fatalf("status %d %v, want 401 step_up_required with acr_values and max_age", resp.StatusCode, m)
	}
	if e.orders.count() != before {
		t.Fatal("the upstream was called without the step-up")
	}
	if resp := b.api(http.MethodGet, "/web/api/recent/x"); resp.StatusCode != http.StatusOK {
		t.Errorf("a fresh login on a max_age route: %d %s", resp.StatusCode, readBody(resp))
	}

	// The SPA's next move: log in with what the 401 said.
	oldRef := b.cookie("bff-web").Value
	cb, authz, err := b.Login(context.Background(),
		e.public+"/web/bff/login?acr_values=urn:example:mfa&max_age=600&returnTo="+url.QueryEscape("/web/orders"), e.admin(), password)
	if err != nil {
		t.Fatal(err)
	}
	if q := authz.Query(); q.Get("acr_values") != "urn:example:mfa" || q.Get("max_age") != "600" {
		t.Errorf("authorize acr_values %q max_age %q", q.Get("acr_values"), q.Get("max_age"))
	}
	wantLoginError(t, b.get(cb, nil), "/web/orders", "step_up_failed")
	if b.cookie("bff-web").Value != oldRef {
		t.Error("a refused step-up replaced the session")
	}
	for _, bad := range []string{"max_age=-1", "max_age=x", "acr_values=%0d%0a"} {
		errorCode(t, e.browser().get("/web/bff/login?"+bad, nil), http.StatusBadRequest, "bad_request")
	}
}

// stepUpRoute adds /web/api/recent, which needs a login at most maxAge old
// and an acr in acr (when given).
func stepUpRoute(maxAge time.Duration, acr ...string) envOption {
	return withConfig(func(c *config.Config) {
		c.Frontends[0].Routes = append(c.Frontends[0].Routes, config.Route{
			Prefix: "/api/recent", Upstream: c.Frontends[0].Routes[0].Upstream,
			Require: config.Require{MaxAge: maxAge, ACR: acr},
		})
	})
}

// authTime is the auth_time claim of the session behind ref.
func (e *env) authTime(ref string) int64 {
	e.t.Helper()
	var c struct {
		AuthTime int64 `json:"auth_time"`
	}
	if err := json.Unmarshal(e.session("web", ref).Claims, &c); err != nil || c.AuthTime == 0 {
		e.t.Fatalf("the session's ID token has no auth_time (%v): %s", err, e.session("web", ref).Claims)
	}
	return c.AuthTime
}

// stepUpLogin follows the SPA's move on a 401 step_up_required: it
// navigates to M/bff/login with the body's acr_values and max_age and
// returnTo, signs in at the provider and returns the callback, not yet
// followed, and the authorize request the provider saw.
func (b *browser) stepUpLogin(t *testing.T, body map[string]any, returnTo string) (string, *url.URL) {
	t.Helper()
	q := url.Values{"returnTo": {returnTo}}
	if v, ok := body["acr_values"].(string); ok {
		q.Set("acr_values", v)
	}
	if v, ok := body["max_age"].(float64); ok {
		q.Set("max_age", strconv.FormatInt(int64(v), 10))
	}
	cb, authz, err := b.Login(context.Background(), b.e.public+"/web/bff/login?"+q.Encode(), b.e.admin(), password)
	if err != nil {
		t.Fatal(err)
	}
	return cb, authz
}

// stepUpReplacesSession checks what a successful step-up leaves behind: the
// callback goes to returnTo with a new cookie naming a new session, the old
// record is gone from Redis, the old cookie is refused anywhere, and the
// step-up route now answers.
func stepUpReplacesSession(t *testing.T, e *env, b *browser, cb, oldRef, returnTo string) (newRef string) {
	t.Helper()
	oldID := e.session("web", oldRef).ID()
	resp := b.get(cb, nil)
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != returnTo {
		t.Fatalf("step-up callback: %d to %q, want 302 to %s; body %s", resp.StatusCode, resp.Header.Get("Location"), returnTo, readBody(resp))
	}
	newRef = b.cookie("bff-web").Value
	if newRef == oldRef {
		t.Fatal("the step-up login kept the old cookie")
	}
	if newID := e.session("web", newRef).ID(); newID == oldID {
		t.Fatal("the step-up login kept the old session id")
	}
	if n := e.rdb.Exists(context.Background(), e.prefix+"s:{"+oldID+"}").Val(); n != 0 {
		t.Error("the session before the step-up is still in Redis")
	}
	old := e.browser()
	old.Jar.SetCookies(mustURL(e.public+"/"), []*http.Cookie{{Name: "bff-web", Value: oldRef}})
	errorCode(t, old.api(http.MethodGet, "/web/api/orders/1"), http.StatusUnauthorized, "unauthenticated")
	before := e.orders.count()
	if resp := b.api(http.MethodGet, "/web/api/recent/x"); resp.StatusCode != http.StatusOK {
		t.Fatalf("the step-up route after the step-up: %d %s", resp.StatusCode, readBody(resp))
	}
	if e.orders.count() != before+1 {
		t.Error("the step-up route's upstream was not called")
	}
	return newRef
}

// A successful step-up for require.max_age, end to end against the real
// provider (issue 12 item 3, SPEC section 5). The zitadel example OP keeps
// no login session of its own: every authorization request shows its
// password form again and sets auth_time to the moment the password was
// checked, so a max_age login is always a fresh one there.
func TestStepUpMaxAgeSucceeds(t *testing.T) {
	// Long enough for a slow machine to finish the step-up login and call
	// the route within it; auth_time has whole seconds, so up to one of
	// them is gone at once.
	const maxAge = 5 * time.Second
	e := newEnv(t, stepUpRoute(maxAge))
	b := e.browser()
	b.login("/web", e.admin())
	oldRef := b.cookie("bff-web").Value
	oldAuthTime := e.authTime(oldRef)

	// Once the login is older than max_age the route refuses, forwarding nothing.
	var body map[string]any
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(250 * time.Millisecond) {
		before := e.orders.count()
		resp := b.api(http.MethodGet, "/web/api/recent/x")
		if resp.StatusCode == http.StatusUnauthorized {
			body = decodeJSON(t, resp)
			if e.orders.count() != before {
				t.Fatal("the upstream was called for a refused step-up route")
			}
			break
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("the step-up route: %d %s", resp.StatusCode, readBody(resp))
		}
		if time.Now().After(deadline) {
			t.Fatalf("the route still answers 200 a minute after a login with max_age %v", maxAge)
		}
	}
	if body["error"] != "step_up_required" || body["max_age"] != float64(5) || body["acr_values"] != nil {
		t.Fatalf("body %v, want step_up_required with max_age 5 and no acr_values", body)
	}

	cb, authz := b.stepUpLogin(t, body, "/web/orders")
	if got := authz.Query().Get("max_age"); got != "5" {
		t.Errorf("authorize max_age = %q, want 5", got)
	}
	newRef := stepUpReplacesSession(t, e, b, cb, oldRef, "/web/orders")
	if at := e.authTime(newRef); at <= oldAuthTime {
		t.Errorf("auth_time %d after the step-up, %d before: the provider did not authenticate again", at, oldAuthTime)
	}
}

// acrRewriter stands in for a provider that authenticates at a chosen
// level: the zitadel example OP never issues an acr (its AuthRequest.GetACR
// returns ""), so the ID token of each code exchange gets the acr set here,
// re-signed with the provider's own key. Everything else is the real OP's.
type acrRewriter struct {
	idp atomic.Pointer[demo.IDP]
	acr atomic.Pointer[string]
}

func (a *acrRewriter) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		acr := a.acr.Load()
		if r.Method != http.MethodPost || r.URL.Path != "/oauth/token" || acr == nil {
			next.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		next.ServeHTTP(rec, r)
		var body map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body["id_token"] == nil {
			copyResponse(w, rec)
			return
		}
		_, payload, _ := strings.Cut(body["id_token"].(string), ".")
		payload, _, _ = strings.Cut(payload, ".")
		raw, err := base64.RawURLEncoding.DecodeString(payload)
		var claims map[string]any
		if err == nil {
			err = json.Unmarshal(raw, &claims)
		}
		if err != nil {
			http.Error(w, "acrRewriter: "+err.Error(), http.StatusInternalServerError)
			return
		}
		claims["acr"] = *acr
		if body["id_token"], err = a.idp.Load().SignJWT(claims, ""); err != nil {
			http.Error(w, "acrRewriter: "+err.Error(), http.StatusInternalServerError)
			return
		}
		rec.Body.Reset()
		_ = json.NewEncoder(rec.Body).Encode(body)
		rec.Header().Del("Content-Length")
		copyResponse(w, rec)
	})
}

func copyResponse(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// Step-up for require.acr: a login at a lower level than the route asks
// for is refused at the callback and keeps the session; one at the asked
// level replaces it and opens the route. The acr comes from acrRewriter
// (see there: no real provider here issues one on demand).
func TestStepUpACR(t *testing.T) {
	const mfa = "urn:example:mfa"
	rw := &acrRewriter{}
	pwd := "urn:example:pwd"
	rw.acr.Store(&pwd)
	e := newEnv(t, withIDPWrap(rw.wrap), stepUpRoute(10*time.Minute, mfa))
	rw.idp.Store(e.idp)
	b := e.browser()
	b.login("/web", e.admin())
	oldRef := b.cookie("bff-web").Value

	resp := b.api(http.MethodGet, "/web/api/recent/x")
	body := decodeJSON(t, resp)
	if resp.StatusCode != http.StatusUnauthorized || body["error"] != "step_up_required" || body["acr_values"] != mfa || body["max_age"] != float64(600) {
		t.Fatalf("a password-level session: %d %v, want 401 step_up_required for %s", resp.StatusCode, body, mfa)
	}

	t.Run("a lower acr than asked is refused", func(t *testing.T) {
		cb, authz := b.stepUpLogin(t, body, "/web/orders")
		if got := authz.Query().Get("acr_values"); got != mfa {
			t.Errorf("authorize acr_values = %q, want %s", got, mfa)
		}
		wantLoginError(t, b.get(cb, nil), "/web/orders", "step_up_failed")
		if b.cookie("bff-web").Value != oldRef {
			t.Fatal("a refused step-up replaced the session")
		}
		errorCode(t, b.api(http.MethodGet, "/web/api/recent/x"), http.StatusUnauthorized, "step_up_required")
		if resp := b.api(http.MethodGet, "/web/api/orders/1"); resp.StatusCode != http.StatusOK {
			t.Errorf("the kept session on another route: %d", resp.StatusCode)
		}
	})

	t.Run("the asked acr replaces the session", func(t *testing.T) {
		m := mfa
		rw.acr.Store(&m)
		cb, _ := b.stepUpLogin(t, body, "/web/orders")
		stepUpReplacesSession(t, e, b, cb, oldRef, "/web/orders")
	})
}
