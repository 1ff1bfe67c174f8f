package redisstore

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
)

// Following a Sentinel failover by hand.
//
// go-redis's failover client learns of a new master from Sentinel's
// +switch-master and drops its connections to the old one, but the moment
// a master dies every dial to its address is refused, and after as many
// refused dials as the pool has connections the pool stops dialling and
// probes once a second instead; the switch does not reset that, so the
// store stayed unavailable for up to a second after Sentinel had named
// the new master (gateways measured recovering 3.1 s after the kill,
// whenever the switch came). The library has no hook to reset its pool or
// to be told of a failover, hence this.
//
// A Store in sentinel mode subscribes to +switch-master on every
// configured sentinel (the first to announce, the failover's leader, is
// heard at once), and on a switch of its master to a new address builds a
// fresh client from the same options, whose pool has no dial errors, and
// puts it in place of the old one: calls load the client with one atomic
// load. The fresh client asks the announcing sentinel alone for the
// master, since the others may not know of the switch yet and the client
// takes the first answer it gets; it finds the others through it (SENTINEL
// SENTINELS) for later. The old client is closed once every call begun on
// it has ended: each is bounded by dial + write + read timeout. The
// client's own following of +switch-master stays as a backstop for an
// announcement this misses. No client-side cache is lost with the old
// client: the cache option is refused behind sentinels (cacheOptions).
//
// Rejected: a plain client to the announced address (a switch this
// missed would never be followed); resetting the pool (not exported).

// watchBackoff bounds the wait before a sentinel subscription that failed
// is tried again; it doubles from the first value to the second.
const (
	watchBackoffMin = 100 * time.Millisecond
	watchBackoffMax = 5 * time.Second
)

// watchPing is how long a subscription may stay silent before it is
// pinged, and then deemed dead if the ping is not answered as long.
const watchPing = 10 * time.Second

// holder is what a Store's calls use: the client, replaced as a whole.
type holder struct {
	c redis.UniversalClient
	// watched: the sentinel watch has started (always true outside
	// sentinel mode), so that the first call starts it and New touches
	// no network.
	watched bool
}

// client is the client a store call uses: one atomic load.
func (s *Store) client() redis.UniversalClient {
	h := s.cur.Load()
	if !h.watched {
		s.startWatch(h)
	}
	return h.c
}

func (s *Store) startWatch(h *holder) {
	if s.cur.CompareAndSwap(h, &holder{c: h.c, watched: true}) {
		s.sw.start()
	}
}

// switcher follows +switch-master for one Store.
type switcher struct {
	s  *Store
	fo redis.FailoverOptions // the options every fresh client is made of

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	master  string                                // the address last switched to
	subs    map[*redis.PubSub]struct{}            // the subscriptions, closed by stop
	retired map[redis.UniversalClient]*time.Timer // clients replaced, each closed when its timer fires
}

func newSwitcher(s *Store, fo *redis.FailoverOptions) *switcher {
	w := &switcher{s: s, fo: *fo, retired: map[redis.UniversalClient]*time.Timer{},
		subs: map[*redis.PubSub]struct{}{}}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	return w
}

// start watches every configured sentinel, each in a goroutine of its
// own.
func (w *switcher) start() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	for _, addr := range w.fo.SentinelAddrs {
		w.wg.Go(func() { w.watch(addr) })
	}
}

// sentinelOptions are the options of a connection to a sentinel, as the
// failover client makes its own, with the store's single attempts.
func (w *switcher) sentinelOptions(addr string) *redis.Options {
	return &redis.Options{
		Addr:                     addr,
		ClientName:               w.fo.ClientName,
		Dialer:                   w.fo.Dialer,
		Username:                 w.fo.SentinelUsername,
		Password:                 w.fo.SentinelPassword,
		TLSConfig:                w.fo.TLSConfig,
		DialTimeout:              w.fo.DialTimeout,
		ReadTimeout:              w.fo.ReadTimeout,
		WriteTimeout:             w.fo.WriteTimeout,
		ContextTimeoutEnabled:    true,
		DialerRetries:            dialAttempts,
		MaxRetries:               -1,
		PoolSize:                 1,
		DisableIdentity:          w.fo.DisableIdentity,
		IdentitySuffix:           w.fo.IdentitySuffix,
		UnstableResp3:            w.fo.UnstableResp3,
		MaintNotificationsConfig: &maintnotifications.Config{Mode: maintnotifications.ModeDisabled},
	}
}

// subscribe subscribes to +switch-master through sc, unless the switcher
// is stopped (nil then). The subscription is registered before it dials,
// outside the lock, so that stop can interrupt the dial and a sentinel
// slow to answer holds up no other's announcement. A failure to subscribe
// shows on the first Receive.
func (w *switcher) subscribe(sc *redis.SentinelClient) *redis.PubSub {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	ps := sc.Subscribe(w.ctx) // no channel yet: no I/O
	w.subs[ps] = struct{}{}
	w.mu.Unlock()
	_ = ps.Subscribe(w.ctx, "+switch-master")
	return ps
}

func (w *switcher) unsubscribe(ps *redis.PubSub) {
	w.mu.Lock()
	delete(w.subs, ps)
	w.mu.Unlock()
	_ = ps.Close()
}

// watch follows the announcements of one sentinel until stop. A
// subscription that fails, or stays silent through a ping, is made anew
// after a backoff that doubles up to watchBackoffMax.
func (w *switcher) watch(sentinel string) {
	sc := redis.NewSentinelClient(w.sentinelOptions(sentinel))
	defer sc.Close()
	backoff := watchBackoffMin
	for {
		ps := w.subscribe(sc)
		if ps == nil {
			return
		}
		pinged := false
		for {
			msg, err := ps.ReceiveTimeout(w.ctx, watchPing)
			var ne net.Error
			if err != nil && !pinged && errors.As(err, &ne) && ne.Timeout() && ps.Ping(w.ctx) == nil {
				// Silence: the answer to the ping tells a live
				// connection from a dead one.
				pinged = true
				continue
			}
			if err != nil {
				break
			}
			pinged = false
			switch m := msg.(type) {
			case *redis.Subscription:
				backoff = watchBackoffMin
			case *redis.Message:
				// <master name> <old ip> <old port> <new ip> <new port>
				f := strings.Fields(m.Payload)
				if m.Channel == "+switch-master" && len(f) == 5 && f[0] == w.fo.MasterName {
					w.follow(net.JoinHostPort(f[3], f[4]), sentinel)
				}
			}
		}
		w.unsubscribe(ps)
		select {
		case <-w.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, watchBackoffMax)
	}
}

// follow puts a fresh client in place of the store's, unless the store
// already follows master: every sentinel announces the same switch.
func (w *switcher) follow(master, sentinel string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || master == w.master {
		return
	}
	w.master = master
	fo := w.fo
	fo.SentinelAddrs = []string{sentinel}
	old := w.s.cur.Swap(&holder{c: redis.NewFailoverClient(&fo), watched: true})
	// The new master's maxmemory-policy is worth a look of its own.
	w.s.policy.CompareAndSwap(policyChecked, policyUnchecked)
	w.retired[old.c] = time.AfterFunc(w.s.budget, func() { w.retire(old.c) })
}

// retire closes c, a client replaced, unless stop did.
func (w *switcher) retire(c redis.UniversalClient) {
	w.mu.Lock()
	_, ok := w.retired[c]
	delete(w.retired, c)
	w.mu.Unlock()
	if ok {
		_ = c.Close()
	}
}

// stop ends the subscriptions and their goroutines and closes the
// clients replaced; the current one is the Store's to close.
func (w *switcher) stop() {
	w.mu.Lock()
	w.closed = true
	w.cancel()
	for ps := range w.subs {
		_ = ps.Close()
	}
	retired := w.retired
	w.retired = nil
	w.mu.Unlock()
	w.wg.Wait()
	for c, t := range retired {
		t.Stop()
		_ = c.Close()
	}
}
