package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/bffgate/bffgate/config"
)

// sentinelMasters asks each sentinel of sessions.redis.addrs which node is
// the master, for the session cache (cache.Options.MasterAddrs): go-redis
// keeps that knowledge to itself, and moves its pooled connections but not
// the cache's subscriber when the master changes.
type sentinelMasters struct {
	name    string
	clients []*redis.SentinelClient
}

// newSentinelMasters connects like the go-redis failover client connects to
// its sentinels: same timeouts, TLS and sentinel credentials, and no
// retries: the next check comes soon enough.
func newSentinelMasters(rc config.Redis) (*sentinelMasters, error) {
	o, err := redisOptions(rc)
	if err != nil {
		return nil, err
	}
	m := &sentinelMasters{name: rc.MasterName}
	for _, addr := range o.Addrs {
		m.clients = append(m.clients, redis.NewSentinelClient(&redis.Options{
			Addr:         addr,
			Username:     o.SentinelUsername,
			Password:     o.SentinelPassword,
			DialTimeout:  o.DialTimeout,
			ReadTimeout:  o.ReadTimeout,
			WriteTimeout: o.WriteTimeout,
			TLSConfig:    o.TLSConfig,
			MaxRetries:   -1,
			PoolSize:     1,
		}))
	}
	return m, nil
}

// addrs returns the master as each sentinel that answered names it, asking
// them all at once; an error only when none answered.
func (m *sentinelMasters) addrs(ctx context.Context) ([]string, error) {
	names := make([]string, len(m.clients))
	errs := make([]error, len(m.clients))
	var wg sync.WaitGroup
	for i, c := range m.clients {
		wg.Go(func() {
			v, err := c.GetMasterAddrByName(ctx, m.name).Result()
			switch {
			case err != nil:
				errs[i] = fmt.Errorf("sentinel %s: %w", c, err)
			case len(v) != 2:
				errs[i] = fmt.Errorf("sentinel %s: master %q: unexpected answer %q", c, m.name, v)
			default:
				names[i] = net.JoinHostPort(v[0], v[1])
			}
		})
	}
	wg.Wait()
	var out []string
	for _, n := range names {
		if n != "" {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no sentinel named master %q: %w", m.name, errors.Join(errs...))
	}
	return out, nil
}

func (m *sentinelMasters) close() {
	for _, c := range m.clients {
		_ = c.Close()
	}
}
