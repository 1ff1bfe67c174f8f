package redisstore

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/internal/testredis"
)

// TestClusterHungNodeAnswersWithinTheStoresTimeouts proves SPEC §6 on a
// cluster: with a node hung (SIGSTOP: a proxy in front of a node would be
// bypassed, as the client dials the addresses CLUSTER SLOTS names), a
// store call whose keys are on it fails within dial_timeout +
// write_timeout + read_timeout, although the cluster client retries a
// timed-out command up to three times. The read timeout dominates the
// budget here, so that a retry past the budget would show: without the
// deadline of bound, one command took four read timeouts.
func TestClusterHungNodeAnswersWithinTheStoresTimeouts(t *testing.T) {
	t.Parallel()
	nodes := testredis.StartCluster(t, 3)
	addrs := make([]string, len(nodes))
	for i, n := range nodes {
		addrs[i] = n.Addr()
	}
	const dial, write, read = 100 * time.Millisecond, 100 * time.Millisecond, 400 * time.Millisecond
	budget := dial + write + read
	s := newStore(t, &redis.UniversalOptions{Addrs: addrs, DialTimeout: dial, WriteTimeout: write, ReadTimeout: read})
	// The node serving a key's slot, by the even split StartCluster makes.
	node := func(key string) int {
		slot, err := nodes[0].Do("CLUSTER", "KEYSLOT", key)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(slot)
		return n * len(nodes) / 16384
	}
	find := func(markNode, recordNode int) *grant.Issuance {
		for {
			is := issuance("", time.Hour)
			if node(s.markKey(is.Marks[0].Key)) == markNode && node(s.atKey(is.AccessHash)) == recordNode {
				return is
			}
		}
	}
	kept := find(0, 1)
	// The client learns the slot map and opens connections before the
	// node hangs.
	if err := s.Issue(t.Context(), kept); err != nil {
		t.Fatalf("Issue with every node up: %v", err)
	}
	calls := []struct {
		name string
		call func(context.Context) error
	}{
		{"Issue, mark on the hung node", func(ctx context.Context) error { return s.Issue(ctx, find(1, 2)) }},
		{"Issue, record on the hung node", func(ctx context.Context) error { return s.Issue(ctx, find(0, 1)) }},
		{"Access on the hung node", func(ctx context.Context) error { _, err := s.Access(ctx, kept.AccessHash); return err }},
	}
	// Within the cluster's node timeout (5 s) the other nodes serve on,
	// so every call waits for the hung node rather than being refused.
	nodes[1].Pause()
	t.Cleanup(nodes[1].Resume)
	for round := range 2 {
		for _, c := range calls {
			start := time.Now()
			err := c.call(t.Context())
			d := time.Since(start)
			t.Logf("%s (round %d): %v after %v (budget %v)", c.name, round, err, d.Round(time.Millisecond), budget)
			if !errors.Is(err, grant.ErrUnavailable) {
				t.Fatalf("%s: %v; want ErrUnavailable", c.name, err)
			}
			// Generous for a busy machine; four read timeouts exceed it.
			if d > 2*budget {
				t.Errorf("%s took %v; want about %v, at most %v", c.name, d, budget, 2*budget)
			}
		}
	}
	nodes[1].Resume()
	if _, err := s.Access(t.Context(), kept.AccessHash); err != nil {
		t.Fatalf("Access after the node resumed: %v", err)
	}
}
