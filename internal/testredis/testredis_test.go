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
