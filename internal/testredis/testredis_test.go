package testredis

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestServerAnswersStopsAndRestartsOnTheSamePort(t *testing.T) {
	t.Parallel()
	s := Start(t)
	if s.port == 6379 {
		t.Fatal("server took the default Redis port")
	}
	if !strings.HasPrefix(s.URL(), "redis://127.0.0.1:") || !strings.HasSuffix(s.URL(), "/0") {
		t.Fatalf("URL() = %q", s.URL())
	}
	if _, err := s.Do("SET", "k", "v"); err != nil {
		t.Fatalf("SET: %v", err)
	}
	// Tests must not leave files behind nor depend on leftovers.
	for param, want := range map[string]string{"appendonly": "appendonly\nno", "save": "save\n"} {
		if got, err := s.Do("CONFIG", "GET", param); err != nil || got != want {
			t.Fatalf("CONFIG GET %s = %q, %v; want %q", param, got, err, want)
		}
	}
	addr := s.Addr()
	s.Stop()
	if _, err := s.Do("PING"); err == nil {
		t.Fatal("stopped server still answers")
	}
	s.Stop() // idempotent
	s.Restart()
	if s.Addr() != addr {
		t.Fatalf("restart moved the server from %s to %s", addr, s.Addr())
	}
	if got, err := s.Do("PING"); err != nil || got != "PONG" {
		t.Fatalf("PING after restart = %q, %v", got, err)
	}
	// Persistence is off, so a restart starts empty.
	if got, err := s.Do("EXISTS", "k"); err != nil || got != "0" {
		t.Fatalf("EXISTS k after restart = %q, %v; want 0", got, err)
	}
}

func TestClusterConvergesWithAllSlotsCovered(t *testing.T) {
	t.Parallel()
	nodes := StartCluster(t, 3)
	for _, n := range nodes {
		info, err := n.Do("CLUSTER", "INFO")
		if err != nil || !strings.Contains(info, "cluster_state:ok") {
			t.Fatalf("CLUSTER INFO at %s = %q, %v", n.Addr(), info, err)
		}
	}
}

func TestSentinelKnowsItsMaster(t *testing.T) {
	t.Parallel()
	m := Start(t)
	s := StartSentinel(t, m, "mymaster")
	got, err := s.Do("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster")
	if want := strings.Replace(m.Addr(), ":", "\n", 1); err != nil || got != want {
		t.Fatalf("SENTINEL GET-MASTER-ADDR-BY-NAME = %q, %v; want %q", got, err, want)
	}
}

func TestTLSServerSpeaksOnlyTLS(t *testing.T) {
	t.Parallel()
	s := StartTLS(t)
	if !strings.HasPrefix(s.URL(), "rediss://") {
		t.Fatalf("URL() = %q; want rediss://", s.URL())
	}
	if got, err := s.Do("PING"); err != nil || got != "PONG" {
		t.Fatalf("PING over TLS = %q, %v", got, err)
	}
	if _, err := command(s.Addr(), false, "PING"); err == nil {
		t.Fatal("server answered a plaintext PING")
	}
}

// recorder is a testing.TB that notes how Start gave up.
type recorder struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (r *recorder) Helper() {}

func (r *recorder) Skipf(format string, args ...any) {
	r.skipped, r.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestMissingRedisServerSkipsButFailsInCI(t *testing.T) {
	for _, tc := range []struct {
		name     string
		ci       string
		wantFail bool
	}{
		{"outside CI the test is skipped", "", false},
		{"in CI the test fails", "true", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("PATH", t.TempDir())
			t.Setenv("CI", tc.ci)
			r := &recorder{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				Start(r)
			}()
			<-done
			if r.failed != tc.wantFail || r.skipped == tc.wantFail {
				t.Fatalf("failed=%v skipped=%v; want failed=%v", r.failed, r.skipped, tc.wantFail)
			}
			if !strings.Contains(r.msg, "redis-server") {
				t.Fatalf("message %q does not name redis-server", r.msg)
			}
		})
	}
}

func TestReplicaReceivesTheMastersWrites(t *testing.T) {
	t.Parallel()
	m := Start(t)
	r := StartReplica(t, m)
	if _, err := m.Do("SET", "k", "v"); err != nil {
		t.Fatalf("SET on master: %v", err)
	}
	// Replication is asynchronous: poll, with a generous bound.
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := r.Do("GET", "k")
		if err == nil && got == "v" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET k on replica = %q, %v; want v", got, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got, err := r.Do("SET", "k", "w"); err == nil {
		t.Fatalf("replica accepted a write: %q", got)
	}
}

func TestSentinelsPromoteTheReplicaWhenTheMasterDies(t *testing.T) {
	t.Parallel()
	m := Start(t)
	r := StartReplica(t, m)
	sentinels := StartSentinels(t, m, "failme", 3, SentinelOptions{DownAfter: 500 * time.Millisecond, FailoverTimeout: 3 * time.Second})
	events := make([]*Events, len(sentinels))
	for i, s := range sentinels {
		if got := pairs(must(t, s, "SENTINEL", "MASTER", "failme"))["quorum"]; got != "2" {
			t.Fatalf("quorum of sentinel %d = %q; want a majority, 2", i, got)
		}
		events[i] = s.Subscribe("+switch-master")
	}
	killed := time.Now()
	m.Stop()
	want := fmt.Sprintf("failme %s %s", strings.Replace(m.Addr(), ":", " ", 1), strings.Replace(r.Addr(), ":", " ", 1))
	for i, e := range events {
		// Election and promotion take a few seconds; a failed election is
		// retried after twice the failover timeout.
		ev, ok := e.Wait("+switch-master", 20*time.Second)
		if !ok || ev.Payload != want {
			t.Fatalf("sentinel %d: +switch-master %q, %v; want %q", i, ev.Payload, ok, want)
		}
		t.Logf("sentinel %d announced the switch %v after the kill", i, ev.At.Sub(killed))
	}
	if got := must(t, sentinels[0], "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "failme"); got != strings.Replace(r.Addr(), ":", "\n", 1) {
		t.Fatalf("master after the failover = %q; want the replica %s", got, r.Addr())
	}
	if got := field(must(t, r, "INFO", "replication"), "role"); got != "master" {
		t.Fatalf("role of the promoted replica = %q", got)
	}
}

func must(t *testing.T, s *Server, args ...string) string {
	t.Helper()
	reply, err := s.Do(args...)
	if err != nil {
		t.Fatalf("%v on %s: %v", args, s.Addr(), err)
	}
	return reply
}
