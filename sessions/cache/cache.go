// Package cache keeps recently read session records in process, in front of
// the shared Redis store, so that a request on a busy session costs no Redis
// round trip. It is a decorator: a *Cache is itself a sessions.Store (and
// Locker, Indexer, Scanner), and every write goes through to Redis.
//
// Revocation stays immediate. Every write or end of a cached key (Set,
// Expire, Take, Delete, and the lock operations) is followed by a PUBLISH of
// the key on one channel; every instance subscribes and drops the key when
// the message arrives. Nothing is ever dropped by a blind TTL alone: an
// entry also dies at the store expiry it had when it was read (the idle or
// absolute timeout), measured on this process's monotonic clock.
//
// A lost channel must never let a stale entry be served, so entries are
// served only under a lease that the channel itself renews:
//
//   - the subscriber connection carries a PING every Heartbeat, and entries
//     are served only while the last PING answered was sent less than
//     MaxSilence ago. A PONG comes after every message published before the
//     PING was processed, so at that moment every earlier invalidation has
//     been applied; a channel that dies silently stops the lease within
//     MaxSilence (75ms by default), whatever the cause;
//   - any error on the connection, any (re)subscription and any break in
//     the chain of leases empties the cache, because messages published
//     meanwhile are lost for good;
//   - a read that misses is put in the cache only if no invalidation of
//     that key, no loss and no resubscription happened between the moment
//     the read was sent and the insert, so a write that raced the read
//     (its message arriving before the reply was stored) is not undone.
//
// While the lease is out the cache is bypassed: reads go to Redis, nothing
// is stored. So between a loss and the next subscription nothing cached is
// served, and nothing read meanwhile survives it.
//
// Entries hold the record exactly as Redis holds it (encrypted with the data
// key only the cookie carries) and its expiry; nothing else. On Redis
// Cluster a plain PUBLISH reaches the subscribers of every node, so the one
// channel works there too.
//
// On Sentinel a failover that leaves the old master up (SENTINEL FAILOVER,
// a partition) cuts nothing: the subscriber stays on the old master, whose
// PONGs keep coming, while writes go to the new one, until Sentinel turns
// the old master into a replica and kills its subscribers (seconds later).
// go-redis moves its pooled connections on +switch-master but not pub/sub
// ones. So with Options.MasterAddrs the subscriber asks the sentinels every
// masterCheck which node is the master, serves only while every sentinel
// that answers names the node it is subscribed to, and drops the
// connection (emptying the cache) when they name another.
package cache

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/redis/go-redis/v9"

	"github.com/bffgate/bffgate/sessions"
)

// Backend is what the cache decorates: the Redis store.
type Backend interface {
	sessions.Store
	sessions.Locker
	sessions.Indexer
	sessions.Scanner
	sessions.Expirer
}

var _ Backend = (*Cache)(nil)

// Defaults of Options.
const (
	DefaultMaxEntries = 10000
	DefaultHeartbeat  = 20 * time.Millisecond
	DefaultMaxSilence = 75 * time.Millisecond
	// publishTimeout bounds the PUBLISH after a write; it runs even when the
	// request that wrote has gone, since the write happened.
	publishTimeout = 2 * time.Second
	// reconnectAfter: a subscriber connection silent for this long (no PONG)
	// is closed and opened again, in case it is half-open.
	reconnectAfter = time.Second
	maxBackoff     = time.Second
	buckets        = 256
	// masterCheck is how often the sentinels are asked for the master
	// (Options.MasterAddrs); an answer that agrees lets the lease run for
	// masterValidity from the moment it was asked, so that a slow or
	// unreachable Sentinel stops the cache instead of leaving it unchecked.
	masterCheck    = 100 * time.Millisecond
	masterValidity = time.Second
)

// Channel is the invalidation channel of the stores under keyPrefix (the
// Manager's Options.KeyPrefix): every process that writes sessions under
// that prefix publishes there.
func Channel(keyPrefix string) string { return keyPrefix + "invalidate" }

// Options configures a Cache. Prefix and Channel are required.
type Options struct {
	// Prefix selects the keys that are cached (and published on write): the
	// session records, sessions.Manager.SessionKeyPrefix(). Other keys pass
	// straight through. "" caches every key read with Get.
	Prefix string
	// Channel is the pub/sub channel of invalidations; every instance that
	// shares the store must use the same one (key_prefix + "invalidate").
	Channel string
	// MaxEntries bounds the cache (least recently used entries go first).
	// Zero means DefaultMaxEntries. A record is ~2 KB, so the default holds
	// about 20 MB.
	MaxEntries int
	// Heartbeat is how often the subscriber connection is PINGed; zero
	// means DefaultHeartbeat.
	Heartbeat time.Duration
	// MaxSilence: entries are served only while the last PING answered was
	// sent less than this long ago. Zero means DefaultMaxSilence. It bounds
	// how long a channel that dies without an error could go unnoticed.
	MaxSilence time.Duration
	// Logger reports channel losses and resubscriptions; nil discards.
	Logger *slog.Logger
	// MasterAddrs, for a client that follows a Sentinel master, returns the
	// master's address (host:port) as named by each sentinel that answered;
	// an error when none did. Entries are served only while every answer
	// names the node the subscriber is connected to (see the package
	// comment). Nil: no such check (one node, Cluster).
	MasterAddrs func(context.Context) ([]string, error)
}

// entry is one cached record: the value as Redis holds it and when it
// expires there (monotonic nanoseconds since the cache started).
type entry struct {
	value   []byte
	expires int64
}

// Stats counts what the cache did, for tests, metrics and benchmarks.
type Stats struct {
	Hits, Misses, Bypassed        uint64 // reads served, read through and inserted if allowed, read through while bypassed
	Invalidations, Published      uint64 // messages applied, messages sent
	Losses, Subscriptions, Purges uint64 // channel losses, confirmed subscriptions, emptyings
	Entries                       int
}

// Cache is a sessions.Store decorator; see the package comment. Close stops
// its subscriber.
type Cache struct {
	inner  Backend
	client redis.UniversalClient
	opt    Options
	log    *slog.Logger
	start  time.Time // monotonic origin of every time the cache keeps
	seed   maphash.Seed

	lru *lru.Cache[string, entry] // nil: publish only, cache nothing

	// mu orders inserts against invalidations and purges: an insert checks
	// that no generation it read has moved, and adds, as one step.
	mu sync.Mutex
	// global moves on every loss, subscription and purge; gen[b] on every
	// invalidation of a key of bucket b. A miss remembers both before its
	// read and inserts only if neither moved.
	global atomic.Uint64
	gen    [buckets]atomic.Uint64
	// lease: entries may be served while mono() < lease. Written under mu.
	lease atomic.Int64
	// subscribed: the current subscriber connection confirmed its
	// subscription and has not failed since; only then do PONGs renew the
	// lease. Guarded by mu.
	subscribed bool
	// sub is the client the subscriber uses: its own, built from the
	// caller's options, so that it can watch its connections (see
	// watchedConn); the caller's client when that cannot be done.
	sub    redis.UniversalClient
	ownSub bool
	// subAddr is the remote address of the subscriber's newest connection.
	subAddr atomic.Pointer[string]
	// With MasterAddrs: the lease may not run past checkedUntil, set by a
	// check that found the subscriber on the master; 0 until one did since
	// the last (re)subscription or loss, which move conns. Guarded by mu.
	checkedUntil int64
	conns        uint64

	hits, misses, bypassed, invalidations, published atomic.Uint64
	losses, subscriptions, purges                    atomic.Uint64

	cancel context.CancelFunc
	done   chan struct{}
}

func (o *Options) defaults() error {
	if o.Channel == "" {
		return errors.New("cache: empty Channel")
	}
	if o.MaxEntries < 0 || o.Heartbeat < 0 || o.MaxSilence < 0 {
		return errors.New("cache: negative MaxEntries, Heartbeat or MaxSilence")
	}
	if o.MaxEntries == 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	if o.Heartbeat == 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	if o.MaxSilence == 0 {
		o.MaxSilence = DefaultMaxSilence
	}
	if o.MaxSilence <= o.Heartbeat {
		return fmt.Errorf("cache: MaxSilence %v must exceed Heartbeat %v", o.MaxSilence, o.Heartbeat)
	}
	return nil
}

// New returns a cache over inner that subscribes with client (the client
// inner uses, or one to the same Redis) and runs until Close. It does not
// wait for the subscription: until it is confirmed every read goes to Redis.
func New(inner Backend, client redis.UniversalClient, opt Options) (*Cache, error) {
	c, err := newCache(inner, client, opt)
	if err != nil {
		return nil, err
	}
	l, err := lru.New[string, entry](c.opt.MaxEntries)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	c.lru = l
	c.sub, c.ownSub = subscriberClient(client, c.connLost, func(addr string) { c.subAddr.Store(&addr) })
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.done = make(chan struct{})
	go c.subscribe(ctx)
	return c, nil
}

// NewPublisher returns a decorator that caches nothing but publishes every
// write of a matching key, like New: for processes that change sessions
// without serving them (the operator CLI), so that serving instances drop
// what they cached.
func NewPublisher(inner Backend, client redis.UniversalClient, opt Options) (*Cache, error) {
	return newCache(inner, client, opt)
}

func newCache(inner Backend, client redis.UniversalClient, opt Options) (*Cache, error) {
	if inner == nil || client == nil {
		return nil, errors.New("cache: nil store or client")
	}
	if err := opt.defaults(); err != nil {
		return nil, err
	}
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	done := make(chan struct{})
	close(done) // reopened by New's subscriber
	return &Cache{inner: inner, client: client, opt: opt, log: log, start: time.Now(), seed: maphash.MakeSeed(), done: done}, nil
}

// Close stops the subscriber and empties the cache; the store and the
// client stay the caller's.
func (c *Cache) Close() error {
	if c.cancel != nil {
		c.cancel()
		<-c.done
	}
	if c.ownSub {
		_ = c.sub.Close()
	}
	if c.lru != nil {
		c.purge()
	}
	return nil
}

// Live reports whether cached entries may be served now (the channel is
// subscribed and its lease current).
func (c *Cache) Live() bool { return c.lru != nil && c.mono() < c.lease.Load() }

// Stats returns the counters so far.
func (c *Cache) Stats() Stats {
	s := Stats{
		Hits: c.hits.Load(), Misses: c.misses.Load(), Bypassed: c.bypassed.Load(),
		Invalidations: c.invalidations.Load(), Published: c.published.Load(),
		Losses: c.losses.Load(), Subscriptions: c.subscriptions.Load(), Purges: c.purges.Load(),
	}
	if c.lru != nil {
		s.Entries = c.lru.Len()
	}
	return s
}

func (c *Cache) mono() int64 { return int64(time.Since(c.start)) }

func (c *Cache) matches(key string) bool { return strings.HasPrefix(key, c.opt.Prefix) }

func (c *Cache) bucket(key string) *atomic.Uint64 {
	return &c.gen[maphash.String(c.seed, key)%buckets]
}

// Get serves a matching key from the cache while the lease holds, else reads
// Redis and keeps the answer if nothing invalidated it meanwhile. Absence is
// never cached: a session that is not there is looked up again.
func (c *Cache) Get(ctx context.Context, key string) ([]byte, time.Duration, error) {
	if c.lru == nil || !c.matches(key) || sessions.IsFreshRead(ctx) {
		return c.inner.Get(ctx, key)
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, err // as Redis would answer a cancelled request
	}
	b := c.bucket(key)
	global, gen := c.global.Load(), b.Load()
	now := c.mono()
	if now >= c.lease.Load() {
		c.bypassed.Add(1)
		sessions.ReportSource(ctx, sessions.SourceBypassed)
		return c.inner.Get(ctx, key)
	}
	if e, ok := c.lru.Get(key); ok {
		if ttl := time.Duration(e.expires - now); ttl > 0 {
			c.hits.Add(1)
			sessions.ReportSource(ctx, sessions.SourceCache)
			return bytes.Clone(e.value), ttl, nil
		}
		c.lru.Remove(key) // expired in Redis by now too
	}
	c.misses.Add(1)
	value, ttl, err := c.inner.Get(ctx, key)
	if err != nil || ttl <= 0 {
		return value, ttl, err
	}
	c.mu.Lock()
	if c.global.Load() == global && b.Load() == gen && c.mono() < c.lease.Load() {
		// now was taken before the read: the entry dies no later than the
		// key does in Redis.
		c.lru.Add(key, entry{value: bytes.Clone(value), expires: now + int64(ttl)})
	}
	c.mu.Unlock()
	return value, ttl, nil
}

// changed drops key here and tells every other instance to drop it. It runs
// after the write returned, whatever it returned: a write that timed out may
// still have been applied. A failed PUBLISH is an error of the write, since
// other instances may go on serving the old value.
func (c *Cache) changed(ctx context.Context, key string, err error) error {
	if !c.matches(key) {
		return err
	}
	c.invalidate(key)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishTimeout)
	defer cancel()
	if perr := c.client.Publish(ctx, c.opt.Channel, key).Err(); perr != nil {
		return errors.Join(err, fmt.Errorf("cache: publish invalidation: %w", perr))
	}
	c.published.Add(1)
	return err
}

// unchanged reports whether err says the write did not happen at all.
func unchanged(err error) bool {
	return errors.Is(err, sessions.ErrNotFound) || errors.Is(err, sessions.ErrExists)
}

// Set writes through and invalidates.
func (c *Cache) Set(ctx context.Context, key string, value []byte, ttl time.Duration, mode sessions.SetMode) error {
	err := c.inner.Set(ctx, key, value, ttl, mode)
	if unchanged(err) {
		return err
	}
	return c.changed(ctx, key, err)
}

// Expire writes through and invalidates, so a shortened expiry is seen
// everywhere (an extended one would be safe either way).
func (c *Cache) Expire(ctx context.Context, key string, ttl time.Duration) error {
	err := c.inner.Expire(ctx, key, ttl)
	if unchanged(err) {
		return err
	}
	return c.changed(ctx, key, err)
}

// Take deletes through and invalidates.
func (c *Cache) Take(ctx context.Context, key string) ([]byte, error) {
	v, err := c.inner.Take(ctx, key)
	if unchanged(err) {
		return v, err
	}
	return v, c.changed(ctx, key, err)
}

// Delete deletes through and invalidates every key.
func (c *Cache) Delete(ctx context.Context, keys ...string) error {
	err := c.inner.Delete(ctx, keys...)
	for _, k := range keys {
		err = c.changed(ctx, k, err)
	}
	return err
}

// Ping asks the store.
func (c *Cache) Ping(ctx context.Context) error { return c.inner.Ping(ctx) }

// Acquire, Renew and Release write through; a matching lock key (only with
// a Prefix that covers it) is invalidated like any other write.
func (c *Cache) Acquire(ctx context.Context, key, token string, ttl time.Duration) (bool, error) {
	ok, err := c.inner.Acquire(ctx, key, token, ttl)
	if err == nil && !ok {
		return false, nil
	}
	return ok, c.changed(ctx, key, err)
}

// Renew: see Acquire.
func (c *Cache) Renew(ctx context.Context, key, token string, ttl time.Duration) (bool, error) {
	ok, err := c.inner.Renew(ctx, key, token, ttl)
	if err == nil && !ok {
		return false, nil
	}
	return ok, c.changed(ctx, key, err)
}

// Release: see Acquire.
func (c *Cache) Release(ctx context.Context, key, token string) error {
	return c.changed(ctx, key, c.inner.Release(ctx, key, token))
}

// AddToSet passes through: sets are never read with Get.
func (c *Cache) AddToSet(ctx context.Context, key, member string, ttl time.Duration) error {
	return c.inner.AddToSet(ctx, key, member, ttl)
}

// Members passes through.
func (c *Cache) Members(ctx context.Context, key string) ([]string, error) {
	return c.inner.Members(ctx, key)
}

// RemoveFromSet passes through.
func (c *Cache) RemoveFromSet(ctx context.Context, key string, members ...string) error {
	return c.inner.RemoveFromSet(ctx, key, members...)
}

// Schedule passes through: the schedule is never read with Get.
func (c *Cache) Schedule(ctx context.Context, key, member string, at time.Time, keep time.Duration) error {
	return c.inner.Schedule(ctx, key, member, at, keep)
}

// Due passes through.
func (c *Cache) Due(ctx context.Context, key string, until time.Time, limit int) ([]string, error) {
	return c.inner.Due(ctx, key, until, limit)
}

// Unschedule passes through.
func (c *Cache) Unschedule(ctx context.Context, key, member string) (bool, error) {
	return c.inner.Unschedule(ctx, key, member)
}

// Scan passes through.
func (c *Cache) Scan(ctx context.Context, prefix string, fn func(key string) error) error {
	return c.inner.Scan(ctx, prefix, fn)
}

// invalidate drops key and moves its bucket's generation, so that a read of
// it already on its way is not inserted when it comes back.
func (c *Cache) invalidate(key string) {
	if c.lru == nil {
		return
	}
	c.mu.Lock()
	c.bucket(key).Add(1)
	c.lru.Remove(key)
	c.mu.Unlock()
}

// purge empties the cache and moves the global generation; mu held.
func (c *Cache) purgeLocked() {
	c.global.Add(1)
	c.lru.Purge()
	c.purges.Add(1)
}

func (c *Cache) purge() {
	c.mu.Lock()
	c.purgeLocked()
	c.mu.Unlock()
}

// lost ends the lease and empties the cache: messages sent from now until
// the next confirmed subscription are lost to this instance.
func (c *Cache) lost(err error) {
	c.mu.Lock()
	was := c.subscribed || c.lease.Load() != 0
	c.subscribed = false
	c.lease.Store(0)
	c.checkedUntil = 0
	c.conns++
	c.purgeLocked()
	c.mu.Unlock()
	if was {
		c.losses.Add(1)
		c.log.Warn("session cache: invalidation channel lost; cache emptied and bypassed until subscribed again", "error", err)
	}
}

// connLost is called by a subscriber connection the moment it fails, before
// go-redis reconnects and resubscribes behind the caller's back.
func (c *Cache) connLost(err error) { c.lost(err) }

// confirmed: a new connection is subscribed. Whatever was published before
// it is lost to us, so start empty.
func (c *Cache) confirmed() {
	c.mu.Lock()
	c.purgeLocked()
	c.subscribed = true
	c.checkedUntil = 0
	c.conns++
	c.mu.Unlock()
	c.subscriptions.Add(1)
	if c.losses.Load() > 0 { // the first subscription is routine; the end of an outage is worth a line
		c.log.Info("session cache: invalidation channel subscribed again", "channel", c.opt.Channel)
	}
}

// pong renews the lease with a PONG to a PING sent at sent.
func (c *Cache) pong(sent int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.subscribed {
		return // a PONG of a connection that failed since
	}
	if sent >= c.lease.Load() {
		// The lease had run out before this PING left: the chain is broken
		// and what was cached may be stale.
		c.purgeLocked()
	}
	until := sent + int64(c.opt.MaxSilence)
	if c.opt.MasterAddrs != nil {
		until = min(until, c.checkedUntil)
	}
	if until > c.lease.Load() {
		c.lease.Store(until)
	}
}

// checkMaster asks the sentinels every masterCheck whether the subscriber
// is on the master. When they agree, the lease may run masterValidity past
// the moment they were asked; when any names another node, the channel is
// lost and moved is signalled so that receive drops the connection and the
// next one is dialled to the master the sentinels name.
func (c *Cache) checkMaster(ctx context.Context, moved chan<- struct{}) {
	t := time.NewTicker(masterCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.mu.Lock()
		conns, subscribed := c.conns, c.subscribed
		c.mu.Unlock()
		addr := c.subAddr.Load()
		if !subscribed || addr == nil {
			continue // receive is reconnecting; the lease is out
		}
		asked := c.mono()
		qctx, cancel := context.WithTimeout(ctx, masterValidity)
		names, err := c.opt.MasterAddrs(qctx)
		agree := err == nil && len(names) > 0
		for _, n := range names {
			agree = agree && sameNode(qctx, *addr, n)
		}
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			// No sentinel answered: the lease runs out by itself within
			// masterValidity.
			c.log.Debug("session cache: sentinels did not answer", "error", err)
		case agree:
			c.mu.Lock()
			if c.conns == conns && c.subscribed {
				c.checkedUntil = max(c.checkedUntil, asked+int64(masterValidity))
			}
			c.mu.Unlock()
		default:
			c.lost(fmt.Errorf("subscribed to %s while the sentinels name %v as master", *addr, names))
			select {
			case moved <- struct{}{}:
			default:
			}
		}
	}
}

// sameNode reports whether conn (an ip:port a connection was made to) is
// named (the host:port a sentinel announced, which may be a host name).
func sameNode(ctx context.Context, conn, named string) bool {
	if conn == named {
		return true
	}
	ch, cp, err1 := net.SplitHostPort(conn)
	nh, np, err2 := net.SplitHostPort(named)
	if err1 != nil || err2 != nil || cp != np || net.ParseIP(nh) != nil {
		return err1 == nil && err2 == nil && cp == np && net.ParseIP(nh).Equal(net.ParseIP(ch))
	}
	ips, err := net.DefaultResolver.LookupHost(ctx, nh)
	if err != nil {
		return false
	}
	for _, ip := range ips {
		if net.ParseIP(ip).Equal(net.ParseIP(ch)) {
			return true
		}
	}
	return false
}

// subscribe runs the subscriber until ctx ends: it receives invalidations,
// PINGs the connection every Heartbeat, and renews the lease on each PONG.
func (c *Cache) subscribe(ctx context.Context) {
	defer close(c.done)
	var backoff time.Duration
	for ctx.Err() == nil {
		ps := c.sub.Subscribe(ctx, c.opt.Channel)
		err := c.receive(ctx, ps, &backoff)
		_ = ps.Close()
		c.lost(err)
		if ctx.Err() != nil {
			return
		}
		backoff = min(max(2*backoff, 10*time.Millisecond), maxBackoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
	}
}

// receive handles one PubSub until its connection looks dead for good
// (silent for reconnectAfter) or ctx ends. Errors the PubSub recovers from
// by reconnecting itself are losses too: the cache is emptied at once and
// serves again only after the new subscription and a fresh PONG.
func (c *Cache) receive(ctx context.Context, ps *redis.PubSub, backoff *time.Duration) error {
	pingCtx, stopPing := context.WithCancel(ctx)
	defer stopPing()
	moved := make(chan struct{}, 1)
	if c.opt.MasterAddrs != nil {
		go c.checkMaster(pingCtx, moved)
	}
	go func() {
		t := time.NewTicker(c.opt.Heartbeat)
		defer t.Stop()
		for {
			select {
			case <-pingCtx.Done():
				return
			case <-t.C:
				// The payload is the send time; an error here surfaces in
				// Receive as well.
				_ = ps.Ping(pingCtx, strconv.FormatInt(c.mono(), 10))
			}
		}
	}()
	lastHeard := c.mono()
	for {
		msg, err := ps.ReceiveTimeout(ctx, c.opt.MaxSilence)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		select {
		case <-moved:
			// checkMaster has emptied the cache; a new PubSub dials the
			// master the sentinels name now.
			return errors.New("the sentinels name another master")
		default:
		}
		if err != nil {
			if isTimeout(err) {
				if time.Duration(c.mono()-lastHeard) > reconnectAfter {
					return fmt.Errorf("no answer for %v: %w", reconnectAfter, err)
				}
				continue // the lease runs out by itself
			}
			// go-redis has already reconnected (or failed to): either way
			// messages were lost.
			c.lost(err)
			select {
			case <-time.After(*backoff):
			case <-ctx.Done():
				return ctx.Err()
			}
			*backoff = min(max(2**backoff, 10*time.Millisecond), maxBackoff)
			continue
		}
		lastHeard = c.mono()
		switch m := msg.(type) {
		case *redis.Message:
			if m.Channel == c.opt.Channel {
				c.invalidate(m.Payload)
				c.invalidations.Add(1)
			}
		case *redis.Subscription:
			if m.Kind == "subscribe" && m.Channel == c.opt.Channel {
				c.confirmed()
				*backoff = 0
			}
		case *redis.Pong:
			if sent, err := strconv.ParseInt(m.Payload, 10, 64); err == nil {
				c.pong(sent)
			}
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// subscriberClient returns a client of its own for the subscriber, built
// from c's options, whose every connection calls onLoss the moment it fails
// or is closed. go-redis reconnects and resubscribes a PubSub inside the
// call that saw the failure, so without this the cache would learn of the
// loss only after a dial and a SUBSCRIBE, while still serving. ok=false:
// c's kind is not known here and c itself is used (the lease still bounds
// how long a loss can go unnoticed).
func subscriberClient(c redis.UniversalClient, onLoss func(error), onDial func(remote string)) (_ redis.UniversalClient, ok bool) {
	wrap := func(dial func(context.Context, string, string) (net.Conn, error)) func(context.Context, string, string) (net.Conn, error) {
		return func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			onDial(conn.RemoteAddr().String())
			return &watchedConn{Conn: conn, onLoss: onLoss}, nil
		}
	}
	switch cc := c.(type) {
	case *redis.Client: // one node, or Sentinel (its Dialer asks the sentinels)
		o := *cc.Options()
		o.Dialer = wrap(o.Dialer)
		o.MinIdleConns, o.PoolSize = 0, 2 // the PubSub dials its own
		// Stateful parts of the caller's client are not shared.
		o.PushNotificationProcessor, o.MaintNotificationsConfig, o.ClientSideCacheConfig = nil, nil, nil
		return redis.NewClient(&o), true
	case *redis.ClusterClient:
		o := *cc.Options()
		dial := o.Dialer
		if dial == nil {
			dial = redis.NewDialer(&redis.Options{DialTimeout: cmp.Or(o.DialTimeout, 5*time.Second), TLSConfig: o.TLSConfig})
		}
		o.Dialer = wrap(dial)
		o.MinIdleConns, o.PoolSize = 0, 2
		o.PushNotificationProcessor, o.MaintNotificationsConfig = nil, nil
		return redis.NewClusterClient(&o), true
	}
	return c, false
}

// watchedConn reports the first failure (or close) of a subscriber
// connection before the failure reaches go-redis. Timeouts are not
// failures: ReceiveTimeout uses them to wake up.
type watchedConn struct {
	net.Conn
	once   sync.Once
	onLoss func(error)
}

func (w *watchedConn) lose(err error) { w.once.Do(func() { w.onLoss(err) }) }

func (w *watchedConn) Read(p []byte) (int, error) {
	n, err := w.Conn.Read(p)
	if err != nil && !isTimeout(err) {
		w.lose(err)
	}
	return n, err
}

func (w *watchedConn) Write(p []byte) (int, error) {
	n, err := w.Conn.Write(p)
	if err != nil && !isTimeout(err) {
		w.lose(err)
	}
	return n, err
}

func (w *watchedConn) Close() error {
	w.lose(errors.New("subscriber connection closed"))
	return w.Conn.Close()
}
