package gateway_test

import (
	"net/http"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/bffgate/bffgate/config"
	"github.com/bffgate/bffgate/internal/redistest"
)

// TestRedisSentinel: with addrs and master_name the gateway finds the master
// through a real Sentinel and keeps its sessions there.
func TestRedisSentinel(t *testing.T) {
	master := redistest.Start(t)
	sentinel := redistest.StartSentinel(t, "bffmaster", master.Addr)
	e := newEnv(t, withConfig(func(c *config.Config) {
		c.Sessions.Redis.URL = ""
		c.Sessions.Redis.Addrs = []string{sentinel}
		c.Sessions.Redis.MasterName = "bffmaster"
	}))
	b := e.browser()
	b.login("/web", e.admin())
	if resp := b.api(http.MethodGet, "/web/api/orders/1"); resp.StatusCode != http.StatusOK {
		t.Fatalf("API through Sentinel: %d %s", resp.StatusCode, readBody(resp))
	}
	id := e.session("web", b.cookie("bff-web").Value).ID()
	if n := existsOn(t, master.Addr, e.prefix+"s:{"+id+"}"); n != 1 {
		t.Fatalf("the session is not on the master Sentinel named (exists = %d)", n)
	}
	if resp := b.do(http.MethodPost, "/web/bff/logout", http.Header{"X-Csrf": {"1"}}, ""); resp.StatusCode != http.StatusFound {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	if n := existsOn(t, master.Addr, e.prefix+"s:{"+id+"}"); n != 0 {
		t.Fatal("the session survived logout on the master")
	}
}

func existsOn(t *testing.T, addr, key string) int64 {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	n, err := c.Exists(t.Context(), key).Result()
	if err != nil {
		t.Fatal(err)
	}
	return n
}
