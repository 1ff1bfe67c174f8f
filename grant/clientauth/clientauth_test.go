package clientauth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// testComparer is the injected hasher under the test's control: a hash
// "h:<secret>" matches <secret>, every call is counted, and a secret
// listed in gates blocks until its channel is closed.
type testComparer struct {
	calls atomic.Int64
	gates map[string]chan struct{}
}

func (c *testComparer) Compare(hashed, plaintext []byte) (bool, error) {
	c.calls.Add(1)
	if g, ok := c.gates[string(plaintext)]; ok {
		<-g
	}
	return string(hashed) == "h:"+string(plaintext), nil
}

func newTest(cfg Config) (*Secrets, *testComparer) {
	c := &testComparer{gates: map[string]chan struct{}{}}
	if cfg.StandIn.Comparer == nil {
		cfg.StandIn = Hash{Value: []byte("h:stand-in secret nobody knows"), Comparer: c}
	}
	return New(cfg), c
}

func hashOf(c Comparer, secret string) *Hash { return &Hash{Value: []byte("h:" + secret), Comparer: c} }

func TestVerifiedSecretIsCachedPerTenantClientAndSecret(t *testing.T) {
	s, c := newTest(Config{})
	ctx := context.Background()
	good := hashOf(c, "s3cret")
	if ok, err := s.Verify(ctx, "", "app", good, "s3cret"); !ok || err != nil {
		t.Fatalf("first verify = %v, %v; want true", ok, err)
	}
	cases := []struct {
		name          string
		tenant, id    string
		secret        string
		want          bool
		wantCompareds int64
	}{
		{"same tenant, client and secret is a hit", "", "app", "s3cret", true, 0},
		{"another tenant is a miss", "t1", "app", "s3cret", true, 1},
		{"another client with the same hash is a miss", "", "other", "s3cret", true, 1},
		{"a wrong secret is a miss", "", "app", "wrong", false, 1},
		{"a wrong secret stays a miss", "", "app", "wrong", false, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := c.calls.Load()
			ok, err := s.Verify(ctx, tc.tenant, tc.id, good, tc.secret)
			if ok != tc.want || err != nil {
				t.Fatalf("verify = %v, %v; want %v", ok, err, tc.want)
			}
			if got := c.calls.Load() - before; got != tc.wantCompareds {
				t.Fatalf("%d comparisons, want %d", got, tc.wantCompareds)
			}
		})
	}
}

func TestUnknownClientCostsWhatAWrongSecretCosts(t *testing.T) {
	s, c := newTest(Config{})
	ctx := context.Background()
	known := hashOf(c, "right")
	cases := []struct {
		name   string
		id     string
		hash   *Hash
		secret string
	}{
		// The old cache keyed unknown ids by (stand-in, secret): priming
		// one unknown id made every other one answer from the cache.
		{"unknown id, first time", "ghost-1", nil, "guess"},
		{"another unknown id with the same secret", "ghost-2", nil, "guess"},
		{"the same unknown id again", "ghost-1", nil, "guess"},
		{"known id, wrong secret", "app", known, "guess"},
		{"known id, the same wrong secret again", "app", known, "guess"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := c.calls.Load()
			ok, err := s.Verify(ctx, "", tc.id, tc.hash, tc.secret)
			if ok || err != nil {
				t.Fatalf("verify = %v, %v; want false", ok, err)
			}
			if got := c.calls.Load() - before; got != 1 {
				t.Fatalf("%d comparisons, want exactly one full comparison", got)
			}
		})
	}
}

func TestUnknownClientIsFalseEvenWhenTheStandInMatches(t *testing.T) {
	s, c := newTest(Config{})
	s.standIn = *hashOf(c, "guessable")
	for range 2 {
		if ok, err := s.Verify(context.Background(), "", "ghost", nil, "guessable"); ok || err != nil {
			t.Fatalf("verify = %v, %v; want false", ok, err)
		}
	}
	if c.calls.Load() != 2 {
		t.Fatalf("%d comparisons, want 2: a stand-in match must not be cached", c.calls.Load())
	}
}

func TestMissingStandInIsAnErrorNotAFreePass(t *testing.T) {
	s := New(Config{})
	ok, err := s.Verify(context.Background(), "", "ghost", nil, "x")
	if ok || !errors.Is(err, errNoComparer) {
		t.Fatalf("verify = %v, %v; want false, errNoComparer", ok, err)
	}
}

func TestComparerErrorIsReported(t *testing.T) {
	s, _ := newTest(Config{})
	ok, err := s.Verify(context.Background(), "", "app", &Hash{Value: []byte("x"), Comparer: failing{}}, "x")
	if ok || err == nil {
		t.Fatalf("verify = %v, %v; want false and an error", ok, err)
	}
}

type failing struct{}

func (failing) Compare([]byte, []byte) (bool, error) { return false, errors.New("malformed hash") }

func TestEvictionKeepsTheCacheBoundedWithoutClearingIt(t *testing.T) {
	const size = 50
	s, c := newTest(Config{CacheSize: size})
	ctx := context.Background()
	for i := range 10 * size {
		secret := fmt.Sprint("secret-", i)
		if ok, err := s.Verify(ctx, "", "app", hashOf(c, secret), secret); !ok || err != nil {
			t.Fatalf("verify %d = %v, %v", i, ok, err)
		}
		n := len(s.verified)
		if n > size {
			t.Fatalf("cache holds %d entries, bound is %d", n, size)
		}
		if i >= size && n < size-size/10 {
			t.Fatalf("cache fell to %d entries after an eviction: more than a tenth was dropped", n)
		}
	}
}

func TestConcurrentIdenticalFirstComparisonsShareOne(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, c := newTest(Config{})
		gate := make(chan struct{})
		c.gates["s3cret"] = gate
		h := hashOf(c, "s3cret")
		var wg sync.WaitGroup
		var granted atomic.Int64
		for range 8 {
			wg.Go(func() {
				if ok, err := s.Verify(context.Background(), "", "app", h, "s3cret"); ok && err == nil {
					granted.Add(1)
				}
			})
		}
		synctest.Wait()
		close(gate)
		wg.Wait()
		if granted.Load() != 8 || c.calls.Load() != 1 {
			t.Fatalf("%d of 8 granted with %d comparisons; want 8 with 1", granted.Load(), c.calls.Load())
		}
	})
}

func TestAdmissionBoundsUncachedComparisons(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const wait = time.Second
		s, c := newTest(Config{Concurrency: 1, Wait: wait})
		ctx := context.Background()
		cachedHash := hashOf(c, "cached")
		if ok, _ := s.Verify(ctx, "", "fast", cachedHash, "cached"); !ok {
			t.Fatal("priming the cache failed")
		}

		gate := make(chan struct{})
		c.gates["slow"] = gate
		holder := make(chan error, 1)
		go func() {
			_, err := s.Verify(ctx, "", "a", hashOf(c, "slow"), "slow")
			holder <- err
		}()
		synctest.Wait() // the holder is inside Compare, holding the only slot

		start := time.Now()
		if ok, err := s.Verify(ctx, "", "fast", cachedHash, "cached"); !ok || err != nil {
			t.Fatalf("cached verify = %v, %v while the slot is held", ok, err)
		}
		if d := time.Since(start); d != 0 {
			t.Fatalf("cached verify waited %v", d)
		}

		start = time.Now()
		_, err := s.Verify(ctx, "", "b", hashOf(c, "other"), "other")
		if !errors.Is(err, ErrBusy) {
			t.Fatalf("second uncached verify: err = %v, want ErrBusy", err)
		}
		if d := time.Since(start); d != wait {
			t.Fatalf("second uncached verify gave up after %v, want %v", d, wait)
		}

		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := s.Verify(cctx, "", "c", hashOf(c, "third"), "third"); !errors.Is(err, ErrBusy) {
			t.Fatalf("verify with an ended ctx: err = %v, want ErrBusy", err)
		}

		close(gate)
		if err := <-holder; err != nil {
			t.Fatalf("holder: %v", err)
		}
		if ok, err := s.Verify(ctx, "", "b", hashOf(c, "other"), "other"); !ok || err != nil {
			t.Fatalf("verify after the slot is free = %v, %v", ok, err)
		}
	})
}

// The pooled digest is HMAC-SHA-256 of the length-prefixed fields under
// the Secrets' key, whichever pooled MAC computes it and whatever it
// computed before.
func TestDigestIsTheKeyedHMACOfTheLengthPrefixedFields(t *testing.T) {
	s := New(Config{})
	want := func(fields ...string) [sha256.Size]byte {
		m := hmac.New(sha256.New, s.key)
		for _, f := range fields {
			m.Write(binary.LittleEndian.AppendUint64(nil, uint64(len(f))))
			m.Write([]byte(f))
		}
		var k [sha256.Size]byte
		m.Sum(k[:0])
		return k
	}
	long := strings.Repeat("s", 2*maxPooledScratch)
	for range 3 {
		for _, f := range [][4]string{
			{"", "c:1", "h:secret", "secret"},
			{"tenant", "c", ":1h:secret", "secret"},
			{"", "", "", ""},
			{"", "c:1", "h:" + long, long},
		} {
			if got := s.digest(f[0], f[1], []byte(f[2]), f[3]); got != want(f[:]...) {
				t.Fatalf("digest of %.20q differs from the HMAC of its fields", f)
			}
		}
	}
}
