package sessions

import (
	"encoding/json"
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
	}
	for _, in := range cases {
		out, err := unmarshalSession(marshalSession(in))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []*time.Time{&in.Expiry, &in.CreatedAt, &in.AbsoluteExpiry} {
			*p = (*p).Round(0)
		}
		if !reflect.DeepEqual(in, out) {
			t.Errorf("round trip:\n in  %+v\n out %+v", in, out)
		}
	}
}

func TestSessionCodecRejectsDamage(t *testing.T) {
	full := marshalSession(&Session{Frontend: "web", AccessToken: "at", CreatedAt: time.Now()})
	for n := range len(full) {
		if _, err := unmarshalSession(full[:n]); err == nil {
			t.Fatalf("truncated to %d bytes: no error", n)
		}
	}
	if _, _, err := splitRecordEnvelope([]byte(`{"v":1}`)); err == nil {
		t.Error("a JSON record of an older format was accepted")
	}
}

// A record written before DPoPKey existed (no trailing field) still reads,
// and a damaged trailing field is refused.
func TestSessionCodecDPoPKeyCompatible(t *testing.T) {
	old := marshalSession(&Session{Frontend: "web", AccessToken: "at"})
	s, err := unmarshalSession(old)
	if err != nil || s.DPoPKey != nil {
		t.Fatalf("old record: %v %v", s, err)
	}
	withKey := marshalSession(&Session{Frontend: "web", AccessToken: "at", DPoPKey: []byte("0123456789")})
	if len(withKey) != len(old)+11 {
		t.Fatalf("the key adds %d bytes, want 11", len(withKey)-len(old))
	}
	for n := len(old) + 1; n < len(withKey); n++ {
		if _, err := unmarshalSession(withKey[:n]); err == nil {
			t.Fatalf("key truncated to %d bytes: no error", n-len(old))
		}
	}
}
