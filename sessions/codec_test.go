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
