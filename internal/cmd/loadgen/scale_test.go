package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"github.com/redis/go-redis/v9"

	_ "github.com/caddy-jwt-grant/caddy-jwt-grant/caddymodule"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/redisstore"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/internal/testredis"
)

// The generated configurations adapt, with every issuer and client in
// each site, and the options the live-token run needs.
func TestScaleCaddyfileAdaptsWithEveryIssuerAndClient(t *testing.T) {
	for _, sc := range []scaleSite{
		{issuers: 1, clients: 1},
		{issuers: 7, clients: 13},
		{issuers: 3, clients: 2, maxEntries: 5000, refreshOff: true, redisURL: "redis://127.0.0.1:7000/0", redisPort: 8002},
	} {
		t.Run(fmt.Sprintf("%d issuers %d clients", sc.issuers, sc.clients), func(t *testing.T) {
			text := scaleCaddyfile(8000, 8001, sc, "$2a$04$abcdefghijklmnopqrstuu5OeFgkv6Xzr6s5mYpVxlLxr7oTCAHpy")
			out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(text), map[string]any{"filename": "Caddyfile"})
			if err != nil {
				t.Fatalf("adapt: %v\n%s", err, text)
			}
			js := string(out)
			sites := 1
			if sc.redisURL != "" {
				sites = 2
			}
			for i := range sc.issuers {
				_, iss, file := scaleIssuer(i)
				if got := strings.Count(js, `"`+iss+`"`); got != sites {
					t.Errorf("issuer %s appears %d times, want %d", iss, got, sites)
				}
				if !strings.Contains(js, file) {
					t.Errorf("no key file %s", file)
				}
			}
			if strings.Contains(js, fmt.Sprintf("issuer-%d.invalid", sc.issuers)) {
				t.Errorf("one issuer too many")
			}
			for i := range sc.clients + 1 {
				want := sites
				if i == sc.clients {
					want = 0
				}
				if got := strings.Count(js, `"`+scaleClient(i)+`"`); got != want {
					t.Errorf("client %s appears %d times, want %d", scaleClient(i), got, want)
				}
			}
			if got, want := strings.Contains(js, `"max_entries":5000`), sc.maxEntries == 5000; got != want {
				t.Errorf("max_entries in the JSON: %v, want %v", got, want)
			}
			if got, want := strings.Contains(text, "refresh_token_ttl off"), sc.refreshOff; got != want {
				t.Errorf("refresh_token_ttl off: %v, want %v", got, want)
			}
			if got, want := strings.Contains(js, "127.0.0.1:7000"), sc.redisURL != ""; got != want {
				t.Errorf("redis store in the JSON: %v, want %v", got, want)
			}
		})
	}
}

func TestResidentKBReadsVmRSS(t *testing.T) {
	status := "Name:\tcaddy\nVmPeak:\t  999 kB\nVmRSS:\t   123456 kB\nThreads:\t9\n"
	if kb, err := residentKB([]byte(status)); err != nil || kb != 123456 {
		t.Errorf("residentKB = %d, %v; want 123456", kb, err)
	}
	for _, bad := range []string{"Name:\tcaddy\n", "VmRSS:\t12 MB\n", "VmRSS:\tmany kB\n"} {
		if kb, err := residentKB([]byte(bad)); err == nil {
			t.Errorf("residentKB(%q) = %d, want an error", bad, kb)
		}
	}
}

func TestPerTokenFitsTheSlopeAndExtrapolates(t *testing.T) {
	line := []rssPoint{{10, 50_000_000 + 10*600}, {100_000, 50_000_000 + 100_000*600}, {300_000, 50_000_000 + 300_000*600}}
	slope, at, ok := perToken(line, 1_000_000)
	if !ok || slope < 599.9 || slope > 600.1 || at < 649_999_000 || at > 650_001_000 {
		t.Errorf("perToken = %.2f, %d, %v; want 600, 650000000, true", slope, at, ok)
	}
	// Noise around the line keeps the slope near it.
	noisy := []rssPoint{{0, 100}, {1000, 2200}, {2000, 3900}, {3000, 6100}}
	if slope, _, _ := perToken(noisy, 0); slope < 1.9 || slope > 2.1 {
		t.Errorf("slope of noisy points = %.2f, want about 2", slope)
	}
	for _, few := range [][]rssPoint{nil, {{10, 1}}, {{10, 1}, {10, 2}}} {
		if _, _, ok := perToken(few, 100); ok {
			t.Errorf("perToken(%v) ok with fewer than two token counts", few)
		}
	}
}

// Records written by fillRedis are what the store reads: a verifier over
// redisstore accepts the tokens they stand for, with a TTL, and no more
// records than asked are written, across batch boundaries.
func TestFillRedisWritesRecordsTheStoreVerifies(t *testing.T) {
	srv := testredis.Start(t)
	rs, err := redisstore.New(&redis.UniversalOptions{Addrs: []string{srv.Addr()}}, redisstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rs.Close() })
	is := exchangeIssuance(time.Now())
	is.Refresh, is.RefreshHash, is.Marks = nil, "", nil
	is.Access.Sub = "template-subject"
	if err := rs.Issue(t.Context(), is); err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	template, err := rdb.Get(t.Context(), "jwtgrant:at:"+is.AccessHash).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	const n = 2500
	if err := fillRedis(t.Context(), rdb, "jwtgrant:", template, time.Hour, "seed", n); err != nil {
		t.Fatal(err)
	}
	if keys, err := rdb.DBSize(t.Context()).Result(); err != nil || keys != n+1 {
		t.Errorf("DBSIZE = %d, %v; want %d", keys, err, n+1)
	}
	v, err := grant.NewVerifier(grant.VerifierConfig{Store: rs})
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 999, 1000, n - 1} {
		rec, oerr := v.Verify(t.Context(), fmt.Sprintf("seed-%d", i))
		if oerr != nil || rec.Sub != "template-subject" {
			t.Errorf("token seed-%d: %v, %v", i, rec, oerr)
		}
		ttl, err := rdb.PTTL(t.Context(), "jwtgrant:at:"+fillTokenHash("seed", i)).Result()
		if err != nil || ttl <= 0 || ttl > time.Hour {
			t.Errorf("token seed-%d: TTL %v, %v", i, ttl, err)
		}
	}
	if _, oerr := v.Verify(t.Context(), fmt.Sprintf("seed-%d", n)); oerr == nil {
		t.Errorf("token seed-%d verified; only %d were written", n, n)
	}
}

func TestFormatRatiosByDividesByTheFirstOfEachGroup(t *testing.T) {
	rs := []result{
		{name: "a, 10", ok: 100, elapsed: time.Second},
		{name: "b, 10", ok: 50, elapsed: time.Second},
		{name: "a, 1000", ok: 80, elapsed: time.Second},
		{name: "b, 1000", ok: 25, elapsed: time.Second},
	}
	table := formatRatiosBy(rs, func(r result) string { return strings.SplitN(r.name, ",", 2)[0] }, "×")
	for _, want := range []string{"| a, 10 | 100 |", "| 1.00 |", "| a, 1000 | 80 | 0.000 ms | 0.000 ms | 0.000 ms | 0.80 |", "| b, 1000 | 25 | 0.000 ms | 0.000 ms | 0.000 ms | 0.50 |"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	table = formatRatios(rs, 1, "×")
	if !strings.Contains(table, "| a, 10 | 100 | 0.000 ms | 0.000 ms | 0.000 ms | 2.00 |") {
		t.Errorf("ratio to rs[1] missing:\n%s", table)
	}
}
