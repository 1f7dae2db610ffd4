package sessions

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/gorilla/securecookie"
)

// refCodecPair is a securecookie codec as NewManager makes it and the
// refCodec of the same keys.
func refCodecPair(t testing.TB, hashLen int) (*securecookie.SecureCookie, *refCodec) {
	t.Helper()
	k := KeyPair{Hash: make([]byte, hashLen), Block: make([]byte, 32)}
	_, _ = rand.Read(k.Hash)
	_, _ = rand.Read(k.Block)
	sc := securecookie.New(k.Hash, k.Block).SetSerializer(securecookie.NopEncoder{}).MaxAge(0)
	rc, err := newRefCodec(k)
	if err != nil {
		t.Fatal(err)
	}
	return sc, rc
}

// securecookieDecode is what openRef did before refCodec.
func securecookieDecode(sc *securecookie.SecureCookie, name, value string) ([]byte, error) {
	var out []byte
	err := sc.Decode(name, value, &out)
	return out, err
}

// TestRefCodecOpensSecurecookie: every reference securecookie seals opens
// with refCodec to the same payload, for both hash key sizes, any payload
// size and a tampered copy of each is refused by both.
func TestRefCodecOpensSecurecookie(t *testing.T) {
	for _, hashLen := range []int{32, 64} {
		sc, rc := refCodecPair(t, hashLen)
		for _, size := range []int{1, 16, 17, idLen + dataKeyLen, 200} {
			payload := make([]byte, size)
			_, _ = rand.Read(payload)
			name := refNamePrefix + "spa:web"
			sealed, err := sc.Encode(name, bytes.Clone(payload))
			if err != nil {
				t.Fatal(err)
			}
			got, err := rc.decode("", name, sealed)
			if err != nil || !bytes.Equal(got, payload) {
				t.Fatalf("hash %d, payload %d: decode = %x, %v; want %x", hashLen, size, got, err, payload)
			}
			if _, err := rc.decode(refNamePrefix, "spa:admin", sealed); err == nil {
				t.Fatalf("hash %d, payload %d: opened under another name", hashLen, size)
			}
			raw, _ := base64.URLEncoding.DecodeString(sealed)
			for i := range raw {
				tampered := bytes.Clone(raw)
				tampered[i] ^= 0x01
				v := base64.URLEncoding.EncodeToString(tampered)
				_, errOurs := rc.decode("", name, v)
				_, errTheirs := securecookieDecode(sc, name, v)
				if errOurs == nil || errTheirs == nil {
					t.Fatalf("hash %d, payload %d: byte %d flipped: refCodec err %v, securecookie err %v", hashLen, size, i, errOurs, errTheirs)
				}
			}
		}
	}
}

// TestRefCodecOtherKeys: a reference sealed under other keys is refused.
func TestRefCodecOtherKeys(t *testing.T) {
	sc, _ := refCodecPair(t, 64)
	_, other := refCodecPair(t, 64)
	sealed, err := sc.Encode("ref:spa:web", make([]byte, idLen+dataKeyLen))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.decode("ref:", "spa:web", sealed); err == nil {
		t.Fatal("opened a reference sealed under other keys")
	}
}

// FuzzRefCodec: refCodec and securecookie accept exactly the same values,
// with the same payloads.
func FuzzRefCodec(f *testing.F) {
	sc, rc := refCodecPair(f, 64)
	name := refNamePrefix + "spa:web"
	good, err := sc.Encode(name, make([]byte, idLen+dataKeyLen))
	if err != nil {
		f.Fatal(err)
	}
	raw, _ := base64.URLEncoding.DecodeString(good)
	for _, s := range []string{good, good[:len(good)-4], strings.TrimRight(good, "="), good + "\n", "\r\n" + good,
		"", "====", "MTc2NDYxNjQwMHxabc|def", base64.URLEncoding.EncodeToString([]byte("1|x|y")),
		base64.URLEncoding.EncodeToString(bytes.ReplaceAll(raw, []byte("|"), []byte("||"))), strings.Repeat("A", 4097)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		ours, errOurs := rc.decode("", name, value)
		theirs, errTheirs := securecookieDecode(sc, name, value)
		if (errOurs == nil) != (errTheirs == nil) {
			t.Fatalf("%q: refCodec err %v, securecookie err %v", value, errOurs, errTheirs)
		}
		if errOurs == nil && !bytes.Equal(ours, theirs) {
			t.Fatalf("%q: refCodec %x, securecookie %x", value, ours, theirs)
		}
	})
}
