// Package clientauth verifies client secrets for the token, introspection
// and revocation endpoints without giving an attacker an oracle or a
// lever (SPEC §3.1): an unknown client costs what a known client with a
// wrong secret costs, a verified secret is answered from memory, and the
// slow hash comparisons are admitted a few at a time. The hashes are
// checked by an injected Comparer (Caddy's caddyauth hashers in
// production), so this package knows nothing of Caddy.
package clientauth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	weakrand "math/rand/v2"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
	"golang.org/x/sync/singleflight"
)

// Comparer is what Caddy's caddyauth.BcryptHash and caddyauth.Argon2idHash
// implement (caddyauth.Comparer): it reports whether plaintext hashes to
// hashed, and errs only on a malformed hash.
type Comparer interface {
	Compare(hashed, plaintext []byte) (bool, error)
}

// Hash is one configured secret hash with the comparer that checks it.
type Hash struct {
	Value    []byte
	Comparer Comparer
}

// Config is what Secrets is built from; zero values take the defaults.
type Config struct {
	// StandIn is compared for an unknown client (or a client without a
	// secret), so that it costs what a known client with a wrong secret
	// costs: it must have the algorithm and the highest cost of the
	// configured clients' hashes.
	StandIn Hash
	// Concurrency bounds the uncached comparisons running at once
	// (secret_concurrency). Default runtime.NumCPU(): a hash comparison
	// keeps one core busy, so more at once only makes each slower.
	Concurrency int
	// Wait is how long a request may wait for its turn before it gets
	// ErrBusy. Default DefaultWait.
	Wait time.Duration
	// CacheSize bounds the verified-outcome cache. Default
	// DefaultCacheSize.
	CacheSize int
}

// DefaultWait is SPEC §3.1's bound on the wait for a comparison slot.
const DefaultWait = time.Second

// DefaultCacheSize bounds the verified-outcome cache. Only secrets that
// verified enter it, so it holds one entry per (tenant, client, live
// secret) in use: 4096 covers thousands of clients, each during a secret
// rotation, at under a megabyte, and an attacker cannot fill it.
const DefaultCacheSize = 4096

// ErrBusy is returned when a comparison could not get its turn within
// Wait, or the request ended while waiting; the caller answers 503
// temporarily_unavailable with Retry-After.
var ErrBusy = errors.New("client secret verification is busy")

// errNoComparer is a configuration fault: a hash (or the stand-in) that
// nothing can check.
var errNoComparer = errors.New("secret hash has no comparer")

// Secrets verifies client secrets. It is safe for concurrent use, and one
// Secrets may serve several servers and outlive a configuration: its cache
// keys include the hash, so a changed secret is never answered from it.
type Secrets struct {
	standIn   Hash
	wait      time.Duration
	cacheSize int
	sem       *semaphore.Weighted
	flights   singleflight.Group
	// key makes cache keys unguessable: the cache holds digests of valid
	// secrets, which must not be cheaper to brute-force than the hashes.
	key []byte
	// macs holds *digester values keyed with key, so that a cached
	// verification builds no HMAC.
	macs sync.Pool

	mu       sync.RWMutex
	verified map[[sha256.Size]byte]struct{}
}

// New returns a Secrets with cfg's defaults filled in.
func New(cfg Config) *Secrets {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = runtime.NumCPU()
	}
	if cfg.Wait <= 0 {
		cfg.Wait = DefaultWait
	}
	if cfg.CacheSize <= 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	s := &Secrets{
		standIn:   cfg.StandIn,
		wait:      cfg.Wait,
		cacheSize: cfg.CacheSize,
		sem:       semaphore.NewWeighted(int64(cfg.Concurrency)),
		key:       []byte(rand.Text()),
		verified:  make(map[[sha256.Size]byte]struct{}),
	}
	s.macs.New = func() any { return &digester{mac: hmac.New(sha256.New, s.key)} }
	return s
}

// Verify reports whether secret matches hash. A nil hash (unknown client,
// or a client without a secret) is compared against the stand-in and is
// always false.
//
// Only verified outcomes are cached, keyed by a keyed digest of (tenant,
// clientID, hash, secret). A wrong secret is never cached, for a known
// client and an unknown one alike, so both always pay one full comparison:
// caching failures would either make an unknown id cheaper than a known
// one, or let a flood of wrong secrets evict the verified ones SPEC §3.1
// keeps fast. Concurrent identical comparisons share one computation.
// Uncached comparisons are admitted Concurrency at a time; a request that
// waits longer than Wait, or whose ctx ends first, gets ErrBusy.
func (s *Secrets) Verify(ctx context.Context, tenant, clientID string, hash *Hash, secret string) (bool, error) {
	known := hash != nil
	h := s.standIn
	if known {
		h = *hash
	}
	if h.Comparer == nil {
		return false, fmt.Errorf("client %q: %w", clientID, errNoComparer)
	}
	key := s.digest(tenant, clientID, h.Value, secret)
	if known && s.cached(key) {
		return true, nil
	}
	return s.share(ctx, key, h, secret, known)
}

// share runs an uncached comparison, joining an identical one under way.
// It is apart from Verify so that the key the flight's closure captures
// is moved to the heap here, not on a cache hit.
func (s *Secrets) share(ctx context.Context, key [sha256.Size]byte, h Hash, secret string, known bool) (bool, error) {
	ch := s.flights.DoChan(string(key[:]), func() (any, error) {
		return s.compare(key, h, secret, known)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return false, r.Err
		}
		return known && r.Val.(bool), nil
	case <-ctx.Done():
		return false, fmt.Errorf("%w: %w", ErrBusy, context.Cause(ctx))
	}
}

// compare runs one admitted comparison. It waits for its slot on its own
// clock rather than the first caller's ctx, so that one caller giving up
// does not fail the others sharing the flight.
func (s *Secrets) compare(key [sha256.Size]byte, h Hash, secret string, known bool) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.wait)
	defer cancel()
	if err := s.sem.Acquire(ctx, 1); err != nil {
		return false, ErrBusy
	}
	defer s.sem.Release(1)
	ok, err := h.Comparer.Compare(h.Value, []byte(secret))
	if err != nil {
		return false, fmt.Errorf("comparing secret hash: %w", err)
	}
	if ok && known {
		s.remember(key)
	}
	return ok, nil
}

// digest is HMAC-SHA-256 over the length-prefixed fields, so that no two
// field splits share a key and the secret is never stored.
func (s *Secrets) digest(tenant, clientID string, hashValue []byte, secret string) [sha256.Size]byte {
	d := s.macs.Get().(*digester)
	defer s.macs.Put(d)
	// The fields are gathered in d.buf and written at once: a write
	// through the hash.Hash interface would move each []byte conversion
	// and length prefix to the heap. The secret is wiped from d.buf before
	// the digester goes back to the pool.
	b := appendField(d.buf[:0], tenant)
	b = appendField(b, clientID)
	b = appendField(b, hashValue)
	b = appendField(b, secret)
	d.mac.Reset() // back to the keyed state
	d.mac.Write(b)
	clear(b)
	d.buf = b[:0]
	if cap(b) > maxPooledScratch {
		d.buf = nil // an outsized secret's buffer is not kept
	}
	var k [sha256.Size]byte
	copy(k[:], d.mac.Sum(d.sum[:0]))
	return k
}

// maxPooledScratch bounds the scratch space a pooled digester keeps.
const maxPooledScratch = 4 << 10

func appendField[T string | []byte](b []byte, f T) []byte {
	b = binary.LittleEndian.AppendUint64(b, uint64(len(f)))
	return append(b, f...)
}

// digester is a keyed HMAC with its scratch space: hmac's Reset returns
// it to the keyed state, so one serves any number of digests in turn.
type digester struct {
	mac hash.Hash
	buf []byte
	sum [sha256.Size]byte
}

func (s *Secrets) cached(key [sha256.Size]byte) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.verified[key]
	return ok
}

func (s *Secrets) remember(key [sha256.Size]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.verified) >= s.cacheSize {
		s.makeRoom()
	}
	s.verified[key] = struct{}{}
}

// makeRoom evicts about a tenth of the cache, chosen at random, as
// caddyauth's basic_auth cache does: clearing all would make every client
// pay a full comparison again at once. caddyauth.Cache is not usable
// outside basic_auth (its fields are unexported), hence this copy; it
// decides per entry in one pass instead of walking the map per deletion.
func (s *Secrets) makeRoom() {
	n := len(s.verified)
	target := max(n/10, 1)
	deleted := 0
	for deleted < target {
		for k := range s.verified {
			if deleted >= target {
				break
			}
			//nolint:gosec // eviction needs spread, not unpredictability
			if weakrand.IntN(n) < target {
				delete(s.verified, k)
				deleted++
			}
		}
	}
}
