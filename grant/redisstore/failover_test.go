package redisstore

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/internal/testredis"
)

// Sentinel settings of the failover tests: a master silent for half a
// second is down for two of the three sentinels (a busy machine does not
// stall a Redis that long), and an election that fails is tried again
// within seconds.
var failoverSentinels = testredis.SentinelOptions{Quorum: 2, DownAfter: 500 * time.Millisecond, FailoverTimeout: 3 * time.Second}

// Bounds of the failover tests, generous for a busy machine: the switch
// takes about two seconds after the kill; the stores follow it within
// milliseconds, where go-redis alone took up to a second more.
const (
	switchWithin   = 20 * time.Second // a failed election is retried after twice the failover timeout
	recoveryWithin = 2 * time.Second  // from +switch-master to a store's first success
	gateways       = 2
	workers        = 3 // per gateway
	enoughCalls    = 30
)

// sentinelDeployment is a master with replicas behind three sentinels,
// and a subscription to +switch-master on each sentinel.
type sentinelDeployment struct {
	name      string
	master    *testredis.Server
	replicas  []*testredis.Server
	sentinels []*testredis.Server
	events    []*testredis.Events
}

func startSentinelDeployment(t *testing.T, replicas int) *sentinelDeployment {
	t.Helper()
	d := &sentinelDeployment{name: "gw", master: testredis.Start(t)}
	for range replicas {
		d.replicas = append(d.replicas, testredis.StartReplica(t, d.master))
	}
	d.sentinels = testredis.StartSentinels(t, d.master, d.name, 3, failoverSentinels)
	for _, s := range d.sentinels {
		d.events = append(d.events, s.Subscribe("+switch-master"))
	}
	return d
}

func (d *sentinelDeployment) options() *redis.UniversalOptions {
	// Generous timeouts: a dead master refuses at once, so they do not
	// lengthen the failover, and a busy machine may take half a second to
	// complete a dial.
	uo := &redis.UniversalOptions{MasterName: d.name, DialTimeout: 2 * time.Second,
		ReadTimeout: 2 * time.Second, WriteTimeout: time.Second}
	for _, s := range d.sentinels {
		uo.Addrs = append(uo.Addrs, s.Addr())
	}
	return uo
}

// waitSwitch is the first +switch-master any sentinel announced: its time
// and the new master's address.
func (d *sentinelDeployment) waitSwitch(t *testing.T) (at time.Time, master string) {
	t.Helper()
	for _, e := range d.events {
		ev, ok := e.Wait("+switch-master", switchWithin)
		if !ok {
			t.Fatalf("no +switch-master within %v", switchWithin)
		}
		if f := strings.Fields(ev.Payload); len(f) == 5 && (at.IsZero() || ev.At.Before(at)) {
			at, master = ev.At, net.JoinHostPort(f[3], f[4])
		}
	}
	return at, master
}

// call is the outcome of one store call of the load.
type call struct {
	gw          int
	op          string // "issue", "replay" or "read"
	err         error  // nil: answered OK (for a replay: the replay was accepted)
	start, done time.Time
}

// issued is a grant a store answered OK.
type issued struct {
	hash, mark string
}

// load is gateways × workers goroutines issuing grants with fresh marks,
// presenting marks already claimed again, and reading back tokens
// answered OK, until stop.
type load struct {
	mu     sync.Mutex
	calls  []call
	tokens []issued
	stop   chan struct{}
	wg     sync.WaitGroup
}

func startLoad(t *testing.T, stores []*Store) *load {
	l := &load{stop: make(chan struct{})}
	for gw, s := range stores {
		for range workers {
			l.wg.Go(func() { l.work(t, gw, s) })
		}
	}
	t.Cleanup(l.end)
	return l
}

func (l *load) end() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

func (l *load) pick() (issued, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.tokens) == 0 {
		return issued{}, false
	}
	return l.tokens[rand.IntN(len(l.tokens))], true
}

func (l *load) record(c call, tok *issued) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, c)
	if tok != nil {
		l.tokens = append(l.tokens, *tok)
	}
}

func (l *load) work(t *testing.T, gw int, s *Store) {
	ctx := context.Background()
	for {
		select {
		case <-l.stop:
			return
		default:
		}
		is := issuance("", time.Hour)
		start := time.Now()
		err := s.Issue(ctx, is)
		var tok *issued
		if err == nil {
			tok = &issued{hash: is.AccessHash, mark: is.Marks[0].Key}
		} else if !errors.Is(err, grant.ErrUnavailable) {
			t.Errorf("gateway %d: Issue: %v", gw, err)
		}
		l.record(call{gw: gw, op: "issue", err: err, start: start, done: time.Now()}, tok)

		if old, ok := l.pick(); ok {
			dup := issuance("", time.Hour)
			dup.Marks[0].Key = old.mark
			start := time.Now()
			err := s.Issue(ctx, dup)
			if errors.Is(err, grant.ErrReplay) {
				err = grant.ErrReplay
			} else if err != nil && !errors.Is(err, grant.ErrUnavailable) {
				t.Errorf("gateway %d: replayed Issue: %v", gw, err)
			}
			l.record(call{gw: gw, op: "replay", err: err, start: start, done: time.Now()}, nil)
		}
		if old, ok := l.pick(); ok {
			start := time.Now()
			_, err := s.Access(ctx, old.hash)
			if err != nil && !errors.Is(err, grant.ErrNotFound) && !errors.Is(err, grant.ErrUnavailable) {
				t.Errorf("gateway %d: Access: %v", gw, err)
			}
			l.record(call{gw: gw, op: "read", err: err, start: start, done: time.Now()}, nil)
		}
	}
}

// okSince counts, per gateway, the calls answered OK after t.
func (l *load) okSince(t time.Time) []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := make([]int, gateways)
	for _, c := range l.calls {
		if c.err == nil && c.done.After(t) {
			n[c.gw]++
		}
	}
	return n
}

// waitOK waits until every gateway has had enoughCalls answered OK after t.
func (l *load) waitOK(t *testing.T, since time.Time, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		n := l.okSince(since)
		if min(n[0], n[1]) >= enoughCalls {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: calls answered OK per gateway %v; want %d each", what, n, enoughCalls)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// failoverReport is what a failover under load cost.
type failoverReport struct {
	killToSwitch   time.Duration
	recovery       [gateways]time.Duration // from +switch-master to the gateway's first success
	unavailable    int                     // 503s
	outsideWindow  int                     // 503s outside [kill, switch + recoveryWithin] from a dead or closed connection
	slowOutside    int                     // other 503s outside it: timeouts, replicas slow to acknowledge
	lostTokens     int                     // answered OK, missing on the new master
	lostMarks      int                     // claimed OK, missing on the new master
	acceptedReplay int                     // replays answered OK under load
	missingReads   int                     // tokens answered OK, read back as not found under load
	calls          int
}

// runFailover runs the load on two stores behind d's sentinels, kills the
// master under it (after fault, if any, has run) and measures.
func runFailover(t *testing.T, d *sentinelDeployment, opts Options, fault func()) failoverReport {
	t.Helper()
	stores := make([]*Store, gateways)
	for i := range stores {
		stores[i] = newStore(t, d.options(), opts)
	}
	start := time.Now()
	l := startLoad(t, stores)
	l.waitOK(t, start, "before the kill")
	if fault != nil {
		fault()
	}
	killed := time.Now()
	d.master.Stop()
	dead := time.Now() // a call begun from now on cannot reach the old master
	switched, master := d.waitSwitch(t)
	l.waitOK(t, switched, "after the switch")
	l.end()

	r := failoverReport{killToSwitch: switched.Sub(killed), calls: len(l.calls)}
	first := [gateways]time.Time{}
	for _, c := range l.calls {
		switch {
		case errors.Is(c.err, grant.ErrUnavailable):
			r.unavailable++
			if c.done.Before(killed) || c.done.After(switched.Add(recoveryWithin)) {
				// A loaded machine may time a call out, or a replica
				// may be slow to acknowledge (or, after the switch, to
				// resynchronise with the new master), at any time:
				// such 503s are logged. One that talked to a dead or
				// closed connection outside the window is a store not
				// following the master.
				if msg := c.err.Error(); strings.Contains(msg, "connection refused") || strings.Contains(msg, "client is closed") {
					r.outsideWindow++
				} else {
					r.slowOutside++
				}
				t.Logf("gateway %d: %s answered 503 %v after the kill (switch after %v): %v",
					c.gw, c.op, c.done.Sub(killed).Round(time.Millisecond), switched.Sub(killed).Round(time.Millisecond), c.err)
			}
		case c.op == "replay" && c.err == nil:
			r.acceptedReplay++
		case c.op == "read" && errors.Is(c.err, grant.ErrNotFound):
			r.missingReads++
			if c.done.Before(killed) {
				t.Errorf("gateway %d read a token answered OK as not found before the kill", c.gw)
			}
		}
		if c.err == nil && c.start.After(dead) && (first[c.gw].IsZero() || c.done.Before(first[c.gw])) {
			first[c.gw] = c.done
		}
	}
	for gw, f := range first {
		r.recovery[gw] = f.Sub(switched)
	}
	raw := inspect(t, master)
	for _, tok := range l.tokens {
		if n, err := raw.Exists(t.Context(), stores[0].atKey(tok.hash)).Result(); err != nil {
			t.Fatal(err)
		} else if n == 0 {
			r.lostTokens++
		}
		if n, err := raw.Exists(t.Context(), stores[0].markKey(tok.mark)).Result(); err != nil {
			t.Fatal(err)
		} else if n == 0 {
			r.lostMarks++
		}
	}
	t.Logf("%d calls from %d gateways × %d workers; kill to +switch-master %v; +switch-master to first success per gateway %v; "+
		"503s %d (outside the window: %d from a dead or closed connection, %d slow); tokens answered OK %d, missing on the new master %d; marks claimed OK missing %d; "+
		"replays accepted under load %d; tokens read back as not found under load %d",
		r.calls, gateways, workers, r.killToSwitch.Round(time.Millisecond), roundAll(r.recovery[:]), r.unavailable, r.outsideWindow, r.slowOutside,
		len(l.tokens), r.lostTokens, r.lostMarks, r.acceptedReplay, r.missingReads)
	return r
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

// checkRecovery asserts what every failover must show: 503s only while
// there is no master to reach, and each store back soon after the switch
// without being recreated.
func checkRecovery(t *testing.T, r failoverReport) {
	t.Helper()
	if r.outsideWindow > 0 {
		t.Errorf("%d of %d 503s came from a dead or closed connection outside the failover window (kill to switch + %v)", r.outsideWindow, r.unavailable, recoveryWithin)
	}
	for gw, d := range r.recovery {
		if d > recoveryWithin {
			t.Errorf("gateway %d first succeeded %v after +switch-master; want within %v", gw, d, recoveryWithin)
		}
	}
}

// TestSentinelFailoverWithWaitReplicasLosesNothing kills the master under
// load from two gateways. With wait_replicas 1 no token answered OK is
// missing on the promoted replica and no replay is accepted. Two replicas,
// so that the new master still has one to acknowledge writes.
func TestSentinelFailoverWithWaitReplicasLosesNothing(t *testing.T) {
	t.Parallel()
	d := startSentinelDeployment(t, 2)
	r := runFailover(t, d, Options{WaitReplicas: 1, WaitTimeout: time.Second}, nil)
	checkRecovery(t, r)
	if r.lostTokens != 0 || r.lostMarks != 0 || r.acceptedReplay != 0 || r.missingReads != 0 {
		t.Errorf("with wait_replicas 1: %d tokens and %d marks lost, %d replays accepted, %d tokens read as not found; want none",
			r.lostTokens, r.lostMarks, r.acceptedReplay, r.missingReads)
	}
}

// TestSentinelFailoverWithoutWaitReplicasMeasuresTheLoss kills the master
// 250 ms after its link to its replica was cut (the replica paused so that
// it cannot reconnect, then resumed once the master is dead): what a failover loses without wait_replicas, for
// the README. It asserts the recovery; the losses are reported.
func TestSentinelFailoverWithoutWaitReplicasMeasuresTheLoss(t *testing.T) {
	t.Parallel()
	d := startSentinelDeployment(t, 1)
	replica := d.replicas[0]
	r := runFailover(t, d, Options{}, func() {
		replica.Pause()
		t.Cleanup(replica.Resume)
		d.master.CutReplication()
		// The replication gap: writes the master takes from now on are
		// not replicated. This is the fault's length, not a wait.
		time.Sleep(250 * time.Millisecond)
		go func() {
			// Resumed once the master is dead, so that it cannot catch
			// up.
			time.Sleep(50 * time.Millisecond)
			replica.Resume()
		}()
	})
	checkRecovery(t, r)
}

// TestSentinelSwitchReplacesTheClientAndCloseStopsEverything forces a
// failover with SENTINEL FAILOVER and checks the store's own part: it
// subscribes again to a sentinel that restarted, moves to a fresh client
// at the switch, the client it replaced is closed by Close even before its
// time is up, and Close leaves no goroutine.
func TestSentinelSwitchReplacesTheClientAndCloseStopsEverything(t *testing.T) {
	// Not parallel: it counts goroutines.
	before := goroutines("go-redis")
	master := testredis.Start(t)
	replica := testredis.StartReplica(t, master)
	sentinels := testredis.StartSentinels(t, master, "gw", 1, testredis.SentinelOptions{FailoverTimeout: 3 * time.Second})
	events := sentinels[0].Subscribe("+switch-master")
	s, err := New(&redis.UniversalOptions{Addrs: []string{sentinels[0].Addr()}, MasterName: "gw"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	is := issuance("", time.Hour)
	if err := s.Issue(t.Context(), is); err != nil {
		t.Fatalf("Issue: %v", err)
	}
	first := s.cur.Load().c
	// Replication is asynchronous and SENTINEL FAILOVER does not wait for
	// it: the grant must be on the replica before it is promoted.
	for deadline := time.Now().Add(5 * time.Second); ; {
		if n, err := replica.Do("EXISTS", s.atKey(is.AccessHash)); err == nil && n == "1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the replica did not receive the grant")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The store subscribes again to a sentinel that restarted: it then
	// hears the switch from it.
	waitSubscribers(t, sentinels[0], 2) // the store's and events
	sentinels[0].Restart()
	events = sentinels[0].Subscribe("+switch-master")
	waitSubscribers(t, sentinels[0], 2)
	for deadline := time.Now().Add(10 * time.Second); ; {
		// Refused until the restarted sentinel has seen the replica.
		_, err := sentinels[0].Do("SENTINEL", "FAILOVER", "gw")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SENTINEL FAILOVER: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, ok := events.Wait("+switch-master", switchWithin); !ok {
		t.Fatalf("no +switch-master within %v", switchWithin)
	}
	for deadline := time.Now().Add(5 * time.Second); s.cur.Load().c == first; {
		if time.Now().After(deadline) {
			t.Fatal("the store kept its client after +switch-master")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The fresh client reaches the promoted replica.
	if _, err := s.Access(t.Context(), is.AccessHash); err != nil {
		t.Fatalf("Access after the switch: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := first.Ping(context.Background()).Err(); !errors.Is(err, redis.ErrClosed) {
		t.Errorf("the replaced client after Close: %v; want it closed", err)
	}
	// A closed client's background dialler sleeps up to a second before
	// it sees the close.
	for deadline := time.Now().Add(5 * time.Second); ; {
		ours, lib := goroutines("redisstore.(*switcher)"), goroutines("go-redis")
		if ours == 0 && lib <= before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after Close: %d goroutines of the switcher, %d of go-redis (%d before)", ours, lib, before)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitSubscribers waits until n clients of sentinel are subscribed to
// exactly one channel, as the store's watch and testredis's events are
// (go-redis's own failover client subscribes to two).
func waitSubscribers(t *testing.T, sentinel *testredis.Server, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		list, err := sentinel.Do("CLIENT", "LIST")
		if err == nil && strings.Count(list, " sub=1 ") >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sentinel has not %d subscribers: %v\n%s", n, err, list)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// goroutines counts the goroutines whose stack mentions s.
func goroutines(s string) int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	count := 0
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if strings.Contains(g, s) {
			count++
		}
	}
	return count
}
