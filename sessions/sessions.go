// Package sessions owns the server-side session: the Session type, the small
// Store interface the concrete stores implement, and the Manager that turns a
// session into an opaque sealed reference (cookie value or mobile handle) and
// back. The reference carries the session id and a per-session data key; the
// stored record is encrypted with that key, so the store alone discloses no
// token.
package sessions

import (
	"context"
	"encoding/json"
	"errors"
	"time"
)

// ErrNotFound means the key (or session) does not exist or has expired.
var ErrNotFound = errors.New("sessions: not found")

// ErrExists is returned by Store.Set with IfAbsent when the key exists.
var ErrExists = errors.New("sessions: key exists")

// ErrInvalidRef means a cookie or handle failed to open (tampered, wrong
// frontend, expired seal, unknown keys). Callers treat it like no session.
var ErrInvalidRef = errors.New("sessions: invalid session reference")

// SetMode chooses the write condition of Store.Set.
type SetMode int

const (
	// Always writes unconditionally.
	Always SetMode = iota
	// IfAbsent writes only when the key does not exist (SET NX); else ErrExists.
	IfAbsent
	// IfPresent writes only when the key exists (SET XX); else ErrNotFound.
	// A refresh that finishes after a logout must not bring the session back.
	IfPresent
)

// Store is a key-value store with expiry. Any error other than ErrNotFound or
// ErrExists means the store is unavailable; callers must never treat such an
// error as "session gone".
type Store interface {
	// Get returns the value and its remaining time to live (0 when the key
	// has no expiry, which the stores never create themselves). The value
	// is the caller's own copy: the Manager decrypts records in place.
	Get(ctx context.Context, key string) (value []byte, ttl time.Duration, err error)
	// Set writes value with ttl (> 0) under the mode's condition.
	Set(ctx context.Context, key string, value []byte, ttl time.Duration, mode SetMode) error
	// Expire sets a new ttl on an existing key; ErrNotFound if absent.
	Expire(ctx context.Context, key string, ttl time.Duration) error
	// Take returns the value and deletes the key atomically (single-use values).
	Take(ctx context.Context, key string) ([]byte, error)
	// Delete removes keys; absent keys are not an error.
	Delete(ctx context.Context, keys ...string) error
	// Ping reports whether the store answers (for /readyz).
	Ping(ctx context.Context) error
}

// Session is one user's login at one frontend. Tokens live only here.
type Session struct {
	Frontend string `json:"frontend"`
	// Subject and ProviderSID come from the ID token (sub, sid); kept for
	// back-channel logout and operator revocation.
	Subject     string `json:"sub"`
	ProviderSID string `json:"sid,omitempty"`
	// Claims is the verified ID token's claim set.
	Claims json.RawMessage `json:"claims"`

	IDToken      string    `json:"id_token"`
	AccessToken  string    `json:"access_token"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	TokenType    string    `json:"token_type,omitempty"`
	Expiry       time.Time `json:"expiry"` // access token expiry; zero = unknown
	// DPoPKey is the session's own DPoP private key (PKCS#8 DER), kept
	// encrypted with the tokens so that every instance can prove
	// possession; empty without DPoP.
	DPoPKey []byte `json:"dpop_key,omitempty"`

	// TokenObtainedAt is when AccessToken was received; with Expiry it gives
	// the token's lifetime, which caps the refresh margin at half of it.
	// Zero in records written before it existed.
	TokenObtainedAt time.Time `json:"token_obtained_at,omitzero"`

	// Refresh bookkeeping, shared by every instance through the record. No
	// refresh is attempted before RefreshRetryAt (back-off after a transient
	// failure; RefreshBackoff is the last step). RefreshUnsure says a refresh
	// was sent whose answer never arrived, so the provider may have spent
	// the refresh token: a later invalid_grant then ends the session only
	// once the access token has expired.
	RefreshRetryAt time.Time     `json:"refresh_retry_at,omitzero"`
	RefreshBackoff time.Duration `json:"refresh_backoff,omitzero"`
	RefreshUnsure  bool          `json:"refresh_unsure,omitzero"`

	CreatedAt time.Time `json:"created_at"`
	// AbsoluteExpiry is never extended.
	AbsoluteExpiry time.Time `json:"absolute_expiry"`
	// IdleTimeout is this session's sliding window.
	IdleTimeout time.Duration `json:"idle_timeout"`

	// id and key are set by Manager.Create/Load and never serialized into the
	// record; expires is the store expiry as of the last Create/Load/Save.
	id      string
	key     []byte
	expires time.Time
}

// ID returns the session id (random, >= 128 bits, base64url), "" before Create.
func (s *Session) ID() string { return s.id }

// ExpiresAt is when the session ends unless it is used again, as seen by the
// last Manager.Create, Load or Save (for "session_expires_in"); zero before.
func (s *Session) ExpiresAt() time.Time { return s.expires }

// Locker is implemented by both stores; the token refresh uses it so that one
// instance refreshes a session at a time.
type Locker interface {
	// Acquire sets key to token with ttl only if absent; ok=false when held by someone else.
	Acquire(ctx context.Context, key, token string, ttl time.Duration) (ok bool, err error)
	// Renew extends the lease only while key still holds token.
	Renew(ctx context.Context, key, token string, ttl time.Duration) (ok bool, err error)
	// Release deletes key only while it still holds token (compare-and-delete).
	Release(ctx context.Context, key, token string) error
}

// Indexer keeps small sets of session ids, so that back-channel logout and
// operator revocation find a user's sessions without scanning the store.
// Both stores implement it; a Manager over a store that does not simply keeps
// no indexes. Members may outlive their session: readers check that each
// session still exists, and prune the ones that do not.
type Indexer interface {
	// AddToSet adds member to the set at key and makes the set live at least
	// ttl (> 0) from now: its expiry only ever grows.
	AddToSet(ctx context.Context, key, member string, ttl time.Duration) error
	// Members returns the set's members, in no particular order; none (and no
	// error) when the set does not exist.
	Members(ctx context.Context, key string) ([]string, error)
	// RemoveFromSet removes members from the set; absent ones are not an error.
	RemoveFromSet(ctx context.Context, key string, members ...string) error
}

// Scanner lists keys by prefix, for the operator CLI. It is a full walk of the
// store (non-blocking on Redis, but proportional to its size), so the serving
// path never uses it. A key may be reported more than once; fn's error stops
// the walk and is returned.
type Scanner interface {
	Scan(ctx context.Context, prefix string, fn func(key string) error) error
}

// freshReadKey marks a context whose reads must come from the shared store
// itself, past any in-process cache.
type freshReadKey struct{}

// FreshRead returns ctx marked so that a caching Store decorator reads
// through to the shared store. The token refresh re-reads a session with it
// once it holds the refresh lock: the instance that refreshed before it has
// published its write, but that invalidation may still be on its way, and
// spending an already-rotated refresh token would end the session.
func FreshRead(ctx context.Context) context.Context {
	return context.WithValue(ctx, freshReadKey{}, true)
}

// IsFreshRead reports whether ctx was marked by FreshRead.
func IsFreshRead(ctx context.Context) bool {
	v, _ := ctx.Value(freshReadKey{}).(bool)
	return v
}
