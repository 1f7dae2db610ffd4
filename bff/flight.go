package bff

import (
	"context"
	"sync"
	"time"
)

// The discipline every grant that spends or fetches a token at the provider
// follows (refresh, client credentials, and token exchange when it comes):
//
//   - the work runs detached from the request that caused it (flights), so
//     a client that goes away never abandons a request the provider may
//     already have processed;
//   - across instances one store lock makes one instance do it (holdLock),
//     its lease renewed while the work runs, and the others poll the store
//     with a short back-off (pollBackoff) instead of a fixed interval;
//   - a transient failure backs off 1 s doubling to 30 s (nextBackoff),
//     with the state kept in the store so that every instance honours it.

const (
	// lockLease is how long a lock lives without renewal. It is renewed
	// every lockLease/3 while its holder works, so a provider slower than
	// the lease (provider_timeout may be 30s or more) keeps it: the lock is
	// lost only if renewals fail for two thirds of a lease in a row, or
	// when its holder dies, and then it frees itself within one lease.
	lockLease = 10 * time.Second

	minBackoff = time.Second
	maxBackoff = 30 * time.Second

	// expiredWait is how long a request whose token has expired waits for
	// the refresh it needs before the answer is 503 provider_unavailable;
	// the refresh goes on without it.
	expiredWait = 800 * time.Millisecond

	// pollFirst and pollMax bound the back-off of an instance waiting for
	// another's lock: quick to notice a fast refresh, and no more than a
	// few store reads per second on a slow one.
	pollFirst = 10 * time.Millisecond
	pollMax   = 250 * time.Millisecond

	// saveTimeout bounds writing what the provider answered: the provider
	// has already acted, so this write must not share a nearly spent
	// deadline.
	saveTimeout = 5 * time.Second
)

// nextBackoff is the step after prev: 1s, 2s, 4s ... 30s.
func nextBackoff(prev time.Duration) time.Duration {
	return min(max(2*prev, minBackoff), maxBackoff)
}

// pollBackoff returns the wait after prev in a lock-waiting loop.
func pollBackoff(prev time.Duration) time.Duration {
	return min(max(2*prev, pollFirst), pollMax)
}

// flight is one piece of detached work that many requests may wait for.
type flight[T any] struct {
	done chan struct{}
	val  T
	err  error
}

// wait returns the outcome once the work ends, or ok=false when d passes
// or ctx ends first (the work goes on).
func (f *flight[T]) wait(ctx context.Context, d time.Duration) (val T, err error, ok bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-f.done:
		return f.val, f.err, true
	case <-t.C:
	case <-ctx.Done():
	}
	return val, nil, false
}

// flights runs at most one piece of work per key in this process.
type flights[T any] struct {
	mu sync.Mutex
	m  map[string]*flight[T]
}

// start returns the flight running for key, starting work in its own
// goroutine when none runs; started reports which.
func (fs *flights[T]) start(key string, work func() (T, error)) (f *flight[T], started bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if f, ok := fs.m[key]; ok {
		return f, false
	}
	if fs.m == nil {
		fs.m = map[string]*flight[T]{}
	}
	f = &flight[T]{done: make(chan struct{})}
	fs.m[key] = f
	go func() {
		f.val, f.err = work()
		fs.mu.Lock()
		delete(fs.m, key)
		fs.mu.Unlock()
		close(f.done)
	}()
	return f, true
}

// holdLock takes the store lock key. When ok, its lease is renewed until
// release is called; release then deletes it (compare-and-delete), even
// when ctx has ended.
func (b *BFF) holdLock(ctx context.Context, key string) (release func(), ok bool, err error) {
	locker := b.deps.Locker
	token := randomString(16)
	ok, err = locker.Acquire(ctx, key, token, lockLease)
	if err != nil || !ok {
		return nil, ok, err
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(lockLease / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), lockLease/3)
				ok, err := locker.Renew(rctx, key, token, lockLease)
				cancel()
				if err != nil || !ok {
					b.log.Warn("token lock lease not renewed; another instance may take over once it lapses", "error", err, "held", ok)
				}
			}
		}
	}()
	return func() {
		close(stop)
		wg.Wait()
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		if err := locker.Release(rctx, key, token); err != nil {
			b.log.Warn("token lock release failed; it expires by itself", "error", err)
		}
	}, true, nil
}

// hasLocker reports whether work must be coordinated across instances.
func (b *BFF) hasLocker() bool { return b.deps.Locker != nil }
