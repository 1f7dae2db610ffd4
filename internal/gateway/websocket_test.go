package gateway_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/bffgate/bffgate/config"
)

// wsEcho is a WebSocket microservice that echoes every message and records
// the handshake headers it saw.
type wsEcho struct {
	*httptest.Server
	mu      sync.Mutex
	headers []http.Header
}

func newWSEcho(t *testing.T) *wsEcho {
	s := &wsEcho{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.headers = append(s.headers, r.Header.Clone())
		s.mu.Unlock()
		if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer ") {
			http.Error(w, "no bearer token", http.StatusUnauthorized)
			return
		}
		// The browser's Origin (the gateway's public origin) arrives as is;
		// the gateway has checked it, so the service need not match it
		// against its own host.
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, data, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte("echo:"+r.URL.Path+":"), data...)); err != nil {
				return
			}
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *wsEcho) handshakes() []http.Header {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]http.Header(nil), s.headers...)
}

// routeTimeout is the route's timeout: it bounds the wait for the upgrade
// answer only, never the life of the socket.
const routeTimeout = 200 * time.Millisecond

func TestWebSocketThroughRoute(t *testing.T) {
	ws := newWSEcho(t)
	e := newEnv(t, withConfig(func(c *config.Config) {
		c.Frontends[0].Routes = append(c.Frontends[0].Routes,
			config.Route{Prefix: "/ws", Upstream: ws.URL, StripPrefix: true, Timeout: routeTimeout})
		c.Frontends[0].CORS.AllowedOrigins = []string{spaOrigin}
	}))
	b := e.browser()
	b.login("/web", e.admin())
	cookie := b.cookie("bff-web")
	s := e.session("web", cookie.Value)
	wsURL := "ws" + strings.TrimPrefix(e.public, "http") + "/web/ws/chat"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("refused without session or CSRF", func(t *testing.T) {
		for name, h := range map[string]http.Header{
			"no cookie": {"X-Csrf": {"1"}},
			"no csrf":   {"Cookie": {cookie.Name + "=" + cookie.Value}},
		} {
			c, resp, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPHeader: h})
			if err == nil {
				c.CloseNow()
				t.Fatalf("%s: the upgrade succeeded", name)
			}
			if resp == nil || resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s: %v (response %v), want 401", name, err, resp)
			}
		}
		if n := len(ws.handshakes()); n != 0 {
			t.Errorf("%d refused upgrades reached the upstream", n)
		}
	})

	t.Run("upgrade with the session", func(t *testing.T) {
		c, resp, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPHeader: http.Header{
			"Cookie": {cookie.Name + "=" + cookie.Value},
			"X-Csrf": {"1"},
		}})
		if err != nil {
			t.Fatalf("dial: %v (response %v)", err, resp)
		}
		defer c.CloseNow()
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("status %d", resp.StatusCode)
		}
		roundTrip := func(msg string) {
			t.Helper()
			if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
				t.Fatalf("write: %v", err)
			}
			_, data, err := c.Read(ctx)
			if err != nil {
				t.Fatalf("read: %v", err)
			}
			if want := "echo:/chat:" + msg; string(data) != want {
				t.Fatalf("got %q, want %q", data, want)
			}
		}
		roundTrip("hello")
		// Longer than the route timeout: the socket lives on.
		time.Sleep(2 * routeTimeout)
		roundTrip("still there")

		hs := ws.handshakes()
		if len(hs) != 1 {
			t.Fatalf("%d handshakes at the upstream", len(hs))
		}
		h := hs[0]
		if got := h.Get("Authorization"); got != "Bearer "+s.AccessToken {
			t.Errorf("upstream Authorization %q, want the user's access token", got)
		}
		if got := h.Get("Cookie"); got != "" {
			t.Errorf("upstream got the browser's cookie %q", got)
		}
		if got := h.Get("X-Csrf"); got != "" {
			t.Errorf("upstream got X-CSRF %q", got)
		}
		if !strings.EqualFold(h.Get("Upgrade"), "websocket") {
			t.Errorf("upstream Upgrade %q", h.Get("Upgrade"))
		}
		if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
			t.Errorf("close: %v", err)
		}
	})

	// A browser's new WebSocket() cannot send X-CSRF; it always sends the
	// page's Origin, which scripts cannot change. A handshake from the
	// gateway's own origin (or a cors.allowed_origins entry) passes.
	t.Run("browser handshake checked by Origin", func(t *testing.T) {
		jar := http.Header{"Cookie": {cookie.Name + "=" + cookie.Value}}
		for _, tc := range []struct {
			origin string
			ok     bool
		}{
			{e.public, true},
			{spaOrigin, true},
			{"http://evil.example", false},
			{"null", false},
		} {
			h := jar.Clone()
			h.Set("Origin", tc.origin)
			c, resp, err := websocket.Dial(ctx, wsURL, &websocket.DialOptions{HTTPHeader: h})
			if tc.ok {
				if err != nil {
					t.Errorf("Origin %s: %v (response %v)", tc.origin, err, resp)
					continue
				}
				if err := c.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
					t.Errorf("Origin %s: write: %v", tc.origin, err)
				} else if _, data, err := c.Read(ctx); err != nil || string(data) != "echo:/chat:hi" {
					t.Errorf("Origin %s: read %q, %v", tc.origin, data, err)
				}
				c.CloseNow()
				continue
			}
			if err == nil {
				c.CloseNow()
				t.Errorf("Origin %s: the upgrade succeeded", tc.origin)
			} else if resp == nil || resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("Origin %s: %v (response %v), want 401", tc.origin, err, resp)
			}
		}
		// Only handshakes: an ordinary request still needs X-CSRF.
		h := jar.Clone()
		h.Set("Origin", e.public)
		errorCode(t, b.do(http.MethodGet, "/web/api/orders/1", h, ""), http.StatusUnauthorized, "csrf_required")
		h.Set("Upgrade", "websocket") // without Connection: Upgrade it is no handshake
		errorCode(t, b.do(http.MethodGet, "/web/api/orders/1", h, ""), http.StatusUnauthorized, "csrf_required")
	})
}
