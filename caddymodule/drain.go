package caddymodule

import (
	"sync/atomic"
	"time"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
)

// A config reload cleans up the old config as soon as the new one is
// serving, while the old servers still finish their requests (Caddy
// stops them without waiting). A store the new config no longer names
// would be closed under those requests ("client is closed", a 503). So a
// released store is closed only once it has been idle for drainQuiet: no
// request of a handler holding it in flight, and none begun. A request
// is counted from the moment the handler takes it (hold), not only during
// its store calls: on a busy machine the computation between entering the
// handler and the first store call (a signature check under the race
// detector, say) has been seen to outlast drainQuiet, and the store was
// closed under it. What drainQuiet still covers is the instant between
// Caddy's old server dispatching a request and the handler counting it.
// drainMax bounds how long a store whose config is gone may keep its
// connections when it is never idle.
const (
	drainQuiet = time.Second
	drainMax   = time.Minute
	drainTick  = 100 * time.Millisecond
)

// drainingStore counts the requests in flight on a shared store (hold,
// done) so that its last release closes it only when it is idle. Every
// store call is made within a request a handler holds, so the store's
// own methods pass through uncounted. Every request passes through it,
// so the count is two atomics, not a lock.
type drainingStore struct {
	grant.Store

	inflight atomic.Int64
	last     atomic.Int64  // when a request last ended, Unix nanoseconds
	closed   chan struct{} // closed once the store is
}

func newDrainingStore(st grant.Store) *drainingStore {
	return &drainingStore{Store: st, closed: make(chan struct{})}
}

// hold counts a request of a handler in, and done on its result counts it
// out. Both are nil-safe, for a handler whose store is not shared (a
// test's own).
func (d *drainingStore) hold() *drainingStore {
	if d != nil {
		d.enter()
	}
	return d
}

// done is leave for a hold.
func (d *drainingStore) done() {
	if d != nil {
		d.leave()
	}
}

// enter counts a request in; leave counts it out. The end time is stored
// before the count drops, so that whoever sees the count at zero sees it.
func (d *drainingStore) enter() { d.inflight.Add(1) }

func (d *drainingStore) leave() {
	d.last.Store(time.Now().UnixNano())
	d.inflight.Add(-1)
}

// idleFor tells whether no request has been in flight for at least q.
func (d *drainingStore) idleFor(q time.Duration) bool {
	return d.inflight.Load() == 0 && time.Since(time.Unix(0, d.last.Load())) >= q
}

// release closes the store once it is idle, or after drainMax, in the
// background: Caddy's clean-up of the old config does not wait for it.
func (d *drainingStore) release() {
	go func() {
		defer close(d.closed)
		deadline := time.NewTimer(drainMax)
		defer deadline.Stop()
		tick := time.NewTicker(drainTick)
		defer tick.Stop()
		for !d.idleFor(drainQuiet) {
			select {
			case <-tick.C:
			case <-deadline.C:
				_ = d.Store.Close()
				return
			}
		}
		_ = d.Store.Close()
	}()
}

// String names the underlying store, for logs.
func (d *drainingStore) String() string {
	if s, ok := d.Store.(interface{ String() string }); ok {
		return s.String()
	}
	return "store"
}

var _ grant.Store = (*drainingStore)(nil)
