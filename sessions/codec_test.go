package sessions

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestSessionCodecRoundTrip(t *testing.T) {
	now := time.Unix(1790000000, 123456789)
	cases := []*Session{
		{},
		{Frontend: "web", Subject: "id1", ProviderSID: "sid-1", Claims: json.RawMessage(`{"sub":"id1","roles":["a"]}`),
			IDToken: "h.p.s", AccessToken: "at", RefreshToken: "rt", TokenType: "Bearer",
			Expiry: now.Add(time.Minute), CreatedAt: now, AbsoluteExpiry: now.Add(time.Hour), IdleTimeout: 30 * time.Minute},
		{Frontend: "bank", AccessToken: "at", TokenType: "DPoP", CreatedAt: now, DPoPKey: []byte{0x30, 0x81, 0x87, 0, 1, 2}},
		{Frontend: "web", AccessToken: "at", RefreshToken: "rt", Expiry: now.Add(time.Minute),
			TokenObtainedAt: now, RefreshRetryAt: now.Add(2 * time.Second), RefreshBackoff: 2 * time.Second, RefreshUnsure: true},
	}
	for _, in := range cases {
		plain := marshalSession(in)
		out, err := unmarshalSession(plain)
		if err != nil {
			t.Fatal(err)
		}
		// decodeRecord wipes the plaintext at once: the session must not
		// share its memory.
		clear(plain)
		for _, p := range []*time.Time{&in.Expiry, &in.CreatedAt, &in.AbsoluteExpiry, &in.TokenObtainedAt, &in.RefreshRetryAt} {
			*p = (*p).Round(0)
		}
		if !reflect.DeepEqual(in, out) {
			t.Errorf("round trip:\n in  %+v\n out %+v", in, out)
		}
	}
}

// bookkeeping is the size of the refresh bookkeeping of a session that has
// none: three zero varints and a flags byte.
const bookkeeping = 4

func TestSessionCodecRejectsDamage(t *testing.T) {
	full := marshalSession(&Session{Frontend: "web", AccessToken: "at", CreatedAt: time.Now()})
	// Records written before the trailing fields end where they begin:
	// before the DPoP key field (1 byte: length 0 here), or after it.
	valid := map[int]bool{len(full) - bookkeeping - 1: true, len(full) - bookkeeping: true}
	for n := range len(full) {
		_, err := unmarshalSession(full[:n])
		if valid[n] && err != nil {
			t.Fatalf("a record of an older format (%d bytes): %v", n, err)
		}
		if !valid[n] && err == nil {
			t.Fatalf("truncated to %d bytes: no error", n)
		}
	}
	if _, _, err := splitRecordEnvelope([]byte(`{"v":1}`)); err == nil {
		t.Error("a JSON record of an older format was accepted")
	}
}

// A record written before DPoPKey existed (no trailing field) still reads,
// and so does one written before the refresh bookkeeping; a damaged
// trailing field is refused.
func TestSessionCodecDPoPKeyCompatible(t *testing.T) {
	cur := marshalSession(&Session{Frontend: "web", AccessToken: "at"})
	old := cur[:len(cur)-bookkeeping-1]
	s, err := unmarshalSession(old)
	if err != nil || s.DPoPKey != nil {
		t.Fatalf("old record: %v %v", s, err)
	}
	withKey := marshalSession(&Session{Frontend: "web", AccessToken: "at", DPoPKey: []byte("0123456789")})
	if len(withKey) != len(cur)+10 {
		t.Fatalf("the key adds %d bytes, want 10", len(withKey)-len(cur))
	}
	keyOnly := len(withKey) - bookkeeping
	if s, err := unmarshalSession(withKey[:keyOnly]); err != nil || string(s.DPoPKey) != "0123456789" {
		t.Fatalf("record with a key, before the bookkeeping: %v %v", s, err)
	}
	for n := len(old) + 1; n < len(withKey); n++ {
		if _, err := unmarshalSession(withKey[:n]); err == nil && n != keyOnly {
			t.Fatalf("truncated to %d bytes: no error", n)
		}
	}
}

// TestDecodeRecordShortSealed: a record whose sealed part is shorter than
// a nonce and a tag (a corrupted or foreign value) is refused, never a
// panic, now that records are decrypted in place.
func TestDecodeRecordShortSealed(t *testing.T) {
	key := make([]byte, dataKeyLen)
	for n := 0; n < nonceLen+16+2; n++ {
		value, err := marshalRecordEnvelope(record{V: recordVersion}, make([]byte, n))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := decodeRecord("k", key, value); !errors.Is(err, ErrInvalidRef) {
			t.Fatalf("sealed part of %d bytes: err = %v, want ErrInvalidRef", n, err)
		}
	}
}
