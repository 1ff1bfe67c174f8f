package testredis

import (
	"strings"
	"testing"
	"time"
)

func TestClusterWithReplicasFailsOverAKilledMaster(t *testing.T) {
	t.Parallel()
	c := StartClusterWithReplicas(t, 3, 1)
	if n := len(c.Addrs()); n != 6 {
		t.Fatalf("Addrs() has %d nodes; want 6", n)
	}
	for i, rs := range c.Replicas {
		if role, err := rs[0].Do("ROLE"); err != nil || !strings.HasPrefix(role, "slave\n") {
			t.Fatalf("replica of master %d: ROLE = %q, %v; want slave", i, role, err)
		}
	}
	start := time.Now()
	c.Masters[1].Stop()
	promoted := c.WaitFailover(1)
	t.Logf("replica promoted and cluster healthy %v after the kill", time.Since(start).Round(time.Millisecond))
	if promoted != c.Replicas[1][0] {
		t.Fatalf("WaitFailover returned %s; want the killed master's replica %s", promoted.Addr(), c.Replicas[1][0].Addr())
	}
}
