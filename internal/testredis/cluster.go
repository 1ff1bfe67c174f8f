package testredis

import (
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ClusterNodeTimeout is the cluster-node-timeout of the clusters
// StartClusterWithReplicas makes: a master that does not answer for that
// long is taken for failed and a replica replaces it within about twice
// that. Short, so that failover tests take seconds; long enough that a
// busy test machine does not fail over a healthy master.
const ClusterNodeTimeout = time.Second

// failoverTimeout bounds how long WaitFailover waits for a replica to
// replace a killed master; Redis needs about twice the node timeout.
const failoverTimeout = 10 * ClusterNodeTimeout

// Cluster is a Redis Cluster whose masters have replicas.
type Cluster struct {
	tb testing.TB
	// Masters are the nodes started as masters, Masters[i] holding the
	// i-th of len(Masters) equal ranges of the 16384 hash slots.
	Masters []*Server
	// Replicas[i] are the nodes started as replicas of Masters[i].
	Replicas [][]*Server
	ids      map[*Server]string // cluster node IDs
	bus      map[*Server]string // cluster bus ports
}

// StartClusterWithReplicas starts a cluster of masters masters, each
// with replicasPer replicas, splits the hash slots evenly among the
// masters and waits until every node sees every slot served and every
// replica attached and synchronised.
func StartClusterWithReplicas(tb testing.TB, masters, replicasPer int) *Cluster {
	tb.Helper()
	if masters < 1 || replicasPer < 0 {
		tb.Fatalf("testredis: cluster of %d masters with %d replicas each", masters, replicasPer)
	}
	c := &Cluster{tb: tb, Masters: make([]*Server, masters), Replicas: make([][]*Server, masters), ids: map[*Server]string{}, bus: map[*Server]string{}}
	node := func() *Server {
		s := start(tb, func(dir string, port int) []string {
			// The cluster bus port is chosen, not port+10000, which may
			// be taken or beyond 65535.
			bus, err := freePort()
			if err != nil {
				tb.Fatalf("testredis: finding a free port: %v", err)
			}
			return []string{
				"--cluster-enabled", "yes",
				"--cluster-config-file", filepath.Join(dir, "nodes-"+strconv.Itoa(port)+".conf"),
				"--cluster-port", strconv.Itoa(bus),
				"--cluster-node-timeout", strconv.FormatInt(ClusterNodeTimeout.Milliseconds(), 10),
				// A replica whose link was slow on a busy machine may
				// still be promoted.
				"--cluster-replica-validity-factor", "0",
				// Replicas sync at once rather than waiting for more.
				"--repl-diskless-sync-delay", "0",
			}
		}, nil, false)
		id, err := s.Do("CLUSTER", "MYID")
		if err != nil {
			tb.Fatalf("testredis: CLUSTER MYID at %s: %v", s.Addr(), err)
		}
		c.ids[s] = id
		bus, err := s.Do("CONFIG", "GET", "cluster-port")
		if err != nil || !strings.HasPrefix(bus, "cluster-port\n") {
			tb.Fatalf("testredis: CONFIG GET cluster-port at %s: %q, %v", s.Addr(), bus, err)
		}
		c.bus[s] = strings.TrimPrefix(bus, "cluster-port\n")
		return s
	}
	var all []*Server
	for i := range c.Masters {
		c.Masters[i] = node()
		all = append(all, c.Masters[i])
		for range replicasPer {
			r := node()
			c.Replicas[i] = append(c.Replicas[i], r)
			all = append(all, r)
		}
	}
	const slots = 16384
	for i, s := range c.Masters {
		lo, hi := i*slots/masters, (i+1)*slots/masters-1
		if _, err := s.Do("CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(lo), strconv.Itoa(hi)); err != nil {
			tb.Fatalf("testredis: assigning slots to %s: %v", s.Addr(), err)
		}
	}
	for i, a := range all {
		for _, b := range all[i+1:] {
			if _, err := a.Do("CLUSTER", "MEET", "127.0.0.1", strconv.Itoa(b.port), c.bus[b]); err != nil {
				tb.Fatalf("testredis: cluster meet from %s: %v", a.Addr(), err)
			}
		}
	}
	// A replica can only follow a master it knows by its ID.
	c.poll(all, "every node known", func(s *Server) bool {
		nodes, err := s.Do("CLUSTER", "NODES")
		if err != nil || strings.Contains(nodes, "handshake") {
			return false
		}
		for _, id := range c.ids {
			if !strings.Contains(nodes, id) {
				return false
			}
		}
		return true
	})
	for i, m := range c.Masters {
		for _, r := range c.Replicas[i] {
			if _, err := r.Do("CLUSTER", "REPLICATE", c.ids[m]); err != nil {
				tb.Fatalf("testredis: CLUSTER REPLICATE at %s: %v", r.Addr(), err)
			}
		}
	}
	// Every node must know each master's replicas, or the masters would
	// not vote for a replica's promotion.
	c.poll(all, "every slot served and every replica known", func(s *Server) bool {
		info, err := s.Do("CLUSTER", "INFO")
		if err != nil || !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_ok:16384") {
			return false
		}
		for _, m := range c.Masters {
			if lines(s.Do("CLUSTER", "REPLICAS", c.ids[m])) != replicasPer {
				return false
			}
		}
		return true
	})
	for i := range c.Masters {
		c.poll(c.Replicas[i], "replica synchronised", func(s *Server) bool {
			info, err := s.Do("INFO", "replication")
			return err == nil && strings.Contains(info, "master_link_status:up") &&
				!strings.Contains(info, "master_sync_in_progress:1")
		})
	}
	return c
}

// Addrs are the addresses of every node, masters first: the seed list a
// client would be given.
func (c *Cluster) Addrs() []string {
	var addrs []string
	for _, m := range c.Masters {
		addrs = append(addrs, m.Addr())
	}
	for _, rs := range c.Replicas {
		for _, r := range rs {
			addrs = append(addrs, r.Addr())
		}
	}
	return addrs
}

// WaitFailover waits until one of Masters[i]'s replicas has been promoted
// in its place and every other running node reports the cluster healthy,
// and returns that replica. Call it after stopping or pausing Masters[i].
func (c *Cluster) WaitFailover(i int) *Server {
	c.tb.Helper()
	var promoted *Server
	deadline := time.Now().Add(failoverTimeout)
	for promoted == nil {
		for _, r := range c.Replicas[i] {
			if role, err := r.Do("ROLE"); err == nil && strings.HasPrefix(role, "master\n") {
				promoted = r
			}
		}
		if promoted == nil {
			if time.Now().After(deadline) {
				c.tb.Fatalf("testredis: no replica of %s was promoted within %v", c.Masters[i].Addr(), failoverTimeout)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	var others []*Server
	for j, m := range c.Masters {
		if j != i {
			others = append(others, m)
		}
	}
	others = append(others, promoted)
	c.pollUntil(others, "cluster healthy after the failover", deadline, func(s *Server) bool {
		info, err := s.Do("CLUSTER", "INFO")
		return err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_slots_ok:16384")
	})
	return promoted
}

// poll waits, within startTimeout, until ok holds for every node.
func (c *Cluster) poll(nodes []*Server, what string, ok func(*Server) bool) {
	c.tb.Helper()
	c.pollUntil(nodes, what, time.Now().Add(startTimeout), ok)
}

func (c *Cluster) pollUntil(nodes []*Server, what string, deadline time.Time, ok func(*Server) bool) {
	c.tb.Helper()
	for _, s := range nodes {
		for !ok(s) {
			if time.Now().After(deadline) {
				info, err := s.Do("CLUSTER", "NODES")
				c.tb.Fatalf("testredis: cluster not ready (%s) at %s: %v\n%s", what, s.Addr(), err, info)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// lines counts the lines of a Do reply, -1 on an error.
func lines(reply string, err error) int {
	if err != nil {
		return -1
	}
	if reply == "" {
		return 0
	}
	return strings.Count(reply, "\n") + 1
}
