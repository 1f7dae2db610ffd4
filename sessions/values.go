package sessions

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Session values are small secrets that belong to one session but live
// beside its record rather than in it, such as a route's exchanged token:
// they are written by work that must not rewrite the record (a token
// exchange racing a refresh would otherwise put back a spent refresh token),
// and a route nobody calls costs the record nothing. Each is encrypted with
// the session's own data key, which only the cookie or handle carries, so
// the store alone discloses nothing, exactly like the record; the store key
// is the additional data, so a value moved to another session or name does
// not open. Keys share the record's hash tag:
//
//	P + "sv:{" + id + "}:" + name        the value
//	P + "lock:{" + id + "}:" + name      the lock that makes one instance write it
//
// A value never outlives its session's absolute expiry. One left behind by
// a session that ended is unreadable without the session's reference and
// expires by itself.

func (m *Manager) valueKey(id, name string) string { return m.prefix + "sv:{" + id + "}:" + name }

// ValueLockKey is the Locker key guarding s's value name.
func (m *Manager) ValueLockKey(s *Session, name string) string {
	return m.prefix + "lock:{" + s.id + "}:" + name
}

func (m *Manager) checkValue(op string, s *Session, name string) error {
	switch {
	case s == nil || s.id == "" || len(s.key) != dataKeyLen:
		return fmt.Errorf("sessions: %s: session was not created or loaded by a Manager", op)
	case name == "":
		return fmt.Errorf("sessions: %s: empty name", op)
	}
	return nil
}

// PutValue stores value under name for s, for ttl (> 0) but never past the
// session's absolute expiry, replacing any previous value.
func (m *Manager) PutValue(ctx context.Context, s *Session, name string, value []byte, ttl time.Duration) error {
	if err := m.checkValue("put value", s, name); err != nil {
		return err
	}
	if !s.AbsoluteExpiry.IsZero() {
		ttl = min(ttl, s.AbsoluteExpiry.Sub(m.now()))
	}
	if ttl <= 0 {
		return fmt.Errorf("sessions: put value %s: nothing left of its lifetime", name)
	}
	key := m.valueKey(s.id, name)
	sealed, err := encrypt(s.key, key, value)
	if err != nil {
		return fmt.Errorf("sessions: put value %s: %w", name, err)
	}
	if err := m.store.Set(ctx, key, sealed, ttl, Always); err != nil {
		return fmt.Errorf("sessions: put value %s: %w", name, err)
	}
	return nil
}

// GetValue returns the value PutValue stored under name for s. ErrNotFound
// when absent, expired, or no longer opening (the caller's remedy is the
// same: make a new one); any other error means the store is unavailable.
func (m *Manager) GetValue(ctx context.Context, s *Session, name string) ([]byte, error) {
	if err := m.checkValue("get value", s, name); err != nil {
		return nil, err
	}
	key := m.valueKey(s.id, name)
	sealed, _, err := m.store.Get(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("sessions: get value %s: %w", name, err)
	}
	value, err := decrypt(nil, s.key, key, sealed)
	if err != nil {
		return nil, ErrNotFound
	}
	return value, nil
}

// DeleteValues removes s's values names; absent ones are not an error.
func (m *Manager) DeleteValues(ctx context.Context, s *Session, names ...string) error {
	if len(names) == 0 {
		return nil
	}
	if s == nil || s.id == "" {
		return errors.New("sessions: delete values: session was not created or loaded by a Manager")
	}
	keys := make([]string, len(names))
	for i, n := range names {
		keys[i] = m.valueKey(s.id, n)
	}
	if err := m.store.Delete(ctx, keys...); err != nil {
		return fmt.Errorf("sessions: delete values: %w", err)
	}
	return nil
}
