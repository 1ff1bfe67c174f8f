package caddymodule

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/clientauth"
)

// argon2idHash is a real argon2id hash of secret in the form `caddy
// hash-password --algorithm argon2id` prints, at test-sized parameters.
func argon2idHash(secret string, m, t uint32, p uint8) string {
	salt := []byte(rand.Text())[:16]
	key := argon2.IDKey([]byte(secret), salt, t, m, p, 32)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", m, t, p, enc.EncodeToString(salt), enc.EncodeToString(key))
}

// argon2idClaim is a well-formed argon2id hash that asks for parameters
// no test should ever pay for; it is rejected before anything hashes.
func argon2idClaim(params string) string {
	enc := base64.RawStdEncoding
	return "$argon2id$v=19$" + params + "$" + enc.EncodeToString([]byte("0123456789abcdef")) + "$" + enc.EncodeToString(make([]byte, 32))
}

func bcryptHash(t *testing.T, secret string, cost int) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(secret), cost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func TestSecretHashesAreCheckedByCaddysHashers(t *testing.T) {
	cases := []struct {
		name     string
		hash     string
		comparer clientauth.Comparer
	}{
		{"bcrypt", bcryptHash(t, "pw", bcrypt.MinCost), caddyauth.BcryptHash{}},
		{"argon2id", argon2idHash("pw", 64, 1, 1), caddyauth.Argon2idHash{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, err := secretHash(tc.hash)
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprintf("%T", h.Comparer) != fmt.Sprintf("%T", tc.comparer) {
				t.Fatalf("comparer %T, want %T", h.Comparer, tc.comparer)
			}
			for secret, want := range map[string]bool{"pw": true, "PW": false} {
				if ok, err := h.Comparer.Compare(h.Value, []byte(secret)); ok != want || err != nil {
					t.Fatalf("compare %q = %v, %v; want %v", secret, ok, err, want)
				}
			}
		})
	}
}

func TestBadSecretHashFailsAtAdaptNamingTheClient(t *testing.T) {
	cases := []struct{ name, hash, want string }{
		{"argon2id memory that would exhaust the machine", argon2idClaim("m=4194304,t=1,p=1"), "memory"},
		{"argon2id with absurd passes", argon2idClaim("m=64,t=1000,p=1"), "passes"},
		{"argon2id with zero threads", argon2idClaim("m=64,t=1,p=0"), "positive"},
		{"argon2id with zero passes", argon2idClaim("m=64,t=0,p=1"), "positive"},
		{"argon2id with threads above 255", argon2idClaim("m=64,t=1,p=256"), "malformed"},
		{"argon2id parameters out of form", argon2idClaim("64,t=1,p=1"), "malformed"},
		{"argon2id without a key", "$argon2id$v=19$m=64,t=1,p=1$MDEyMzQ1Njc4OWFiY2RlZg$", "key length"},
		{"argon2i, not argon2id", strings.Replace(argon2idClaim("m=64,t=1,p=1"), "argon2id", "argon2i", 1), "bcrypt or argon2id"},
		{"bcrypt cut short", "$2a$99$short", "bcrypt"},
		{"plaintext", "hunter2", "bcrypt or argon2id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := adaptGrant("issuer_url https://as.example\nclient billing {\n secret " + tc.hash + "\n}")
			if err == nil {
				t.Fatal("adapted without error")
			}
			if !strings.Contains(err.Error(), `client "billing"`) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not name client \"billing\" and %q", err, tc.want)
			}
		})
	}
}

func TestPlaceholderSecretHashFailsAtProvisionNamingTheClient(t *testing.T) {
	t.Setenv("JWT_GRANT_TEST_SECRET", argon2idClaim("m=4194304,t=1,p=1"))
	cfg, err := adaptGrant("issuer_url https://as.example\nclient billing {\n secret {env.JWT_GRANT_TEST_SECRET}\n}")
	if err != nil {
		t.Fatalf("adapt should pass (the placeholder is resolved later): %v", err)
	}
	err = caddyValidate(cfg)
	if err == nil || !strings.Contains(err.Error(), `client "billing"`) || !strings.Contains(err.Error(), "memory") {
		t.Fatalf("validate error %v does not name client \"billing\" and its memory", err)
	}
}

func TestSecretConcurrencyOption(t *testing.T) {
	cases := []struct{ name, arg, want string }{
		{"a positive count is kept", "3", `"secret_concurrency":3`},
		{"zero is rejected", "0", "positive integer"},
		{"a word is rejected", "many", "positive integer"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := adaptGrant("issuer_url https://as.example\nsecret_concurrency " + tc.arg)
			got := string(cfg)
			if err != nil {
				got = err.Error()
			}
			if !strings.Contains(got, tc.want) {
				t.Fatalf("got %s, want it to contain %s", got, tc.want)
			}
		})
	}
}

func TestStandInHasTheAlgorithmAndHighestCostOfTheClients(t *testing.T) {
	cases := []struct {
		name   string
		hashes []string
		want   string
	}{
		{"highest bcrypt cost", []string{bcryptHash(t, "a", 4), bcryptHash(t, "b", 5), bcryptHash(t, "c", 4)}, "bcrypt/5"},
		{"largest argon2id parameters, each on its own",
			[]string{argon2idHash("a", 64, 1, 1), argon2idHash("b", 128, 1, 1), argon2idHash("c", 32, 2, 1), argon2idHash("d", 32, 1, 2)},
			"argon2id/m=128,t=2,p=2,k=32"},
		{"the algorithm most clients use", []string{bcryptHash(t, "a", 4), argon2idHash("b", 64, 1, 1), argon2idHash("c", 64, 1, 1)},
			"argon2id/m=64,t=1,p=1,k=32"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var hashes []*clientauth.Hash
			for _, s := range tc.hashes {
				h, err := secretHash(s)
				if err != nil {
					t.Fatal(err)
				}
				hashes = append(hashes, h)
			}
			spec, err := newStandInSpec(hashes)
			if err != nil {
				t.Fatal(err)
			}
			if spec.String() != tc.want {
				t.Fatalf("stand-in spec %s, want %s", spec, tc.want)
			}
			standIn, err := spec.build()
			if err != nil {
				t.Fatal(err)
			}
			// The stand-in itself must have that cost, not only its spec.
			got, err := newStandInSpec([]*clientauth.Hash{&standIn})
			if err != nil {
				t.Fatal(err)
			}
			if got != spec {
				t.Fatalf("built stand-in costs %s, want %s", got, spec)
			}
			if ok, err := standIn.Comparer.Compare(standIn.Value, []byte("a")); ok || err != nil {
				t.Fatalf("stand-in compare = %v, %v; want false", ok, err)
			}
		})
	}
}
