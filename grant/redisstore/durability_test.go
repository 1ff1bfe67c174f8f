package redisstore

import (
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/internal/testredis"
)

func TestWaitReplicasOptionsThatCannotWorkAreRejected(t *testing.T) {
	single := redis.UniversalOptions{Addrs: []string{"h:1"}, ReadTimeout: time.Second}
	cluster := redis.UniversalOptions{Addrs: []string{"h:1", "h:2"}}
	for _, tc := range []struct {
		name string
		uo   redis.UniversalOptions
		opts Options
	}{
		{"negative count", single, Options{WaitReplicas: -1}},
		{"negative timeout", single, Options{WaitReplicas: 1, WaitTimeout: -time.Second}},
		{"timeout not shorter than the read timeout", single, Options{WaitReplicas: 1, WaitTimeout: time.Second}},
		{"timeout beyond the default read timeout", redis.UniversalOptions{Addrs: []string{"h:1"}}, Options{WaitReplicas: 1, WaitTimeout: 5 * time.Second}},
		{"cluster", cluster, Options{WaitReplicas: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if s, err := New(&tc.uo, tc.opts); err == nil {
				s.Close()
				t.Fatalf("New with %+v succeeded; want an error", tc.opts)
			}
		})
	}
	s, err := New(&single, Options{WaitReplicas: 1})
	if err != nil {
		t.Fatalf("New with the default wait timeout: %v", err)
	}
	defer s.Close()
	if s.waitTimeout != 500*time.Millisecond {
		t.Fatalf("default wait timeout = %v; want half the read timeout", s.waitTimeout)
	}
}

// replicated is a master with one replica and a store on the master that
// waits for that replica up to wait.
func replicated(t *testing.T, wait time.Duration) (s *Store, master, replica *testredis.Server) {
	t.Helper()
	master = testredis.Start(t)
	replica = testredis.StartReplica(t, master)
	s = newStore(t, &redis.UniversalOptions{Addrs: []string{master.Addr()}, ReadTimeout: wait + time.Second},
		Options{WaitReplicas: 1, WaitTimeout: wait})
	return s, master, replica
}

func TestWaitReplicasAnswersOnlyWhatTheReplicaHas(t *testing.T) {
	t.Parallel()
	// A generous wait: a replica's acknowledgement takes a scheduling
	// round on a machine busy with other tests.
	s, _, replica := replicated(t, 5*time.Second)
	// Read at once from the replica, with no poll: WAIT returned, so the
	// replica has every write the store confirmed.
	onReplica := inspect(t, replica.Addr())
	ctx := t.Context()
	chain := grant.HashToken(rand.Text())
	is := issuance(chain, time.Hour)
	if err := s.Issue(ctx, is); err != nil {
		t.Fatalf("Issue: %v", err)
	}
	for _, k := range []string{s.atKey(is.AccessHash), s.rtKey(is.RefreshHash), s.markKey(is.Marks[0].Key)} {
		if n, err := onReplica.Exists(ctx, k).Result(); err != nil || n != 1 {
			t.Fatalf("replica lacks %s after Issue: %d, %v", k, n, err)
		}
	}
	next := issuance(chain, time.Hour)
	if err := s.Rotate(ctx, is.RefreshHash, next); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	if n, err := onReplica.Exists(ctx, s.atKey(next.AccessHash)).Result(); err != nil || n != 1 {
		t.Fatalf("replica lacks the rotated access token: %d, %v", n, err)
	}
	marks := issuance("", time.Hour).Marks
	if err := s.ClaimMarks(ctx, marks); err != nil {
		t.Fatalf("ClaimMarks: %v", err)
	}
	if n, err := onReplica.Exists(ctx, s.markKey(marks[0].Key)).Result(); err != nil || n != 1 {
		t.Fatalf("replica lacks the claimed mark: %d, %v", n, err)
	}
	if err := s.RevokeAccess(ctx, next.AccessHash); err != nil {
		t.Fatalf("RevokeAccess: %v", err)
	}
	if n, err := onReplica.Exists(ctx, s.atKey(next.AccessHash)).Result(); err != nil || n != 0 {
		t.Fatalf("replica still holds the revoked access token: %d, %v", n, err)
	}
	if err := s.RevokeChain(ctx, chain); err != nil {
		t.Fatalf("RevokeChain: %v", err)
	}
	if n, err := onReplica.Exists(ctx, s.rtKey(next.RefreshHash), s.chainKey(chain)).Result(); err != nil || n != 0 {
		t.Fatalf("replica still holds %d keys of the revoked chain, %v", n, err)
	}
	// A replay is a replay, whatever the replicas say.
	dup := issuance("", time.Hour)
	dup.Marks = is.Marks
	if err := s.Issue(ctx, dup); !errors.Is(err, grant.ErrReplay) {
		t.Fatalf("replayed Issue: %v; want ErrReplay", err)
	}
}

// TestTooFewReplicasIsUnavailableAndLeavesTheRequestRepeatable proves SPEC
// §6: without the replica's acknowledgement the answer is 503 (the store
// returns ErrUnavailable), and the master keeps no mark or rotation of the
// refused request, so that the client may send it again.
func TestTooFewReplicasIsUnavailableAndLeavesTheRequestRepeatable(t *testing.T) {
	t.Parallel()
	for _, fault := range []struct {
		name       string
		fail, mend func(replica *testredis.Server)
	}{
		{"replica paused", (*testredis.Server).Pause, (*testredis.Server).Resume},
		{"replica killed", (*testredis.Server).Stop, nil},
	} {
		t.Run(fault.name, func(t *testing.T) {
			t.Parallel()
			s, master, replica := replicated(t, 150*time.Millisecond)
			onMaster := inspect(t, master.Addr())
			ctx := t.Context()
			chain := grant.HashToken(rand.Text())
			live := issuance(chain, time.Hour)
			// With the replica up the write is acknowledged within the
			// 150 ms wait on an idle machine; a busy one may miss it now
			// and then, and a refused write is undone, so it is tried
			// again for a generous while.
			for deadline := time.Now().Add(20 * time.Second); ; {
				err := s.Issue(ctx, live)
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("Issue with the replica up: %v", err)
				}
			}
			before, err := onMaster.Get(ctx, s.rtKey(live.RefreshHash)).Result()
			if err != nil {
				t.Fatal(err)
			}

			fault.fail(replica)
			if fault.mend != nil {
				t.Cleanup(func() { fault.mend(replica) })
			}
			refused := issuance(chain, time.Hour)
			next := issuance(chain, time.Hour)
			marks := issuance("", time.Hour).Marks
			for _, op := range []struct {
				name string
				do   func(context.Context) error
			}{
				{"Issue", func(ctx context.Context) error { return s.Issue(ctx, refused) }},
				{"Rotate", func(ctx context.Context) error { return s.Rotate(ctx, live.RefreshHash, next) }},
				{"ClaimMarks", func(ctx context.Context) error { return s.ClaimMarks(ctx, marks) }},
				{"RevokeAccess", func(ctx context.Context) error { return s.RevokeAccess(ctx, "absent") }},
				{"RevokeChain", func(ctx context.Context) error { return s.RevokeChain(ctx, "absent") }},
			} {
				start := time.Now()
				err := op.do(ctx)
				if !errors.Is(err, grant.ErrUnavailable) || !strings.Contains(err.Error(), "0 of 1 replicas") {
					t.Errorf("%s without the replica: %v; want ErrUnavailable for want of replicas", op.name, err)
				}
				if d := time.Since(start); d > time.Second+150*time.Millisecond {
					t.Errorf("%s without the replica took %v; want the wait timeout, under the read timeout", op.name, d)
				}
			}

			// What the master kept of the refused requests: nothing that
			// would refuse them again.
			for _, k := range []string{s.markKey(refused.Marks[0].Key), s.atKey(refused.AccessHash),
				s.rtKey(refused.RefreshHash), s.markKey(marks[0].Key), s.atKey(next.AccessHash), s.rtKey(next.RefreshHash)} {
				if n, err := onMaster.Exists(ctx, k).Result(); err != nil || n != 0 {
					t.Errorf("master kept %s of a refused request: %d, %v", k, n, err)
				}
			}
			if after, err := onMaster.Get(ctx, s.rtKey(live.RefreshHash)).Result(); err != nil || after != before {
				t.Errorf("refresh record after a refused rotation = %s, %v; want it as before: %s", after, err, before)
			}
			if ttl, err := onMaster.PTTL(ctx, s.rtKey(live.RefreshHash)).Result(); err != nil || ttl <= 0 {
				t.Errorf("refresh record lost its expiry in the undo: %v, %v", ttl, err)
			}
		})
	}
}

// BenchmarkIssue is the latency cost of wait_replicas: one grant's write
// on a master alone, and on a master that waits for its replica.
func BenchmarkIssue(b *testing.B) {
	master := testredis.Start(b)
	testredis.StartReplica(b, master)
	for _, bc := range []struct {
		name string
		opts Options
	}{
		{"master only", Options{}},
		{"wait_replicas 1", Options{WaitReplicas: 1}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s, err := New(&redis.UniversalOptions{Addrs: []string{master.Addr()}}, bc.opts)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			for b.Loop() {
				if err := s.Issue(b.Context(), issuance("", time.Hour)); err != nil {
					b.Fatalf("Issue: %v", err)
				}
			}
		})
	}
}
