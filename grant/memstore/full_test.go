package memstore

import (
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
)

// fill puts n live replay marks straight into s's map, as n grants would,
// without paying n Issue calls.
func fill(s *Store, n int) {
	until := time.Now().Add(time.Hour)
	for i := range n {
		s.marks[fmt.Sprintf("%064x", i)] = markEntry{until: until}
	}
}

func TestFullStoreRefusesAWriteAtConstantCost(t *testing.T) {
	const size = 100 * fullSample
	// The bound: a write's own sample plus the full store's, per map.
	const bound = 4 * (sweepSample + fullSample)
	cases := []struct {
		name  string
		write func(*Store) error
	}{
		{"a refused grant", func(s *Store) error { return s.Issue(t.Context(), accessOnly()) }},
		{"a refused grant with marks", func(s *Store) error { return s.Issue(t.Context(), accessOnly(newMark(), newMark())) }},
		{"refused marks", func(s *Store) error { return s.ClaimMarks(t.Context(), []grant.Mark{newMark()}) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := New(Options{MaxEntries: size})
			fill(s, size)
			for i := range 10 {
				before := s.examined
				if err := tc.write(s); !errors.Is(err, grant.ErrUnavailable) {
					t.Fatalf("write %d on a full store: %v; want ErrUnavailable", i, err)
				}
				if work := s.examined - before; work > bound {
					t.Fatalf("write %d examined %d entries of %d; want at most %d", i, work, size, bound)
				}
			}
			if s.Len() != size {
				t.Fatalf("Len() = %d; want %d: a refused write changed the store", s.Len(), size)
			}
		})
	}
}

func newMark() grant.Mark {
	return grant.Mark{Key: grant.HashToken(rand.Text()), Until: time.Now().Add(time.Hour)}
}

// BenchmarkRefusedWriteOnAFullStore is the figure behind
// TestFullStoreRefusesAWriteAtConstantCost: a refused grant on a store of
// a million live entries (the default bound), all of it under the
// exclusive lock that readers wait for.
func BenchmarkRefusedWriteOnAFullStore(b *testing.B) {
	s := New(Options{})
	fill(s, DefaultMaxEntries)
	is := accessOnly()
	for b.Loop() {
		if err := s.Issue(b.Context(), is); !errors.Is(err, grant.ErrUnavailable) {
			b.Fatalf("Issue on a full store: %v", err)
		}
	}
}
