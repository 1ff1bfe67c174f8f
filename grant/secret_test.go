package grant

import (
	"encoding/base64"
	"testing"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

func TestSecretHashes(t *testing.T) {
	bc, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	// The argon2id form `caddy hash-password --algorithm argon2id` prints.
	salt := []byte("0123456789abcdef")
	key := argon2.IDKey([]byte("pw"), salt, 1, 1024, 1, 32)
	ar := []byte("$argon2id$v=19$m=1024,t=1,p=1$" + b64raw(salt) + "$" + b64raw(key))
	cases := []struct {
		name   string
		hash   []byte
		secret string
		ok     bool
	}{
		{"bcrypt accepts its secret", bc, "pw", true},
		{"bcrypt refuses another", bc, "pw2", false},
		{"argon2id accepts its secret", ar, "pw", true},
		{"argon2id refuses another", ar, "PW", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := CheckSecretHash(tc.hash); err != nil {
				t.Fatalf("hash refused: %v", err)
			}
			var c secretCache
			if got := c.verify(tc.hash, tc.secret); got != tc.ok {
				t.Fatalf("verify = %v, want %v", got, tc.ok)
			}
		})
	}
	for _, bad := range []string{"plaintext", "$argon2id$v=19$m=0,t=1,p=1$YQ$YQ", "$argon2i$v=19$m=1024,t=1,p=1$YQ$YQ", "$2a$99$short"} {
		if CheckSecretHash([]byte(bad)) == nil {
			t.Errorf("%q accepted as a secret hash", bad)
		}
	}
}

func TestSecretCacheRemembersWithoutTheSecret(t *testing.T) {
	bc, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	var c secretCache
	if !c.verify(bc, "pw") || c.verify(bc, "nope") {
		t.Fatal("wrong outcome")
	}
	if len(c.seen) != 2 {
		t.Fatalf("cache holds %d outcomes, want 2", len(c.seen))
	}
	for k := range c.seen {
		if string(k[:2]) == "pw" {
			t.Fatal("cache key holds the secret")
		}
	}
	// A cached outcome is served without recomputing: replace the hash's
	// meaning by poisoning the entry and observe it is used.
	for k := range c.seen {
		c.seen[k] = !c.seen[k]
	}
	if c.verify(bc, "pw") {
		t.Fatal("verify recomputed instead of using the cached outcome")
	}
}

func BenchmarkSecretVerifyCached(b *testing.B) {
	bc, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.DefaultCost)
	var c secretCache
	c.verify(bc, "pw")
	b.ReportAllocs()
	for b.Loop() {
		c.verify(bc, "pw")
	}
}

func b64raw(b []byte) string { return base64.RawStdEncoding.EncodeToString(b) }
