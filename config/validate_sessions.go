package config

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// publishedKeys are the SHA-256 sums of cookie keys that were published as
// defaults (docker-compose.yml's demo fallbacks until issue 8 item 14).
// Anyone can forge and open cookies sealed with them, and the tokens at rest
// in Redis are encrypted under keys the cookie carries, so they are refused
// everywhere; `bffgate demo` generates its own keys and never uses them.
var publishedKeys = []string{
	"75c4c5832ea177a6ed7f6411d2c4f0abe14433762333f0c2d85d2217f674421e",
	"53d7d03e51480e81d09c075cd3f6a5775a73ed738fe941571f9a4796fa966d3b",
}

const msgPublishedKey = "is a published example key (docker-compose.yml's old demo default): anyone can forge cookies sealed with it; make your own: openssl rand -base64 32"

func published(key []byte) bool {
	sum := sha256.Sum256(key)
	return slices.Contains(publishedKeys, hex.EncodeToString(sum[:]))
}

func (v *validator) sessions() {
	ss, file := &v.c.Sessions, v.c.Path
	switch ss.Store {
	case "memory":
	case "redis":
		v.redis()
		if len(ss.CookieKeys) == 0 {
			v.add(file, "sessions.cookie_keys", "at least one key pair is required with the redis store: every instance must share the keys to open each other's cookies")
		}
	default:
		v.add(file, "sessions.store", "must be memory or redis, not %s", v.q(file, "sessions.store", ss.Store))
	}
	for i, k := range ss.CookieKeys {
		p := fmt.Sprintf("sessions.cookie_keys[%d]", i)
		if b, err := decodeKey(k.Hash, 32, 64); err != nil {
			v.add(file, p+".hash", "%v", err)
		} else if published(b) {
			v.add(file, p+".hash", "%s", msgPublishedKey)
		}
		if b, err := decodeKey(k.Block, 32); err != nil {
			v.add(file, p+".block", "%v", err)
		} else if published(b) {
			v.add(file, p+".block", "%s", msgPublishedKey)
		}
	}
	v.positive(file, "sessions.idle_timeout", ss.IdleTimeout)
	v.positive(file, "sessions.absolute_timeout", ss.AbsoluteTimeout)
	if ss.IdleTimeout > ss.AbsoluteTimeout && ss.AbsoluteTimeout > 0 {
		v.add(file, "sessions.idle_timeout", "(%s) must not exceed sessions.absolute_timeout (%s)", shortDuration(ss.IdleTimeout), shortDuration(ss.AbsoluteTimeout))
	}
	if ss.RefreshMargin < 0 {
		v.add(file, "sessions.refresh_margin", "must not be negative")
	}
	v.positive(file, "sessions.provider_timeout", ss.ProviderTimeout)
	if ss.Cache.MaxEntries < 0 {
		v.add(file, "sessions.cache.max_entries", "must not be negative")
	}
}

func (v *validator) redis() {
	r, file := &v.c.Sessions.Redis, v.c.Path
	switch {
	case r.URL == "" && len(r.Addrs) == 0:
		v.add(file, "sessions.redis.url", "is required with the redis store (or sessions.redis.addrs for a cluster or Sentinel)")
	case r.URL != "" && len(r.Addrs) > 0:
		v.add(file, "sessions.redis.addrs", "cannot be combined with sessions.redis.url: set one or the other")
	}
	if r.URL != "" {
		// Never quote the URL: it may carry the password.
		u, err := url.Parse(r.URL)
		if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			v.add(file, "sessions.redis.url", "must be a redis:// or rediss:// URL with a host")
		} else if db := strings.TrimPrefix(u.Path, "/"); db != "" {
			if n, err := strconv.Atoi(db); err != nil || n < 0 {
				v.add(file, "sessions.redis.url", "the path must be a database number, such as /0")
			}
		}
	}
	for i, a := range r.Addrs {
		if host, _, err := net.SplitHostPort(a); err != nil || host == "" || checkListen(a) != "" {
			k := fmt.Sprintf("sessions.redis.addrs[%d]", i)
			v.add(file, k, "%s is not host:port, such as redis-0.redis:6379", v.q(file, k, a))
		}
	}
	if r.MasterName != "" && len(r.Addrs) == 0 {
		v.add(file, "sessions.redis.master_name", "needs sessions.redis.addrs: the Sentinel addresses")
	}
	if r.MasterName == "" {
		for _, f := range [...]struct{ key, val string }{
			{"sessions.redis.sentinel_username", r.SentinelUsername},
			{"sessions.redis.sentinel_password", r.SentinelPassword},
		} {
			if f.val != "" {
				v.add(file, f.key, "only applies with sessions.redis.master_name (Redis Sentinel)")
			}
		}
	}
	if r.DB < 0 {
		v.add(file, "sessions.redis.db", "must not be negative")
	}
	v.positive(file, "sessions.redis.dial_timeout", r.DialTimeout)
	v.positive(file, "sessions.redis.read_timeout", r.ReadTimeout)
	v.positive(file, "sessions.redis.write_timeout", r.WriteTimeout)
	if r.PoolSize <= 0 {
		v.add(file, "sessions.redis.pool_size", "must be positive")
	}
	if r.MinIdleConns < 0 {
		v.add(file, "sessions.redis.min_idle_conns", "must not be negative")
	}
}

// Decode returns the key pair's bytes, checking their sizes: hash 32 or 64
// bytes, block 32 (AES-256). Both accept standard or URL base64, padded or
// not, so keys made by `openssl rand -base64 32` work as they are.
func (k CookieKey) Decode() (hash, block []byte, err error) {
	hash, herr := decodeKey(k.Hash, 32, 64)
	block, berr := decodeKey(k.Block, 32)
	if herr != nil || berr != nil {
		return nil, nil, errors.Join(prefixErr("hash", herr), prefixErr("block", berr))
	}
	return hash, block, nil
}

func prefixErr(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

// decodeKey decodes one base64 key and checks its length. Its errors never
// include the key.
func decodeKey(s string, sizes ...int) ([]byte, error) {
	if s == "" {
		return nil, errors.New("is required")
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		b, err := enc.DecodeString(s)
		if err != nil {
			continue
		}
		if !slices.Contains(sizes, len(b)) {
			want := strconv.Itoa(sizes[0])
			if len(sizes) > 1 {
				want += " or " + strconv.Itoa(sizes[1])
			}
			return nil, fmt.Errorf("decodes to %d bytes; want %s (make one with: openssl rand -base64 %d)", len(b), want, sizes[0])
		}
		return b, nil
	}
	return nil, errors.New("is not valid base64 (standard or URL alphabet)")
}

// shortDuration prints 30m rather than 30m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
