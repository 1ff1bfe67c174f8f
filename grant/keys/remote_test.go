package keys

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// --- fixtures ---------------------------------------------------------

var (
	jwksRSAKey = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(2048) })
	jwksRSA1K  = sync.OnceValue(func() *rsa.PrivateKey { return mustRSA(1024) })
)

func mustRSA(bits int) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		panic(err)
	}
	return k
}

func newEC(t *testing.T, c elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newEd(t *testing.T) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// jwk renders key (public, private or []byte) as a JWK.
func jwk(t *testing.T, key any, kid, alg, use string) json.RawMessage {
	t.Helper()
	b, err := jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: alg, Use: use}.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func jwksDoc(keys ...json.RawMessage) []byte {
	if keys == nil {
		keys = []json.RawMessage{}
	}
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		panic(err)
	}
	return b
}

// jwksServer is a JWKS endpoint whose answer a test changes on the fly and
// whose hits it counts.
type jwksServer struct {
	*httptest.Server
	hits atomic.Int32
	// arrived gets a value for each request, as it arrives, while it has
	// room.
	arrived chan struct{}

	mu     sync.Mutex
	status int
	body   []byte
	header http.Header
	delay  time.Duration
}

func newJWKSServer(t *testing.T, body []byte) *jwksServer {
	t.Helper()
	s := &jwksServer{status: http.StatusOK, body: body, header: http.Header{}, arrived: make(chan struct{}, 16)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		select {
		case s.arrived <- struct{}{}:
		default:
		}
		s.mu.Lock()
		status, body, delay := s.status, s.body, s.delay
		for k, v := range s.header {
			w.Header()[k] = v
		}
		s.mu.Unlock()
		if delay > 0 {
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) set(f func(s *jwksServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

// fakeClock drives cache lifetimes; HTTP timeouts still run on real time.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Unix(1_700_000_000, 0)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

type jwksEnv struct {
	srv   *jwksServer
	rk    *Remote
	clock *fakeClock
	logs  *observer.ObservedLogs
	oks   atomic.Int32
	fails atomic.Int32
}

// newJWKSEnv starts a server answering body and a Remote on it; tweak
// adjusts the config before construction.
func newJWKSEnv(t *testing.T, body []byte, tweak func(*RemoteConfig)) *jwksEnv {
	t.Helper()
	e := &jwksEnv{srv: newJWKSServer(t, body), clock: newFakeClock()}
	core, logs := observer.New(zap.DebugLevel)
	e.logs = logs
	cfg := RemoteConfig{
		URL: e.srv.URL + "/jwks",
		// Generous, so that a busy machine never fails a fetch by
		// accident; the tests of the timeout set their own.
		Timeout:    10 * time.Second,
		MinRefresh: 10 * time.Second,
		Logger:     zap.New(core),
		Now:        e.clock.Now,
		Observe: func(ok bool) {
			if ok {
				e.oks.Add(1)
			} else {
				e.fails.Add(1)
			}
		},
	}
	if tweak != nil {
		tweak(&cfg)
	}
	e.rk = NewRemote(cfg)
	t.Cleanup(func() { _ = e.rk.Close() })
	return e
}

func (e *jwksEnv) keys(t *testing.T, kid string) []Key {
	t.Helper()
	ks, err := e.rk.Keys(context.Background(), kid)
	if err != nil {
		t.Fatalf("Keys(%q): %v", kid, err)
	}
	return ks
}

func (e *jwksEnv) wantHits(t *testing.T, want int32) {
	t.Helper()
	if got := e.srv.hits.Load(); got != want {
		t.Fatalf("JWKS fetched %d times, want %d", got, want)
	}
}

func kids(ks []Key) []string {
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = k.KID
	}
	return out
}

func sameKIDs(ks []Key, want ...string) bool {
	got := kids(ks)
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

// --- tests -------------------------------------------------------------

func TestRemoteFirstFetchReturnsPublishedKeys(t *testing.T) {
	rsaK, ecK, edK := jwksRSAKey(), newEC(t, elliptic.P256()), newEd(t)
	e := newJWKSEnv(t, jwksDoc(
		jwk(t, rsaK.Public(), "rsa", "RS256", "sig"),
		jwk(t, ecK.Public(), "ec", "ES256", ""),
		jwk(t, edK.Public(), "", "EdDSA", ""),
	), nil)

	ks := e.keys(t, "")
	if !sameKIDs(ks, "rsa", "ec", "") {
		t.Fatalf("kids %q, want [rsa ec \"\"]", kids(ks))
	}
	pubs := []crypto.PublicKey{rsaK.Public(), ecK.Public(), edK.Public()}
	for i, k := range ks {
		if !pubs[i].(interface{ Equal(crypto.PublicKey) bool }).Equal(k.Public) {
			t.Errorf("key %d: public key differs from the published one", i)
		}
	}
	e.wantHits(t, 1)
	if e.oks.Load() != 1 || e.fails.Load() != 0 {
		t.Errorf("observe ok=%d fail=%d, want 1/0", e.oks.Load(), e.fails.Load())
	}
}

func TestRemoteSelectsByKIDPlusKeysWithoutKID(t *testing.T) {
	e := newJWKSEnv(t, jwksDoc(
		jwk(t, newEC(t, elliptic.P256()).Public(), "a", "", ""),
		jwk(t, newEC(t, elliptic.P256()).Public(), "b", "", ""),
		jwk(t, newEC(t, elliptic.P256()).Public(), "", "", ""),
	), nil)
	for _, tc := range []struct {
		kid  string
		want []string
	}{
		{"", []string{"a", "b", ""}},
		{"a", []string{"a", ""}},
		{"b", []string{"b", ""}},
		{"zzz", []string{""}},
	} {
		if ks := e.keys(t, tc.kid); !sameKIDs(ks, tc.want...) {
			t.Errorf("Keys(%q) kids %q, want %q", tc.kid, kids(ks), tc.want)
		}
	}
}

func TestRemoteReturnedSliceDoesNotAliasCache(t *testing.T) {
	e := newJWKSEnv(t, jwksDoc(jwk(t, newEC(t, elliptic.P256()).Public(), "a", "", "")), nil)
	ks := e.keys(t, "")
	ks[0].KID = "tampered"
	if ks := e.keys(t, ""); !sameKIDs(ks, "a") {
		t.Fatalf("cache changed through a returned slice: %q", kids(ks))
	}
}

func TestRemoteKeepsKeyAlg(t *testing.T) {
	e := newJWKSEnv(t, jwksDoc(
		jwk(t, jwksRSAKey().Public(), "ps", "PS384", ""),
		jwk(t, newEC(t, elliptic.P384()).Public(), "es", "ES384", ""),
		jwk(t, newEC(t, elliptic.P256()).Public(), "none", "", ""),
	), nil)
	ks := e.keys(t, "")
	want := map[string]string{"ps": "PS384", "es": "ES384", "none": ""}
	if len(ks) != len(want) {
		t.Fatalf("got %d keys, want %d", len(ks), len(want))
	}
	for _, k := range ks {
		if k.Alg != want[k.KID] {
			t.Errorf("key %q: Alg %q, want %q", k.KID, k.Alg, want[k.KID])
		}
	}
}

func TestRemoteRotationRefetchesForNewKID(t *testing.T) {
	e := newJWKSEnv(t, jwksDoc(jwk(t, newEC(t, elliptic.P256()).Public(), "old", "", "")), nil)
	e.keys(t, "old")
	e.wantHits(t, 1)

	e.srv.set(func(s *jwksServer) {
		s.body = jwksDoc(jwk(t, newEC(t, elliptic.P256()).Public(), "new", "", ""))
	})
	e.clock.Advance(10 * time.Second)
	if ks := e.keys(t, "new"); !sameKIDs(ks, "new") {
		t.Fatalf("after rotation Keys(new) = %q, want [new]", kids(ks))
	}
	e.wantHits(t, 2)

	// The retired key is gone, and asking for it again within MinRefresh
	// costs no fetch.
	if ks := e.keys(t, "old"); len(ks) != 0 {
		t.Fatalf("retired key still served: %q", kids(ks))
	}
	e.wantHits(t, 2)
}

func TestRemoteKIDMissBurstCausesOneFetch(t *testing.T) {
	e := newJWKSEnv(t, jwksDoc(jwk(t, newEC(t, elliptic.P256()).Public(), "old", "", "")), nil)
	e.keys(t, "old")
	e.srv.set(func(s *jwksServer) {
		s.body = jwksDoc(jwk(t, newEC(t, elliptic.P256()).Public(), "new", "", ""))
		s.delay = 50 * time.Millisecond // so that the burst overlaps the fetch
	})
	e.clock.Advance(10 * time.Second)

	const n = 100
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		found atomic.Int32
	)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ks, err := e.rk.Keys(context.Background(), "new")
			if err == nil && sameKIDs(ks, "new") {
				found.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	e.wantHits(t, 2) // warm-up + exactly one for the burst
	if found.Load() != n {
		t.Fatalf("%d of %d callers got the new key", found.Load(), n)
	}
}

func TestRemoteMinRefreshSpacesKIDMissFetches(t *testing.T) {
	e := newJWKSEnv(t, jwksDoc(jwk(t, newEC(t, elliptic.P256()).Public(), "a", "", "")), func(c *RemoteConfig) {
		c.MinRefresh = 10 * time.Second
	})
	e.keys(t, "a")
	steps := []struct {
		advance time.Duration
		kid     string
		hits    int32
	}{
		{0, "x", 1},                  // right after the warm-up fetch
		{10*time.Second - 1, "y", 1}, // just inside MinRefresh
		{1, "z", 2},                  // MinRefresh reached: one refetch
		{5 * time.Second, "w", 2},    // inside MinRefresh of that refetch
		{5 * time.Second, "v", 3},    // reached again
		{0, "a", 3},                  // known kid never fetches
		{0, "", 3},                   // no kid never fetches
	}
	for i, s := range steps {
		e.clock.Advance(s.advance)
		e.keys(t, s.kid)
		if got := e.srv.hits.Load(); got != s.hits {
			t.Fatalf("step %d (kid %q): %d fetches, want %d", i, s.kid, got, s.hits)
		}
	}
}

func TestRemoteServesLastGoodKeysWhenRefreshFails(t *testing.T) {
	// A valid document that only its size disqualifies.
	huge := `{"keys":[` + string(jwk(t, newEC(t, elliptic.P256()).Public(), "b", "", "")) +
		`],"pad":"` + strings.Repeat("x", maxJWKSBytes) + `"}`
	for _, tc := range []struct {
		name   string
		break_ func(s *jwksServer)
		reason string
	}{
		{"server error", func(s *jwksServer) { s.status = http.StatusInternalServerError }, "status 500"},
		{"not found", func(s *jwksServer) { s.status = http.StatusNotFound }, "status 404"},
		{"malformed json", func(s *jwksServer) { s.body = []byte(`{"keys":[`) }, "malformed"},
		{"body too large", func(s *jwksServer) { s.body = []byte(huge) }, "larger than"},
		{"zero usable keys", func(s *jwksServer) {
			s.body = jwksDoc(jwk(t, []byte("0123456789abcdef0123456789abcdef"), "oct", "", ""))
		}, "no usable signature keys"},
		{"empty key set", func(s *jwksServer) { s.body = jwksDoc() }, "no usable signature keys"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newJWKSEnv(t, jwksDoc(jwk(t, newEC(t, elliptic.P256()).Public(), "a", "", "")), nil)
			e.keys(t, "a")
			e.srv.set(tc.break_)

			// Past expiry: the refresh fails, the old key is still served.
			e.clock.Advance(defaultMaxAge)
			if ks := e.keys(t, "a"); !sameKIDs(ks, "a") {
				t.Fatalf("Keys(a) = %q after failed refresh, want [a]", kids(ks))
			}
			e.wantHits(t, 2)
			if e.fails.Load() != 1 {
				t.Errorf("observed %d failures, want 1", e.fails.Load())
			}
			failed := e.logs.FilterMessage("jwks fetch failed").All()
			if len(failed) != 1 {
				t.Fatalf("%d fetch-failure log lines, want 1", len(failed))
			}
			if r, _ := failed[0].ContextMap()["reason"].(string); !strings.Contains(r, tc.reason) {
				t.Errorf("logged reason %q, want it to mention %q", r, tc.reason)
			}

			// Failed refreshes are retried, but not on every request.
			e.keys(t, "a")
			e.wantHits(t, 2)
			e.clock.Advance(10 * time.Second)
			e.keys(t, "a")
			e.wantHits(t, 3)
		})
	}
}

func TestRemoteServesLastGoodKeysWhenServerGone(t *testing.T) {
	e := newJWKSEnv(t, jwksDoc(jwk(t, newEC(t, elliptic.P256()).Public(), "a", "", "")), nil)
	e.keys(t, "a")
	e.srv.Close()
	e.clock.Advance(defaultMaxAge)
	if ks := e.keys(t, "a"); !sameKIDs(ks, "a") {
		t.Fatalf("Keys(a) = %q with the JWKS server gone, want [a]", kids(ks))
	}
	if e.fails.Load() != 1 {
		t.Fatalf("observed %d failures, want 1", e.fails.Load())
	}
}

func TestRemoteUnavailableWhenNothingCached(t *testing.T) {
	e := newJWKSEnv(t, nil, nil)
	e.srv.set(func(s *jwksServer) { s.status = http.StatusServiceUnavailable })
	_, err := e.rk.Keys(context.Background(), "a")
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), "status 503") {
		t.Errorf("error %q does not give the reason", err)
	}
	e.wantHits(t, 1)

	// While nothing is cached, retries are spaced by a second, not made
	// for every request.
	if _, err := e.rk.Keys(context.Background(), "a"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	e.wantHits(t, 1)
	e.srv.set(func(s *jwksServer) {
		s.status = http.StatusOK
		s.body = jwksDoc(jwk(t, newEC(t, elliptic.P256()).Public(), "a", "", ""))
	})
	e.clock.Advance(time.Second)
	if ks := e.keys(t, "a"); !sameKIDs(ks, "a") {
		t.Fatalf("Keys(a) = %q after recovery, want [a]", kids(ks))
	}
	e.wantHits(t, 2)
}

func TestRemoteStalledJWKSBoundedByTimeout(t *testing.T) {
	// The JWKS stalls for a minute; a Keys call bounded by the 200 ms
	// timeout answers within seconds even on a busy machine, so the bound
	// proves the timeout without depending on the machine's speed.
	const timeout = 200 * time.Millisecond
	const margin = 10 * time.Second
	for _, tc := range []struct {
		name   string
		warm   bool
		wantOK bool
	}{
		{"nothing cached answers unavailable", false, false},
		{"cached keys served", true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newJWKSEnv(t, jwksDoc(jwk(t, newEC(t, elliptic.P256()).Public(), "a", "", "")), func(c *RemoteConfig) {
				c.Timeout = timeout
			})
			if tc.warm {
				e.keys(t, "a")
				e.clock.Advance(defaultMaxAge)
			}
			e.srv.set(func(s *jwksServer) { s.delay = time.Minute })

			start := time.Now()
			ks, err := e.rk.Keys(context.Background(), "a")
			elapsed := time.Since(start)
			if elapsed > timeout+margin {
				t.Fatalf("Keys waited %v on a stalled JWKS, want at most %v", elapsed, timeout+margin)
			}
			if tc.wantOK {
				if err != nil || !sameKIDs(ks, "a") {
					t.Fatalf("Keys = %q, %v; want the cached key", kids(ks), err)
				}
			} else if !errors.Is(err, ErrUnavailable) {
				t.Fatalf("err = %v, want ErrUnavailable", err)
			}
			if e.fails.Load() != 1 {
				t.Errorf("observed %d failures, want 1", e.fails.Load())
			}
		})
	}
}

func TestRemoteCallerDeadlineDoesNotCancelSharedFetch(t *testing.T) {
	e := newJWKSEnv(t, jwksDoc(jwk(t, newEC(t, elliptic.P256()).Public(), "a", "", "")), nil)
	// The fetch takes 4 s; the impatient caller's 20 ms deadline ends its
	// wait long before, however busy the machine.
	e.srv.set(func(s *jwksServer) { s.delay = 4 * time.Second })

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := e.rk.Keys(ctx, "a")
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Fatalf("caller waited %v past its own deadline", elapsed)
	}

	// A patient caller joins the fetch the impatient one started.
	if ks := e.keys(t, "a"); !sameKIDs(ks, "a") {
		t.Fatalf("Keys(a) = %q, want [a]", kids(ks))
	}
	e.wantHits(t, 1)
}

func TestRemoteCacheLifetimeFromHeaders(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header http.Header
		ttl    time.Duration
	}{
		{"max-age honoured", http.Header{"Cache-Control": {"public, max-age=120"}}, 2 * time.Minute},
		{"max-age clamped up to MinAge", http.Header{"Cache-Control": {"max-age=5"}}, time.Minute},
		{"max-age clamped down to MaxAge", http.Header{"Cache-Control": {"max-age=86400"}}, time.Hour},
		{"no headers use the default", http.Header{}, defaultAge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newJWKSEnv(t, jwksDoc(jwk(t, newEC(t, elliptic.P256()).Public(), "a", "", "")), func(c *RemoteConfig) {
				c.MinAge, c.MaxAge = time.Minute, time.Hour
			})
			e.srv.set(func(s *jwksServer) { s.header = tc.header })
			e.keys(t, "a")
			e.clock.Advance(tc.ttl - time.Second)
			e.keys(t, "a")
			e.wantHits(t, 1)
			e.clock.Advance(time.Second)
			e.keys(t, "a")
			e.wantHits(t, 2)
		})
	}
}

func TestRemoteLifetimeHeaderRules(t *testing.T) {
	clock := newFakeClock()
	rk := NewRemote(RemoteConfig{URL: "http://unused", MinAge: time.Minute, MaxAge: time.Hour, Now: clock.Now})
	defer rk.Close()
	date := clock.Now().Add(-time.Hour) // server clock an hour behind ours
	for _, tc := range []struct {
		name   string
		header http.Header
		want   time.Duration
	}{
		{"max-age", http.Header{"Cache-Control": {"max-age=600"}}, 10 * time.Minute},
		{"max-age quoted", http.Header{"Cache-Control": {`max-age="600"`}}, 10 * time.Minute},
		{"directive names are case-insensitive", http.Header{"Cache-Control": {"Max-Age=600"}}, 10 * time.Minute},
		{"age is subtracted", http.Header{"Cache-Control": {"max-age=600"}, "Age": {"100"}}, 500 * time.Second},
		{"no-store means MinAge", http.Header{"Cache-Control": {"no-store"}}, time.Minute},
		{"no-cache beats max-age", http.Header{"Cache-Control": {"max-age=600, no-cache"}}, time.Minute},
		{"s-maxage ignored", http.Header{"Cache-Control": {"s-maxage=600"}}, defaultAge},
		{"max-age beats expires", http.Header{"Cache-Control": {"max-age=600"}, "Expires": {date.Add(30 * time.Minute).Format(http.TimeFormat)}}, 10 * time.Minute},
		{"expires against server date", http.Header{"Date": {date.Format(http.TimeFormat)}, "Expires": {date.Add(20 * time.Minute).Format(http.TimeFormat)}}, 20 * time.Minute},
		{"invalid expires means expired", http.Header{"Expires": {"0"}}, time.Minute},
		{"no headers", http.Header{}, defaultAge},
		{"bad max-age falls through", http.Header{"Cache-Control": {"max-age=soon"}}, defaultAge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := rk.lifetime(tc.header); got != tc.want {
				t.Fatalf("lifetime = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRemoteSkipsUnusableKeysKeepsGoodOnes(t *testing.T) {
	edPriv := newEd(t)
	ecPriv := newEC(t, elliptic.P256())
	for _, tc := range []struct {
		name   string
		bad    json.RawMessage
		reason string
		secret string // must not appear in any log line
	}{
		{"symmetric oct key", jwk(t, []byte("0123456789abcdef0123456789abcdef"), "bad", "HS256", ""), "symmetric", base64.RawURLEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))},
		{"ed25519 private key", jwk(t, edPriv, "bad", "EdDSA", ""), "private key material", base64.RawURLEncoding.EncodeToString(edPriv.Seed())},
		{"ec private key", jwk(t, ecPriv, "bad", "ES256", ""), "private key material", base64.RawURLEncoding.EncodeToString(ecPriv.D.FillBytes(make([]byte, 32)))},
		{"use enc", jwk(t, newEC(t, elliptic.P256()).Public(), "bad", "", "enc"), "use is not sig", ""},
		{"rsa below 2048 bits", jwk(t, jwksRSA1K().Public(), "bad", "RS256", ""), "1024 bits", ""},
		{"unknown kty", json.RawMessage(`{"kty":"PQC","kid":"bad","x":"AAAA"}`), "unsupported", ""},
		{"missing kty", json.RawMessage(`{"kid":"bad","x":"AAAA"}`), "unsupported", ""},
		{"x25519 is not a signature key", json.RawMessage(`{"kty":"OKP","crv":"X25519","kid":"bad","x":"` + base64.RawURLEncoding.EncodeToString(make([]byte, 32)) + `"}`), "unsupported", ""},
		{"broken rsa", json.RawMessage(`{"kty":"RSA","kid":"bad","n":"!!"}`), "unsupported", ""},
		{"alg of another key type", jwk(t, newEC(t, elliptic.P256()).Public(), "bad", "RS256", ""), "does not fit", ""},
		{"encryption alg", jwk(t, jwksRSAKey().Public(), "bad", "RSA-OAEP", ""), "does not fit", ""},
		{"curve mismatching alg", jwk(t, newEC(t, elliptic.P384()).Public(), "bad", "ES256", ""), "does not fit", ""},
		{"not an object", json.RawMessage(`"key"`), "not a json object", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newJWKSEnv(t, jwksDoc(
				jwk(t, newEC(t, elliptic.P256()).Public(), "good1", "", ""),
				tc.bad,
				jwk(t, jwksRSAKey().Public(), "good2", "RS256", "sig"),
			), nil)
			if ks := e.keys(t, ""); !sameKIDs(ks, "good1", "good2") {
				t.Fatalf("kids %q, want [good1 good2]", kids(ks))
			}
			skipped := e.logs.FilterMessage("jwks key skipped").All()
			if len(skipped) != 1 {
				t.Fatalf("%d skip log lines, want 1", len(skipped))
			}
			if r := skipped[0].ContextMap()["reason"]; !strings.Contains(r.(string), tc.reason) {
				t.Errorf("skip reason %q, want it to mention %q", r, tc.reason)
			}
			if tc.secret != "" {
				for _, l := range e.logs.All() {
					b, _ := json.Marshal(l.ContextMap())
					if strings.Contains(l.Message+string(b), tc.secret) {
						t.Fatalf("log line %q leaks key material", l.Message)
					}
				}
			}
		})
	}
}

func TestRemoteAcceptsEverySupportedKeyType(t *testing.T) {
	e := newJWKSEnv(t, jwksDoc(
		jwk(t, jwksRSAKey().Public(), "rsa", "", ""),
		jwk(t, newEC(t, elliptic.P256()).Public(), "p256", "ES256", ""),
		jwk(t, newEC(t, elliptic.P384()).Public(), "p384", "ES384", ""),
		jwk(t, newEC(t, elliptic.P521()).Public(), "p521", "ES512", ""),
		jwk(t, newEd(t).Public(), "ed", "EdDSA", ""),
	), nil)
	if ks := e.keys(t, ""); !sameKIDs(ks, "rsa", "p256", "p384", "p521", "ed") {
		t.Fatalf("kids %q, want all five", kids(ks))
	}
	if n := e.logs.FilterMessage("jwks key skipped").Len(); n != 0 {
		t.Fatalf("%d keys skipped, want none", n)
	}
}

func TestRemotePrefetchDoesNotBlockAndWarmsCache(t *testing.T) {
	e := newJWKSEnv(t, jwksDoc(jwk(t, newEC(t, elliptic.P256()).Public(), "a", "", "")), nil)
	// The fetch takes 3 s; Prefetch returning well before proves it does
	// not wait for it.
	e.srv.set(func(s *jwksServer) { s.delay = 3 * time.Second })
	start := time.Now()
	e.rk.Prefetch()
	e.rk.Prefetch() // a second call joins, it does not fetch again
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Fatalf("Prefetch blocked for %v", elapsed)
	}
	if ks := e.keys(t, "a"); !sameKIDs(ks, "a") {
		t.Fatalf("Keys(a) = %q, want [a]", kids(ks))
	}
	e.wantHits(t, 1)
}

func TestRemoteCloseCancelsInFlightFetch(t *testing.T) {
	e := newJWKSEnv(t, jwksDoc(jwk(t, newEC(t, elliptic.P256()).Public(), "a", "", "")), func(c *RemoteConfig) {
		c.Timeout = time.Minute
	})
	e.srv.set(func(s *jwksServer) { s.delay = time.Minute })
	e.rk.Prefetch()
	<-e.srv.arrived
	start := time.Now()
	_ = e.rk.Close()
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Fatalf("Close took %v; the fetch was not cancelled", elapsed)
	}
	if e.fails.Load() != 1 {
		t.Fatalf("observed %d failures, want 1", e.fails.Load())
	}
	// Closed: no further fetch, and nothing cached.
	if _, err := e.rk.Keys(context.Background(), "a"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	e.wantHits(t, 1)
}

func TestRemoteRedirectToOtherHostRefused(t *testing.T) {
	other := newJWKSServer(t, jwksDoc(jwk(t, newEC(t, elliptic.P256()).Public(), "a", "", "")))
	// 127.0.0.1 and localhost are different hosts to the redirect check.
	target := strings.Replace(other.URL, "127.0.0.1", "localhost", 1) + "/jwks"
	redirector := httptest.NewServer(http.RedirectHandler(target, http.StatusFound))
	t.Cleanup(redirector.Close)
	e := newJWKSEnv(t, nil, func(c *RemoteConfig) { c.URL = redirector.URL + "/jwks" })
	if _, err := e.rk.Keys(context.Background(), "a"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if other.hits.Load() != 0 {
		t.Fatal("redirect to another host was followed")
	}
}

func TestRemoteURLCredentialsNotLogged(t *testing.T) {
	e := newJWKSEnv(t, nil, func(c *RemoteConfig) {
		c.URL = strings.Replace(c.URL, "http://", "http://user:hunter2@", 1)
	})
	e.srv.set(func(s *jwksServer) { s.status = http.StatusInternalServerError })
	_, err := e.rk.Keys(context.Background(), "a")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("err = %v; want an error without the password", err)
	}
	for _, l := range e.logs.All() {
		b, _ := json.Marshal(l.ContextMap())
		if strings.Contains(string(b), "hunter2") {
			t.Fatalf("log line %q leaks the URL password", l.Message)
		}
	}
}

func TestRemoteRedirectsOnlyWithinSchemeAndHost(t *testing.T) {
	via := func(u string) []*http.Request {
		return []*http.Request{httptest.NewRequest(http.MethodGet, u, nil)}
	}
	for _, tc := range []struct {
		name, from, to string
		follow         bool
	}{
		{"same scheme and host", "https://idp.example/jwks", "https://idp.example/v2/jwks", true},
		{"https to http on the same host", "https://idp.example/jwks", "http://idp.example/jwks", false},
		{"http to https on the same host", "http://idp.example/jwks", "https://idp.example/jwks", false},
		{"another host", "https://idp.example/jwks", "https://evil.example/jwks", false},
		{"another port", "https://idp.example/jwks", "https://idp.example:8443/jwks", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := sameOriginRedirects(httptest.NewRequest(http.MethodGet, tc.to, nil), via(tc.from))
			if (err == nil) != tc.follow {
				t.Fatalf("redirect %s -> %s: err = %v, want follow=%v", tc.from, tc.to, err, tc.follow)
			}
		})
	}
}

func TestRemoteEd25519AlgIsEdDSA(t *testing.T) {
	e := newJWKSEnv(t, jwksDoc(
		jwk(t, newEd(t).Public(), "ed", "Ed25519", ""),
		jwk(t, newEC(t, elliptic.P256()).Public(), "ec", "Ed25519", ""),
	), nil)
	ks := e.keys(t, "")
	if !sameKIDs(ks, "ed") {
		t.Fatalf("kids %q, want [ed]: an Ed25519 alg on a P-256 key fits nothing", kids(ks))
	}
	if ks[0].Alg != "EdDSA" || !ks[0].Verifies("EdDSA") {
		t.Errorf("alg Ed25519 loaded as Alg %q (verifies EdDSA: %v), want EdDSA", ks[0].Alg, ks[0].Verifies("EdDSA"))
	}
	skipped := e.logs.FilterMessage("jwks key skipped").All()
	if len(skipped) != 1 || skipped[0].ContextMap()["kid"] != "ec" {
		t.Fatalf("skip log lines %v, want one for kid ec", skipped)
	}
}
