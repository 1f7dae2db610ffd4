package gateway_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/bffgate/bffgate/config"
	"github.com/bffgate/bffgate/internal/demo"
	"github.com/bffgate/bffgate/internal/redistest"
)

// TestRedisCluster runs login, API, refresh, back-channel logout and logout
// through a real three-master Redis Cluster: every command the gateway sends
// must stay within one hash slot.
func TestRedisCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node Redis Cluster")
	}
	addrs := redistest.StartCluster(t, 3)
	grants := &tokenGrants{}
	e := newEnv(t,
		withIDP(demo.IDPOptions{AccessTokenLifetime: shortTokenLifetime}),
		withIDPWrap(grants.wrap),
		withConfig(func(c *config.Config) {
			c.Sessions.Redis.URL = ""
			c.Sessions.Redis.Addrs = addrs
			c.Sessions.RefreshMargin = shortRefreshMargin
		}))
	second := e.instance()

	b := e.browser()
	b.login("/web", e.admin())
	if resp := b.api(http.MethodGet, second+"/web/api/orders/1"); resp.StatusCode != http.StatusOK {
		t.Fatalf("API through the cluster: %d %s", resp.StatusCode, readBody(resp))
	}
	before := e.session("web", b.cookie("bff-web").Value).AccessToken
	waitUntilDue()
	if resp := b.api(http.MethodGet, "/web/api/orders/2"); resp.StatusCode != http.StatusOK {
		t.Fatalf("API after refresh: %d %s", resp.StatusCode, readBody(resp))
	}
	e.waitForRefresh(b.cookie("bff-web").Value, before)
	if got := grants.count("refresh_token"); got != 1 {
		t.Fatalf("refresh grants = %d, want 1", got)
	}

	// The session's keys are spread over the cluster's masters; find them.
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	defer cc.Close()
	countKeys := func() int64 {
		var n atomic.Int64 // ForEachMaster calls back concurrently
		_ = cc.ForEachMaster(context.Background(), func(ctx context.Context, m *redis.Client) error {
			keys, err := m.Keys(ctx, e.prefix+"*").Result()
			n.Add(int64(len(keys)))
			return err
		})
		return n.Load()
	}
	if countKeys() == 0 {
		t.Fatal("no session keys in the cluster")
	}

	other := e.browser()
	other.login("/web", e.admin())
	sub := b.subject()
	if resp := e.postLogoutToken("/web", e.sign(e.logoutClaims(sub), "logout+jwt")); resp.StatusCode != http.StatusOK {
		t.Fatalf("back-channel logout: %d %s", resp.StatusCode, readBody(resp))
	}
	errorCode(t, b.api(http.MethodGet, "/web/api/orders/1"), http.StatusUnauthorized, "unauthenticated")
	errorCode(t, other.api(http.MethodGet, second+"/web/api/orders/1"), http.StatusUnauthorized, "unauthenticated")

	third := e.browser()
	third.login("/web", plainUser)
	if resp := third.do(http.MethodPost, "/web/bff/logout", http.Header{"X-Csrf": {"1"}}, ""); resp.StatusCode != http.StatusFound {
		t.Fatalf("logout: %d %s", resp.StatusCode, readBody(resp))
	}
	errorCode(t, third.api(http.MethodGet, "/web/api/orders/1"), http.StatusUnauthorized, "unauthenticated")
}
