package sessions

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"time"
)

// The stored record is read on every request, and JSON of a few kilobytes
// of tokens cost more CPU than everything else on that path (measured with
// BenchmarkForward). So both layers are length-prefixed binary:
//
//	record  = magic(2) uvarint(len(meta)) meta-JSON sealed
//	sealed  = nonce || AES-256-GCM(session)
//	session = version(1) then each field as uvarint(len) bytes, times as
//	          varint unix nanoseconds (0 for the zero time); then the
//	          token refresh bookkeeping (TokenObtainedAt, RefreshRetryAt,
//	          RefreshBackoff as varints, a flags byte), absent from records
//	          written before it existed (read as zero)
//
// The small metadata stays JSON so operators can read it with redis-cli.
var recordMagic = [2]byte{'b', 2}

const sessionCodecVersion = 1

var errShortRecord = errors.New("truncated record")

func marshalRecordEnvelope(meta record, sealed []byte) ([]byte, error) {
	m, err := json.Marshal(meta)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, 2+binary.MaxVarintLen64+len(m)+len(sealed))
	out = append(out, recordMagic[:]...)
	out = binary.AppendUvarint(out, uint64(len(m)))
	out = append(out, m...)
	return append(out, sealed...), nil
}

// splitRecordEnvelope returns the metadata JSON and the sealed session.
func splitRecordEnvelope(b []byte) (meta, sealed []byte, err error) {
	if len(b) < 3 || b[0] != recordMagic[0] || b[1] != recordMagic[1] {
		return nil, nil, errors.New("unknown record format")
	}
	n, k := binary.Uvarint(b[2:])
	if k <= 0 || uint64(len(b)-2-k) < n {
		return nil, nil, errShortRecord
	}
	start := 2 + k
	return b[start : start+int(n)], b[start+int(n):], nil
}

func marshalSession(s *Session) []byte {
	size := 1 + len(s.Frontend) + len(s.Subject) + len(s.ProviderSID) + len(s.Claims) +
		len(s.IDToken) + len(s.AccessToken) + len(s.RefreshToken) + len(s.TokenType) + 12*binary.MaxVarintLen64
	b := make([]byte, 0, size)
	b = append(b, sessionCodecVersion)
	for _, f := range []string{s.Frontend, s.Subject, s.ProviderSID, string(s.Claims), s.IDToken, s.AccessToken, s.RefreshToken, s.TokenType} {
		b = binary.AppendUvarint(b, uint64(len(f)))
		b = append(b, f...)
	}
	for _, t := range []time.Time{s.Expiry, s.CreatedAt, s.AbsoluteExpiry} {
		b = binary.AppendVarint(b, unixNano(t))
	}
	b = binary.AppendVarint(b, int64(s.IdleTimeout))
	// Optional trailing fields, each group absent in records written before
	// it (and ignored by readers that predate it): the DPoP key, then the
	// refresh bookkeeping. Once the bookkeeping is written the key field is
	// always there (length 0 without DPoP), so the two never mix up.
	b = binary.AppendUvarint(b, uint64(len(s.DPoPKey)))
	b = append(b, s.DPoPKey...)
	b = binary.AppendVarint(b, unixNano(s.TokenObtainedAt))
	b = binary.AppendVarint(b, unixNano(s.RefreshRetryAt))
	b = binary.AppendVarint(b, int64(s.RefreshBackoff))
	var flags byte
	if s.RefreshUnsure {
		flags |= flagRefreshUnsure
	}
	return append(b, flags)
}

const flagRefreshUnsure = 1 << 0

func unmarshalSession(b []byte) (*Session, error) {
	if len(b) == 0 || b[0] != sessionCodecVersion {
		return nil, errors.New("unknown session encoding")
	}
	b = b[1:]
	// nextRaw returns the next field without copying: the caller copies
	// it once into the type it keeps, so that b (plaintext the caller
	// clears) is never referenced by the session.
	nextRaw := func() ([]byte, error) {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			return nil, errShortRecord
		}
		v := b[k : k+int(n)]
		b = b[k+int(n):]
		return v, nil
	}
	// The string fields are copied in one conversion of the span that
	// holds them, and each is a substring of it: one allocation instead of
	// seven on every request's session load.
	fields := b
	var spans [8][2]int // each field's start and end in fields
	for i := range spans {
		v, err := nextRaw()
		if err != nil {
			return nil, err
		}
		start := len(fields) - len(b) - len(v)
		spans[i] = [2]int{start, start + len(v)}
	}
	text := string(fields[:spans[7][1]])
	var s Session
	for i, dst := range [...]*string{&s.Frontend, &s.Subject, &s.ProviderSID, nil, &s.IDToken, &s.AccessToken, &s.RefreshToken, &s.TokenType} {
		sp := spans[i]
		if dst == nil { // the claims, kept as bytes
			if sp[1] > sp[0] {
				s.Claims = json.RawMessage(bytes.Clone(fields[sp[0]:sp[1]]))
			}
			continue
		}
		*dst = text[sp[0]:sp[1]]
	}
	var ints [4]int64
	for i := range ints {
		v, k := binary.Varint(b)
		if k <= 0 {
			return nil, errShortRecord
		}
		ints[i] = v
		b = b[k:]
	}
	s.Expiry, s.CreatedAt, s.AbsoluteExpiry = fromUnixNano(ints[0]), fromUnixNano(ints[1]), fromUnixNano(ints[2])
	s.IdleTimeout = time.Duration(ints[3])
	if len(b) > 0 {
		key, err := nextRaw()
		if err != nil {
			return nil, err
		}
		if len(key) > 0 {
			s.DPoPKey = bytes.Clone(key)
		}
	}
	if len(b) == 0 {
		return &s, nil // written before the refresh bookkeeping
	}
	var more [3]int64
	for i := range more {
		v, k := binary.Varint(b)
		if k <= 0 {
			return nil, errShortRecord
		}
		more[i] = v
		b = b[k:]
	}
	if len(b) == 0 {
		return nil, errShortRecord
	}
	s.TokenObtainedAt, s.RefreshRetryAt = fromUnixNano(more[0]), fromUnixNano(more[1])
	s.RefreshBackoff = time.Duration(more[2])
	s.RefreshUnsure = b[0]&flagRefreshUnsure != 0
	return &s, nil
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}
