package redisstore

import (
	"context"
	"crypto/rand"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/storetest"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/internal/testredis"
)

func TestConformancePipelined(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	storetest.Run(t, func(t *testing.T) grant.Store {
		return newStore(t, &redis.UniversalOptions{Addrs: []string{srv.Addr()}}, Options{Pipeline: true})
	})
}

func TestPipelineIsRefusedWhereItCannotWork(t *testing.T) {
	for _, tc := range []struct {
		name string
		uo   redis.UniversalOptions
		opts Options
		want string
	}{
		{"a cluster", redis.UniversalOptions{Addrs: []string{"127.0.0.1:7000", "127.0.0.1:7001"}}, Options{Pipeline: true}, "not a cluster"},
		{"sentinels", redis.UniversalOptions{Addrs: []string{"127.0.0.1:26379"}, MasterName: "m"}, Options{Pipeline: true}, "not a sentinel"},
		{"with the cache", redis.UniversalOptions{Addrs: []string{"127.0.0.1:7000"}}, Options{Pipeline: true, CacheEntries: 10}, "cache"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := New(&tc.uo, tc.opts)
			if err == nil {
				_ = s.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v; want an error containing %q", err, tc.want)
			}
		})
	}
}

// A pipelined read is still one GET per verification, and sees a
// revocation at once: the DEL of another client (what redis-cli sends)
// and the store's own RevokeAccess.
func TestPipelinedReadIsOneGETAndSeesRevocationsAtOnce(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	s := newStore(t, &redis.UniversalOptions{Addrs: []string{srv.Addr()}}, Options{Pipeline: true})
	ctx := t.Context()
	a, b := issuance("", time.Hour), issuance("", time.Hour)
	for _, is := range []*grant.Issuance{a, b} {
		if err := s.Issue(ctx, is); err != nil {
			t.Fatalf("Issue: %v", err)
		}
	}
	// A connection says HELLO when it dials.
	if _, err := s.Access(ctx, a.AccessHash); err != nil {
		t.Fatalf("Access: %v", err)
	}
	if _, err := srv.Do("CONFIG", "RESETSTAT"); err != nil {
		t.Fatal(err)
	}
	const n = 20
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if _, err := s.Access(ctx, a.AccessHash); err != nil {
				t.Errorf("Access: %v", err)
			}
		})
	}
	wg.Wait()
	// A call that finds no other in flight goes as a plain command, so the
	// plain pool may dial (HELLO) here too.
	got := srv.CommandCalls(t)
	delete(got, "hello")
	if len(got) != 1 || got["get"] != n {
		t.Fatalf("%d concurrent pipelined verifications ran %v; want exactly %d GET (and connection set-ups)", n, got, n)
	}

	if _, err := inspect(t, srv.Addr()).Del(ctx, s.atKey(a.AccessHash)).Result(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Access(ctx, a.AccessHash); !errors.Is(err, grant.ErrNotFound) {
		t.Errorf("pipelined Access right after a DEL: %v; want ErrNotFound", err)
	}
	if err := s.RevokeAccess(ctx, b.AccessHash); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Access(ctx, b.AccessHash); !errors.Is(err, grant.ErrNotFound) {
		t.Errorf("pipelined Access right after RevokeAccess: %v; want ErrNotFound", err)
	}
}

// go-redis runs a queued command on the autopipeliner's own context: it
// waits for the batch ahead of it, then for its own. The store bounds the
// wait for the reply instead, so that a read queued behind a stuck batch
// still fails within dial + write + read timeout. The test measures both
// on a paused (SIGSTOPped) Redis: the time to ErrUnavailable of reads
// through the store, and the time until go-redis itself gives up on reads
// submitted the same way without the store's bound.
func TestPipelinedReadQueuedBehindAStuckBatchIsBounded(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	const timeout = 200 * time.Millisecond
	budget := 3 * timeout // dial + write + read
	uo := &redis.UniversalOptions{Addrs: []string{srv.Addr()},
		DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout}
	// s is read through; bare's autopipeliner is used directly.
	s, bare := newStore(t, uo, Options{Pipeline: true}), newStore(t, uo, Options{Pipeline: true})
	is := issuance("", time.Hour)
	if err := s.Issue(t.Context(), is); err != nil {
		t.Fatalf("Issue: %v", err)
	}
	for _, st := range []*Store{s, bare} {
		if _, err := st.Access(t.Context(), is.AccessHash); err != nil {
			t.Fatalf("Access before the pause: %v", err)
		}
	}
	srv.Pause()
	t.Cleanup(srv.Resume)

	// go-redis alone, the wait not bounded by the store, at the same
	// time: how long until the commands' own batches give up. Bounded
	// only by the library's timeouts; the test fails if any is still
	// waiting after 30 s.
	const n = 32
	var rawWG sync.WaitGroup
	rawTook := make([]time.Duration, n)
	for i := range n {
		rawWG.Go(func() {
			start := time.Now()
			f := bare.ap.Submit(context.Background(), redis.NewStringCmd(context.Background(), "get", s.atKey(is.AccessHash)))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := f.WaitContext(ctx)
			expired := ctx.Err() != nil
			cancel()
			rawTook[i] = time.Since(start)
			switch {
			case expired:
				t.Errorf("go-redis: a read still queued after 30 s")
			case err == nil:
				t.Errorf("go-redis: a read of a paused Redis succeeded")
			}
		})
	}

	// Through the store: 32 concurrent reads, the first batch stuck and
	// the others queued behind it.
	took := make([]time.Duration, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			start := time.Now()
			_, err := s.Access(t.Context(), is.AccessHash)
			took[i] = time.Since(start)
			if !errors.Is(err, grant.ErrUnavailable) {
				t.Errorf("Access of a paused Redis: %v; want ErrUnavailable", err)
			}
		})
	}
	wg.Wait()
	worst := slices.Max(took)
	t.Logf("through the store: the slowest of %d reads failed after %v (dial+write+read %v)", n, worst.Round(time.Millisecond), budget)
	// Generous: the bound itself is budget; the rest is a busy machine.
	if worst > 3*budget {
		t.Errorf("a read queued behind a stuck batch took %v; want at most %v", worst, 3*budget)
	}

	cut := 0
	for _, d := range took {
		if d >= budget {
			cut++
		}
	}
	t.Logf("through the store: %d of %d reads ended by the store's own bound", cut, n)
	rawWG.Wait()
	t.Logf("go-redis alone: the slowest of %d reads ended after %v", n, slices.Max(rawTook).Round(time.Millisecond))

	srv.Resume()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := s.Access(t.Context(), is.AccessHash)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Access 10 s after Redis resumed: %v", err)
		}
	}
}

// New with pipelined reads dials nothing either, and a read with nothing
// listening is ErrUnavailable.
func TestPipelineNewDoesNoNetworkIO(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	start := time.Now()
	s := newStore(t, &redis.UniversalOptions{Addrs: []string{addr}}, Options{Pipeline: true})
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("New took %v", d)
	}
	if _, err := s.Access(t.Context(), "x"); !errors.Is(err, grant.ErrUnavailable) {
		t.Errorf("pipelined Access with nothing listening: %v; want ErrUnavailable", err)
	}
}

// The autopipeline's own connections select the store's database too.
func TestPipelineReadsTheStoresDatabase(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	s := newStore(t, &redis.UniversalOptions{Addrs: []string{srv.Addr()}, DB: 3}, Options{Pipeline: true})
	is := issuance("", time.Hour)
	if err := s.Issue(t.Context(), is); err != nil {
		t.Fatalf("Issue: %v", err)
	}
	if _, err := s.Access(t.Context(), is.AccessHash); err != nil {
		t.Fatalf("pipelined Access on db 3: %v", err)
	}
	if n, err := srv.Do("EXISTS", s.atKey(is.AccessHash)); err != nil || n != "0" {
		t.Fatalf("the record is on db 0 too (EXISTS = %q, %v)", n, err)
	}
}

// Pipelined writes are one script call each, as plain ones: concurrent
// grants send exactly one EVALSHA apiece; a script Redis has forgotten
// (SCRIPT FLUSH, a restart) is loaded again by the next write; and a
// write queued behind a stuck batch ends in ErrUnavailable within the
// store's bound, as a read does.
func TestPipelinedWritesAreOneScriptEachAndBounded(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	const timeout = 200 * time.Millisecond
	budget := 3 * timeout // dial + write + read
	uo := &redis.UniversalOptions{Addrs: []string{srv.Addr()},
		DialTimeout: timeout, ReadTimeout: timeout, WriteTimeout: timeout}
	s := newStore(t, uo, Options{Pipeline: true})
	ctx := t.Context()
	// The first write finds no script (NOSCRIPT) and loads it.
	if err := s.Issue(ctx, issuance(rand.Text(), time.Hour)); err != nil {
		t.Fatalf("first Issue: %v", err)
	}
	if _, err := srv.Do("CONFIG", "RESETSTAT"); err != nil {
		t.Fatal(err)
	}
	const n = 20
	grants := make([]*grant.Issuance, n)
	var wg sync.WaitGroup
	for i := range n {
		grants[i] = issuance(rand.Text(), time.Hour)
		wg.Go(func() {
			if err := s.Issue(ctx, grants[i]); err != nil {
				t.Errorf("Issue: %v", err)
			}
		})
	}
	wg.Wait()
	// commandstats counts the script's own commands too; the calls
	// from the store are the EVALSHAs.
	if got := srv.CommandCalls(t); got["evalsha"] != n || got["eval"] != 0 {
		t.Fatalf("%d concurrent pipelined grants ran %v; want exactly %d EVALSHA and no EVAL", n, got, n)
	}
	for _, is := range grants {
		if _, err := s.Access(ctx, is.AccessHash); err != nil {
			t.Fatalf("Access of a pipelined grant: %v", err)
		}
	}

	if _, err := srv.Do("SCRIPT", "FLUSH"); err != nil {
		t.Fatal(err)
	}
	is := issuance(rand.Text(), time.Hour)
	if err := s.Issue(ctx, is); err != nil {
		t.Fatalf("Issue after SCRIPT FLUSH: %v", err)
	}
	if _, err := s.Access(ctx, is.AccessHash); err != nil {
		t.Fatalf("Access of the grant after SCRIPT FLUSH: %v", err)
	}

	srv.Pause()
	t.Cleanup(srv.Resume)
	took := make([]time.Duration, 8)
	for i := range took {
		wg.Go(func() {
			start := time.Now()
			err := s.Issue(ctx, issuance(rand.Text(), time.Hour))
			took[i] = time.Since(start)
			if !errors.Is(err, grant.ErrUnavailable) {
				t.Errorf("Issue on a paused Redis: %v; want ErrUnavailable", err)
			}
		})
	}
	wg.Wait()
	worst := slices.Max(took)
	t.Logf("the slowest of %d pipelined writes on a paused Redis failed after %v (bound %v)", len(took), worst.Round(time.Millisecond), budget)
	if worst > 3*budget {
		t.Errorf("a pipelined write queued behind a stuck batch took %v; want at most %v", worst, 3*budget)
	}
}

// A call goes through the autopipeline only while another is in flight:
// alone it goes as a plain command, and a store without the pipeline
// never uses it.
func TestPipelineCarriesOnlyCallsThatOverlap(t *testing.T) {
	uo := &redis.UniversalOptions{Addrs: []string{"127.0.0.1:1"}}
	s := newStore(t, uo, Options{Pipeline: true})
	first, viaFirst := s.pipelining()
	second, viaSecond := s.pipelining()
	if viaFirst || !viaSecond {
		t.Fatalf("two overlapping calls: pipelined %v and %v; want false and true", viaFirst, viaSecond)
	}
	first()
	third, viaThird := s.pipelining()
	if !viaThird {
		t.Error("a call overlapping one still in flight went plain")
	}
	second()
	third()
	if _, via := s.pipelining(); via {
		t.Error("a call alone was pipelined")
	}
	plain := newStore(t, uo)
	if _, via := plain.pipelining(); via {
		t.Error("a store without the pipeline pipelined")
	}
	if _, via := plain.pipelining(); via {
		t.Error("a store without the pipeline pipelined an overlapping call")
	}
}
