// Package redisstore is the sessions.Store (and sessions.Locker) over Redis,
// shared by every gateway instance. It takes a go-redis UniversalClient, so
// the same code runs on a single node, Sentinel and Redis Cluster: every
// command touches one key, so no command ever spans two hash slots. The
// index sets need Redis 7 (PEXPIRE NX and GT).
//
// redis.Nil maps to sessions.ErrNotFound (or ErrExists for SET NX); every
// other error is returned wrapped, never as ErrNotFound, because callers
// must tell "session gone" from "store down".
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bffgate/bffgate/sessions"
)

var (
	_ sessions.Store   = (*Store)(nil)
	_ sessions.Locker  = (*Store)(nil)
	_ sessions.Indexer = (*Store)(nil)
	_ sessions.Scanner = (*Store)(nil)
	_ sessions.Expirer = (*Store)(nil)
)

// renewScript extends a lock's lease only while it still holds the caller's
// token. KEYS[1] lock key; ARGV[1] token; ARGV[2] ttl in ms. Returns 1 or 0.
var renewScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 0
`)

// releaseScript deletes a lock only while it still holds the caller's token
// (compare-and-delete), so a holder whose lease expired cannot free the lock
// another instance took since. KEYS[1] lock key; ARGV[1] token.
var releaseScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("DEL", KEYS[1])
end
return 0
`)

// Store is a sessions.Store over Redis. The client stays the caller's: the
// store never closes it.
type Store struct {
	c redis.UniversalClient
}

// New returns a store over c (a *redis.Client, *redis.ClusterClient or a
// Sentinel-backed client).
func New(c redis.UniversalClient) *Store {
	return &Store{c: c}
}

func checkTTL(op string, ttl time.Duration) error {
	// Redis rejects PX 0, and go-redis would send a zero TTL as "no expiry".
	if ttl <= 0 {
		return fmt.Errorf("redis %s: ttl must be positive, got %v", op, ttl)
	}
	return nil
}

// Get reads value and remaining ttl in one round trip (GET + PTTL pipelined
// on the same key, hence the same slot).
func (s *Store) Get(ctx context.Context, key string) ([]byte, time.Duration, error) {
	pipe := s.c.Pipeline()
	get := pipe.Get(ctx, key)
	pttl := pipe.PTTL(ctx, key)
	// Exec reports the first failed command, and a missing key fails GET with
	// redis.Nil; the commands' own errors are what count.
	_, _ = pipe.Exec(ctx)
	value, err := get.Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, 0, sessions.ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("redis get: %w", err)
	}
	ttl, err := pttl.Result()
	if err != nil {
		return nil, 0, fmt.Errorf("redis pttl: %w", err)
	}
	switch {
	case ttl == -2:
		// Expired between GET and PTTL: it is gone now.
		return nil, 0, sessions.ErrNotFound
	case ttl < 0:
		// -1: no expiry. The stores never write such a key; report 0.
		ttl = 0
	}
	return value, ttl, nil
}

// Set writes value with ttl: SET PX, plus NX or XX for the conditional modes.
func (s *Store) Set(ctx context.Context, key string, value []byte, ttl time.Duration, mode sessions.SetMode) error {
	if err := checkTTL("set", ttl); err != nil {
		return err
	}
	args := redis.SetArgs{TTL: ttl}
	var unmet error // what a nil reply (condition not met) means
	switch mode {
	case sessions.Always:
	case sessions.IfAbsent:
		args.Mode, unmet = "NX", sessions.ErrExists
	case sessions.IfPresent:
		args.Mode, unmet = "XX", sessions.ErrNotFound
	default:
		return fmt.Errorf("redis set: unknown mode %d", mode)
	}
	err := s.c.SetArgs(ctx, key, value, args).Err()
	if errors.Is(err, redis.Nil) && unmet != nil {
		return unmet
	}
	if err != nil {
		return fmt.Errorf("redis set: %w", err)
	}
	return nil
}

// Expire sets a new ttl on an existing key (PEXPIRE).
func (s *Store) Expire(ctx context.Context, key string, ttl time.Duration) error {
	if err := checkTTL("pexpire", ttl); err != nil {
		return err
	}
	ok, err := s.c.PExpire(ctx, key, ttl).Result()
	if err != nil {
		return fmt.Errorf("redis pexpire: %w", err)
	}
	if !ok {
		return sessions.ErrNotFound
	}
	return nil
}

// Take returns the value and deletes the key atomically (GETDEL, Redis 6.2+).
func (s *Store) Take(ctx context.Context, key string) ([]byte, error) {
	value, err := s.c.GetDel(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, sessions.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("redis getdel: %w", err)
	}
	return value, nil
}

// Delete removes keys. Several keys are deleted by one DEL each in a pipeline
// rather than one multi-key DEL, which Redis Cluster refuses across slots; the
// cluster client routes each command to its node.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	switch len(keys) {
	case 0:
		return nil
	case 1:
		if err := s.c.Del(ctx, keys[0]).Err(); err != nil {
			return fmt.Errorf("redis del: %w", err)
		}
		return nil
	}
	pipe := s.c.Pipeline()
	for _, k := range keys {
		pipe.Del(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("redis del: %w", err)
	}
	return nil
}

// Ping reports whether Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis ping: %w", err)
	}
	return nil
}

// Acquire sets key to token with ttl only if absent (SET NX PX).
func (s *Store) Acquire(ctx context.Context, key, token string, ttl time.Duration) (bool, error) {
	if err := checkTTL("acquire", ttl); err != nil {
		return false, err
	}
	err := s.c.SetArgs(ctx, key, token, redis.SetArgs{Mode: "NX", TTL: ttl}).Err()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("redis acquire: %w", err)
	}
	return true, nil
}

// Renew extends the lease while key still holds token.
func (s *Store) Renew(ctx context.Context, key, token string, ttl time.Duration) (bool, error) {
	if err := checkTTL("renew", ttl); err != nil {
		return false, err
	}
	ms := max(ttl.Milliseconds(), 1)
	n, err := renewScript.Run(ctx, s.c, []string{key}, token, ms).Int64()
	if err != nil {
		return false, fmt.Errorf("redis renew: %w", err)
	}
	return n == 1, nil
}

// Release deletes key while it still holds token.
func (s *Store) Release(ctx context.Context, key, token string) error {
	if err := releaseScript.Run(ctx, s.c, []string{key}, token).Err(); err != nil {
		return fmt.Errorf("redis release: %w", err)
	}
	return nil
}

// AddToSet adds member to the set at key and makes the set live at least ttl:
// SADD, PEXPIRE NX (a new set gets ttl) and PEXPIRE GT (an existing one only
// grows), in one MULTI/EXEC on one key, so no set is ever left without an
// expiry.
func (s *Store) AddToSet(ctx context.Context, key, member string, ttl time.Duration) error {
	if err := checkTTL("sadd", ttl); err != nil {
		return err
	}
	ms := max(ttl.Milliseconds(), 1)
	_, err := s.c.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.SAdd(ctx, key, member)
		pipe.Do(ctx, "pexpire", key, ms, "nx")
		pipe.Do(ctx, "pexpire", key, ms, "gt")
		return nil
	})
	if err != nil {
		return fmt.Errorf("redis sadd: %w", err)
	}
	return nil
}

// Members returns the set's members (SMEMBERS); none when it is absent.
func (s *Store) Members(ctx context.Context, key string) ([]string, error) {
	members, err := s.c.SMembers(ctx, key).Result()
	if err != nil {
		return nil, fmt.Errorf("redis smembers: %w", err)
	}
	return members, nil
}

// RemoveFromSet removes members (SREM); Redis deletes a set left empty.
func (s *Store) RemoveFromSet(ctx context.Context, key string, members ...string) error {
	if len(members) == 0 {
		return nil
	}
	args := make([]any, len(members))
	for i, m := range members {
		args[i] = m
	}
	if err := s.c.SRem(ctx, key, args...).Err(); err != nil {
		return fmt.Errorf("redis srem: %w", err)
	}
	return nil
}

// Schedule puts member in the sorted set at key with score at (Unix ms):
// ZADD, PEXPIRE NX and PEXPIRE GT in one MULTI/EXEC, as AddToSet does, so
// the schedule never lives without an expiry nor shorter than keep.
func (s *Store) Schedule(ctx context.Context, key, member string, at time.Time, keep time.Duration) error {
	if err := checkTTL("zadd", keep); err != nil {
		return err
	}
	ms := max(keep.Milliseconds(), 1)
	_, err := s.c.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.ZAdd(ctx, key, redis.Z{Score: float64(at.UnixMilli()), Member: member})
		pipe.Do(ctx, "pexpire", key, ms, "nx")
		pipe.Do(ctx, "pexpire", key, ms, "gt")
		return nil
	})
	if err != nil {
		return fmt.Errorf("redis zadd: %w", err)
	}
	return nil
}

// Due returns the members scored at or before until (ZRANGE BYSCORE LIMIT).
func (s *Store) Due(ctx context.Context, key string, until time.Time, limit int) ([]string, error) {
	members, err := s.c.ZRangeByScore(ctx, key, &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(until.UnixMilli(), 10), Count: int64(limit),
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("redis zrangebyscore: %w", err)
	}
	return members, nil
}

// Unschedule removes member (ZREM); its reply count says whether this call
// removed it, which is what makes one instance of many the one to report.
func (s *Store) Unschedule(ctx context.Context, key, member string) (bool, error) {
	n, err := s.c.ZRem(ctx, key, member).Result()
	if err != nil {
		return false, fmt.Errorf("redis zrem: %w", err)
	}
	return n == 1, nil
}

// scanCount is the COUNT hint of each SCAN call.
const scanCount = 1000

// Scan walks the keys that start with prefix with SCAN MATCH (non-blocking;
// a key may come twice). On a cluster it walks every master, and fn is still
// called by one goroutine at a time.
func (s *Store) Scan(ctx context.Context, prefix string, fn func(key string) error) error {
	match := escapeGlob(prefix) + "*"
	cc, ok := s.c.(*redis.ClusterClient)
	if !ok {
		return scanNode(ctx, s.c, prefix, match, fn)
	}
	// ForEachMaster walks the masters concurrently: fn is serialized, and
	// once it fails it is not called again and its error is the result.
	var (
		mu      sync.Mutex
		stopped error
	)
	serial := func(key string) error {
		mu.Lock()
		defer mu.Unlock()
		if stopped != nil {
			return stopped
		}
		if err := fn(key); err != nil {
			stopped = err
			return err
		}
		return nil
	}
	err := cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		return scanNode(ctx, node, prefix, match, serial)
	})
	mu.Lock()
	defer mu.Unlock()
	if stopped != nil {
		return stopped
	}
	return err
}

func scanNode(ctx context.Context, c redis.Cmdable, prefix, match string, fn func(string) error) error {
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, match, scanCount).Result()
		if err != nil {
			return fmt.Errorf("redis scan: %w", err)
		}
		for _, k := range keys {
			// MATCH already filtered; this guards against a glob surprise.
			if !strings.HasPrefix(k, prefix) {
				continue
			}
			if err := fn(k); err != nil {
				return err
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// escapeGlob makes s match itself literally in a Redis glob pattern.
func escapeGlob(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ { // bytes: a prefix need not be UTF-8
		switch s[i] {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
