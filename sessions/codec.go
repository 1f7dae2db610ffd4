package sessions

import (
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
//	          varint unix nanoseconds (0 for the zero time)
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
	// Optional trailing fields: absent in records written before them (and
	// ignored by readers that predate them), so both stay compatible.
	if len(s.DPoPKey) > 0 {
		b = binary.AppendUvarint(b, uint64(len(s.DPoPKey)))
		b = append(b, s.DPoPKey...)
	}
	return b
}

func unmarshalSession(b []byte) (*Session, error) {
	if len(b) == 0 || b[0] != sessionCodecVersion {
		return nil, errors.New("unknown session encoding")
	}
	b = b[1:]
	next := func() (string, error) {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			return "", errShortRecord
		}
		v := string(b[k : k+int(n)])
		b = b[k+int(n):]
		return v, nil
	}
	var s Session
	var claims string
	for _, dst := range []*string{&s.Frontend, &s.Subject, &s.ProviderSID, &claims, &s.IDToken, &s.AccessToken, &s.RefreshToken, &s.TokenType} {
		v, err := next()
		if err != nil {
			return nil, err
		}
		*dst = v
	}
	if claims != "" {
		s.Claims = json.RawMessage(claims)
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
		key, err := next()
		if err != nil {
			return nil, err
		}
		s.DPoPKey = []byte(key)
	}
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
