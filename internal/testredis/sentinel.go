package testredis

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// SentinelOptions tune the sentinels of StartSentinels.
type SentinelOptions struct {
	// Quorum is how many sentinels must agree that the master is down
	// before a failover; default a majority of them.
	Quorum int
	// DownAfter is down-after-milliseconds: how long a master may stay
	// silent before a sentinel deems it down. Default Redis's, 30 s.
	DownAfter time.Duration
	// FailoverTimeout is failover-timeout, which also spaces a failed
	// failover's retries (twice it) and bounds a leader election. Default
	// Redis's, 3 min.
	FailoverTimeout time.Duration
}

// StartSentinels starts n sentinels that monitor master under masterName,
// and waits until each knows the n-1 others and every replica attached to
// master, with its link up: from then on a failover can start as soon as
// the master fails. Attach the replicas before (StartReplica), since a
// sentinel looks for new ones only every ten seconds.
func StartSentinels(tb testing.TB, master *Server, masterName string, n int, opts SentinelOptions) []*Server {
	tb.Helper()
	if n < 1 {
		tb.Fatalf("testredis: need at least one sentinel, got %d", n)
	}
	quorum := opts.Quorum
	if quorum == 0 {
		quorum = n/2 + 1
	}
	body := fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d %d\n", masterName, master.port, quorum)
	if opts.DownAfter > 0 {
		body += fmt.Sprintf("sentinel down-after-milliseconds %s %d\n", masterName, opts.DownAfter.Milliseconds())
	}
	if opts.FailoverTimeout > 0 {
		body += fmt.Sprintf("sentinel failover-timeout %s %d\n", masterName, opts.FailoverTimeout.Milliseconds())
	}
	sentinels := make([]*Server, n)
	for i := range sentinels {
		sentinels[i] = start(tb, nil, func(dir string, port int) (string, error) {
			conf := filepath.Join(dir, "sentinel-"+strconv.Itoa(port)+".conf")
			return conf, os.WriteFile(conf, []byte(body), 0o600)
		}, false)
	}
	info, err := master.Do("INFO", "replication")
	if err != nil {
		tb.Fatalf("testredis: INFO replication of %s: %v", master.Addr(), err)
	}
	replicas := field(info, "connected_slaves")
	// Sentinels find each other through hello messages sent every two
	// seconds on the master.
	deadline := time.Now().Add(3 * startTimeout)
	for _, s := range sentinels {
		for {
			m, err := s.Do("SENTINEL", "MASTER", masterName)
			r, rerr := s.Do("SENTINEL", "REPLICAS", masterName)
			if err == nil && rerr == nil && pairs(m)["num-other-sentinels"] == strconv.Itoa(n-1) &&
				strconv.Itoa(strings.Count(r+"\n", "flags\nslave\n")) == replicas &&
				strings.Count(r, "master-link-status\nok") == strings.Count(r, "master-link-status\n") {
				break
			}
			if time.Now().After(deadline) {
				tb.Fatalf("testredis: sentinel %s did not find its %d peers and %s replicas: %v %v\n%s\n%s",
					s.Addr(), n-1, replicas, err, rerr, m, r)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return sentinels
}

// field is the value of name in an INFO reply.
func field(info, name string) string {
	for line := range strings.SplitSeq(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return v
		}
	}
	return ""
}

// pairs reads a flat reply of alternating names and values, as Do returns
// a map such as SENTINEL MASTER's.
func pairs(reply string) map[string]string {
	f := strings.Split(reply, "\n")
	m := make(map[string]string, len(f)/2)
	for i := 0; i+1 < len(f); i += 2 {
		m[f[i]] = f[i+1]
	}
	return m
}

// Event is one message a server published on a channel, with the time the
// test received it.
type Event struct {
	Channel, Payload string
	At               time.Time
}

// Events records the messages published on some channels of one server.
type Events struct {
	mu      sync.Mutex
	events  []Event
	changed chan struct{} // closed, and replaced, when an event arrives or the subscription ends
	err     error         // why the subscription ended
}

// Subscribe subscribes to channels on the server over a connection of its
// own, such as a sentinel's "+switch-master", and records every message
// with the time it arrived, until the test ends or the server stops.
func (s *Server) Subscribe(channels ...string) *Events {
	s.tb.Helper()
	conn, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		s.tb.Fatalf("testredis: subscribing to %s: %v", s.Addr(), err)
	}
	args := append([]string{"SUBSCRIBE"}, channels...)
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	r := bufio.NewReader(conn)
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write([]byte(b.String())); err != nil {
		conn.Close()
		s.tb.Fatalf("testredis: subscribing to %s: %v", s.Addr(), err)
	}
	for range channels {
		if reply, err := readReply(r); err != nil || !strings.HasPrefix(reply, "subscribe\n") {
			conn.Close()
			s.tb.Fatalf("testredis: subscribing to %s: %q, %v", s.Addr(), reply, err)
		}
	}
	_ = conn.SetDeadline(time.Time{})
	e := &Events{changed: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			reply, err := readReply(r)
			if err != nil {
				e.add(nil, err)
				return
			}
			f := strings.SplitN(reply, "\n", 3)
			if len(f) == 3 && f[0] == "message" {
				e.add(&Event{Channel: f[1], Payload: f[2], At: time.Now()}, nil)
			}
		}
	}()
	s.tb.Cleanup(func() {
		conn.Close()
		<-done
	})
	return e
}

func (e *Events) add(ev *Event, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if ev != nil {
		e.events = append(e.events, *ev)
	} else {
		e.err = err
	}
	close(e.changed)
	e.changed = make(chan struct{})
}

// All is every event received so far, in order.
func (e *Events) All() []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Event(nil), e.events...)
}

// Wait returns the first event received on channel, waiting for it at most
// within; ok is false if none came.
func (e *Events) Wait(channel string, within time.Duration) (ev Event, ok bool) {
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		e.mu.Lock()
		for _, ev := range e.events {
			if ev.Channel == channel {
				e.mu.Unlock()
				return ev, true
			}
		}
		changed, ended := e.changed, e.err != nil
		e.mu.Unlock()
		if ended {
			return Event{}, false
		}
		select {
		case <-changed:
		case <-timer.C:
			return Event{}, false
		}
	}
}

// CutReplication closes the server's links to its replicas (CLIENT KILL
// TYPE replica), as a network fault would. A replica reconnects within a
// second and catches up from the master's backlog, unless it is paused
// first (Pause): then what the master takes until it dies is lost to the
// replica, which is a replication lag. Pausing alone is not one: the
// kernel keeps receiving the stream for the stopped process.
func (s *Server) CutReplication() {
	s.tb.Helper()
	if _, err := s.Do("CLIENT", "KILL", "TYPE", "replica"); err != nil {
		s.tb.Fatalf("testredis: cutting the replicas of %s: %v", s.Addr(), err)
	}
}
