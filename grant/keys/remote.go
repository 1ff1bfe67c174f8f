package keys

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"
)

// Defaults of RemoteConfig.
const (
	// defaultTimeout bounds one JWKS fetch (SPEC §2.1 jwks_timeout).
	defaultTimeout = time.Second
	// defaultMinRefresh is the least time between two fetches caused
	// by an unknown kid (SPEC §2.1 jwks_min_refresh).
	defaultMinRefresh = 10 * time.Second
	// defaultMaxAge caps how long fetched keys are trusted without a
	// refresh, whatever the server's cache headers say, so that a removed
	// (revoked) key stops verifying within this time.
	defaultMaxAge = time.Hour
	// defaultMinAge is the floor applied to the server's cache
	// headers, so that "no-store" or "max-age=0" does not turn every
	// request into a fetch.
	defaultMinAge = time.Minute
	// defaultAge is the cache lifetime when the response carries
	// neither Cache-Control max-age nor Expires; clamped to [MinAge,
	// MaxAge]. Five minutes keeps a removed key usable only briefly
	// without refetching on every minute.
	defaultAge = 5 * time.Minute
	// maxJWKSBytes is the largest JWKS document accepted; real key sets
	// are a few KiB, so anything larger is a misconfigured or hostile
	// endpoint.
	maxJWKSBytes = 256 << 10
	// emptyRetry caps the retry rate while nothing is cached: requests
	// fail with 503 meanwhile, and a down issuer must not be hammered by
	// every one of them.
	emptyRetry = time.Second
)

// RemoteConfig configures a Remote. Zero durations take the
// Default* values.
type RemoteConfig struct {
	// URL is the jwks_url.
	URL string
	// Timeout bounds one fetch (connect, headers and body).
	Timeout time.Duration
	// MinRefresh is the least time between two fetches caused by an
	// unknown kid, and between retries after a failed fetch.
	MinRefresh time.Duration
	// MaxAge is the upper bound on the cache lifetime.
	MaxAge time.Duration
	// MinAge is the lower bound on the cache lifetime derived from the
	// server's headers.
	MinAge time.Duration
	// Client performs the fetches; nil means a client on the default
	// transport that follows redirects only within the URL's scheme and
	// host.
	Client *http.Client
	// Logger receives fetch failures and skipped keys; nil discards.
	Logger *zap.Logger
	// Now is the clock for cache lifetimes; nil means time.Now.
	Now func() time.Time
	// Observe, if set, is called once per fetch attempt with its outcome
	// (for the JWKS fetch and failure metrics).
	Observe func(ok bool)
}

// Remote is a Set read from a JWKS URL. It caches the keys for the
// lifetime the server's cache headers give (clamped to [MinAge, MaxAge]),
// refetches early for an unknown kid at most once per MinRefresh, and keeps
// serving the last good keys when a fetch fails or is slow. Concurrent
// callers share one fetch. It is safe for concurrent use.
type Remote struct {
	url        string
	logURL     string
	timeout    time.Duration
	minRefresh time.Duration
	maxAge     time.Duration
	minAge     time.Duration
	client     *http.Client
	log        *zap.Logger
	now        func() time.Time
	observe    func(bool)

	// base parents every fetch so that Close can cancel them; fetches do
	// not derive from a caller's ctx because other callers may share them.
	base   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	keys      []Key      // last good keys; nil until a fetch succeeded
	have      bool       // a fetch has succeeded once
	expires   time.Time  // keys are stale from then on
	attempted bool       // a fetch has completed once, good or not
	lastFetch time.Time  // when the last fetch completed
	lastErr   error      // why the last fetch failed; nil after a success
	inflight  *jwksFetch // the fetch in progress, shared by all callers
	closed    bool       // Close was called: start no more fetches
}

// jwksFetch is one fetch in progress; done is closed when it has ended
// and its outcome is recorded in the Remote.
type jwksFetch struct{ done chan struct{} }

// NewRemote returns a Remote for cfg.URL. It fetches nothing
// until Keys or Prefetch is called.
func NewRemote(cfg RemoteConfig) *Remote {
	r := &Remote{
		url:        cfg.URL,
		logURL:     redactURL(cfg.URL),
		timeout:    orDefault(cfg.Timeout, defaultTimeout),
		minRefresh: orDefault(cfg.MinRefresh, defaultMinRefresh),
		maxAge:     orDefault(cfg.MaxAge, defaultMaxAge),
		minAge:     orDefault(cfg.MinAge, defaultMinAge),
		client:     cfg.Client,
		log:        cfg.Logger,
		now:        cfg.Now,
		observe:    cfg.Observe,
	}
	if r.minAge > r.maxAge {
		// MaxAge is the security bound (how long a revoked key lives);
		// it wins over the load bound.
		r.minAge = r.maxAge
	}
	if r.client == nil {
		r.client = &http.Client{CheckRedirect: sameOriginRedirects}
	}
	if r.log == nil {
		r.log = zap.NewNop()
	}
	if r.now == nil {
		r.now = time.Now
	}
	r.base, r.cancel = context.WithCancel(context.Background())
	return r
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// sameOriginRedirects lets a JWKS endpoint move within its scheme and
// host (e.g. to a versioned path) but neither hand key selection to
// another host nor downgrade https to http, where anyone on the path could
// substitute keys. net/http has no such policy built in, hence this hook.
func sameOriginRedirects(req *http.Request, via []*http.Request) error {
	if len(via) >= 3 {
		return errors.New("too many redirects")
	}
	if req.URL.Scheme != via[0].URL.Scheme {
		return errors.New("redirect to another scheme refused")
	}
	if req.URL.Host != via[0].URL.Host {
		return errors.New("redirect to another host refused")
	}
	return nil
}

// redactURL hides userinfo so that logs and errors never carry a password
// embedded in jwks_url.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable url)"
	}
	return u.Redacted()
}

// Prefetch starts the first fetch in the background so that start-up is
// not held up by a slow issuer. The only goroutine it starts is the fetch
// itself, bounded by Timeout.
func (r *Remote) Prefetch() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.have || r.inflight != nil || r.closed {
		return
	}
	r.startLocked()
}

// Close cancels any fetch in progress, waits for it to end and stops
// further fetches; cached keys are still served.
func (r *Remote) Close() error {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
	return nil
}

// Keys implements Set. For kid != "" it returns the keys with that kid
// and the keys without one; for kid == "" every key. It waits for a fetch
// only while nothing is cached, the cache is stale, or kid is unknown, and
// never longer than Timeout or ctx.
func (r *Remote) Keys(ctx context.Context, kid string) ([]Key, error) {
	r.mu.Lock()
	f := r.fetchToAwaitLocked(kid)
	r.mu.Unlock()

	var waitErr error
	if f != nil {
		select {
		case <-f.done:
		case <-ctx.Done():
			// The fetch goes on for the other callers; this one answers
			// with what is cached.
			waitErr = ctx.Err()
		}
	}

	r.mu.Lock()
	keys, have, lastErr, closed := r.keys, r.have, r.lastErr, r.closed
	r.mu.Unlock()

	if !have {
		reason := "no fetch completed"
		switch {
		case waitErr != nil:
			reason = waitErr.Error()
		case lastErr != nil:
			reason = lastErr.Error()
		case closed:
			reason = "closed"
		}
		return nil, fmt.Errorf("%w: jwks %s: %s", ErrUnavailable, r.logURL, reason)
	}
	return selectKeys(keys, kid), nil
}

// fetchToAwaitLocked decides whether the caller needs fresher keys and, if
// so, returns the fetch to wait for, starting one when the rate limits
// allow. It returns nil when the cache answers the call.
func (r *Remote) fetchToAwaitLocked(kid string) *jwksFetch {
	now := r.now()
	stale := !now.Before(r.expires)
	missing := kid != "" && !hasKID(r.keys, kid)
	if !r.have || stale || missing {
		if r.inflight != nil {
			return r.inflight
		}
	} else {
		return nil
	}
	if r.closed {
		return nil
	}
	since := now.Sub(r.lastFetch)
	switch {
	case !r.attempted:
		return r.startLocked()
	case !r.have:
		if since >= min(r.minRefresh, emptyRetry) {
			return r.startLocked()
		}
	case stale:
		// After a success lastFetch+ttl <= now already holds; the bound
		// only spaces out retries after a failed refresh.
		if since >= min(r.minRefresh, r.minAge) {
			return r.startLocked()
		}
	case missing:
		if since >= r.minRefresh {
			return r.startLocked()
		}
	}
	return nil
}

// startLocked launches a fetch. The fetch runs on its own context so that
// a caller giving up does not cancel it for the others.
func (r *Remote) startLocked() *jwksFetch {
	f := &jwksFetch{done: make(chan struct{})}
	r.inflight = f
	r.wg.Add(1)
	go r.run(f)
	return f
}

func (r *Remote) run(f *jwksFetch) {
	defer r.wg.Done()
	ctx, cancel := context.WithTimeout(r.base, r.timeout)
	keys, ttl, err := r.fetch(ctx)
	cancel()
	if r.observe != nil {
		r.observe(err == nil)
	}

	r.mu.Lock()
	now := r.now()
	r.attempted = true
	r.lastFetch = now
	r.lastErr = err
	if err == nil {
		r.keys, r.have, r.expires = keys, true, now.Add(ttl)
	}
	cached := r.have
	r.inflight = nil
	r.mu.Unlock()

	// Logged before waking the waiters so that the line precedes any
	// answer built on this outcome.
	if err != nil {
		r.log.Warn("jwks fetch failed",
			zap.String("jwks_url", r.logURL),
			zap.Bool("serving_cached_keys", cached),
			zap.String("reason", err.Error()))
	} else {
		r.log.Debug("jwks fetched",
			zap.String("jwks_url", r.logURL),
			zap.Int("keys", len(keys)),
			zap.Duration("ttl", ttl))
	}
	close(f.done)
}

// fetch GETs and parses the document and derives its cache lifetime.
func (r *Remote) fetch(ctx context.Context) ([]Key, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("bad jwks url: %v", err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		// url.Error repeats the URL, which may embed credentials.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, 0, fmt.Errorf("request failed: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, 0, fmt.Errorf("unexpected status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, 0, fmt.Errorf("reading body: %v", err)
	}
	if len(body) > maxJWKSBytes {
		return nil, 0, fmt.Errorf("document larger than %d bytes", maxJWKSBytes)
	}
	keys, err := r.parse(body)
	if err != nil {
		return nil, 0, err
	}
	return keys, r.lifetime(resp.Header), nil
}

// lifetime derives the cache lifetime from the response's Cache-Control,
// Age and Expires headers, clamped to [minAge, maxAge]. s-maxage is for
// shared caches and ignored; no-store and no-cache mean "as short as
// allowed".
func (r *Remote) lifetime(h http.Header) time.Duration {
	ttl, ok := cacheControlTTL(h)
	if ok {
		if age, err := strconv.ParseInt(strings.TrimSpace(h.Get("Age")), 10, 64); err == nil && age > 0 {
			ttl -= time.Duration(age) * time.Second
		}
	} else if exp := h.Get("Expires"); exp != "" {
		ttl = 0 // RFC 9111 §5.3: an invalid Expires means already expired
		if t, err := http.ParseTime(exp); err == nil {
			// Measure against the server's own Date to avoid clock skew.
			base := r.now()
			if d, err := http.ParseTime(h.Get("Date")); err == nil {
				base = d
			}
			ttl = t.Sub(base)
		}
	} else {
		ttl = defaultAge
	}
	return min(max(ttl, r.minAge), r.maxAge)
}

// cacheControlTTL reads max-age from Cache-Control; ok is false when the
// header gives no lifetime.
func cacheControlTTL(h http.Header) (ttl time.Duration, ok bool) {
	maxAge := -1
	for _, line := range h.Values("Cache-Control") {
		for _, d := range strings.Split(line, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(d), "=")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "no-store", "no-cache":
				return 0, true
			case "max-age":
				n, err := strconv.Atoi(strings.Trim(strings.TrimSpace(val), `"`))
				if err == nil && n >= 0 && maxAge < 0 {
					maxAge = n
				}
			}
		}
	}
	if maxAge < 0 {
		return 0, false
	}
	return time.Duration(maxAge) * time.Second, true
}

// jwkProbe reads the members needed to classify a key before go-jose
// parses it, so that a skipped key can be named in the log and private
// material is recognised whatever go-jose would make of it.
type jwkProbe struct {
	Kty  string          `json:"kty"`
	Kid  string          `json:"kid"`
	Use  *string         `json:"use"`
	K    json.RawMessage `json:"k"`
	D    json.RawMessage `json:"d"`
	P    json.RawMessage `json:"p"`
	Q    json.RawMessage `json:"q"`
	Priv json.RawMessage `json:"priv"`
}

// parse turns a JWKS document into its usable signature keys. Each key is
// parsed on its own: one key of a type this build does not know must not
// take the issuer's other keys down with it. Zero usable keys is an
// error, so the previous keys stay in use.
func (r *Remote) parse(body []byte) ([]Key, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("malformed jwks document: %v", err)
	}
	var keys []Key
	for i, raw := range doc.Keys {
		k, skip, warn := parseJWK(raw)
		if skip != "" {
			var probe jwkProbe
			_ = json.Unmarshal(raw, &probe)
			lvl := r.log.Info
			if warn {
				lvl = r.log.Warn
			}
			lvl("jwks key skipped",
				zap.String("jwks_url", r.logURL),
				zap.Int("index", i),
				zap.String("kid", probe.Kid),
				zap.String("kty", probe.Kty),
				zap.String("reason", skip))
			continue
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("no usable signature keys among %d", len(doc.Keys))
	}
	return keys, nil
}

// parseJWK returns the key, or why it is skipped and whether that points
// at a misconfiguration (warn) rather than a key meant for something else.
func parseJWK(raw json.RawMessage) (k Key, skip string, warn bool) {
	var probe jwkProbe
	if err := json.Unmarshal(raw, &probe); err != nil {
		return Key{}, "not a json object", true
	}
	if probe.Kty == "oct" || probe.K != nil {
		return Key{}, "symmetric key", false
	}
	if probe.D != nil || probe.P != nil || probe.Q != nil || probe.Priv != nil {
		return Key{}, "publishes private key material", true
	}
	if probe.Use != nil && *probe.Use != "sig" {
		return Key{}, "use is not sig", false
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(raw); err != nil {
		// go-jose errors name the problem, never key bytes.
		return Key{}, "unparsable or unsupported: " + err.Error(), false
	}
	pub, err := Admit(jwk.Key)
	if err != nil {
		return Key{}, err.Error(), true
	}
	alg := canonical(jwk.Algorithm)
	if alg != "" && !Fits(alg, pub) {
		return Key{}, "alg " + jwk.Algorithm + " does not fit the key", true
	}
	return Key{KID: jwk.KeyID, Public: pub, Alg: alg}, "", false
}

func hasKID(keys []Key, kid string) bool {
	for _, k := range keys {
		if k.KID == kid {
			return true
		}
	}
	return false
}

// selectKeys returns a fresh slice so that callers cannot alter the cache.
func selectKeys(keys []Key, kid string) []Key {
	out := make([]Key, 0, len(keys))
	for _, k := range keys {
		if kid == "" || k.KID == "" || k.KID == kid {
			out = append(out, k)
		}
	}
	return out
}
