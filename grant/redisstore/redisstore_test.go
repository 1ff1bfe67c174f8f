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

func newStore(t *testing.T, opts Options) *Store {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatalf("New(%v): %v", opts, err)
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
	storetest.Run(t, func(t *testing.T) grant.Store { return newStore(t, Options{Addrs: []string{srv.Addr()}}) })
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
		return newStore(t, Options{Addrs: []string{sentinel.Addr()}, MasterName: "mymaster"})
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
		storetest.Run(t, func(t *testing.T) grant.Store { return newStore(t, Options{Addrs: addrs}) })
	})
	t.Run("keys spread over the nodes", func(t *testing.T) {
		s := newStore(t, Options{Addrs: addrs, KeyPrefix: "spread:"})
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
	s := newStore(t, Options{Addrs: []string{srv.Addr()}})
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
	s := newStore(t, Options{Addrs: []string{srv.Addr()}})
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
	s := newStore(t, Options{Addrs: []string{srv.Addr()}, KeyPrefix: "edge-1/"})
	other := newStore(t, Options{Addrs: []string{srv.Addr()}})
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
	s := newStore(t, Options{
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
	s := newStore(t, Options{Addrs: []string{srv.Addr()}, ReadTimeout: 150 * time.Millisecond})
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
	for _, opts := range []Options{
		{Addrs: []string{addr}},
		{Addrs: []string{addr, addr}},
		{Addrs: []string{addr}, MasterName: "mymaster"},
	} {
		start := time.Now()
		s, err := New(opts)
		if err != nil {
			t.Fatalf("New(%v): %v", opts, err)
		}
		if d := time.Since(start); d > 100*time.Millisecond {
			t.Errorf("New(%v) took %v", opts, d)
		}
		if _, err := s.Access(t.Context(), "x"); !errors.Is(err, grant.ErrUnavailable) {
			t.Errorf("Access with nothing listening (%s mode): %v; want ErrUnavailable", opts.mode(), err)
		}
		_ = s.Close()
	}
}

func TestNewRejectsInconsistentOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"no address", Options{}},
		{"address without port", Options{Addrs: []string{"localhost"}}},
		{"negative db", Options{Addrs: []string{"h:1"}, DB: -1}},
		{"cluster with a db other than 0", Options{Addrs: []string{"h:1", "h:2"}, DB: 1}},
		{"insecure_skip_verify without tls", Options{Addrs: []string{"h:1"}, InsecureSkipVerify: true}},
		{"negative timeout", Options{Addrs: []string{"h:1"}, ReadTimeout: -time.Second}},
		{"negative pool size", Options{Addrs: []string{"h:1"}, PoolSize: -1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if s, err := New(tc.opts); err == nil {
				s.Close()
				t.Fatalf("New(%v) succeeded; want an error", tc.opts)
			}
		})
	}
}

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		name string
		url  string
		want Options
	}{
		{"host and port", "redis://redis.internal:6380", Options{Addrs: []string{"redis.internal:6380"}}},
		{"port defaults to 6379", "redis://redis.internal", Options{Addrs: []string{"redis.internal:6379"}}},
		{"database from the path", "redis://h:1/3", Options{Addrs: []string{"h:1"}, DB: 3}},
		{"empty path is database 0", "redis://h:1/", Options{Addrs: []string{"h:1"}}},
		{"user and password", "redis://edge:s%40cret@h:1/0", Options{Addrs: []string{"h:1"}, Username: "edge", Password: "s@cret"}},
		{"password only", "redis://:s3cret@h:1", Options{Addrs: []string{"h:1"}, Password: "s3cret"}},
		{"rediss means TLS", "rediss://h:6380/1", Options{Addrs: []string{"h:6380"}, DB: 1, TLS: true}},
		{"IPv6 host", "redis://[::1]:7000", Options{Addrs: []string{"[::1]:7000"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseURL(tc.url)
			if err != nil {
				t.Fatalf("ParseURL: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ParseURL = %v; want %v", got, tc.want)
			}
		})
	}
}

func TestParseURLRefusesWhatItCannotHonour(t *testing.T) {
	for _, tc := range []struct{ name, url string }{
		{"other scheme", "http://h:1"},
		{"no host", "redis:///0"},
		{"opaque", "redis:h:1"},
		{"database not a number", "redis://h:1/zero"},
		{"negative database", "redis://h:1/-1"},
		{"query parameters", "redis://h:1/0?dial_timeout=1s"},
		{"several hosts", "redis://h1:1,h2:2/0"},
		{"bad port", "redis://:hunter2@h:port/0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseURL(tc.url)
			if err == nil {
				t.Fatalf("ParseURL(%q) succeeded; want an error", tc.url)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error leaks the password: %v", err)
			}
		})
	}
}

func TestOptionsStringRedactsThePassword(t *testing.T) {
	o, err := ParseURL("rediss://edge:hunter2@h:6380/2")
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
		got := fmt.Sprintf(format, o)
		if strings.Contains(got, "hunter2") {
			t.Errorf("%s of Options shows the password: %s", format, got)
		}
		for _, visible := range []string{"h:6380", "edge", "REDACTED", "TLS:true"} {
			if !strings.Contains(got, visible) {
				t.Errorf("%s of Options = %s; want it to show %q", format, got, visible)
			}
		}
	}
	if o.Password != "hunter2" {
		t.Fatal("String changed the password it redacts")
	}
	// Nothing to redact shows nothing redacted.
	if got := (Options{Addrs: []string{"h:1"}}).String(); strings.Contains(got, "REDACTED") {
		t.Errorf("String() = %s; want no redaction marker without a password", got)
	}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	srv := testredis.StartTLS(t)
	opts, err := ParseURL(srv.URL())
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
			o := opts
			o.InsecureSkipVerify = tc.skipVerify
			s := newStore(t, o)
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
