package sessions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Expirer keeps a schedule of when each session's record expires in the
// store, so that a session the store ends by its TTL (no request came in
// its idle window, or its absolute timeout passed) can be reported, by one
// instance only. The Redis store implements it with a sorted set.
type Expirer interface {
	// Schedule puts member in the schedule at key, due at at (an existing
	// member is moved), and makes the schedule live at least keep from
	// now: its expiry only ever grows.
	Schedule(ctx context.Context, key, member string, at time.Time, keep time.Duration) error
	// Due returns at most limit members due at or before until, earliest
	// first; none (and no error) when the schedule does not exist.
	Due(ctx context.Context, key string, until time.Time, limit int) ([]string, error)
	// Unschedule removes member and reports whether this call removed it:
	// of several instances removing the same member, exactly one sees true.
	Unschedule(ctx context.Context, key, member string) (removed bool, err error)
}

const (
	// expiryGrace: a schedule entry is looked at only this long after it
	// was due, so that clock skew between instances (which compute the due
	// time) and Redis (which expires the record) does not make the sweep
	// read records a moment before they go.
	expiryGrace = 2 * time.Second
	// expiryKeep is how long the schedule outlives the last session put in
	// it: the time the instances have to notice that session's expiry.
	expiryKeep = 10 * time.Minute
	// sweepBatch and sweepBatches bound one SweepExpired call per frontend.
	sweepBatch   = 100
	sweepBatches = 10
)

// Expired is a session the store ended by its TTL, as SweepExpired found it:
// whose it was. It names no session id, which must not reach a log.
type Expired struct {
	Frontend, Subject, ProviderSID string
}

// expiryKey is the schedule of frontend's sessions. The frontend is the
// Redis Cluster hash tag, as for its index sets.
func (m *Manager) expiryKey(frontend string) string {
	return m.prefix + "exp:{" + frontend + "}"
}

// expiryMember names a session in the schedule with what its expiry event
// reports, since the record is gone by then. Subject and sid never change
// for a session, so the member stays the same string and each Schedule moves
// it rather than adding another.
func expiryMember(id, sub, sid string) string {
	b, _ := json.Marshal([3]string{id, sub, sid}) // strings always marshal
	return string(b)
}

func parseExpiryMember(member string) (id, sub, sid string, ok bool) {
	var v [3]string
	if json.Unmarshal([]byte(member), &v) != nil || !validID(v[0]) {
		return "", "", "", false
	}
	return v[0], v[1], v[2], true
}

// schedule records that the session's record expires at at.
func (m *Manager) schedule(ctx context.Context, id string, s *Session, at time.Time, ttl time.Duration) error {
	if m.exp == nil {
		return nil
	}
	if err := m.exp.Schedule(ctx, m.expiryKey(s.Frontend), expiryMember(id, s.Subject, s.ProviderSID), at, ttl+expiryKeep); err != nil {
		return fmt.Errorf("schedule expiry: %w", err)
	}
	return nil
}

// ReportsExpiry reports whether the store keeps the expiry schedule that
// SweepExpired reads.
func (m *Manager) ReportsExpiry() bool { return m.exp != nil }

// SweepExpired finds the sessions of frontend that the store ended by their
// TTL and calls fn once for each, across every instance that sweeps the
// same store: the instance whose Unschedule removes the entry reports it.
// A session ended on purpose (logout, revocation, back-channel logout, a
// rejected refresh) leaves the schedule as it ends, so it is never reported
// here. It returns how many it reported.
func (m *Manager) SweepExpired(ctx context.Context, frontend string, fn func(Expired)) (int, error) {
	if m.exp == nil {
		return 0, nil
	}
	key := m.expiryKey(frontend)
	n := 0
	for range sweepBatches {
		now := m.now()
		due, err := m.exp.Due(ctx, key, now.Add(-expiryGrace), sweepBatch)
		if err != nil {
			return n, fmt.Errorf("sessions: sweep expired: %w", err)
		}
		for _, member := range due {
			reported, err := m.sweepOne(ctx, key, member, frontend, now, fn)
			if err != nil {
				return n, fmt.Errorf("sessions: sweep expired: %w", err)
			}
			if reported {
				n++
			}
		}
		if len(due) < sweepBatch {
			break
		}
	}
	return n, nil
}

func (m *Manager) sweepOne(ctx context.Context, key, member, frontend string, now time.Time, fn func(Expired)) (bool, error) {
	id, sub, sid, ok := parseExpiryMember(member)
	if !ok {
		_, err := m.exp.Unschedule(ctx, key, member)
		return false, err
	}
	// Past any in-process cache: its entry may outlive the record by a
	// moment, and this read decides whether the session ended.
	value, ttl, err := m.store.Get(FreshRead(ctx), m.sessionKey(id))
	switch {
	case err == nil:
		// Still live: the entry lagged behind a later extension (a write
		// racing this sweep, or skewed clocks). Put it back where the
		// record's TTL says, unless the record is another session's.
		meta, merr := ReadMeta(value)
		if merr != nil || meta.Frontend != frontend || meta.Subject != sub || meta.ProviderSID != sid || ttl <= 0 {
			_, err := m.exp.Unschedule(ctx, key, member)
			return false, err
		}
		return false, m.exp.Schedule(ctx, key, member, now.Add(ttl), ttl+expiryKeep)
	case !errors.Is(err, ErrNotFound):
		return false, err
	}
	removed, err := m.exp.Unschedule(ctx, key, member)
	if err != nil || !removed {
		return false, err // another instance reports it
	}
	// Records never come back, so its index members are stale now.
	_ = m.unindexOnly(ctx, id, frontend, sid, sub)
	fn(Expired{Frontend: frontend, Subject: sub, ProviderSID: sid})
	return true, nil
}
