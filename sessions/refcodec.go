package sessions

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"sync"
)

// refCodec opens session references exactly as securecookie's Decode does
// for the codecs NewManager makes (HMAC-SHA256, AES-CTR, NopEncoder, no
// maximum age), in securecookie's own format, so every reference ever
// issued keeps opening. It exists because that Decode runs on every
// request and builds a new HMAC (two SHA-256 states and the key pads) and
// a dozen buffers each time: here the keyed HMAC states are reused. The
// securecookie codecs still seal every reference; FuzzRefCodec checks that
// both accept and refuse the same values.
//
// The format, for name n and payload p:
//
//	base64url( date "|" base64url(iv || AES-CTR(p)) "|" HMAC(n "|" date "|" base64url(...)) )
type refCodec struct {
	hashKey []byte
	block   cipher.Block
	macs    sync.Pool // hash.Hash: HMAC-SHA256 under hashKey, reset before use
}

// maxSealedLen is securecookie's default MaxLength, which our codecs keep.
const maxSealedLen = 4096

var errRefMAC = errors.New("the value is not valid (MAC)")

func newRefCodec(k KeyPair) (*refCodec, error) {
	block, err := aes.NewCipher(k.Block)
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	c := &refCodec{hashKey: bytes.Clone(k.Hash), block: block}
	c.macs.New = func() any { return hmac.New(sha256.New, c.hashKey) }
	return c, nil
}

// decode returns the payload sealed under the name namePrefix+name in value
// (padded base64url, as securecookie writes it). The name comes in two
// parts so that it is not concatenated on every request.
func (c *refCodec) decode(namePrefix, name, value string) ([]byte, error) {
	if len(value) > maxSealedLen {
		return nil, fmt.Errorf("the value is too long: %d", len(value))
	}
	b, err := base64.URLEncoding.DecodeString(value)
	if err != nil {
		return nil, fmt.Errorf("base64 decode failed: %w", err)
	}
	// "date|value|mac"; the MAC is raw bytes and may itself hold '|'.
	i := bytes.IndexByte(b, '|')
	if i < 0 {
		return nil, errRefMAC
	}
	j := bytes.IndexByte(b[i+1:], '|')
	if j < 0 {
		return nil, errRefMAC
	}
	j += i + 1
	date, sealed, mac := b[:i], b[i+1:j], b[j+1:]

	msg := make([]byte, 0, len(namePrefix)+len(name)+1+j)
	msg = append(append(append(append(msg, namePrefix...), name...), '|'), b[:j]...)
	h := c.macs.Get().(hash.Hash)
	h.Reset()
	h.Write(msg)
	var sum [sha256.Size]byte
	ok := hmac.Equal(h.Sum(sum[:0]), mac)
	c.macs.Put(h)
	if !ok {
		return nil, errRefMAC
	}
	if _, err := strconv.ParseInt(string(date), 10, 64); err != nil {
		return nil, errors.New("invalid timestamp")
	}
	payload := make([]byte, base64.URLEncoding.DecodedLen(len(sealed)))
	n, err := base64.URLEncoding.Decode(payload, sealed)
	if err != nil {
		return nil, fmt.Errorf("base64 decode failed: %w", err)
	}
	payload = payload[:n]
	bs := c.block.BlockSize()
	if len(payload) <= bs {
		return nil, errors.New("the value could not be decrypted")
	}
	cipher.NewCTR(c.block, payload[:bs]).XORKeyStream(payload[bs:], payload[bs:])
	return payload[bs:], nil
}
