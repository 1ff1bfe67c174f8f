package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/redisstore"
)

// respRun is one protocol's run of one workload.
type respRun struct {
	workload  string
	protocol  int
	ops, fail int
	elapsed   time.Duration
	client    time.Duration // the load generator's CPU: go-redis and the gateway's code
	server    time.Duration // redis-server's CPU
	latencies []time.Duration
}

func (r respRun) rate() float64 { return float64(r.ops) / r.elapsed.Seconds() }

func (r respRun) perOp(d time.Duration) time.Duration {
	if r.ops+r.fail == 0 {
		return 0
	}
	return d / time.Duration(r.ops+r.fail)
}

// respOrder is the protocols in the order they run, four times each,
// every second pair reversed, so that a drift of the machine's load over the
// runs weighs on both alike.
var respOrder = []int{3, 2, 2, 3, 3, 2, 2, 3}

// exchangeIssuance is what an exchange with the default configuration
// writes: an access record, a refresh record and its chain, and the
// assertion's replay mark.
func exchangeIssuance(now time.Time) *grant.Issuance {
	rec := grant.TokenRecord{V: grant.RecordVersion, Sub: "bench", ClientID: "bench", Aud: []string{issuerURL},
		Iss: issuerURL, AssertionIss: "https://issuer-0.invalid", Iat: now.Unix(), Exp: now.Add(time.Hour).Unix(),
		Claims: map[string]json.RawMessage{}}
	refresh := rec
	refresh.Exp = now.Add(24 * time.Hour).Unix()
	return &grant.Issuance{
		Marks:       []grant.Mark{{Key: grant.HashToken(rand.Text()), Until: now.Add(time.Hour)}},
		AccessHash:  grant.HashToken(rand.Text()),
		Access:      &grant.AccessRecord{TokenRecord: rec},
		RefreshHash: grant.HashToken(rand.Text()),
		Refresh:     &grant.RefreshRecord{TokenRecord: refresh, Chain: grant.HashToken(rand.Text())},
	}
}

// compareRESP runs the uncached verification (grant.Verifier over
// redisstore, what jwt_grant_auth calls) and the exchange's store write
// (redisstore's Issue script) in this process against the load
// generator's redis-server, with go-redis speaking RESP3 (its default,
// what the gateway uses) and RESP2. It is measured here and not through
// Caddy because the store's configuration has no way to choose the
// protocol.
func compareRESP(c config, redisSrv *process) (string, error) {
	addr := fmt.Sprintf("127.0.0.1:%d", redisSrv.port)
	ctx := context.Background()
	var runs []respRun
	for _, workload := range []string{"verify", "issue"} {
		for _, proto := range respOrder {
			rs, err := redisstore.New(&redis.UniversalOptions{Addrs: []string{addr}, Protocol: proto}, redisstore.Options{KeyPrefix: "resp:"})
			if err != nil {
				return "", err
			}
			var op func(context.Context) error
			switch workload {
			case "verify":
				v, err := grant.NewVerifier(grant.VerifierConfig{Store: rs})
				if err != nil {
					rs.Close()
					return "", err
				}
				token := rand.Text()
				is := exchangeIssuance(time.Now())
				is.AccessHash = grant.HashToken(token)
				if err := rs.Issue(ctx, is); err != nil {
					rs.Close()
					return "", err
				}
				op = func(ctx context.Context) error {
					if _, e := v.Verify(ctx, token); e != nil {
						return e
					}
					return nil
				}
			case "issue":
				op = func(ctx context.Context) error { return rs.Issue(ctx, exchangeIssuance(time.Now())) }
			}
			r, err := driveOps(ctx, c, redisSrv.pid, op)
			rs.Close()
			if err != nil {
				return "", fmt.Errorf("RESP%d %s: %w", proto, workload, err)
			}
			r.workload, r.protocol = workload, proto
			fmt.Fprintf(os.Stderr, "RESP%d %-8s %8.0f ops/s\n", proto, workload, r.rate())
			runs = append(runs, r)
		}
	}
	return formatRESP(runs, c), nil
}

// driveOps runs op from c.clients goroutines for c.duration.
func driveOps(ctx context.Context, c config, redisPid int, op func(context.Context) error) (respRun, error) {
	var (
		fail     atomic.Int64
		firstErr atomic.Value
		wg       sync.WaitGroup
	)
	lat := make([][]time.Duration, c.clients)
	self := os.Getpid()
	client0, err := processCPU(self)
	if err != nil {
		return respRun{}, err
	}
	server0, err := processCPU(redisPid)
	if err != nil {
		return respRun{}, err
	}
	start := time.Now()
	deadline := start.Add(c.duration)
	for w := range c.clients {
		wg.Go(func() {
			own := make([]time.Duration, 0, 1<<14)
			for time.Now().Before(deadline) {
				t0 := time.Now()
				if err := op(ctx); err != nil {
					fail.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				own = append(own, time.Since(t0))
			}
			lat[w] = own
		})
	}
	wg.Wait()
	r := respRun{elapsed: time.Since(start), fail: int(fail.Load())}
	client1, err := processCPU(self)
	if err != nil {
		return respRun{}, err
	}
	server1, err := processCPU(redisPid)
	if err != nil {
		return respRun{}, err
	}
	r.client, r.server = client1-client0, server1-server0
	for _, l := range lat {
		r.latencies = append(r.latencies, l...)
	}
	r.ops = len(r.latencies)
	slices.Sort(r.latencies)
	if r.fail > 0 {
		fmt.Fprintf(os.Stderr, "%d failed operations, the first: %v\n", r.fail, firstErr.Load())
	}
	return r, nil
}

// formatRESP is one row per run and, per workload, RESP2's mean rate
// over RESP3's.
func formatRESP(runs []respRun, c config) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "RESP3 (go-redis's default, the gateway's) against RESP2, in the load generator's process against its redis-server, %d goroutines, %v per run, in the order of the rows; CPU per operation is the load generator's (go-redis and the gateway's code) and redis-server's:\n", c.clients, c.duration)
	sb.WriteString("\n| workload | protocol | ops/s | p50 | p99 | client CPU/op | redis-server CPU/op | failed |\n|---|---|---:|---:|---:|---:|---:|---:|\n")
	sum := map[string]map[int][]float64{}
	for _, r := range runs {
		name := "verification (`jwt_grant_auth`, uncached)"
		if r.workload == "issue" {
			name = "exchange's write (Issue script)"
		}
		rr := result{latencies: r.latencies}
		fmt.Fprintf(&sb, "| %s | RESP%d | %.0f | %s | %s | %s | %s | %d |\n", name, r.protocol, r.rate(),
			ms(rr.percentile(0.5)), ms(rr.percentile(0.99)), us(r.perOp(r.client)), us(r.perOp(r.server)), r.fail)
		if sum[r.workload] == nil {
			sum[r.workload] = map[int][]float64{}
		}
		sum[r.workload][r.protocol] = append(sum[r.workload][r.protocol], r.rate())
	}
	sb.WriteString("\n")
	for _, w := range []string{"verify", "issue"} {
		r2, r3 := mean(sum[w][2]), mean(sum[w][3])
		if r3 > 0 {
			fmt.Fprintf(&sb, "- %s: RESP2 at %.2f × RESP3's rate (means of %d runs each).\n", w, r2/r3, len(sum[w][2]))
		}
	}
	return sb.String()
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

func us(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d)/float64(time.Microsecond)) }
