package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/bffgate/bffgate/config"
	"github.com/bffgate/bffgate/internal/demo"
	"github.com/bffgate/bffgate/sessions"
)

// auditKeys are the fields every audit line has; an event adds only the
// ones its case lists. Nothing else may appear: no token, cookie or session id.
var auditKeys = []string{"time", "level", "msg", "request_id", "event", "frontend", "sub", "sid", "client_ip"}

// Each audit event of SPEC §6, as an operator reads it in the JSON log: the
// event name, its level, who (frontend, sub, provider sid) and from where
// (client IP, the forwarded one when a trusted proxy sent the request).
func TestAuditEvents(t *testing.T) {
	logs := &logBuffer{}
	modes := &refreshModes{}
	e := newEnv(t, withLogBuffer(logs),
		// 2 s tokens, so that a case can wait for one to expire.
		withIDP(demo.IDPOptions{AccessTokenLifetime: 2 * time.Second}),
		withIDPWrap(modes.wrap),
		withConfig(func(c *config.Config) {
			// Loopback is the load balancer.
			c.Server.TrustedProxies = []string{"127.0.0.0/8"}
		}))

	// events runs act and returns the audit lines it logged.
	events := func(t *testing.T, act func()) []map[string]any {
		t.Helper()
		before := len(logs.lines(t))
		act()
		var out []map[string]any
		for _, l := range logs.lines(t)[before:] {
			if _, ok := l["event"]; ok {
				out = append(out, l)
			}
		}
		return out
	}
	forwarded := http.Header{"X-Csrf": {"1"}, "X-Forwarded-For": {"198.51.100.9"}}

	var b *browser
	var sub, sid string
	tests := []struct {
		name   string
		act    func(t *testing.T)
		event  string
		level  string
		ip     string
		sub    func() string
		sid    func() string
		extras map[string]any // extra fields and their values (nil value: present, any value)
	}{
		{
			name: "login",
			act: func(t *testing.T) {
				b = e.browser()
				b.login("/web", e.admin())
				sub = b.subject()
				s := e.session("web", b.cookie("bff-web").Value)
				sid = s.ProviderSID
			},
			event: "login", level: "INFO", ip: "127.0.0.1",
			sub: func() string { return sub }, sid: func() string { return sid },
		},
		{
			name: "login_failed",
			act: func(t *testing.T) {
				other := e.browser()
				u, _ := url.Parse(other.callback(t, "/web/bff/login", e.admin()))
				q := u.Query()
				q.Set("code", "forged-code")
				u.RawQuery = q.Encode()
				other.get(u.String(), http.Header{"X-Forwarded-For": {"203.0.113.5"}})
			},
			event: "login_failed", level: "WARN", ip: "203.0.113.5",
			sub:    func() string { return "" },
			sid:    func() string { return "" },
			extras: map[string]any{"reason": "code_rejected", "error": nil},
		},
		{
			name: "refresh_rejected",
			act: func(t *testing.T) {
				modes.mode.Store("reject")
				defer modes.mode.Store("")
				// Once the token has expired the request waits for the
				// refresh, and learns that it was rejected.
				time.Sleep(time.Until(e.session("web", b.cookie("bff-web").Value).Expiry))
				errorCode(t, b.do(http.MethodGet, "/web/api/orders/1", forwarded, ""), http.StatusUnauthorized, "session_expired")
			},
			event: "refresh_rejected", level: "INFO", ip: "198.51.100.9",
			sub: func() string { return sub }, sid: func() string { return sid },
		},
		{
			name: "logout",
			act: func(t *testing.T) {
				b = e.browser()
				b.login("/web", e.admin())
				if resp := b.do(http.MethodPost, "/web/bff/logout", forwarded, ""); resp.StatusCode != http.StatusFound {
					t.Fatalf("logout: %d %s", resp.StatusCode, readBody(resp))
				}
			},
			event: "logout", level: "INFO", ip: "198.51.100.9",
			sub: func() string { return sub }, sid: func() string { return "*" },
		},
		{
			name: "backchannel_logout",
			act: func(t *testing.T) {
				laptop, phone := e.browser(), e.browser()
				laptop.login("/web", plainUser)
				phone.login("/web", plainUser)
				sub = laptop.subject()
				if resp := e.postLogoutToken("/web", e.sign(e.logoutClaims(sub), "logout+jwt")); resp.StatusCode != http.StatusOK {
					t.Fatalf("back-channel logout: %d %s", resp.StatusCode, readBody(resp))
				}
			},
			event: "backchannel_logout", level: "INFO", ip: "127.0.0.1",
			sub: func() string { return sub }, sid: func() string { return "" },
			extras: map[string]any{"sessions_ended": float64(2)},
		},
		{
			name: "session_expired",
			act: func(t *testing.T) {
				// A session whose token has expired and that has no refresh
				// token to renew it.
				now := time.Now()
				ref, err := e.gw.Sessions.Create(context.Background(), "spa:web", &sessions.Session{
					Frontend: "web", Subject: "expiring-sub", ProviderSID: "expiring-sid", Claims: json.RawMessage(`{"sub":"expiring-sub"}`),
					AccessToken: "expired-token", Expiry: now.Add(-time.Minute),
					CreatedAt: now, AbsoluteExpiry: now.Add(time.Hour), IdleTimeout: time.Hour,
				})
				if err != nil {
					t.Fatal(err)
				}
				errorCode(t, b.do(http.MethodGet, "/web/api/orders/1", http.Header{"X-Csrf": {"1"}, "Cookie": {"bff-web=" + ref}}, ""),
					http.StatusUnauthorized, "session_expired")
			},
			event: "session_expired", level: "INFO", ip: "127.0.0.1",
			sub: func() string { return "expiring-sub" }, sid: func() string { return "expiring-sid" },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := events(t, func() { tc.act(t) })
			var l map[string]any
			for _, g := range got {
				if g["event"] == tc.event {
					if l != nil {
						t.Fatalf("two %s events: %v and %v", tc.event, l, g)
					}
					l = g
				}
			}
			if l == nil {
				t.Fatalf("no %s event among %v", tc.event, got)
			}
			if l["level"] != tc.level || l["frontend"] != "web" || l["client_ip"] != tc.ip || l["sub"] != tc.sub() {
				t.Errorf("%s event: %v; want level %s, frontend web, client_ip %s, sub %q", tc.event, l, tc.level, tc.ip, tc.sub())
			}
			if want := tc.sid(); want != "*" && l["sid"] != want {
				t.Errorf("%s event: sid %v, want %q", tc.event, l["sid"], want)
			}
			for k, v := range l {
				want, extra := tc.extras[k]
				switch {
				case extra && want != nil && v != want:
					t.Errorf("%s event: %s = %v, want %v", tc.event, k, v, want)
				case !extra && !slices.Contains(auditKeys, k):
					t.Errorf("%s event has an unexpected field %s = %v", tc.event, k, v)
				}
			}
			for k := range tc.extras {
				if _, ok := l[k]; !ok {
					t.Errorf("%s event lacks %s: %v", tc.event, k, l)
				}
			}
		})
	}
}
