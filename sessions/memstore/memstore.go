// Package memstore is the in-memory sessions.Store (and sessions.Locker) for a
// single process: the demo and development. Sessions do not survive a restart
// and are not shared between instances; production uses redisstore.
//
// Keys expire lazily when touched, and an amortised sweep on writes drops the
// rest, so there is no background goroutine to stop.
package memstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/bffgate/bffgate/sessions"
)

var (
	_ sessions.Store   = (*Store)(nil)
	_ sessions.Locker  = (*Store)(nil)
	_ sessions.Indexer = (*Store)(nil)
	_ sessions.Scanner = (*Store)(nil)
)

// errWrongType is what Redis calls WRONGTYPE: a value operation on a set, or
// the other way round.
var errWrongType = errors.New("memstore: operation against a key holding the wrong kind of value")

// minSweepWrites is the fewest writes between two sweeps, so that a small map
// is not rescanned on every write.
const minSweepWrites = 64

// entry is a value or, when set is non-nil, a set of members.
type entry struct {
	value   []byte
	set     map[string]struct{}
	expires time.Time
}

// Store is a goroutine-safe in-memory key-value store with expiry.
type Store struct {
	// Now is the clock (nil: time.Now). Set it before first use; tests use it
	// to step over TTLs without sleeping.
	Now func() time.Time

	mu     sync.Mutex
	data   map[string]entry
	writes int // since the last sweep
}

// New returns an empty store.
func New() *Store {
	return &Store{data: make(map[string]entry)}
}

func (s *Store) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// lookup returns the live entry under key, dropping it when expired.
// s.mu must be held.
func (s *Store) lookup(key string, now time.Time) (entry, bool) {
	e, ok := s.data[key]
	if !ok {
		return entry{}, false
	}
	if !now.Before(e.expires) {
		delete(s.data, key)
		return entry{}, false
	}
	return e, true
}

// lookupValue returns the live value entry under key: ErrNotFound when there
// is none, errWrongType when key holds a set. s.mu must be held.
func (s *Store) lookupValue(key string, now time.Time) (entry, error) {
	e, ok := s.lookup(key, now)
	if !ok {
		return entry{}, sessions.ErrNotFound
	}
	if e.set != nil {
		return entry{}, errWrongType
	}
	return e, nil
}

// lookupSet returns the live set under key, nil when there is none, and
// errWrongType when key holds a value. s.mu must be held.
func (s *Store) lookupSet(key string, now time.Time) (map[string]struct{}, error) {
	e, ok := s.lookup(key, now)
	if !ok {
		return nil, nil
	}
	if e.set == nil {
		return nil, errWrongType
	}
	return e.set, nil
}

// put stores a copy of value and sweeps expired keys once the writes since
// the last sweep reach half the map's size. A write adds at most one key, so
// the map never grows past twice what the previous sweep left, and each
// O(keys) sweep follows at least keys/2 writes: O(1) amortised per write.
// s.mu must be held.
func (s *Store) put(key string, value []byte, expires time.Time, now time.Time) {
	s.putEntry(key, entry{value: bytes.Clone(value), expires: expires}, now)
}

// putEntry stores e (which the caller owns no more) and sweeps as put says.
// s.mu must be held.
func (s *Store) putEntry(key string, e entry, now time.Time) {
	s.data[key] = e
	s.writes++
	if s.writes < minSweepWrites || 2*s.writes < len(s.data) {
		return
	}
	s.writes = 0
	for k, e := range s.data {
		if !now.Before(e.expires) {
			delete(s.data, k)
		}
	}
}

func checkTTL(ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("memstore: ttl must be positive, got %v", ttl)
	}
	return nil
}

// Get returns a copy of the value and its remaining time to live.
func (s *Store) Get(ctx context.Context, key string) ([]byte, time.Duration, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, fmt.Errorf("memstore get: %w", err)
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.lookupValue(key, now)
	if err != nil {
		return nil, 0, err
	}
	return bytes.Clone(e.value), e.expires.Sub(now), nil
}

// Set writes value with ttl under mode's condition.
func (s *Store) Set(ctx context.Context, key string, value []byte, ttl time.Duration, mode sessions.SetMode) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore set: %w", err)
	}
	if err := checkTTL(ttl); err != nil {
		return err
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	_, exists := s.lookup(key, now)
	switch mode {
	case sessions.Always:
	case sessions.IfAbsent:
		if exists {
			return sessions.ErrExists
		}
	case sessions.IfPresent:
		if !exists {
			return sessions.ErrNotFound
		}
	default:
		return fmt.Errorf("memstore set: unknown mode %d", mode)
	}
	s.put(key, value, now.Add(ttl), now)
	return nil
}

// Expire gives an existing key a new ttl.
func (s *Store) Expire(ctx context.Context, key string, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore expire: %w", err)
	}
	if err := checkTTL(ttl); err != nil {
		return err
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.lookup(key, now)
	if !ok {
		return sessions.ErrNotFound
	}
	e.expires = now.Add(ttl)
	s.data[key] = e
	return nil
}

// Take returns the value and deletes the key in one step.
func (s *Store) Take(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memstore take: %w", err)
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.lookupValue(key, now)
	if err != nil {
		return nil, err
	}
	delete(s.data, key)
	// The entry left the map, so its slice can be handed out without a copy.
	return e.value, nil
}

// Delete removes keys; absent keys are not an error.
func (s *Store) Delete(ctx context.Context, keys ...string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore delete: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		delete(s.data, k)
	}
	return nil
}

// Ping always answers unless ctx is done: memory is always there.
func (s *Store) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore ping: %w", err)
	}
	return nil
}

// Acquire sets key to token with ttl only if key is absent.
func (s *Store) Acquire(ctx context.Context, key, token string, ttl time.Duration) (bool, error) {
	err := s.Set(ctx, key, []byte(token), ttl, sessions.IfAbsent)
	switch err {
	case nil:
		return true, nil
	case sessions.ErrExists:
		return false, nil
	default:
		return false, err
	}
}

// Renew extends the lease while key still holds token.
func (s *Store) Renew(ctx context.Context, key, token string, ttl time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, fmt.Errorf("memstore renew: %w", err)
	}
	if err := checkTTL(ttl); err != nil {
		return false, err
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.lookup(key, now)
	if !ok || e.set != nil || string(e.value) != token {
		return false, nil
	}
	e.expires = now.Add(ttl)
	s.data[key] = e
	return true, nil
}

// Release deletes key while it still holds token, so an instance whose lease
// ran out cannot free the lock another instance now holds.
func (s *Store) Release(ctx context.Context, key, token string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore release: %w", err)
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.lookup(key, now); ok && e.set == nil && string(e.value) == token {
		delete(s.data, key)
	}
	return nil
}

// AddToSet adds member to the set at key; the set then lives at least ttl
// from now (its expiry never shrinks).
func (s *Store) AddToSet(ctx context.Context, key, member string, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore add to set: %w", err)
	}
	if err := checkTTL(ttl); err != nil {
		return err
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.lookup(key, now)
	switch {
	case !ok:
		e = entry{set: make(map[string]struct{}, 1), expires: now.Add(ttl)}
	case e.set == nil:
		return errWrongType
	default:
		e.expires = later(e.expires, now.Add(ttl))
	}
	e.set[member] = struct{}{}
	s.putEntry(key, e, now)
	return nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Members returns the set's members, sorted; none when the set is absent.
func (s *Store) Members(ctx context.Context, key string) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memstore members: %w", err)
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	set, err := s.lookupSet(key, now)
	if err != nil || set == nil {
		return nil, err
	}
	out := make([]string, 0, len(set))
	for m := range set {
		out = append(out, m)
	}
	slices.Sort(out)
	return out, nil
}

// RemoveFromSet removes members; a set left empty is deleted, as in Redis.
func (s *Store) RemoveFromSet(ctx context.Context, key string, members ...string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore remove from set: %w", err)
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	set, err := s.lookupSet(key, now)
	if err != nil || set == nil {
		return err
	}
	for _, m := range members {
		delete(set, m)
	}
	if len(set) == 0 {
		delete(s.data, key)
	}
	return nil
}

// Scan calls fn with every live key that starts with prefix, sorted. The keys
// are collected first, so fn may use the store.
func (s *Store) Scan(ctx context.Context, prefix string, fn func(key string) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstore scan: %w", err)
	}
	now := s.now()
	s.mu.Lock()
	var keys []string
	for k, e := range s.data {
		if strings.HasPrefix(k, prefix) && now.Before(e.expires) {
			keys = append(keys, k)
		}
	}
	s.mu.Unlock()
	slices.Sort(keys)
	for _, k := range keys {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("memstore scan: %w", err)
		}
		if err := fn(k); err != nil {
			return err
		}
	}
	return nil
}
