package sessions

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Filter selects sessions for Find and Revoke: every non-empty field must
// match the session's Meta; all empty selects every session.
type Filter struct {
	Frontend, Subject, ProviderSID string
	// IDPrefix selects the sessions whose id starts with it (revocation of
	// one session by the id `sessions list` prints); it is always a scan
	// narrowed to that prefix.
	IDPrefix string
}

func (f Filter) match(m Meta) bool {
	return (f.Frontend == "" || f.Frontend == m.Frontend) &&
		(f.Subject == "" || f.Subject == m.Subject) &&
		(f.ProviderSID == "" || f.ProviderSID == m.ProviderSID)
}

// Found is one live session: its id, clear metadata and remaining time to
// live (0 when unknown).
type Found struct {
	ID   string
	Meta Meta
	TTL  time.Duration
}

// indexKey is the key of the set of session ids of frontend whose dim ("sid"
// or "sub") is value. The frontend is the Redis Cluster hash tag, so both
// index sets of one session live in one slot.
func (m *Manager) indexKey(frontend, dim, value string) string {
	sum := sha256.Sum256([]byte(value))
	return m.prefix + "idx:{" + frontend + "}:" + dim + ":" + hex.EncodeToString(sum[:])
}

// addToIndexes puts id in the session's sid and sub index sets, for at least
// ttl, and in its frontend's expiry schedule, due in ttl: every write that
// sets the record's TTL calls it. A no-op for what the store does not keep.
func (m *Manager) addToIndexes(ctx context.Context, id string, s *Session, ttl time.Duration) error {
	if err := m.schedule(ctx, id, s, m.now().Add(ttl), ttl); err != nil {
		return err
	}
	if m.index == nil {
		return nil
	}
	if s.ProviderSID != "" {
		if err := m.index.AddToSet(ctx, m.indexKey(s.Frontend, "sid", s.ProviderSID), id, ttl); err != nil {
			return fmt.Errorf("index by sid: %w", err)
		}
	}
	if s.Subject != "" {
		if err := m.index.AddToSet(ctx, m.indexKey(s.Frontend, "sub", s.Subject), id, ttl); err != nil {
			return fmt.Errorf("index by sub: %w", err)
		}
	}
	return nil
}

// unindex takes id out of the index sets named by frontend, sid and sub,
// and out of the expiry schedule: the session was ended on purpose, so its
// TTL will not be reported as an expiry.
func (m *Manager) unindex(ctx context.Context, id, frontend, sid, sub string) error {
	var errs []error
	if m.exp != nil {
		_, err := m.exp.Unschedule(ctx, m.expiryKey(frontend), expiryMember(id, sub, sid))
		errs = append(errs, err)
	}
	errs = append(errs, m.unindexOnly(ctx, id, frontend, sid, sub))
	return errors.Join(errs...)
}

// unindexOnly takes id out of the index sets named by frontend, sid and sub.
func (m *Manager) unindexOnly(ctx context.Context, id, frontend, sid, sub string) error {
	if m.index == nil {
		return nil
	}
	var errs []error
	if sid != "" {
		errs = append(errs, m.index.RemoveFromSet(ctx, m.indexKey(frontend, "sid", sid), id))
	}
	if sub != "" {
		errs = append(errs, m.index.RemoveFromSet(ctx, m.indexKey(frontend, "sub", sub), id))
	}
	return errors.Join(errs...)
}

// EndSessions ends the sessions of frontend that a back-channel logout token
// names: with sid, every session whose provider sid is sid; with sub, every
// session of that subject, except that when sid is given too only the
// subject's sessions that carry no sid are added (a provider that sends both
// means one login, but a session made from an ID token without sid can only
// be found by its subject). It returns how many were live and ended by this
// call. Each record's Meta (frontend, sid or sub) is checked before it is
// deleted, and index members whose session is gone are pruned. A store error
// is returned as such, never as "nothing to end".
func (m *Manager) EndSessions(ctx context.Context, frontend, sid, sub string) (int, error) {
	if frontend == "" {
		return 0, errors.New("sessions: end sessions: empty frontend")
	}
	if sid == "" && sub == "" {
		return 0, errors.New("sessions: end sessions: neither sid nor sub given")
	}
	n := 0
	if sid != "" {
		ended, err := m.revoke(ctx, Filter{Frontend: frontend, ProviderSID: sid}, nil, nil)
		n += ended
		if err != nil {
			return n, fmt.Errorf("sessions: end sessions: %w", err)
		}
	}
	if sub != "" {
		var only func(Meta) bool
		if sid != "" {
			only = func(meta Meta) bool { return meta.ProviderSID == "" }
		}
		ended, err := m.revoke(ctx, Filter{Frontend: frontend, Subject: sub}, only, nil)
		n += ended
		if err != nil {
			return n, fmt.Errorf("sessions: end sessions: %w", err)
		}
	}
	return n, nil
}

// Find lists the live sessions f selects, sorted by frontend, subject and
// creation time. With a Frontend and a ProviderSID or Subject it reads the
// index sets; otherwise it scans every session record (a Scanner store is
// then needed), which is an operator's tool, not a serving path. A record
// whose Meta cannot be read is listed, with a zero Meta, only when f is empty.
func (m *Manager) Find(ctx context.Context, f Filter) ([]Found, error) {
	found, _, err := m.find(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("sessions: find: %w", err)
	}
	return found, nil
}

// Revoke ends every session Find returns for f and returns how many were live
// and ended by this call. Revoke(ctx, Filter{}) ends every session.
func (m *Manager) Revoke(ctx context.Context, f Filter) (int, error) {
	return m.RevokeEach(ctx, f, nil)
}

// RevokeEach is Revoke calling revoked, when non-nil, for each session it
// ended (the operator's audit trail).
func (m *Manager) RevokeEach(ctx context.Context, f Filter, revoked func(Found)) (int, error) {
	n, err := m.revoke(ctx, f, nil, revoked)
	if err != nil {
		return n, fmt.Errorf("sessions: revoke: %w", err)
	}
	return n, nil
}

// revoke ends the sessions f selects and, when only is non-nil, only says
// yes to; revoked, when non-nil, hears of each one ended.
func (m *Manager) revoke(ctx context.Context, f Filter, only func(Meta) bool, revoked func(Found)) (int, error) {
	found, stale, err := m.find(ctx, f)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, s := range found {
		if only != nil && !only(s.Meta) {
			continue
		}
		// Take, not Delete: it tells whether the session was still there, so
		// one that expired or was ended meanwhile is not counted.
		_, err := m.store.Take(ctx, m.sessionKey(s.ID))
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return n, err
		}
		n++
		if revoked != nil {
			revoked(s)
		}
		if err := m.unindex(ctx, s.ID, s.Meta.Frontend, s.Meta.ProviderSID, s.Meta.Subject); err != nil {
			return n, err
		}
	}
	for key, members := range stale {
		if err := m.index.RemoveFromSet(ctx, key, members...); err != nil {
			return n, fmt.Errorf("prune index: %w", err)
		}
	}
	return n, nil
}

// find returns the sessions f selects and, when it read an index, the stale
// members to prune (index key → ids whose session is gone).
func (m *Manager) find(ctx context.Context, f Filter) ([]Found, map[string][]string, error) {
	var (
		found []Found
		stale map[string][]string
		err   error
	)
	switch {
	case m.index != nil && f.IDPrefix == "" && f.Frontend != "" && (f.ProviderSID != "" || f.Subject != ""):
		found, stale, err = m.findIndexed(ctx, f)
	case m.scan != nil:
		found, err = m.findScan(ctx, f)
	default:
		err = errors.New("the session store can neither index nor list sessions")
	}
	if err != nil {
		return nil, nil, err
	}
	slices.SortFunc(found, func(a, b Found) int {
		return cmp.Or(
			cmp.Compare(a.Meta.Frontend, b.Meta.Frontend),
			cmp.Compare(a.Meta.Subject, b.Meta.Subject),
			a.Meta.CreatedAt.Compare(b.Meta.CreatedAt),
			cmp.Compare(a.ID, b.ID),
		)
	})
	return found, stale, nil
}

func (m *Manager) findIndexed(ctx context.Context, f Filter) ([]Found, map[string][]string, error) {
	// The sid index is the narrower one: a provider session is one login.
	dim, value := "sid", f.ProviderSID
	belongs := func(meta Meta) bool { return meta.ProviderSID == f.ProviderSID }
	if value == "" {
		dim, value = "sub", f.Subject
		belongs = func(meta Meta) bool { return meta.Subject == f.Subject }
	}
	key := m.indexKey(f.Frontend, dim, value)
	members, err := m.index.Members(ctx, key)
	if err != nil {
		return nil, nil, fmt.Errorf("read index: %w", err)
	}
	var found []Found
	var stale []string
	seen := make(map[string]bool, len(members))
	for _, id := range members {
		if seen[id] {
			continue
		}
		seen[id] = true
		if !validID(id) {
			stale = append(stale, id)
			continue
		}
		value, ttl, err := m.store.Get(ctx, m.sessionKey(id))
		if errors.Is(err, ErrNotFound) {
			stale = append(stale, id) // expired or ended: records never come back
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		meta, err := ReadMeta(value)
		if err != nil {
			// Whose session this is cannot be told: neither end it nor
			// drop its member.
			continue
		}
		if meta.Frontend != f.Frontend || !belongs(meta) {
			stale = append(stale, id) // not this index's session
			continue
		}
		if f.match(meta) {
			found = append(found, Found{ID: id, Meta: meta, TTL: ttl})
		}
	}
	var prune map[string][]string
	if len(stale) > 0 {
		prune = map[string][]string{key: stale}
	}
	return found, prune, nil
}

func (m *Manager) findScan(ctx context.Context, f Filter) ([]Found, error) {
	var found []Found
	seen := make(map[string]bool)
	err := m.scanEach(ctx, f, func(s Found) error {
		if !seen[s.ID] {
			seen[s.ID] = true
			found = append(found, s)
		}
		return nil
	})
	return found, err
}

// Each calls fn for every live session f selects, as the store's walk finds
// them: unsorted, and without holding them, so that listing every session
// of a large store takes memory for one record at a time. With a Frontend
// and a Subject or ProviderSID (and no IDPrefix) it reads that index and
// calls fn in Find's order. A walk may report a session twice when Redis
// rehashes meanwhile (SCAN's guarantee); fn's error stops it.
func (m *Manager) Each(ctx context.Context, f Filter, fn func(Found) error) error {
	if m.index != nil && f.IDPrefix == "" && f.Frontend != "" && (f.ProviderSID != "" || f.Subject != "") {
		found, err := m.Find(ctx, f)
		if err != nil {
			return err
		}
		for _, s := range found {
			if err := fn(s); err != nil {
				return err
			}
		}
		return nil
	}
	if m.scan == nil {
		return errors.New("sessions: each: the session store cannot list sessions")
	}
	if err := m.scanEach(ctx, f, fn); err != nil {
		return fmt.Errorf("sessions: each: %w", err)
	}
	return nil
}

// scanEach walks the session records (those whose id starts with
// f.IDPrefix) and calls fn for each live one f selects.
func (m *Manager) scanEach(ctx context.Context, f Filter, fn func(Found) error) error {
	if m.scan == nil {
		return errors.New("the session store cannot list sessions")
	}
	err := m.scan.Scan(ctx, m.SessionKeyPrefix()+f.IDPrefix, func(key string) error {
		id, ok := m.SessionIDFromKey(key)
		if !ok {
			return nil
		}
		value, ttl, err := m.store.Get(ctx, key)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		meta, err := ReadMeta(value)
		if err != nil {
			meta = Meta{}
			if (f != Filter{IDPrefix: f.IDPrefix}) {
				return nil
			}
		} else if !f.match(meta) {
			return nil
		}
		return fn(Found{ID: id, Meta: meta, TTL: ttl})
	})
	if err != nil {
		return fmt.Errorf("scan sessions: %w", err)
	}
	return nil
}
