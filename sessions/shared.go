package sessions

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Shared values are small secrets every instance needs and no single session
// owns, such as a frontend's client-credentials access token. They are
// sealed with Seal (so a dump of the store alone discloses nothing) and kept
// under P + "shared:{" + name + "}" with the store's expiry; the lock that
// makes one instance fetch a new value is P + "shared-lock:{" + name + "}",
// in the same Redis Cluster slot.

// sharedSealPrefix separates shared values from every other sealed name.
const sharedSealPrefix = "shared:"

func (m *Manager) sharedKey(name string) string { return m.prefix + "shared:{" + name + "}" }

// SharedLockKey is the Locker key guarding the shared value name.
func (m *Manager) SharedLockKey(name string) string { return m.prefix + "shared-lock:{" + name + "}" }

// PutShared stores value sealed under name for ttl (> 0), replacing any
// previous value.
func (m *Manager) PutShared(ctx context.Context, name string, value []byte, ttl time.Duration) error {
	if name == "" {
		return errors.New("sessions: put shared: empty name")
	}
	if ttl <= 0 {
		return fmt.Errorf("sessions: put shared %s: ttl must be positive, got %v", name, ttl)
	}
	sealed, err := m.Seal(sharedSealPrefix+name, value)
	if err != nil {
		return err
	}
	if err := m.store.Set(ctx, m.sharedKey(name), []byte(sealed), ttl, Always); err != nil {
		return fmt.Errorf("sessions: put shared %s: %w", name, err)
	}
	return nil
}

// GetShared returns the value PutShared stored under name and its remaining
// time to live. ErrNotFound when absent or expired; a value that no longer
// opens (keys rotated away, sealed more than maxAge ago) is ErrNotFound too,
// since the caller's remedy is the same: make a new one.
func (m *Manager) GetShared(ctx context.Context, name string, maxAge time.Duration) ([]byte, time.Duration, error) {
	if name == "" {
		return nil, 0, errors.New("sessions: get shared: empty name")
	}
	raw, ttl, err := m.store.Get(ctx, m.sharedKey(name))
	if errors.Is(err, ErrNotFound) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("sessions: get shared %s: %w", name, err)
	}
	value, err := m.Open(sharedSealPrefix+name, string(raw), maxAge)
	if err != nil {
		return nil, 0, ErrNotFound
	}
	return value, ttl, nil
}

// DeleteShared removes the shared value name; an absent one is not an error.
func (m *Manager) DeleteShared(ctx context.Context, name string) error {
	if err := m.store.Delete(ctx, m.sharedKey(name)); err != nil {
		return fmt.Errorf("sessions: delete shared %s: %w", name, err)
	}
	return nil
}
