package sessions

import (
	"bytes"
	"cmp"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gorilla/securecookie"
)

const (
	idLen      = 16 // session id, raw bytes (128 bits)
	dataKeyLen = 32 // AES-256 key that encrypts the stored record
	nonceLen   = 12 // AES-GCM standard nonce

	recordVersion = 1

	// Seal names are prefixed so that a value sealed by Seal can never open
	// as a session reference, nor the other way round.
	refNamePrefix  = "ref:"
	sealNamePrefix = "val:"

	// absoluteSlack is how much earlier than its AbsoluteExpiry a session in
	// use may end: less, and the read of the TTL (whole milliseconds, taken
	// before the clock) could ask for a write on every load.
	absoluteSlack = 100 * time.Millisecond

	// sealSkew is how far in the future a Seal timestamp may lie: instances
	// behind one load balancer have slightly different clocks.
	sealSkew = time.Minute
)

// KeyPair is one securecookie key pair, decoded: Hash (32 or 64 bytes) signs,
// Block (32 bytes, AES-256) encrypts.
type KeyPair struct{ Hash, Block []byte }

// Options configures a Manager.
type Options struct {
	// KeyPrefix starts every key the Manager writes, e.g. "bffgate:".
	KeyPrefix string
	// Keys: the first pair seals, all pairs open (key rotation). At least one.
	Keys []KeyPair
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// TouchInterval bounds how often Load extends the idle TTL of one session
	// (each extension is a store write). Zero means min(IdleTimeout/10, 1m),
	// at least 1s. Whatever the value, at most IdleTimeout/2, so that a
	// session in steady use never runs out of its idle window.
	TouchInterval time.Duration
}

// Manager turns sessions into sealed references and back, and keeps their
// records encrypted in the Store. It is safe for concurrent use.
//
// Keys it writes (P = Options.KeyPrefix):
//
//	P + "s:{" + id + "}"       session record (JSON: clear Meta + sealed Session)
//	P + "lock:{" + id + "}"    refresh lock, same hash tag as the record
//	P + "sv:{" + id + "}:" + name   session values (values.go), and their locks
//	P + kind + ":" + hex(sha256(once id))   PutOnce values, encrypted under the id
//	P + "idx:{" + frontend + "}:sid:" + hex(sha256(provider sid))   set of session ids
//	P + "idx:{" + frontend + "}:sub:" + hex(sha256(subject))        set of session ids
//	P + "exp:{" + frontend + "}"   sorted set: ["id","sub","sid"] by expiry time (ms)
//
// The two index sets exist only when the store is an Indexer; they hold ids,
// never tokens, and hash the provider's values so that key names stay short
// and carry no user data. The expiry schedule exists only when the store is
// an Expirer; like the record's clear Meta it names the subject and the
// provider's sid, which its expiry event reports once the record is gone.
//
// The reference (cookie or handle) is securecookie(name "ref:"+binding,
// id || data key), base64url without padding: about 176 bytes.
type Manager struct {
	store  Store
	index  Indexer // nil: the store keeps no indexes
	exp    Expirer // nil: the store keeps no expiry schedule
	scan   Scanner // nil: the store cannot list keys
	prefix string
	codecs []securecookie.Codec
	refs   []*refCodec // the same keys as codecs, for openRef
	now    func() time.Time
	touch  time.Duration
}

// NewManager checks opts and returns a Manager over store.
func NewManager(store Store, opts Options) (*Manager, error) {
	if store == nil {
		return nil, errors.New("sessions: NewManager: nil store")
	}
	if len(opts.Keys) == 0 {
		return nil, errors.New("sessions: NewManager: at least one cookie key pair is required")
	}
	if opts.TouchInterval < 0 {
		return nil, fmt.Errorf("sessions: NewManager: negative TouchInterval %v", opts.TouchInterval)
	}
	codecs := make([]securecookie.Codec, 0, len(opts.Keys))
	refs := make([]*refCodec, 0, len(opts.Keys))
	for i, k := range opts.Keys {
		if n := len(k.Hash); n != 32 && n != 64 {
			return nil, fmt.Errorf("sessions: NewManager: keys[%d].hash: %d bytes, want 32 or 64", i, n)
		}
		if n := len(k.Block); n != 32 {
			return nil, fmt.Errorf("sessions: NewManager: keys[%d].block: %d bytes, want 32 (AES-256)", i, n)
		}
		// MaxAge 0: the store's expiry is what ends a session, and Open checks
		// its own millisecond timestamp, so securecookie's whole-second age
		// check is not needed.
		sc := securecookie.New(bytes.Clone(k.Hash), bytes.Clone(k.Block)).
			SetSerializer(securecookie.NopEncoder{}).
			MaxAge(0)
		codecs = append(codecs, sc)
		rc, err := newRefCodec(k)
		if err != nil {
			return nil, fmt.Errorf("sessions: NewManager: keys[%d]: %w", i, err)
		}
		refs = append(refs, rc)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	index, _ := store.(Indexer)
	scan, _ := store.(Scanner)
	exp, _ := store.(Expirer)
	return &Manager{
		store:  store,
		index:  index,
		exp:    exp,
		scan:   scan,
		prefix: opts.KeyPrefix,
		codecs: codecs,
		refs:   refs,
		now:    now,
		touch:  opts.TouchInterval,
	}, nil
}

// Store returns the underlying store (the token refresh takes its Locker).
func (m *Manager) Store() Store { return m.store }

// SessionKeyPrefix is the prefix of every session record key (prefix + "s:{"),
// for an operator scanner; ReadMeta reads the records it finds.
func (m *Manager) SessionKeyPrefix() string { return RecordKeyPrefix(m.prefix) }

// RecordKeyPrefix is the prefix of every session record key of a Manager
// whose Options.KeyPrefix is keyPrefix: the keys a cache of records holds.
func RecordKeyPrefix(keyPrefix string) string { return keyPrefix + "s:{" }

// SessionIDFromKey returns the session id in a record key found under
// SessionKeyPrefix, for DeleteByID; ok=false for any other key.
func (m *Manager) SessionIDFromKey(key string) (id string, ok bool) {
	rest, ok := strings.CutPrefix(key, m.SessionKeyPrefix())
	if !ok {
		return "", false
	}
	id, ok = strings.CutSuffix(rest, "}")
	if !ok || !validID(id) {
		return "", false
	}
	return id, true
}

// sessionKey is the record key. The braces make the id a Redis Cluster hash
// tag, so the record and its lock live in the same slot.
func (m *Manager) sessionKey(id string) string { return m.prefix + "s:{" + id + "}" }

// LockKey returns the store key of a session's refresh lock. It shares the
// session key's hash tag but not its "s:{" prefix, so scanners skip it.
func (m *Manager) LockKey(s *Session) string { return m.prefix + "lock:{" + s.id + "}" }

func validID(id string) bool {
	raw, err := base64.RawURLEncoding.DecodeString(id)
	// Re-encoding rejects non-canonical spellings of the same bytes.
	return err == nil && len(raw) == idLen && base64.RawURLEncoding.EncodeToString(raw) == id
}

// window is the TTL a session's record should have at now:
// min(IdleTimeout, until AbsoluteExpiry). ok=false when neither is set.
func window(s *Session, now time.Time) (d time.Duration, ok bool) {
	if s.IdleTimeout > 0 {
		d, ok = s.IdleTimeout, true
	}
	if !s.AbsoluteExpiry.IsZero() {
		if until := s.AbsoluteExpiry.Sub(now); !ok || until < d {
			d, ok = until, true
		}
	}
	return d, ok
}

func (m *Manager) touchInterval(s *Session) time.Duration {
	d := m.touch
	if d == 0 {
		d = max(min(s.IdleTimeout/10, time.Minute), time.Second)
	}
	if s.IdleTimeout > 0 {
		d = min(d, s.IdleTimeout/2)
	}
	return d
}

func absExpired(s *Session, now time.Time) bool {
	return !s.AbsoluteExpiry.IsZero() && !now.Before(s.AbsoluteExpiry)
}

// Create stores s under a new random id and a new random data key, with TTL
// min(s.IdleTimeout, until s.AbsoluteExpiry), and returns the reference
// sealed for binding (e.g. "session:web", "handle:app"); a reference sealed
// for one binding does not open for another. CreatedAt is set when zero.
// A session needs an IdleTimeout or an AbsoluteExpiry: none would never end.
func (m *Manager) Create(ctx context.Context, binding string, s *Session) (string, error) {
	if s == nil || binding == "" {
		return "", errors.New("sessions: create: nil session or empty binding")
	}
	now := m.now()
	if s.CreatedAt.IsZero() {
		s.CreatedAt = now
	}
	ttl, ok := window(s, now)
	if !ok {
		return "", errors.New("sessions: create: session has neither IdleTimeout nor AbsoluteExpiry")
	}
	if ttl <= 0 {
		return "", errors.New("sessions: create: session is past its AbsoluteExpiry")
	}
	payload := make([]byte, idLen+dataKeyLen)
	if _, err := rand.Read(payload); err != nil {
		return "", fmt.Errorf("sessions: create: random id: %w", err)
	}
	id := base64.RawURLEncoding.EncodeToString(payload[:idLen])
	key := payload[idLen:]
	// securecookie encrypts the serialized bytes in place, and NopEncoder
	// serializes by aliasing: hand it a copy or the data key is scrambled.
	ref, err := m.codecs[0].Encode(refNamePrefix+binding, bytes.Clone(payload))
	if err != nil {
		return "", fmt.Errorf("sessions: create: seal reference: %w", err)
	}
	skey := m.sessionKey(id)
	rec, err := encodeRecord(skey, key, s)
	if err != nil {
		return "", fmt.Errorf("sessions: create: %w", err)
	}
	// IfAbsent: two 128-bit ids never collide, but if they did this must not
	// hand one user another's session.
	if err := m.store.Set(ctx, skey, rec, ttl, IfAbsent); err != nil {
		return "", fmt.Errorf("sessions: create: %w", err)
	}
	// The record before its index members: then a member whose record is
	// absent is stale for good, and pruning it can never drop a live session.
	// A session that cannot be indexed could not be ended by a back-channel
	// logout, so it is not handed out.
	// The index sets live exactly as long as the record's window; Load and
	// Save extend them along with it, so a session that times out leaves no
	// index key behind once no live session shares it.
	if err := m.addToIndexes(ctx, id, s, ttl); err != nil {
		_ = m.store.Delete(context.WithoutCancel(ctx), skey)
		return "", fmt.Errorf("sessions: create: %w", err)
	}
	s.id, s.key, s.expires = id, bytes.Clone(key), now.Add(ttl)
	return trimPad(ref), nil
}

// openRef returns the record key, the id and the data key a reference carries.
func (m *Manager) openRef(binding, ref string) (skey, id string, key []byte, err error) {
	if binding == "" || ref == "" {
		return "", "", nil, ErrInvalidRef
	}
	value := addPad(ref)
	var payload []byte
	var errs []error
	for _, c := range m.refs { // as securecookie.DecodeMulti: the first key pair that opens it
		var err error
		if payload, err = c.decode(refNamePrefix, binding, value); err == nil {
			break
		}
		errs = append(errs, err)
	}
	if len(errs) == len(m.refs) {
		return "", "", nil, fmt.Errorf("%w: %v", ErrInvalidRef, errors.Join(errs...))
	}
	if len(payload) != idLen+dataKeyLen {
		return "", "", nil, fmt.Errorf("%w: payload of %d bytes", ErrInvalidRef, len(payload))
	}
	skey, id = m.recordKey(payload[:idLen])
	return skey, id, payload[idLen:], nil
}

// recordKey is sessionKey(id) for the raw id bytes, and id as a part of
// it: one allocation instead of two on every Load.
func (m *Manager) recordKey(rawID []byte) (skey, id string) {
	var buf [64]byte
	enc := base64.RawURLEncoding.AppendEncode(buf[:0], rawID)
	skey = m.prefix + "s:{" + string(enc) + "}"
	start := len(m.prefix) + len("s:{")
	return skey, skey[start : start+len(enc)]
}

// Load opens ref, reads and decrypts the session, enforces AbsoluteExpiry and
// slides the idle window. ErrInvalidRef: the reference (or the record under
// it) fails to open; ErrNotFound: the session ended; any other error means
// the store is unavailable.
//
// The idle window slides by Store.Expire, never by rewriting the record, so a
// concurrent token refresh is not overwritten with a stale copy; and only once
// the last extension is older than the touch interval, so a busy session
// costs at most one write per interval.
func (m *Manager) Load(ctx context.Context, binding, ref string) (*Session, error) {
	skey, id, key, err := m.openRef(binding, ref)
	if err != nil {
		return nil, err
	}
	value, ttl, err := m.store.Get(ctx, skey)
	reportStoreRead(ctx)
	if errors.Is(err, ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("sessions: load: %w", err)
	}
	s, err := decodeRecord(skey, key, value)
	if err != nil {
		return nil, err
	}
	now := m.now()
	if absExpired(s, now) {
		// The store TTL never outlives AbsoluteExpiry, so this is only clock
		// skew between instances; the record is gone soon either way, hence a
		// failed delete does not change the answer.
		_ = m.store.Delete(ctx, skey)
		return nil, ErrNotFound
	}
	s.id, s.key = id, key
	if ttl > 0 {
		s.expires = now.Add(ttl)
	}
	// target - ttl is the time since the last extension while the idle window
	// is the bound. Once AbsoluteExpiry is the bound that difference stops
	// growing: it stays what it was when the bound changed, short of the
	// touch interval, and the record would expire that much before
	// AbsoluteExpiry. So one more write then sets the TTL to AbsoluteExpiry;
	// after it target equals ttl and nothing more is written.
	if target, ok := window(s, now); ok && (target-ttl >= m.touchInterval(s) ||
		s.IdleTimeout > 0 && target < s.IdleTimeout && target-ttl >= absoluteSlack) {
		err := m.store.Expire(ctx, skey, target)
		if errors.Is(err, ErrNotFound) {
			return nil, ErrNotFound // ended between Get and Expire
		}
		if err != nil {
			return nil, fmt.Errorf("sessions: load: extend idle window: %w", err)
		}
		// The indexes slide along with the window (see Create).
		if err := m.addToIndexes(ctx, id, s, target); err != nil {
			return nil, fmt.Errorf("sessions: load: %w", err)
		}
		s.expires = now.Add(target)
	}
	return s, nil
}

// Save re-encrypts a loaded session (after a token refresh) and rewrites it
// only if it still exists, with TTL min(IdleTimeout, until AbsoluteExpiry):
// ErrNotFound when it ended meanwhile, so a refresh that finishes after a
// logout does not bring the session back.
func (m *Manager) Save(ctx context.Context, s *Session) error {
	if s == nil || s.id == "" || len(s.key) != dataKeyLen {
		return errors.New("sessions: save: session was not created or loaded by a Manager")
	}
	skey := m.sessionKey(s.id)
	now := m.now()
	ttl, ok := window(s, now)
	if !ok {
		return errors.New("sessions: save: session has neither IdleTimeout nor AbsoluteExpiry")
	}
	if ttl <= 0 {
		_ = m.store.Delete(ctx, skey) // expires by its TTL anyway; see Load
		return ErrNotFound
	}
	rec, err := encodeRecord(skey, s.key, s)
	if err != nil {
		return fmt.Errorf("sessions: save: %w", err)
	}
	err = m.store.Set(ctx, skey, rec, ttl, IfPresent)
	if errors.Is(err, ErrNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("sessions: save: %w", err)
	}
	if err := m.addToIndexes(ctx, s.id, s, ttl); err != nil {
		return fmt.Errorf("sessions: save: %w", err)
	}
	s.expires = now.Add(ttl)
	return nil
}

// Delete ends the session (logout) and takes it out of its indexes.
func (m *Manager) Delete(ctx context.Context, s *Session) error {
	if s == nil || s.id == "" {
		return errors.New("sessions: delete: session was not created or loaded by a Manager")
	}
	if err := m.store.Delete(ctx, m.sessionKey(s.id)); err != nil {
		return fmt.Errorf("sessions: delete: %w", err)
	}
	// The session is gone; a member left behind by a failure here is stale,
	// and readers prune stale members.
	_ = m.unindex(ctx, s.id, s.Frontend, s.ProviderSID, s.Subject)
	return nil
}

// DeleteByID ends a session by id (operator revocation, back-channel logout);
// no data key is needed: the record's clear Meta names its indexes. An absent
// session is not an error; a malformed id is ErrInvalidRef.
func (m *Manager) DeleteByID(ctx context.Context, id string) error {
	if !validID(id) {
		return fmt.Errorf("sessions: delete: malformed session id %q: %w", id, ErrInvalidRef)
	}
	skey := m.sessionKey(id)
	var meta Meta
	hasMeta := false
	if m.index != nil {
		value, _, err := m.store.Get(ctx, skey)
		switch {
		case errors.Is(err, ErrNotFound):
			return nil
		case err != nil:
			return fmt.Errorf("sessions: delete: %w", err)
		}
		// An unreadable record is still deleted; only its index members are
		// left behind, to be pruned as stale.
		meta, err = ReadMeta(value)
		hasMeta = err == nil
	}
	if err := m.store.Delete(ctx, skey); err != nil {
		return fmt.Errorf("sessions: delete: %w", err)
	}
	if hasMeta {
		_ = m.unindex(ctx, id, meta.Frontend, meta.ProviderSID, meta.Subject) // as in Delete
	}
	return nil
}

// Seal signs and encrypts a small value (the login-state cookie, the mobile
// handoff record) under name with the first key pair; the result is
// base64url without padding, safe in cookies and URLs.
func (m *Manager) Seal(name string, value []byte) (string, error) {
	if name == "" {
		return "", errors.New("sessions: seal: empty name")
	}
	// securecookie's own timestamp has whole seconds and reads the wall
	// clock; ours has milliseconds and follows Options.Now.
	b := make([]byte, 8, 8+len(value))
	binary.BigEndian.PutUint64(b, uint64(m.now().UnixMilli()))
	b = append(b, value...) // a fresh slice: securecookie encrypts it in place
	out, err := m.codecs[0].Encode(sealNamePrefix+name, b)
	if err != nil {
		return "", fmt.Errorf("sessions: seal %s: %w", name, err)
	}
	return trimPad(out), nil
}

// Open returns the value Seal sealed under name. ErrInvalidRef when it is
// older than maxAge (> 0), tampered with, sealed under another name or under
// a key pair no longer configured.
func (m *Manager) Open(name, sealed string, maxAge time.Duration) ([]byte, error) {
	if maxAge <= 0 {
		return nil, fmt.Errorf("sessions: open %s: maxAge must be positive, got %v", name, maxAge)
	}
	if name == "" || sealed == "" {
		return nil, ErrInvalidRef
	}
	var b []byte
	if err := securecookie.DecodeMulti(sealNamePrefix+name, addPad(sealed), &b, m.codecs...); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalidRef, name, err)
	}
	if len(b) < 8 {
		return nil, fmt.Errorf("%w: %s: short value", ErrInvalidRef, name)
	}
	at := time.UnixMilli(int64(binary.BigEndian.Uint64(b)))
	age := m.now().Sub(at)
	if age > maxAge || age < -sealSkew {
		return nil, fmt.Errorf("%w: %s: sealed %v ago, max %v", ErrInvalidRef, name, age.Round(time.Millisecond), maxAge)
	}
	return b[8:], nil
}

// onceKey is the store key of a single-use value: the id itself is not
// stored, only its hash, so a dump of the store does not give it away.
func (m *Manager) onceKey(kind, id string) string {
	sum := sha256.Sum256([]byte(id))
	return m.prefix + kind + ":" + hex.EncodeToString(sum[:])
}

// onceDataKey encrypts a single-use value under a key derived from its id
// (domain-separated from the key's hash), so a handoff record in the store is
// useless without the code only the app holds.
func onceDataKey(kind, id string) []byte {
	sum := sha256.Sum256([]byte("bffgate once value\x00" + kind + "\x00" + id))
	return sum[:]
}

// PutOnce stores a single-use value (login state marker, mobile handoff code)
// under kind and id for ttl; ErrExists if that id is already in use.
func (m *Manager) PutOnce(ctx context.Context, kind, id string, value []byte, ttl time.Duration) error {
	if kind == "" || id == "" {
		return errors.New("sessions: put once: empty kind or id")
	}
	key := m.onceKey(kind, id)
	sealed, err := encrypt(onceDataKey(kind, id), key, value)
	if err != nil {
		return fmt.Errorf("sessions: put once %s: %w", kind, err)
	}
	if err := m.store.Set(ctx, key, sealed, ttl, IfAbsent); err != nil {
		return fmt.Errorf("sessions: put once %s: %w", kind, err)
	}
	return nil
}

// TakeOnce returns the value PutOnce stored and removes it in the same step;
// ErrNotFound when it was already taken or has expired.
func (m *Manager) TakeOnce(ctx context.Context, kind, id string) ([]byte, error) {
	if kind == "" || id == "" {
		return nil, errors.New("sessions: take once: empty kind or id")
	}
	key := m.onceKey(kind, id)
	sealed, err := m.store.Take(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("sessions: take once %s: %w", kind, err)
	}
	value, err := decrypt(nil, onceDataKey(kind, id), key, sealed)
	if err != nil {
		return nil, fmt.Errorf("sessions: take once %s: %w: %v", kind, ErrInvalidRef, err)
	}
	return value, nil
}

// Meta is the part of a session record kept in clear, so that operators can
// list and revoke sessions without any data key. It is informational: Load
// trusts only the encrypted session.
type Meta struct {
	Frontend       string
	Subject        string
	ProviderSID    string
	CreatedAt      time.Time
	AbsoluteExpiry time.Time
	// Name and Email come from the ID token's name (or preferred_username)
	// and email claims, so that an operator can tell whose session a line
	// is; empty when the provider sent none.
	Name, Email string
}

// record is the stored value of a session.
type record struct {
	V              int       `json:"v"`
	Frontend       string    `json:"frontend"`
	Subject        string    `json:"sub"`
	ProviderSID    string    `json:"sid,omitempty"`
	CreatedAt      time.Time `json:"created_at"`
	AbsoluteExpiry time.Time `json:"absolute_expiry"`
	Name           string    `json:"name,omitempty"`
	Email          string    `json:"email,omitempty"`
}

// maxDisplayLen bounds the name and email kept in clear: they are for an
// operator's eyes, and a provider could send anything.
const maxDisplayLen = 200

// displayClaims returns the name and email an operator sees for a session.
func displayClaims(raw json.RawMessage) (name, email string) {
	if len(raw) == 0 {
		return "", ""
	}
	var c struct {
		Name              string `json:"name"`
		PreferredUsername string `json:"preferred_username"`
		Email             string `json:"email"`
	}
	if json.Unmarshal(raw, &c) != nil {
		return "", ""
	}
	name = cmp.Or(c.Name, c.PreferredUsername)
	return truncate(name), truncate(c.Email)
}

func truncate(s string) string {
	if len(s) <= maxDisplayLen {
		return s
	}
	s = s[:maxDisplayLen]
	for len(s) > 0 && !utf8.ValidString(s) { // do not cut a rune in half
		s = s[:len(s)-1]
	}
	return s
}

// ReadMeta returns the clear metadata of a stored session record.
func ReadMeta(value []byte) (Meta, error) {
	meta, _, err := splitRecordEnvelope(value)
	if err != nil {
		return Meta{}, fmt.Errorf("sessions: read meta: %w", err)
	}
	var r record
	if err := json.Unmarshal(meta, &r); err != nil {
		return Meta{}, fmt.Errorf("sessions: read meta: %w", err)
	}
	if r.V != recordVersion {
		return Meta{}, fmt.Errorf("sessions: read meta: unknown record version %d", r.V)
	}
	return Meta{
		Frontend:       r.Frontend,
		Subject:        r.Subject,
		ProviderSID:    r.ProviderSID,
		CreatedAt:      r.CreatedAt,
		AbsoluteExpiry: r.AbsoluteExpiry,
		Name:           r.Name,
		Email:          r.Email,
	}, nil
}

func encodeRecord(skey string, key []byte, s *Session) ([]byte, error) {
	sealed, err := encrypt(key, skey, marshalSession(s))
	if err != nil {
		return nil, err
	}
	name, email := displayClaims(s.Claims)
	b, err := marshalRecordEnvelope(record{
		V:              recordVersion,
		Frontend:       s.Frontend,
		Subject:        s.Subject,
		ProviderSID:    s.ProviderSID,
		CreatedAt:      s.CreatedAt,
		AbsoluteExpiry: s.AbsoluteExpiry,
		Name:           name,
		Email:          email,
	}, sealed)
	if err != nil {
		return nil, fmt.Errorf("encode record: %w", err)
	}
	return b, nil
}

// decodeRecord fails with ErrInvalidRef: a record that does not decrypt under
// the reference's key belongs to no valid reference.
func decodeRecord(skey string, key, value []byte) (*Session, error) {
	_, sealed, err := splitRecordEnvelope(value)
	if err != nil {
		return nil, fmt.Errorf("%w: decode record: %v", ErrInvalidRef, err)
	}
	if len(sealed) < nonceLen {
		return nil, fmt.Errorf("%w: decode record: %v", ErrInvalidRef, errShortRecord)
	}
	// In place: value is ours (Store.Get), and the plaintext, which
	// unmarshalSession copies, is wiped at once rather than left for the
	// garbage collector. One allocation of the record's size less per
	// request.
	plain, err := decrypt(sealed[nonceLen:nonceLen], key, skey, sealed)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidRef, err)
	}
	s, err := unmarshalSession(plain)
	clear(plain)
	if err != nil {
		return nil, fmt.Errorf("%w: decode session: %v", ErrInvalidRef, err)
	}
	return s, nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	return cipher.NewGCM(block)
}

// encrypt returns nonce || AES-GCM(plain) with ad as additional data.
func encrypt(key []byte, ad string, plain []byte) ([]byte, error) {
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, nonceLen, nonceLen+len(plain)+aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		return nil, fmt.Errorf("random nonce: %w", err)
	}
	return aead.Seal(out, out, plain, []byte(ad)), nil
}

// decrypt opens nonce || AES-GCM(plain) and appends the plaintext to dst
// (nil: a new slice; sealed[nonceLen:nonceLen]: in place).
func decrypt(dst, key []byte, ad string, sealed []byte) ([]byte, error) {
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	if len(sealed) < nonceLen+aead.Overhead() {
		return nil, errors.New("decrypt: sealed value too short")
	}
	plain, err := aead.Open(dst, sealed[:nonceLen], sealed[nonceLen:], []byte(ad))
	if err != nil {
		return nil, fmt.Errorf("decrypt: %w", err)
	}
	return plain, nil
}

// trimPad drops securecookie's base64 padding: "=" needs escaping in URLs,
// and the reference is also a query or bearer value.
func trimPad(s string) string { return strings.TrimRight(s, "=") }

// addPad restores the padding securecookie's decoder wants.
func addPad(s string) string {
	if n := len(s) % 4; n != 0 {
		return s + "==="[:4-n]
	}
	return s
}
