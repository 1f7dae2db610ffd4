// Package redisstore is the sessions.Store (and sessions.Locker) over Redis,
// shared by every gateway instance. It takes a go-redis UniversalClient, so
// the same code runs on a single node, Sentinel and Redis Cluster: every
// command touches one key, so no command ever spans two hash slots.
//
// redis.Nil maps to sessions.ErrNotFound (or ErrExists for SET NX); every
// other error is returned wrapped, never as ErrNotFound, because callers
// must tell "session gone" from "store down".
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/bffgate/bffgate/sessions"
)

var (
	_ sessions.Store  = (*Store)(nil)
	_ sessions.Locker = (*Store)(nil)
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
