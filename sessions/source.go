package sessions

import "context"

// Source is where a session read was answered: the in-process cache or
// the shared store. A trace of a slow request shows it on the session load.
type Source uint8

const (
	// SourceUnknown: no read was answered (the reference did not open).
	SourceUnknown Source = iota
	// SourceStore: the shared store answered (no cache, a miss, or a
	// read that must be fresh).
	SourceStore
	// SourceCache: the in-process cache answered.
	SourceCache
	// SourceBypassed: the store answered because the cache could not be
	// trusted then (its invalidation channel was not confirmed live).
	SourceBypassed
)

// String is the value of the session load span's source attribute.
func (s Source) String() string {
	switch s {
	case SourceStore:
		return "store"
	case SourceCache:
		return "cache"
	case SourceBypassed:
		return "bypassed"
	}
	return "unknown"
}

type sourceKey struct{}

// WithSourceReport returns ctx in which the reads of one session load say,
// in *src, where they were answered. Callers ask only when they will use
// the answer (a recording span), since the context costs an allocation.
func WithSourceReport(ctx context.Context, src *Source) context.Context {
	return context.WithValue(ctx, sourceKey{}, src)
}

// ReportSource records that a read of ctx was answered by src. A caching
// Store decorator calls it; the Manager marks any read nothing claimed as
// SourceStore. A no-op when nobody asked.
func ReportSource(ctx context.Context, src Source) {
	if p, ok := ctx.Value(sourceKey{}).(*Source); ok {
		*p = src
	}
}

// reportStoreRead marks a read that no decorator reported as answered by
// the store.
func reportStoreRead(ctx context.Context) {
	if p, ok := ctx.Value(sourceKey{}).(*Source); ok && *p == SourceUnknown {
		*p = SourceStore
	}
}
