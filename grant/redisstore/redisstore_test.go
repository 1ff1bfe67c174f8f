package redisstore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/storetest"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/internal/testredis"
)

// TestMain silences the client library's logger, which prints every failed
// dial of the outage tests to stderr.
func TestMain(m *testing.M) {
	redis.SetLogger(quiet{})
	os.Exit(m.Run())
}

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

func newStore(t *testing.T, uo *redis.UniversalOptions, opts ...Options) *Store {
	t.Helper()
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	s, err := New(uo, o)
	if err != nil {
		t.Fatalf("New(%v): %v", uo.Addrs, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// inspect is a plain client for looking at what a Store wrote.
func inspect(t *testing.T, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestConformance(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	storetest.Run(t, func(t *testing.T) grant.Store {
		return newStore(t, &redis.UniversalOptions{Addrs: []string{srv.Addr()}})
	})
}

func TestConformanceSentinel(t *testing.T) {
	t.Parallel()
	master := testredis.Start(t)
	sentinel := testredis.StartSentinel(t, master, "mymaster")
	raw := inspect(t, master.Addr())
	// Cleanups run after the suite's parallel subtests, and before the
	// servers stop.
	t.Cleanup(func() {
		// The records went to the master the sentinel named.
		if n, err := raw.DBSize(context.Background()).Result(); err != nil || n == 0 {
			t.Errorf("master holds %d keys, %v; want the suite's", n, err)
		}
	})
	storetest.Run(t, func(t *testing.T) grant.Store {
		return newStore(t, &redis.UniversalOptions{Addrs: []string{sentinel.Addr()}, MasterName: "mymaster"})
	})
}

// TestCluster shares one cluster between its subtests: a cluster takes two
// seconds to accept writes after its nodes start.
func TestCluster(t *testing.T) {
	t.Parallel()
	nodes := testredis.StartCluster(t, 3)
	addrs := make([]string, len(nodes))
	for i, n := range nodes {
		addrs[i] = n.Addr()
	}
	t.Run("conformance", func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) grant.Store { return newStore(t, &redis.UniversalOptions{Addrs: addrs}) })
	})
	t.Run("keys spread over the nodes", func(t *testing.T) {
		s := newStore(t, &redis.UniversalOptions{Addrs: addrs}, Options{KeyPrefix: "spread:"})
		for range 30 {
			if err := s.Issue(t.Context(), issuance("", time.Hour)); err != nil {
				t.Fatalf("Issue: %v", err)
			}
		}
		// A store that funnelled every key to one node would not be using
		// the cluster; one that used multi-key scripts would have failed
		// above.
		for _, n := range nodes {
			k, err := inspect(t, n.Addr()).Keys(t.Context(), "spread:*").Result()
			if err != nil || len(k) == 0 {
				t.Errorf("node %s holds %d of the keys, %v; want some", n.Addr(), len(k), err)
			}
		}
	})
}

// issuance is a grant with one replay mark, and a refresh token when chain
// is not "".
func issuance(chain string, ttl time.Duration) *grant.Issuance {
	now := time.Now()
	is := &grant.Issuance{
		Marks:      []grant.Mark{{Key: grant.HashToken(rand.Text()), Until: now.Add(ttl / 2)}},
		AccessHash: grant.HashToken(rand.Text()),
		Access: &grant.AccessRecord{
			TokenRecord: grant.TokenRecord{
				V:            grant.RecordVersion,
				Sub:          "alice",
				ClientID:     "client-1",
				Scope:        "",
				Aud:          []string{"api"},
				Iss:          "https://as.example",
				AssertionIss: "https://idp.example",
				Iat:          now.Unix(),
				Exp:          now.Add(ttl).Unix(),
				Tenant:       "",
				Claims:       map[string]json.RawMessage{"email": json.RawMessage(`"a@example.com"`)},
			},
			Chain: chain,
		},
	}
	if chain != "" {
		is.RefreshHash = grant.HashToken(rand.Text())
		is.Refresh = &grant.RefreshRecord{
			TokenRecord: grant.TokenRecord{
				V:        grant.RecordVersion,
				Sub:      "alice",
				ClientID: "client-1",
				Scope:    "",
				Aud:      []string{},
				Iat:      now.Unix(),
				Exp:      now.Add(2 * ttl).Unix(),
				Claims:   map[string]json.RawMessage{},
			},
			Chain: chain,
		}
	}
	return is
}

func TestKeyLayoutAndExpiryAreWhatDownstreamServicesRead(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	s := newStore(t, &redis.UniversalOptions{Addrs: []string{srv.Addr()}})
	raw := inspect(t, srv.Addr())
	ctx := t.Context()

	const token = "opaque-access-token"
	is := issuance(grant.HashToken(rand.Text()), time.Hour)
	is.AccessHash = grant.HashToken(token)
	if err := s.Issue(ctx, is); err != nil {
		t.Fatalf("Issue: %v", err)
	}

	// SPEC §4: a downstream service hashes the token and reads the JSON.
	key := "jwtgrant:at:" + fmt.Sprintf("%x", sha256.Sum256([]byte(token)))
	b, err := raw.Get(ctx, key).Bytes()
	if err != nil {
		t.Fatalf("GET %s: %v", key, err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("access record is not JSON: %v", err)
	}
	want := map[string]any{
		"v": 1.0, "sub": "alice", "client_id": "client-1", "scope": "", "aud": []any{"api"},
		"iss": "https://as.example", "assertion_iss": "https://idp.example",
		"iat": float64(is.Access.Iat), "exp": float64(is.Access.Exp), "tenant": "",
		"claims": map[string]any{"email": "a@example.com"},
	}
	for k, v := range want {
		if !reflect.DeepEqual(doc[k], v) {
			t.Errorf("access record %q = %#v; want %#v", k, doc[k], v)
		}
	}

	ttlNear := func(key string, want time.Duration) {
		t.Helper()
		got, err := raw.PTTL(ctx, key).Result()
		if err != nil || math.Abs(float64(got-want)) > float64(1500*time.Millisecond) {
			t.Errorf("PTTL %s = %v, %v; want about %v", key, got, err, want)
		}
	}
	ttlNear(key, time.Until(time.Unix(is.Access.Exp, 0)))
	ttlNear("jwtgrant:rt:"+is.RefreshHash, time.Until(time.Unix(is.Refresh.Exp, 0)))
	ttlNear("jwtgrant:jti:"+is.Marks[0].Key, time.Until(is.Marks[0].Until))
	// The chain lives as long as its longest-lived token.
	chainKey := "jwtgrant:ch:" + is.Refresh.Chain
	ttlNear(chainKey, time.Until(time.Unix(is.Refresh.Exp, 0)))
	members, err := raw.SMembers(ctx, chainKey).Result()
	if err != nil {
		t.Fatal(err)
	}
	wantMembers := []string{key, "jwtgrant:rt:" + is.RefreshHash}
	if !sameSet(members, wantMembers) {
		t.Errorf("chain members = %v; want %v", members, wantMembers)
	}
	if owner, err := raw.Get(ctx, "jwtgrant:jti:"+is.Marks[0].Key).Result(); err != nil || owner != is.AccessHash {
		t.Errorf("replay mark holds %q, %v; want the access hash", owner, err)
	}
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]bool{}
	for _, s := range a {
		seen[s] = true
	}
	for _, s := range b {
		if !seen[s] {
			return false
		}
	}
	return true
}

func TestRotationKeepsTheRecordJSONIntact(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	s := newStore(t, &redis.UniversalOptions{Addrs: []string{srv.Addr()}})
	raw := inspect(t, srv.Addr())
	ctx := t.Context()
	chain := grant.HashToken(rand.Text())
	is := issuance(chain, time.Hour)
	// Values a decode and re-encode by Lua's cjson would change.
	is.Refresh.Claims["big"] = json.RawMessage(`12345678901234567890`)
	is.Refresh.Claims["empty"] = json.RawMessage(`[]`)
	if err := s.Issue(ctx, is); err != nil {
		t.Fatal(err)
	}
	key := "jwtgrant:rt:" + is.RefreshHash
	before, err := raw.Get(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	ttlBefore, _ := raw.PTTL(ctx, key).Result()
	next := issuance(chain, time.Hour)
	if err := s.Rotate(ctx, is.RefreshHash, next); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	after, err := raw.Get(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	want := strings.TrimSuffix(before, "}") + `,"rotated":true,"rotated_to":"` + next.RefreshHash + `"}`
	if after != want {
		t.Errorf("rotated record =\n%s\nwant\n%s", after, want)
	}
	if ttl, _ := raw.PTTL(ctx, key).Result(); ttl <= 0 || ttl > ttlBefore {
		t.Errorf("rotation changed the TTL from %v to %v", ttlBefore, ttl)
	}
}

func TestKeyPrefixScopesEveryKey(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	s := newStore(t, &redis.UniversalOptions{Addrs: []string{srv.Addr()}}, Options{KeyPrefix: "edge-1/"})
	other := newStore(t, &redis.UniversalOptions{Addrs: []string{srv.Addr()}})
	raw := inspect(t, srv.Addr())
	ctx := t.Context()
	is := issuance(grant.HashToken(rand.Text()), time.Hour)
	if err := s.Issue(ctx, is); err != nil {
		t.Fatal(err)
	}
	keys, err := raw.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"edge-1/at:" + is.AccessHash, "edge-1/rt:" + is.RefreshHash,
		"edge-1/ch:" + is.Refresh.Chain, "edge-1/jti:" + is.Marks[0].Key,
	}
	if !sameSet(keys, want) {
		t.Errorf("keys = %v; want %v", keys, want)
	}
	if _, err := other.Access(ctx, is.AccessHash); !errors.Is(err, grant.ErrNotFound) {
		t.Errorf("a store with the default prefix read the record: %v", err)
	}
	// Nor does a mark under one prefix refuse a grant under another.
	dup := issuance("", time.Hour)
	dup.Marks = is.Marks
	if err := other.Issue(ctx, dup); err != nil {
		t.Errorf("Issue under another prefix: %v", err)
	}
}

func TestOutageIsUnavailableAndStoreRecoversAfterRestart(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	s := newStore(t, &redis.UniversalOptions{
		Addrs:       []string{srv.Addr()},
		DialTimeout: 200 * time.Millisecond, ReadTimeout: 200 * time.Millisecond, WriteTimeout: 200 * time.Millisecond,
	})
	chain := grant.HashToken(rand.Text())
	is := issuance(chain, time.Hour)
	if err := s.Issue(t.Context(), is); err != nil {
		t.Fatalf("Issue: %v", err)
	}

	ops := []struct {
		name string
		op   func(ctx context.Context) error
	}{
		{"Issue", func(ctx context.Context) error { return s.Issue(ctx, issuance(chain, time.Hour)) }},
		{"Access", func(ctx context.Context) error { _, err := s.Access(ctx, is.AccessHash); return err }},
		{"Refresh", func(ctx context.Context) error { _, err := s.Refresh(ctx, is.RefreshHash); return err }},
		{"Rotate", func(ctx context.Context) error { return s.Rotate(ctx, is.RefreshHash, issuance(chain, time.Hour)) }},
		{"RevokeAccess", func(ctx context.Context) error { return s.RevokeAccess(ctx, is.AccessHash) }},
		{"RevokeChain", func(ctx context.Context) error { return s.RevokeChain(ctx, chain) }},
	}
	srv.Stop()
	for _, tc := range ops {
		start := time.Now()
		err := tc.op(t.Context())
		if !errors.Is(err, grant.ErrUnavailable) {
			t.Errorf("%s with Redis down: %v; want ErrUnavailable", tc.name, err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s with Redis down took %v; want a prompt failure", tc.name, d)
		}
	}

	// The data is gone with the restart (no persistence in tests), but
	// the same Store serves again without being recreated.
	srv.Restart()
	// The client stops dialling a server that refused it too often and
	// probes it once a second instead.
	deadline := time.Now().Add(3 * time.Second)
	for _, tc := range ops {
		for {
			err := tc.op(t.Context())
			if !errors.Is(err, grant.ErrUnavailable) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s after restart: %v; want the store back", tc.name, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	fresh := issuance(grant.HashToken(rand.Text()), time.Hour)
	if err := s.Issue(t.Context(), fresh); err != nil {
		t.Fatalf("Issue after restart: %v", err)
	}
	if _, err := s.Access(t.Context(), fresh.AccessHash); err != nil {
		t.Fatalf("Access after restart: %v", err)
	}
}

func TestHungServerIsUnavailableWithinTheDeadline(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	s := newStore(t, &redis.UniversalOptions{Addrs: []string{srv.Addr()}, ReadTimeout: 150 * time.Millisecond})
	is := issuance("", time.Hour)
	if err := s.Issue(t.Context(), is); err != nil {
		t.Fatalf("Issue: %v", err)
	}
	srv.Pause()
	t.Cleanup(srv.Resume)

	for _, tc := range []struct {
		name     string
		deadline time.Duration // 0: none, the read timeout alone applies
		within   time.Duration
	}{
		{"the request's deadline", 100 * time.Millisecond, 400 * time.Millisecond},
		{"the read timeout", 0, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			if tc.deadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.deadline)
				defer cancel()
			}
			start := time.Now()
			_, err := s.Access(ctx, is.AccessHash)
			if !errors.Is(err, grant.ErrUnavailable) {
				t.Fatalf("Access of a hung server: %v; want ErrUnavailable", err)
			}
			if d := time.Since(start); d > tc.within {
				t.Fatalf("Access of a hung server took %v; want at most %v", d, tc.within)
			}
		})
	}
	srv.Resume()
	if _, err := s.Access(t.Context(), is.AccessHash); err != nil {
		t.Fatalf("Access after the server resumed: %v", err)
	}
}

func TestNewDoesNoNetworkIO(t *testing.T) {
	t.Parallel()
	// A port nobody listens on: New must still succeed, and at once.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	for _, opts := range []*redis.UniversalOptions{
		{Addrs: []string{addr}},
		{Addrs: []string{addr, addr}},
		{Addrs: []string{addr}, MasterName: "mymaster"},
	} {
		start := time.Now()
		s, err := New(opts, Options{})
		if err != nil {
			t.Fatalf("New(%v): %v", opts, err)
		}
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Errorf("New(%v) took %v", opts, d)
		}
		if _, err := s.Access(t.Context(), "x"); !errors.Is(err, grant.ErrUnavailable) {
			t.Errorf("Access with nothing listening (%s mode): %v; want ErrUnavailable", mode(opts), err)
		}
		_ = s.Close()
	}
}

func TestNewRejectsInconsistentOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts redis.UniversalOptions
	}{
		{"no address", redis.UniversalOptions{}},
		{"address without port", redis.UniversalOptions{Addrs: []string{"localhost"}}},
		{"several hosts in one address", redis.UniversalOptions{Addrs: []string{"h1:1,h2:2"}}},
		{"negative db", redis.UniversalOptions{Addrs: []string{"h:1"}, DB: -1}},
		{"cluster with a db other than 0", redis.UniversalOptions{Addrs: []string{"h:1", "h:2"}, DB: 1}},
		{"negative timeout", redis.UniversalOptions{Addrs: []string{"h:1"}, ReadTimeout: -time.Second}},
		{"negative pool size", redis.UniversalOptions{Addrs: []string{"h:1"}, PoolSize: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if s, err := New(&tc.opts, Options{}); err == nil {
				s.Close()
				t.Fatalf("New(%v) succeeded; want an error", tc.opts.Addrs)
			}
		})
	}
}

func TestStringNamesTheDeploymentWithoutCredentials(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts redis.UniversalOptions
		want string
	}{
		{"single node", redis.UniversalOptions{Addrs: []string{"h:6380"}, Username: "edge", Password: "hunter2"}, "redis h:6380"},
		{"single node, db", redis.UniversalOptions{Addrs: []string{"h:6380"}, DB: 2, Password: "hunter2"}, "redis h:6380 db 2"},
		{"sentinel", redis.UniversalOptions{Addrs: []string{"s1:1", "s2:2"}, MasterName: "mymaster", Password: "hunter2"}, `redis s1:1,s2:2 (sentinel master "mymaster")`},
		{"cluster", redis.UniversalOptions{Addrs: []string{"h:1", "h:2"}, Password: "hunter2"}, "redis h:1,h:2 (cluster)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(&tc.opts, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			for _, format := range []string{"%v", "%+v", "%s"} {
				if got := fmt.Sprintf(format, s); got != tc.want {
					t.Errorf("%s of the store = %q; want %q", format, got, tc.want)
				}
			}
			if strings.Contains(s.String(), "hunter2") {
				t.Error("String shows the password")
			}
		})
	}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	srv := testredis.StartTLS(t)
	opts, err := redis.ParseURL(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		skipVerify bool
		wantErr    error
	}{
		{"the server certificate is verified by default", false, grant.ErrUnavailable},
		{"insecure_skip_verify reaches a server with an unknown certificate", true, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tlsConf := opts.TLSConfig.Clone()
			tlsConf.InsecureSkipVerify = tc.skipVerify
			s := newStore(t, &redis.UniversalOptions{Addrs: []string{opts.Addr}, TLSConfig: tlsConf})
			is := issuance("", time.Hour)
			err := s.Issue(t.Context(), is)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("Issue over TLS: %v; want %v", err, tc.wantErr)
			}
			// Refused for its certificate, not for some other reason.
			if err != nil && !strings.Contains(err.Error(), "certificate") {
				t.Fatalf("Issue over TLS: %v; want a certificate error", err)
			}
			if err == nil {
				if _, err := s.Access(t.Context(), is.AccessHash); err != nil {
					t.Fatalf("Access over TLS: %v", err)
				}
			}
		})
	}
}

// wantTTLs checks that every key Issue wrote lives exactly as long as the
// store's clock says it should: Redis's own clock, an hour ahead of the
// store's here, must neither shorten nor lengthen it.
func wantTTLs(t *testing.T, s *Store, raw redis.Cmdable, prefix string) {
	t.Helper()
	ctx := t.Context()
	is := issuance(grant.HashToken(rand.Text()), time.Hour)
	now := s.now()
	is.Marks[0].Until = now.Add(90*time.Second + 300*time.Microsecond)
	is.Access.Exp, is.Refresh.Exp = now.Add(time.Hour).Unix(), now.Add(2*time.Hour).Unix()
	if err := s.Issue(ctx, is); err != nil {
		t.Fatalf("Issue: %v", err)
	}
	for _, tc := range []struct {
		key  string
		want time.Duration
	}{
		// Rounded up to the millisecond: never shorter than asked.
		{prefix + "jti:" + is.Marks[0].Key, 90*time.Second + time.Millisecond},
		{prefix + "at:" + is.AccessHash, time.Unix(is.Access.Exp, 0).Sub(now)},
		{prefix + "rt:" + is.RefreshHash, time.Unix(is.Refresh.Exp, 0).Sub(now)},
		{prefix + "ch:" + is.Refresh.Chain, time.Unix(is.Refresh.Exp, 0).Sub(now)},
	} {
		got, err := raw.PTTL(ctx, tc.key).Result()
		// Redis counts down from the write; a second covers a slow machine.
		if err != nil || got > tc.want || got < tc.want-time.Second {
			t.Errorf("PTTL %s = %v, %v; want %v", tc.key, got, err, tc.want)
		}
	}
}

func TestExpiriesAreMeasuredByTheGatewayClock(t *testing.T) {
	t.Parallel()
	// The gateway's clock runs an hour behind Redis's (or Redis's an hour
	// ahead): absolute expiries would have expired every key at once.
	behind := func() time.Time { return time.Now().Add(-time.Hour) }
	t.Run("single node", func(t *testing.T) {
		t.Parallel()
		srv := testredis.Start(t)
		raw := inspect(t, srv.Addr())
		s := newStore(t, &redis.UniversalOptions{Addrs: []string{srv.Addr()}}, Options{Now: behind})
		wantTTLs(t, s, raw, DefaultKeyPrefix)
	})
	t.Run("cluster", func(t *testing.T) {
		t.Parallel()
		nodes := testredis.StartCluster(t, 3)
		addrs := make([]string, len(nodes))
		for i, n := range nodes {
			addrs[i] = n.Addr()
		}
		s := newStore(t, &redis.UniversalOptions{Addrs: addrs}, Options{Now: behind})
		// A cluster client finds each key's node.
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
		t.Cleanup(func() { _ = c.Close() })
		wantTTLs(t, s, c, DefaultKeyPrefix)
	})
}
