package gateway_test

import (
	"io"
	"net/http"
	"testing"
	"time"
)

// TestSessionCacheRevocationAcrossInstances: instance A serves a session from
// its in-process cache; a logout on instance B ends it, and A refuses it
// (the contract says within 100 ms; the poll bound here is generous and the
// time it took is logged).
func TestSessionCacheRevocationAcrossInstances(t *testing.T) {
	e := newEnv(t)
	c := e.gw.SessionCache()
	if c == nil {
		t.Fatal("the Redis store runs without the session cache; sessions.cache defaults to on")
	}
	second := e.instance()
	b := e.browser()
	b.login("/web", e.admin())
	ref := b.cookie("bff-web").Value

	deadline := time.Now().Add(10 * time.Second)
	for hits := c.Stats().Hits; ; {
		if resp := b.api(http.MethodGet, "/web/api/orders/1"); resp.StatusCode != http.StatusOK {
			t.Fatalf("A: %d %s", resp.StatusCode, readBody(resp))
		}
		if c.Stats().Hits > hits {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("A never served the session from its cache: %+v", c.Stats())
		}
	}

	if resp := b.do(http.MethodPost, second+"/web/bff/logout", http.Header{"X-Csrf": {"1"}}, ""); resp.StatusCode != http.StatusFound {
		t.Fatalf("logout on B: %d %s", resp.StatusCode, readBody(resp))
	}
	start := time.Now()
	replay := &http.Client{Timeout: 5 * time.Second}
	for {
		req, _ := http.NewRequest(http.MethodGet, e.public+"/web/api/orders/1", nil)
		req.Header.Set("X-Csrf", "1")
		req.Header.Set("Cookie", "bff-web="+ref)
		resp, err := replay.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized {
			break
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("A after the logout on B: %d", resp.StatusCode)
		}
		if time.Since(start) > 2*time.Second {
			t.Fatalf("A still serves the session %v after the logout on B", time.Since(start))
		}
		time.Sleep(time.Millisecond)
	}
	t.Logf("A refused the session %v after the logout on B returned", time.Since(start).Round(time.Microsecond))
}
