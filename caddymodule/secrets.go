package caddymodule

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/clientauth"
)

// Bounds on the argon2id parameters a client hash may ask for. Every
// unknown client id is compared against a stand-in with the largest
// parameters configured, so one absurd hash would make every request, not
// only that client's, cost that much memory and time.
const (
	maxArgon2idMemoryKiB = 256 << 10 // 256 MiB
	maxArgon2idTime      = 16
	maxArgon2idKeyLen    = 128
)

// secretHash turns a configured client secret (a hash printed by `caddy
// hash-password`) into a clientauth.Hash checked by Caddy's own hasher.
func secretHash(secret string) (*clientauth.Hash, error) {
	b := []byte(secret)
	switch {
	case strings.HasPrefix(secret, "$2a$"), strings.HasPrefix(secret, "$2b$"), strings.HasPrefix(secret, "$2y$"):
		if _, err := bcrypt.Cost(b); err != nil {
			return nil, fmt.Errorf("malformed bcrypt hash: %w", err)
		}
		return &clientauth.Hash{Value: b, Comparer: caddyauth.BcryptHash{}}, nil
	case strings.HasPrefix(secret, "$argon2id$"):
		if _, err := argon2idParamsOf(b); err != nil {
			return nil, err
		}
		return &clientauth.Hash{Value: b, Comparer: caddyauth.Argon2idHash{}}, nil
	}
	return nil, errors.New("not a bcrypt or argon2id hash")
}

// argon2idParams are the cost parameters of an argon2id hash.
type argon2idParams struct {
	memory, time uint32 // KiB, passes
	threads      uint8
	keyLen       int
}

// argon2idParamsOf validates hash with caddyauth.DecodeHash and bounds its
// parameters. DecodeHash does not expose them (its fields are unexported),
// so they are read again, strictly, from the field it accepted.
func argon2idParamsOf(hash []byte) (argon2idParams, error) {
	var p argon2idParams
	_, key, err := caddyauth.DecodeHash(hash)
	if err != nil {
		return p, fmt.Errorf("malformed argon2id hash: %w", err)
	}
	field := strings.Split(string(hash), "$")[3]
	if _, err := fmt.Sscanf(field, "m=%d,t=%d,p=%d", &p.memory, &p.time, &p.threads); err != nil {
		return p, errors.New("malformed argon2id parameters: want m=<KiB>,t=<passes>,p=<threads>")
	}
	p.keyLen = len(key)
	switch {
	case p.memory == 0 || p.time == 0 || p.threads == 0:
		// argon2.IDKey panics on zero passes or threads.
		return p, errors.New("argon2id parameters m, t and p must be positive")
	case p.memory > maxArgon2idMemoryKiB:
		return p, fmt.Errorf("argon2id memory m=%d KiB is above the %d KiB limit", p.memory, maxArgon2idMemoryKiB)
	case p.time > maxArgon2idTime:
		return p, fmt.Errorf("argon2id passes t=%d is above the limit of %d", p.time, maxArgon2idTime)
	case p.keyLen == 0 || p.keyLen > maxArgon2idKeyLen:
		return p, fmt.Errorf("argon2id key length %d is not within 1..%d bytes", p.keyLen, maxArgon2idKeyLen)
	}
	return p, nil
}

// standInSpec is the algorithm and the highest cost among the configured
// clients' hashes: what the stand-in hash for an unknown client must cost.
type standInSpec struct {
	argon2id   bool
	bcryptCost int
	argon      argon2idParams
}

// newStandInSpec takes the algorithm most clients use (bcrypt on a tie)
// and, for it, the highest cost of each parameter. One stand-in cannot
// match two algorithms at once: with mixed algorithms, the clients of the
// minority algorithm cost something else than an unknown id.
func newStandInSpec(hashes []*clientauth.Hash) (standInSpec, error) {
	var s standInSpec
	var nBcrypt, nArgon int
	for _, h := range hashes {
		if _, ok := h.Comparer.(caddyauth.Argon2idHash); ok {
			nArgon++
		} else {
			nBcrypt++
		}
	}
	s.argon2id = nArgon > nBcrypt
	for _, h := range hashes {
		_, isArgon := h.Comparer.(caddyauth.Argon2idHash)
		if isArgon != s.argon2id {
			continue
		}
		if !isArgon {
			cost, err := bcrypt.Cost(h.Value)
			if err != nil {
				return s, err
			}
			s.bcryptCost = max(s.bcryptCost, cost)
			continue
		}
		p, err := argon2idParamsOf(h.Value)
		if err != nil {
			return s, err
		}
		s.argon.memory = max(s.argon.memory, p.memory)
		s.argon.time = max(s.argon.time, p.time)
		s.argon.threads = max(s.argon.threads, p.threads)
		s.argon.keyLen = max(s.argon.keyLen, p.keyLen)
	}
	return s, nil
}

// String names the stand-in's cost; it keys the shared Secrets.
func (s standInSpec) String() string {
	if s.argon2id {
		return fmt.Sprintf("argon2id/m=%d,t=%d,p=%d,k=%d", s.argon.memory, s.argon.time, s.argon.threads, s.argon.keyLen)
	}
	return fmt.Sprintf("bcrypt/%d", s.bcryptCost)
}

// build hashes a random secret nobody knows at the spec's cost.
func (s standInSpec) build() (clientauth.Hash, error) {
	secret := []byte(rand.Text())
	if !s.argon2id {
		// caddyauth.BcryptHash.Hash always uses Caddy's default cost (its
		// cost field is unexported); x/crypto/bcrypt is what it calls.
		v, err := bcrypt.GenerateFromPassword(secret, s.bcryptCost)
		return clientauth.Hash{Value: v, Comparer: caddyauth.BcryptHash{}}, err
	}
	// caddyauth.Argon2idHash takes its parameters only from DecodeHash, so
	// a template with the spec's parameters and a random salt is decoded
	// and then hashes the secret.
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	enc := base64.RawStdEncoding
	template := fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", s.argon.memory, s.argon.time, s.argon.threads,
		enc.EncodeToString(salt), enc.EncodeToString(make([]byte, s.argon.keyLen)))
	hasher, _, err := caddyauth.DecodeHash([]byte(template))
	if err != nil {
		return clientauth.Hash{}, err
	}
	v, err := hasher.Hash(secret)
	return clientauth.Hash{Value: v, Comparer: caddyauth.Argon2idHash{}}, err
}

// secretsPool shares one clientauth.Secrets among the handlers, and across
// config reloads, that have the same stand-in cost and concurrency: a
// reload then keeps verified secrets verified (SPEC §2) and does not pay
// for a new stand-in. Sharing is safe because the cache is keyed by tenant,
// client id and hash as well as the secret.
var secretsPool = caddy.NewUsagePool()

type pooledSecrets struct{ *clientauth.Secrets }

func (pooledSecrets) Destruct() error { return nil }

// provisionSecrets returns the Secrets for the clients' hashes, nil when no
// client has a secret. The handler's Cleanup releases it.
func (h *Handler) provisionSecrets(hashes []*clientauth.Hash) (*clientauth.Secrets, error) {
	if len(hashes) == 0 {
		return nil, nil
	}
	spec, err := newStandInSpec(hashes)
	if err != nil {
		return nil, fmt.Errorf("secret stand-in: %w", err)
	}
	n := h.SecretConcurrency
	if n <= 0 {
		n = runtime.NumCPU()
	}
	key := fmt.Sprintf("%s/concurrency=%d", spec, n)
	v, _, err := secretsPool.LoadOrNew(key, func() (caddy.Destructor, error) {
		standIn, err := spec.build()
		if err != nil {
			return nil, err
		}
		return pooledSecrets{clientauth.New(clientauth.Config{StandIn: standIn, Concurrency: n})}, nil
	})
	if err != nil {
		return nil, fmt.Errorf("secret stand-in: %w", err)
	}
	h.closers = append(h.closers, func() { _, _ = secretsPool.Delete(key) })
	return v.(pooledSecrets).Secrets, nil
}
