package grant

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/sync/singleflight"
)

// CheckSecretHash reports whether hash is a client secret hash this server
// can verify: bcrypt ($2a$, $2b$, $2y$) or argon2id in the PHC form that
// `caddy hash-password` prints.
func CheckSecretHash(hash []byte) error {
	switch {
	case isBcrypt(hash):
		_, err := bcrypt.Cost(hash)
		return err
	case strings.HasPrefix(string(hash), "$argon2id$"):
		_, err := parseArgon2id(hash)
		return err
	}
	return errors.New("not a bcrypt or argon2id hash")
}

func isBcrypt(hash []byte) bool {
	s := string(hash)
	return strings.HasPrefix(s, "$2a$") || strings.HasPrefix(s, "$2b$") || strings.HasPrefix(s, "$2y$")
}

// fakeSecretHash is compared against for an unknown client id, so that the
// answer for an unknown client costs what a wrong secret costs. It is the
// hash Caddy's basic_auth uses for the same purpose (bcrypt, cost 14).
var fakeSecretHash = []byte("$2a$14$X3ulqf/iGxnf1k6oMZ.RZeJUoqI9PX2PM4rS5lkIKJXduLGXGPrt6")

// secretCache remembers the outcome of slow hash comparisons, keyed by a
// SHA-256 of hash and secret (never the secret itself), so that bcrypt or
// argon2id is paid once per (client, secret) rather than per request.
// Concurrent first comparisons of one pair share a single computation.
type secretCache struct {
	mu    sync.RWMutex
	seen  map[[32]byte]bool
	group singleflight.Group
}

const secretCacheSize = 4096

func (c *secretCache) verify(hash []byte, secret string) bool {
	h := sha256.New()
	var n [8]byte
	l := len(hash)
	for i := range n {
		n[i] = byte(l >> (8 * i))
	}
	h.Write(n[:])
	h.Write(hash)
	h.Write([]byte(secret))
	var key [32]byte
	h.Sum(key[:0])

	c.mu.RLock()
	ok, hit := c.seen[key]
	c.mu.RUnlock()
	if hit {
		return ok
	}
	v, _, _ := c.group.Do(string(key[:]), func() (any, error) {
		return compareSecret(hash, secret), nil
	})
	ok = v.(bool)
	c.mu.Lock()
	if c.seen == nil {
		c.seen = make(map[[32]byte]bool)
	}
	if len(c.seen) >= secretCacheSize {
		// Dropping everything is crude but bounded and rare: a working
		// deployment has a handful of (client, secret) pairs.
		clear(c.seen)
	}
	c.seen[key] = ok
	c.mu.Unlock()
	return ok
}

func compareSecret(hash []byte, secret string) bool {
	if isBcrypt(hash) {
		return bcrypt.CompareHashAndPassword(hash, []byte(secret)) == nil
	}
	p, err := parseArgon2id(hash)
	if err != nil {
		return false
	}
	key := argon2.IDKey([]byte(secret), p.salt, p.time, p.memory, p.threads, uint32(len(p.key)))
	return subtle.ConstantTimeCompare(key, p.key) == 1
}

type argon2Params struct {
	salt, key    []byte
	time, memory uint32
	threads      uint8
}

// parseArgon2id reads $argon2id$v=19$m=…,t=…,p=…$salt$key.
func parseArgon2id(hash []byte) (*argon2Params, error) {
	parts := strings.Split(string(hash), "$")
	if len(parts) != 6 || parts[1] != "argon2id" || parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return nil, errors.New("malformed argon2id hash")
	}
	var p argon2Params
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return nil, errors.New("malformed argon2id parameters")
		}
		switch k {
		case "m":
			p.memory = uint32(n)
		case "t":
			p.time = uint32(n)
		case "p":
			if n > 255 {
				return nil, errors.New("malformed argon2id parameters")
			}
			p.threads = uint8(n)
		default:
			return nil, errors.New("malformed argon2id parameters")
		}
	}
	var err error
	if p.salt, err = base64.RawStdEncoding.Strict().DecodeString(parts[4]); err != nil {
		return nil, errors.New("malformed argon2id salt")
	}
	if p.key, err = base64.RawStdEncoding.Strict().DecodeString(parts[5]); err != nil || len(p.key) == 0 {
		return nil, errors.New("malformed argon2id key")
	}
	if p.time == 0 || p.memory == 0 || p.threads == 0 {
		return nil, errors.New("malformed argon2id parameters")
	}
	return &p, nil
}
