package caddymodule

// Issuer keys from a jwks_url, through the gateway (SPEC §2.1, §6): real
// JWKS servers (httptest) whose keys, cache headers and health change
// while Caddy serves. The cache's rules are unit-tested in package
// grant/keys; these tests prove the handler wires them up. The gateway
// runs on a testClock, so refresh intervals and cache ages are passed by
// moving it, never by sleeping.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/keys"
)

// newECKey is a P-256 key: fast to make, so every test has its own.
func newECKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// writeKeyPEM writes key as a PKCS #8 PEM file and returns its path.
func writeKeyPEM(t testing.TB, dir, name string, key crypto.Signer) string {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// signAs signs claims with key under kid ("" for none), filling iat, exp
// and a fresh jti unless claims set them (a nil value deletes a claim).
func signAs(t testing.TB, key crypto.Signer, kid string, claims map[string]any) string {
	t.Helper()
	c := map[string]any{
		"iat": time.Now().Unix(),
		"exp": time.Now().Add(5 * time.Minute).Unix(),
		"jti": rand.Text(),
	}
	for k, v := range claims {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	s, err := keys.Sign(key, keys.DefaultAlg(key), kid, "JWT", c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// publicJWK is key's public half as a JWK with kid and alg.
func publicJWK(t testing.TB, key crypto.Signer, kid string) json.RawMessage {
	t.Helper()
	b, err := jose.JSONWebKey{Key: key.Public(), KeyID: kid, Algorithm: keys.DefaultAlg(key), Use: "sig"}.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// jwksEndpoint is a trusted issuer's JWKS URL whose keys, headers and
// health a test changes while the gateway runs.
type jwksEndpoint struct {
	*httptest.Server
	hits atomic.Int32

	mu      sync.Mutex
	keys    []json.RawMessage
	headers map[string]string
	status  int           // 0: 200
	stall   chan struct{} // non-nil: requests block until it is closed
}

func newJWKSEndpoint(t testing.TB, keys ...json.RawMessage) *jwksEndpoint {
	t.Helper()
	e := &jwksEndpoint{keys: keys}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.hits.Add(1)
		e.mu.Lock()
		keys, headers, status, stall := e.keys, e.headers, e.status, e.stall
		e.mu.Unlock()
		if stall != nil {
			select {
			case <-stall:
			case <-r.Context().Done():
				return
			}
		}
		if status != 0 {
			w.WriteHeader(status)
			return
		}
		for k, v := range headers {
			w.Header().Set(k, v)
		}
		w.Header().Set("Content-Type", "application/json")
		body, _ := json.Marshal(map[string]any{"keys": keys})
		_, _ = w.Write(body)
	}))
	t.Cleanup(func() {
		e.mu.Lock()
		if e.stall != nil {
			close(e.stall)
			e.stall = nil
		}
		e.mu.Unlock()
		e.Close()
	})
	return e
}

func (e *jwksEndpoint) set(f func(e *jwksEndpoint)) {
	e.mu.Lock()
	defer e.mu.Unlock()
	f(e)
}

// waitHits waits briefly for the background fetches to reach n: the
// prefetch at Provision runs on its own.
func (e *jwksEndpoint) waitHits(t testing.TB, n int32) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for e.hits.Load() < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := e.hits.Load(); got != n {
		t.Fatalf("jwks fetched %d times, want %d", got, n)
	}
}

const jwksIssuer = "https://jwks-idp.example"

// jwksGateway is a jwt_grant whose one trusted issuer reads its keys from
// a jwks_url.
type jwksGateway struct {
	tokenURL string
	f        *fixture
	clock    *testClock
}

// startJWKSGateway serves a jwt_grant with trusted issuer jwks-idp (keys
// at jwksURL, extra options in its block) and client app.
func startJWKSGateway(t *testing.T, jwksURL, issuerOptions string) *jwksGateway {
	t.Helper()
	f := newFixture(t)
	clock := useTestClock(t)
	port := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	startCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	jwt_grant {
		issuer_url %s
		trusted_issuer jwks-idp {
			issuer %s
			jwks_url %s
			%s
		}
		client app {
			secret %s
		}
	}
}
`, port, base, jwksIssuer, jwksURL, issuerOptions, f.hash))
	return &jwksGateway{tokenURL: base + "/oauth2/token", f: f, clock: clock}
}

// exchange asks for a token with an assertion of jwks-idp signed by key
// under kid.
func (g *jwksGateway) exchange(t testing.TB, key crypto.Signer, kid string) response {
	t.Helper()
	a := signAs(t, key, kid, map[string]any{"iss": jwksIssuer, "sub": "alice", "aud": g.tokenURL})
	return postForm(t, g.tokenURL, jwtBearerForm(a), "app", g.f.secret)
}

func wantStatus(t testing.TB, r response, status int, what string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: got %s, want %d", what, r, status)
	}
}

func TestJWKSRotationToANewKidIsPickedUpAndTheRemovedKeyStops(t *testing.T) {
	k1, k2 := newECKey(t), newECKey(t)
	jwks := newJWKSEndpoint(t, publicJWK(t, k1, "k1"))
	g := startJWKSGateway(t, jwks.URL, "jwks_min_refresh 200ms")
	wantStatus(t, g.exchange(t, k1, "k1"), 200, "k1 before rotation")
	jwks.waitHits(t, 1)

	jwks.set(func(e *jwksEndpoint) { e.keys = []json.RawMessage{publicJWK(t, k2, "k2")} })
	g.clock.Advance(250 * time.Millisecond) // past jwks_min_refresh
	wantStatus(t, g.exchange(t, k2, "k2"), 200, "k2, a kid the cache has not seen")
	jwks.waitHits(t, 2)

	g.clock.Advance(250 * time.Millisecond)
	r := g.exchange(t, k1, "k1")
	checkOAuthError(t, r, 400, "invalid_grant")
	jwks.waitHits(t, 3) // the kid miss refetched, and k1 is gone
}

func TestJWKSDownAfterWarmUpKeepsServingCachedKeys(t *testing.T) {
	k1, other := newECKey(t), newECKey(t)
	jwks := newJWKSEndpoint(t, publicJWK(t, k1, "k1"))
	g := startJWKSGateway(t, jwks.URL, "jwks_min_refresh 100ms")
	wantStatus(t, g.exchange(t, k1, "k1"), 200, "warm-up")
	jwks.waitHits(t, 1)

	for _, outage := range []struct {
		name  string
		start func()
	}{
		{"jwks answers 500", func() { jwks.set(func(e *jwksEndpoint) { e.status = 500 }) }},
		{"jwks refuses connections", func() { jwks.CloseClientConnections(); jwks.Listener.Close() }},
	} {
		outage.start()
		g.clock.Advance(150 * time.Millisecond) // past jwks_min_refresh
		// An unknown kid forces a fetch, which fails ...
		checkOAuthError(t, g.exchange(t, other, "unknown"), 400, "invalid_grant")
		// ... and the last good keys still verify.
		wantStatus(t, g.exchange(t, k1, "k1"), 200, outage.name)
	}
	if jwks.hits.Load() < 2 {
		t.Fatalf("the outage was never tried: %d fetches", jwks.hits.Load())
	}
}

func TestJWKSStalledLongerThanTimeoutIs503WithinTheTimeout(t *testing.T) {
	k1 := newECKey(t)
	jwks := newJWKSEndpoint(t, publicJWK(t, k1, "k1"))
	stall := make(chan struct{})
	jwks.set(func(e *jwksEndpoint) { e.stall = stall })
	// The stall lasts until the test ends it; without jwks_timeout a
	// request would hang until the test client's own 20 s deadline. A
	// margin of seconds proves the bound and leaves room for a busy
	// machine.
	const timeout = 400 * time.Millisecond
	const margin = 8 * time.Second
	g := startJWKSGateway(t, jwks.URL, "jwks_timeout 400ms\n\t\t\tjwks_min_refresh 100ms")

	for i := range 2 {
		start := time.Now()
		r := g.exchange(t, k1, "k1")
		took := time.Since(start)
		checkOAuthError(t, r, 503, "temporarily_unavailable")
		if r.header.Get("Retry-After") == "" {
			t.Error("503 without Retry-After")
		}
		if took > timeout+margin {
			t.Errorf("request %d took %v with a stalled jwks, want at most jwks_timeout %v plus %v", i, took, timeout, margin)
		}
		g.clock.Advance(150 * time.Millisecond) // past jwks_min_refresh, which spaces the retries
	}

	// Once the issuer answers again the gateway recovers by itself.
	jwks.set(func(e *jwksEndpoint) { close(e.stall); e.stall = nil })
	g.clock.Advance(150 * time.Millisecond)
	wantStatus(t, g.exchange(t, k1, "k1"), 200, "after the stall")
}

func TestJWKSKidMissBurstCausesOneFetch(t *testing.T) {
	k1, k2, stranger := newECKey(t), newECKey(t), newECKey(t)
	jwks := newJWKSEndpoint(t, publicJWK(t, k1, "k1"))
	g := startJWKSGateway(t, jwks.URL, "jwks_min_refresh 1s")
	wantStatus(t, g.exchange(t, k1, "k1"), 200, "warm-up")
	jwks.waitHits(t, 1)
	jwks.set(func(e *jwksEndpoint) { e.keys = append(e.keys, publicJWK(t, k2, "k2")) })
	g.clock.Advance(1100 * time.Millisecond) // past jwks_min_refresh

	burst := func(key crypto.Signer, kid string) []response {
		const n = 16
		out := make([]response, n)
		assertions := make([]string, n)
		for i := range n {
			assertions[i] = signAs(t, key, kid, map[string]any{"iss": jwksIssuer, "sub": "alice", "aud": g.tokenURL})
		}
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			wg.Go(func() {
				<-start
				out[i] = postForm(t, g.tokenURL, jwtBearerForm(assertions[i]), "app", g.f.secret)
			})
		}
		close(start)
		wg.Wait()
		return out
	}

	// A newly published kid: every request of the burst succeeds on one
	// shared fetch.
	for _, r := range burst(k2, "k2") {
		wantStatus(t, r, 200, "burst with the new kid")
	}
	jwks.waitHits(t, 2)
	// A kid nobody publishes, within jwks_min_refresh: no fetch at all.
	for _, r := range burst(stranger, "never-published") {
		checkOAuthError(t, r, 400, "invalid_grant")
	}
	jwks.waitHits(t, 2)
}

func TestJWKSIsCachedAcrossRequestsWhateverItsHeadersSay(t *testing.T) {
	// The gateway keeps keys at least a minute (the cache's floor), so
	// that no-store or max-age=0 does not turn every grant into a fetch.
	for _, tc := range []struct {
		name    string
		headers map[string]string
	}{
		{"no headers", nil},
		{"max-age=3600", map[string]string{"Cache-Control": "public, max-age=3600"}},
		{"no-store", map[string]string{"Cache-Control": "no-store"}},
		{"max-age=0", map[string]string{"Cache-Control": "max-age=0"}},
		{"expires in the past", map[string]string{"Expires": "Thu, 01 Jan 1970 00:00:00 GMT"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k1 := newECKey(t)
			jwks := newJWKSEndpoint(t, publicJWK(t, k1, "k1"))
			jwks.set(func(e *jwksEndpoint) { e.headers = tc.headers })
			g := startJWKSGateway(t, jwks.URL, "")
			for range 5 {
				wantStatus(t, g.exchange(t, k1, "k1"), 200, "grant")
			}
			jwks.waitHits(t, 1)
		})
	}
}

func TestJWKSMaxAgeRunsOutThenAFailedRefreshServesStaleKeys(t *testing.T) {
	k1 := newECKey(t)
	jwks := newJWKSEndpoint(t, publicJWK(t, k1, "k1"))
	jwks.set(func(e *jwksEndpoint) { e.headers = map[string]string{"Cache-Control": "max-age=60"} })
	g := startJWKSGateway(t, jwks.URL, "")
	wantStatus(t, g.exchange(t, k1, "k1"), 200, "warm-up")
	jwks.waitHits(t, 1)

	// Within max-age the keys are not fetched again ...
	g.clock.Advance(30 * time.Second)
	wantStatus(t, g.exchange(t, k1, "k1"), 200, "within max-age")
	jwks.waitHits(t, 1)

	// ... after it they are, and when that fetch fails the stale keys
	// still verify.
	jwks.set(func(e *jwksEndpoint) { e.status = 503 })
	g.clock.Advance(31 * time.Second)
	wantStatus(t, g.exchange(t, k1, "k1"), 200, "stale keys while the jwks is down")
	jwks.waitHits(t, 2)
}
