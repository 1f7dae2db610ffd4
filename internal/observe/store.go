package observe

import (
	"context"
	"errors"
	"time"

	"github.com/bffgate/bffgate/sessions"
)

// LockingStore is what the gateway needs of a concrete store.
type LockingStore interface {
	sessions.Store
	sessions.Locker
}

// InstrumentStore wraps s so that every call is counted and timed in m. The
// result implements sessions.Store and sessions.Locker, and also
// sessions.Indexer, sessions.Scanner and sessions.Expirer when s does: the Manager
// discovers those by type assertion, so hiding one would silently switch a
// feature off.
func InstrumentStore(s LockingStore, m *Metrics) LockingStore {
	base := &instrumentedStore{s: s, m: m}
	idx, isIdx := s.(sessions.Indexer)
	scan, isScan := s.(sessions.Scanner)
	// Only the Redis store keeps an expiry schedule, and it is also an
	// Indexer and a Scanner.
	exp, isExp := s.(sessions.Expirer)
	switch {
	case isIdx && isScan && isExp:
		return &struct {
			*instrumentedStore
			instrumentedIndexer
			instrumentedScanner
			instrumentedExpirer
		}{base, instrumentedIndexer{idx, m}, instrumentedScanner{scan, m}, instrumentedExpirer{exp, m}}
	case isIdx && isScan:
		return &struct {
			*instrumentedStore
			instrumentedIndexer
			instrumentedScanner
		}{base, instrumentedIndexer{idx, m}, instrumentedScanner{scan, m}}
	case isIdx:
		return &struct {
			*instrumentedStore
			instrumentedIndexer
		}{base, instrumentedIndexer{idx, m}}
	case isScan:
		return &struct {
			*instrumentedStore
			instrumentedScanner
		}{base, instrumentedScanner{scan, m}}
	}
	return base
}

// storeOp records one store call that started at start and returned err.
func (m *Metrics) storeOp(op *opMetrics, start time.Time, err error) {
	result := resultOK
	switch {
	case err == nil:
	case errors.Is(err, sessions.ErrNotFound):
		result = resultNotFound
	case errors.Is(err, sessions.ErrExists):
		result = resultExists
	case errors.Is(err, context.Canceled):
		result = resultCanceled // the client went away: not the store's fault
	default:
		result = resultError
	}
	op.count(m, result).Inc()
	op.time(m).Observe(time.Since(start).Seconds())
}

type instrumentedStore struct {
	s LockingStore
	m *Metrics
}

func (i *instrumentedStore) Get(ctx context.Context, key string) ([]byte, time.Duration, error) {
	start := time.Now()
	v, ttl, err := i.s.Get(ctx, key)
	i.m.storeOp(&i.m.store.get, start, err)
	return v, ttl, err
}

func (i *instrumentedStore) Set(ctx context.Context, key string, value []byte, ttl time.Duration, mode sessions.SetMode) error {
	start := time.Now()
	err := i.s.Set(ctx, key, value, ttl, mode)
	i.m.storeOp(&i.m.store.set, start, err)
	return err
}

func (i *instrumentedStore) Expire(ctx context.Context, key string, ttl time.Duration) error {
	start := time.Now()
	err := i.s.Expire(ctx, key, ttl)
	i.m.storeOp(&i.m.store.expire, start, err)
	return err
}

func (i *instrumentedStore) Take(ctx context.Context, key string) ([]byte, error) {
	start := time.Now()
	v, err := i.s.Take(ctx, key)
	i.m.storeOp(&i.m.store.take, start, err)
	return v, err
}

func (i *instrumentedStore) Delete(ctx context.Context, keys ...string) error {
	start := time.Now()
	err := i.s.Delete(ctx, keys...)
	i.m.storeOp(&i.m.store.delete, start, err)
	return err
}

func (i *instrumentedStore) Ping(ctx context.Context) error {
	start := time.Now()
	err := i.s.Ping(ctx)
	i.m.storeOp(&i.m.store.ping, start, err)
	return err
}

func (i *instrumentedStore) Acquire(ctx context.Context, key, token string, ttl time.Duration) (bool, error) {
	start := time.Now()
	ok, err := i.s.Acquire(ctx, key, token, ttl)
	i.m.storeOp(&i.m.store.acquire, start, err)
	return ok, err
}

func (i *instrumentedStore) Renew(ctx context.Context, key, token string, ttl time.Duration) (bool, error) {
	start := time.Now()
	ok, err := i.s.Renew(ctx, key, token, ttl)
	i.m.storeOp(&i.m.store.renew, start, err)
	return ok, err
}

func (i *instrumentedStore) Release(ctx context.Context, key, token string) error {
	start := time.Now()
	err := i.s.Release(ctx, key, token)
	i.m.storeOp(&i.m.store.release, start, err)
	return err
}

type instrumentedIndexer struct {
	i sessions.Indexer
	m *Metrics
}

func (x instrumentedIndexer) AddToSet(ctx context.Context, key, member string, ttl time.Duration) error {
	start := time.Now()
	err := x.i.AddToSet(ctx, key, member, ttl)
	x.m.storeOp(&x.m.store.addToSet, start, err)
	return err
}

func (x instrumentedIndexer) Members(ctx context.Context, key string) ([]string, error) {
	start := time.Now()
	v, err := x.i.Members(ctx, key)
	x.m.storeOp(&x.m.store.members, start, err)
	return v, err
}

func (x instrumentedIndexer) RemoveFromSet(ctx context.Context, key string, members ...string) error {
	start := time.Now()
	err := x.i.RemoveFromSet(ctx, key, members...)
	x.m.storeOp(&x.m.store.removeFromSet, start, err)
	return err
}

type instrumentedScanner struct {
	s sessions.Scanner
	m *Metrics
}

// Scan times the whole walk, fn's work included; an error of fn's own is
// not counted as a store error.
func (x instrumentedScanner) Scan(ctx context.Context, prefix string, fn func(key string) error) error {
	start := time.Now()
	var fnErr error
	err := x.s.Scan(ctx, prefix, func(key string) error {
		fnErr = fn(key)
		return fnErr
	})
	counted := err
	if fnErr != nil && errors.Is(err, fnErr) {
		counted = nil
	}
	x.m.storeOp(&x.m.store.scan, start, counted)
	return err
}

type instrumentedExpirer struct {
	e sessions.Expirer
	m *Metrics
}

func (x instrumentedExpirer) Schedule(ctx context.Context, key, member string, at time.Time, keep time.Duration) error {
	start := time.Now()
	err := x.e.Schedule(ctx, key, member, at, keep)
	x.m.storeOp(&x.m.store.schedule, start, err)
	return err
}

func (x instrumentedExpirer) Due(ctx context.Context, key string, until time.Time, limit int) ([]string, error) {
	start := time.Now()
	v, err := x.e.Due(ctx, key, until, limit)
	x.m.storeOp(&x.m.store.due, start, err)
	return v, err
}

func (x instrumentedExpirer) Unschedule(ctx context.Context, key, member string) (bool, error) {
	start := time.Now()
	ok, err := x.e.Unschedule(ctx, key, member)
	x.m.storeOp(&x.m.store.unschedule, start, err)
	return ok, err
}
