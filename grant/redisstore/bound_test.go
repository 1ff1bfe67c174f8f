package redisstore

import (
	"crypto/rand"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/internal/testredis"
)

// slowProxy forwards TCP to a Redis and, while delay is set, holds every
// reply back that long: a slow Redis, or a slow network, as a client sees
// it.
type slowProxy struct {
	l     net.Listener
	to    string
	delay atomic.Int64 // nanoseconds
	wg    sync.WaitGroup
}

func startSlowProxy(t *testing.T, to string) *slowProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &slowProxy{l: l, to: to}
	p.wg.Go(p.serve)
	t.Cleanup(func() { l.Close(); p.wg.Wait() })
	return p
}

func (p *slowProxy) addr() string { return p.l.Addr().String() }

func (p *slowProxy) serve() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.to)
		if err != nil {
			c.Close()
			continue
		}
		p.wg.Go(func() { _, _ = io.Copy(s, c); s.Close() })
		p.wg.Go(func() {
			defer c.Close()
			buf := make([]byte, 32<<10)
			for {
				n, err := s.Read(buf)
				if n > 0 {
					time.Sleep(time.Duration(p.delay.Load()))
					if _, werr := c.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		})
	}
}

// TestSlowRedisAnswersWithinTheStoresTimeouts proves SPEC §6: with Redis's
// replies delayed far beyond read_timeout, a store call fails within
// dial_timeout + write_timeout + read_timeout, both for a request whose
// connection was open when Redis slowed and for the ones after it (which
// dial anew): no retry multiplies the wait.
func TestSlowRedisAnswersWithinTheStoresTimeouts(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	proxy := startSlowProxy(t, srv.Addr())
	// A second, not less: the assertions below tell one attempt from two
	// by the read timeout, and a busy machine's scheduling noise (a few
	// hundred milliseconds under the race detector) must stay well
	// below it.
	const timeout = time.Second
	budget := 3 * timeout
	s := newStore(t, &redis.UniversalOptions{Addrs: []string{proxy.addr()},
		DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout})
	if err := s.Issue(t.Context(), issuance("", time.Hour)); err != nil {
		t.Fatalf("Issue before Redis slows: %v", err)
	}
	proxy.delay.Store(int64(5 * time.Second))
	for _, name := range []string{"in flight when Redis slowed", "steady state 1", "steady state 2"} {
		start := time.Now()
		err := s.Issue(t.Context(), issuance("", time.Hour))
		d := time.Since(start)
		t.Logf("%s: %v after %v (budget %v)", name, err, d.Round(time.Millisecond), budget)
		if !errors.Is(err, grant.ErrUnavailable) {
			t.Fatalf("%s: Issue on a slow Redis: %v; want ErrUnavailable", name, err)
		}
		if d > budget {
			t.Errorf("%s: Issue on a slow Redis took %v; want at most %v", name, d, budget)
		}
		// One attempt waits one read timeout; the library's retries (on
		// by default) would wait one more per retry (with every timeout
		// 200ms they took 577 ms, under the budget, hence this check).
		if d >= 2*timeout {
			t.Errorf("%s: Issue on a slow Redis took %v: more than one attempt", name, d)
		}
	}
	proxy.delay.Store(0)
}

// TestClusterWriteFailureReleasesTheMarks proves SPEC §6 on a cluster: an
// Issue whose marks were claimed but whose records could not be written
// (the records' node is down) answers ErrUnavailable and gives the marks
// back, so that the same assertion may be presented again.
func TestClusterWriteFailureReleasesTheMarks(t *testing.T) {
	t.Parallel()
	nodes := testredis.StartCluster(t, 3)
	addrs := make([]string, len(nodes))
	for i, n := range nodes {
		addrs[i] = n.Addr()
	}
	s := newStore(t, &redis.UniversalOptions{Addrs: addrs, ReadTimeout: 300 * time.Millisecond,
		DialTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond})
	// The node serving a key's slot, by the even split StartCluster makes.
	node := func(key string) int {
		slot, err := nodes[0].Do("CLUSTER", "KEYSLOT", key)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(slot)
		return n * len(nodes) / 16384
	}
	// A grant without refresh token whose mark lives on node 0 and whose
	// access record lives on node 2.
	var is *grant.Issuance
	for is == nil || node(s.markKey(is.Marks[0].Key)) != 0 || node(s.atKey(is.AccessHash)) != 2 {
		is = issuance("", time.Hour)
	}
	// The client learns the slot map before the node goes.
	if err := s.Issue(t.Context(), issuance("", time.Hour)); err != nil {
		t.Fatalf("Issue with every node up: %v", err)
	}
	nodes[2].Stop()
	// Within the cluster's node timeout (5 s), node 0 still serves.
	if err := s.Issue(t.Context(), is); !errors.Is(err, grant.ErrUnavailable) {
		t.Fatalf("Issue with the records' node down: %v; want ErrUnavailable", err)
	}
	if got, err := nodes[0].Do("EXISTS", s.markKey(is.Marks[0].Key)); err != nil || got != "0" {
		t.Fatalf("mark left on node 0 after the failed Issue: EXISTS = %q, %v; want 0", got, err)
	}
}

// A rotation that files its tokens in a chain a reuse revoked meanwhile
// deletes them: on a cluster the claim of the old refresh token and the
// filing of the new tokens are separate steps, and a reuse at another
// gateway can revoke the chain between them (SPEC §3.2: every token of the
// chain is revoked). The rotation itself still won, as on a single node.
func TestClusterRotationRacingARevocationLeavesNoTokenLive(t *testing.T) {
	t.Parallel()
	nodes := testredis.StartCluster(t, 3)
	addrs := make([]string, len(nodes))
	for i, n := range nodes {
		addrs[i] = n.Addr()
	}
	s := newStore(t, &redis.UniversalOptions{Addrs: addrs})
	ctx := t.Context()
	chain := grant.HashToken(rand.Text())
	first := issuance(chain, time.Hour)
	if err := s.Issue(ctx, first); err != nil {
		t.Fatalf("Issue: %v", err)
	}
	// The winner's claim of the refresh token is done; the loser's reuse
	// revokes the chain before the winner files its new tokens.
	next := issuance(chain, time.Hour)
	e, err := s.encode(next)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeChain(ctx, chain); err != nil {
		t.Fatalf("RevokeChain: %v", err)
	}
	if err := s.clusterWrite(ctx, e, s.chainKey(chain), true); !errors.Is(err, errChainRevoked) {
		t.Fatalf("clusterWrite into a revoked chain: %v; want errChainRevoked", err)
	}
	for _, h := range []string{first.AccessHash, next.AccessHash} {
		if _, err := s.Access(ctx, h); !errors.Is(err, grant.ErrNotFound) {
			t.Errorf("Access after the chain's revocation: %v; want ErrNotFound", err)
		}
	}
	if _, err := s.Refresh(ctx, next.RefreshHash); !errors.Is(err, grant.ErrNotFound) {
		t.Errorf("Refresh of the racing rotation's token: %v; want ErrNotFound", err)
	}

	// And through Rotate: the chain's refresh token, already revoked, is
	// not found; a second revocation is harmless.
	if err := s.Rotate(ctx, first.RefreshHash, issuance(chain, time.Hour)); !errors.Is(err, grant.ErrNotFound) {
		t.Errorf("Rotate of a revoked chain's token: %v; want ErrNotFound", err)
	}
	if err := s.RevokeChain(ctx, chain); err != nil {
		t.Errorf("second RevokeChain: %v", err)
	}
}
