// Package memstore is the in-process grant.Store: the default store, for a
// single Caddy instance. Tokens live as long as the process, and the memory
// they take is bounded by Options.MaxEntries.
//
// It follows the key layout of grant.Store with one map per kind of key, and
// behaves like package redisstore down to the millisecond expiry of records
// (at their Exp) and replay marks (at their Until), so that switching stores
// changes nothing but durability.
package memstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
)

// DefaultMaxEntries bounds a store whose Options leave MaxEntries at zero.
// An entry is a record, a replay mark or a chain; a grant with a refresh
// token and one replay mark takes four, typically a few hundred bytes each.
const DefaultMaxEntries = 1_000_000

// sweepSample is how many entries of each map a write examines for expiry.
// A write adds at most a few entries and examines more, so expired entries
// cannot pile up.
const sweepSample = 16

// fullSample is how many entries of each map a write examines when the
// store is full, before it gives up and is refused. A full sweep would be
// exact but costs the whole store under the exclusive lock on every
// refused write, which stalls every reader: a flood of grants against a
// full store must cost each of them a constant, as Redis's bounded active
// expiry does. An expired entry the sample misses is purged by a later
// write (each starts at a random place), and a store of at most
// fullSample entries per map is still swept whole.
const fullSample = 1024

// Options configures a Store.
type Options struct {
	// MaxEntries bounds the records, replay marks and chains held at once
	// (default DefaultMaxEntries). When a write would exceed it even after
	// the expired entries of a bounded sample are purged, Issue, Rotate and
	// ClaimMarks fail with an error
	// wrapping grant.ErrUnavailable: the token endpoint answers 503 rather
	// than evict live tokens or forget replay marks, either of which would
	// be a security hole.
	MaxEntries int
}

// Store is an in-process grant.Store, safe for concurrent use. It keeps
// private copies of records, so callers may change what they wrote or read.
type Store struct {
	max int

	// mu guards the maps, and nothing slower than map operations and record
	// copies ever runs under it. Reads, the hot path of every protected
	// request, share it; expired entries they meet are left for writes to
	// purge.
	mu      sync.RWMutex
	closed  bool
	access  map[string]*grant.AccessRecord
	refresh map[string]*refreshEntry
	marks   map[string]markEntry
	chains  map[string]*chainEntry

	// examined counts the entries sweeps have looked at, the work a
	// refused write must keep constant; tests read it.
	examined int
}

type refreshEntry struct {
	rec *grant.RefreshRecord
	// rotatedTo names the token rotation issued, so that a retry of that
	// very rotation succeeds instead of counting as reuse.
	rotatedTo string
}

type markEntry struct {
	until time.Time
	// owner is the access hash of the grant that claimed the mark, so that
	// a retry of that very grant is told from a replay.
	owner string
}

// chainEntry lists the tokens of one refresh chain. It lives as long as its
// longest-lived token, and its list is compacted as tokens expire so that a
// chain refreshed for months does not grow without bound.
type chainEntry struct {
	members   []member
	exp       int64 // Unix seconds
	compactAt int
}

type member struct {
	hash    string
	refresh bool
}

var _ grant.Store = (*Store)(nil)

// New returns an empty store. It starts no goroutine: expired entries are
// purged by the writes themselves, so there is nothing to stop but the maps.
func New(opts Options) *Store {
	max := opts.MaxEntries
	if max <= 0 {
		max = DefaultMaxEntries
	}
	return &Store{
		max:     max,
		access:  make(map[string]*grant.AccessRecord),
		refresh: make(map[string]*refreshEntry),
		marks:   make(map[string]markEntry),
		chains:  make(map[string]*chainEntry),
	}
}

var errClosed = fmt.Errorf("%w: memory store is closed", grant.ErrUnavailable)

// Issue implements grant.Store. An issuance identical to one already
// written (its marks claimed by the same access hash) succeeds without
// writing again: it is a retry, not a replay, since access hashes are fresh.
func (s *Store) Issue(_ context.Context, is *grant.Issuance) error {
	if err := is.Validate(true); err != nil {
		return err
	}
	access, refresh := copyAccess(is.Access), copyRefresh(is.Refresh)
	chain := is.Access.Chain
	if refresh != nil {
		chain = refresh.Chain
	}
	now := time.Now()

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	s.sweepSome(now)
	retry := false
	for _, m := range is.Marks {
		if e, ok := s.marks[m.Key]; ok && now.Before(e.until) {
			if e.owner != is.AccessHash {
				return &grant.ReplayError{Key: m.Key}
			}
			retry = true
		}
	}
	if retry {
		return nil
	}
	if err := s.reserve(now, len(is.Marks)+s.newEntries(is, chain)); err != nil {
		return err
	}
	for _, m := range is.Marks {
		s.marks[m.Key] = markEntry{until: m.Until, owner: is.AccessHash}
	}
	s.write(is, access, refresh, chain, now)
	return nil
}

// ClaimMarks implements grant.Store: marks claimed on their own, all or
// none. An in-process call has no lost replies to retry, so any live mark
// is a replay.
func (s *Store) ClaimMarks(_ context.Context, marks []grant.Mark) error {
	if err := grant.ValidateMarks(marks); err != nil {
		return err
	}
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	s.sweepSome(now)
	for _, m := range marks {
		if e, ok := s.marks[m.Key]; ok && now.Before(e.until) {
			return &grant.ReplayError{Key: m.Key}
		}
	}
	if err := s.reserve(now, len(marks)); err != nil {
		return err
	}
	for _, m := range marks {
		s.marks[m.Key] = markEntry{until: m.Until}
	}
	return nil
}

// Rotate implements grant.Store. The next tokens join the chain of the
// rotated token.
func (s *Store) Rotate(_ context.Context, oldHash string, next *grant.Issuance) error {
	if err := next.Validate(false); err != nil {
		return err
	}
	access, refresh := copyAccess(next.Access), copyRefresh(next.Refresh)
	claimant := next.Claimant()
	now := time.Now()

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	s.sweepSome(now)
	old, ok := s.refresh[oldHash]
	if !ok || !live(old.rec.Exp, now) {
		return grant.ErrNotFound
	}
	chain := old.rec.Chain
	if old.rec.Rotated {
		if old.rotatedTo == claimant {
			return nil
		}
		s.deleteChain(chain)
		delete(s.refresh, oldHash)
		return grant.ErrRefreshReuse
	}
	if err := s.reserve(now, s.newEntries(next, chain)); err != nil {
		return err
	}
	old.rec.Rotated, old.rotatedTo = true, claimant
	s.write(next, access, refresh, chain, now)
	return nil
}

// Access implements grant.Store.
func (s *Store) Access(_ context.Context, hash string) (*grant.AccessRecord, error) {
	now := time.Now()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, errClosed
	}
	rec, ok := s.access[hash]
	if !ok || !live(rec.Exp, now) {
		return nil, grant.ErrNotFound
	}
	return copyAccess(rec), nil
}

// Refresh implements grant.Store.
func (s *Store) Refresh(_ context.Context, hash string) (*grant.RefreshRecord, error) {
	now := time.Now()
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, errClosed
	}
	e, ok := s.refresh[hash]
	if !ok || !live(e.rec.Exp, now) {
		return nil, grant.ErrNotFound
	}
	return copyRefresh(e.rec), nil
}

// RevokeAccess implements grant.Store.
func (s *Store) RevokeAccess(_ context.Context, hash string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	delete(s.access, hash)
	return nil
}

// RevokeChain implements grant.Store.
func (s *Store) RevokeChain(_ context.Context, chain string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errClosed
	}
	s.deleteChain(chain)
	return nil
}

// Close drops every entry; later calls fail with grant.ErrUnavailable.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.access, s.refresh, s.marks, s.chains = nil, nil, nil, nil
	return nil
}

// Len is the number of entries held, expired ones not yet purged included;
// it is what MaxEntries bounds.
func (s *Store) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.len()
}

func (s *Store) len() int { return len(s.access) + len(s.refresh) + len(s.marks) + len(s.chains) }

// live reports whether a record expiring at exp (Unix seconds) is still
// readable, with Redis's millisecond resolution.
func live(exp int64, now time.Time) bool { return now.UnixMilli() < exp*1000 }

// newEntries counts the entries writing is's records adds.
func (s *Store) newEntries(is *grant.Issuance, chain string) int {
	n := 1
	if is.Refresh != nil {
		n++
	}
	if _, ok := s.chains[chain]; chain != "" && !ok {
		n++
	}
	return n
}

// reserve makes room for n entries, purging expired ones among a bounded
// sample if needed (see fullSample).
func (s *Store) reserve(now time.Time, n int) error {
	if s.len()+n <= s.max {
		return nil
	}
	s.sweep(now, fullSample)
	if s.len()+n <= s.max {
		return nil
	}
	return fmt.Errorf("%w: memory store is full (max_entries %d)", grant.ErrUnavailable, s.max)
}

// write stores is's records, already copied, and files them under chain.
func (s *Store) write(is *grant.Issuance, access *grant.AccessRecord, refresh *grant.RefreshRecord, chain string, now time.Time) {
	s.access[is.AccessHash] = access
	exp := access.Exp
	if refresh != nil {
		s.refresh[is.RefreshHash] = &refreshEntry{rec: refresh}
		exp = max(exp, refresh.Exp)
	}
	if chain == "" {
		return
	}
	c := s.chains[chain]
	if c == nil {
		c = &chainEntry{compactAt: 8}
		s.chains[chain] = c
	}
	c.exp = max(c.exp, exp)
	c.members = append(c.members, member{hash: is.AccessHash})
	if refresh != nil {
		c.members = append(c.members, member{hash: is.RefreshHash, refresh: true})
	}
	if len(c.members) >= c.compactAt {
		kept := c.members[:0]
		for _, m := range c.members {
			if s.present(m, now) {
				kept = append(kept, m)
			}
		}
		clear(c.members[len(kept):])
		c.members = kept
		c.compactAt = max(8, 2*len(kept))
	}
}

func (s *Store) present(m member, now time.Time) bool {
	if m.refresh {
		e, ok := s.refresh[m.hash]
		return ok && live(e.rec.Exp, now)
	}
	r, ok := s.access[m.hash]
	return ok && live(r.Exp, now)
}

func (s *Store) deleteChain(chain string) {
	c := s.chains[chain]
	if c == nil {
		return
	}
	for _, m := range c.members {
		if m.refresh {
			delete(s.refresh, m.hash)
		} else {
			delete(s.access, m.hash)
		}
	}
	delete(s.chains, chain)
}

// sweepSome purges expired entries among a few of each map's. Go starts
// every map iteration at a random place, so successive writes examine
// different entries, as Redis's active expiry does.
func (s *Store) sweepSome(now time.Time) { s.sweep(now, sweepSample) }

// sweep purges the expired entries among limit of each map's.
func (s *Store) sweep(now time.Time, limit int) {
	s.examined += sweepMap(s.access, limit, func(r *grant.AccessRecord) bool { return !live(r.Exp, now) })
	s.examined += sweepMap(s.refresh, limit, func(e *refreshEntry) bool { return !live(e.rec.Exp, now) })
	s.examined += sweepMap(s.marks, limit, func(m markEntry) bool { return !now.Before(m.until) })
	s.examined += sweepMap(s.chains, limit, func(c *chainEntry) bool { return !live(c.exp, now) })
}

// sweepMap deletes the expired entries among the first limit of m's and
// returns how many it examined.
func sweepMap[V any](m map[string]V, limit int, expired func(V) bool) int {
	n := 0
	for k, v := range m {
		if n == limit {
			break
		}
		n++
		if expired(v) {
			delete(m, k)
		}
	}
	return n
}

func copyAccess(r *grant.AccessRecord) *grant.AccessRecord {
	c := *r
	c.Aud = copyStrings(r.Aud)
	c.Claims = copyClaims(r.Claims)
	return &c
}

func copyRefresh(r *grant.RefreshRecord) *grant.RefreshRecord {
	if r == nil {
		return nil
	}
	c := *r
	c.Aud = copyStrings(r.Aud)
	c.Claims = copyClaims(r.Claims)
	return &c
}

// copyStrings keeps nil and empty apart, as a JSON round trip through
// Redis would.
func copyStrings(s []string) []string {
	if s == nil {
		return nil
	}
	return append(make([]string, 0, len(s)), s...)
}

func copyClaims(m map[string]json.RawMessage) map[string]json.RawMessage {
	if m == nil {
		return nil
	}
	c := make(map[string]json.RawMessage, len(m))
	for k, v := range m {
		c[k] = bytes.Clone(v)
	}
	return c
}
