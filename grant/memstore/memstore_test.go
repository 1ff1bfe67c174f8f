package memstore

import (
	"crypto/rand"
	"errors"
	"testing"
	"testing/synctest"
	"time"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/storetest"
)

func TestConformance(t *testing.T) {
	newStore := func(t *testing.T) grant.Store { return New(Options{}) }
	storetest.Run(t, newStore)
	storetest.RunExpiry(t, newStore)
}

// accessOnly is a grant of one access token living an hour, with the given
// marks: one entry plus one per mark.
func accessOnly(marks ...grant.Mark) *grant.Issuance {
	now := time.Now()
	return &grant.Issuance{
		Marks:      marks,
		AccessHash: grant.HashToken(rand.Text()),
		Access:     &grant.AccessRecord{TokenRecord: grant.TokenRecord{V: grant.RecordVersion, Sub: "alice", Iat: now.Unix(), Exp: now.Add(time.Hour).Unix()}},
	}
}

func TestFullStoreRefusesWritesInsteadOfEvicting(t *testing.T) {
	s := New(Options{MaxEntries: 5})
	chain := grant.HashToken(rand.Text())
	first := accessOnly()
	first.Access.Chain = chain
	first.RefreshHash = grant.HashToken(rand.Text())
	first.Refresh = &grant.RefreshRecord{TokenRecord: grant.TokenRecord{V: grant.RecordVersion, Exp: first.Access.Exp}, Chain: chain}
	if err := s.Issue(t.Context(), first); err != nil { // access, refresh, chain
		t.Fatalf("Issue: %v", err)
	}
	var kept []*grant.Issuance
	for range 2 {
		is := accessOnly()
		if err := s.Issue(t.Context(), is); err != nil {
			t.Fatalf("Issue below the bound: %v", err)
		}
		kept = append(kept, is)
	}
	if got := s.Len(); got != 5 {
		t.Fatalf("Len() = %d; want 5", got)
	}

	over := accessOnly()
	if err := s.Issue(t.Context(), over); !errors.Is(err, grant.ErrUnavailable) {
		t.Fatalf("Issue over the bound: %v; want ErrUnavailable", err)
	}
	if _, err := s.Access(t.Context(), over.AccessHash); !errors.Is(err, grant.ErrNotFound) {
		t.Errorf("refused grant was written: %v", err)
	}
	for _, is := range kept {
		if _, err := s.Access(t.Context(), is.AccessHash); err != nil {
			t.Errorf("a live token was evicted: %v", err)
		}
	}

	// A refused rotation leaves the old refresh token usable.
	next := accessOnly()
	if err := s.Rotate(t.Context(), first.RefreshHash, next); !errors.Is(err, grant.ErrUnavailable) {
		t.Fatalf("Rotate over the bound: %v; want ErrUnavailable", err)
	}
	if r, err := s.Refresh(t.Context(), first.RefreshHash); err != nil || r.Rotated {
		t.Fatalf("refused rotation changed the old token: %+v, %v", r, err)
	}

	// Revoking frees room.
	if err := s.RevokeAccess(t.Context(), kept[0].AccessHash); err != nil {
		t.Fatal(err)
	}
	if err := s.Issue(t.Context(), over); err != nil {
		t.Fatalf("Issue after a revocation: %v", err)
	}
}

func TestFullStorePurgesExpiredEntriesToMakeRoom(t *testing.T) {
	// The bubble's clock jumps over the sleep.
	synctest.Test(t, func(t *testing.T) {
		s := New(Options{MaxEntries: 3})
		short := grant.Mark{Key: grant.HashToken(rand.Text()), Until: time.Now().Add(50 * time.Millisecond)}
		if err := s.Issue(t.Context(), accessOnly(short)); err != nil {
			t.Fatalf("Issue: %v", err)
		}
		m := grant.Mark{Key: grant.HashToken(rand.Text()), Until: time.Now().Add(time.Minute)}
		if err := s.Issue(t.Context(), accessOnly(m)); !errors.Is(err, grant.ErrUnavailable) {
			t.Fatalf("Issue while the mark lives: %v; want ErrUnavailable", err)
		}
		time.Sleep(time.Until(short.Until) + 5*time.Millisecond)
		if err := s.Issue(t.Context(), accessOnly(m)); err != nil {
			t.Fatalf("Issue after the mark expired: %v", err)
		}
	})
}

func TestWritesPurgeExpiredEntriesBeforeTheStoreIsFull(t *testing.T) {
	// The bubble's clock jumps over the sleep.
	synctest.Test(t, func(t *testing.T) {
		s := New(Options{})
		until := time.Now().Add(30 * time.Millisecond)
		const n = 200
		for range n {
			if err := s.Issue(t.Context(), accessOnly(grant.Mark{Key: grant.HashToken(rand.Text()), Until: until})); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Until(until) + 5*time.Millisecond)
		for range n {
			if err := s.Issue(t.Context(), accessOnly()); err != nil {
				t.Fatal(err)
			}
		}
		s.mu.RLock()
		left := len(s.marks)
		s.mu.RUnlock()
		// Each write examines sweepSample marks from a random place; n writes
		// over n marks miss one only with negligible probability.
		if left > n/20 {
			t.Fatalf("%d of %d expired marks left after %d writes; want them purged", left, n, n)
		}
	})
}

func TestChainListIsCompactedAsTokensGo(t *testing.T) {
	s := New(Options{})
	chain := grant.HashToken(rand.Text())
	const n = 100
	for range n {
		is := accessOnly()
		is.Access.Chain = chain
		if err := s.Issue(t.Context(), is); err != nil {
			t.Fatal(err)
		}
		if err := s.RevokeAccess(t.Context(), is.AccessHash); err != nil {
			t.Fatal(err)
		}
	}
	s.mu.RLock()
	members := len(s.chains[chain].members)
	s.mu.RUnlock()
	// Without compaction a long-lived chain would list every token it ever
	// had; here none is left, so only the few since the last compaction may.
	if members >= 16 {
		t.Fatalf("chain lists %d members after %d revoked tokens; want fewer than 16", members, n)
	}
}

func TestClosedStoreIsUnavailable(t *testing.T) {
	s := New(Options{})
	is := accessOnly()
	if err := s.Issue(t.Context(), is); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Access(t.Context(), is.AccessHash); !errors.Is(err, grant.ErrUnavailable) {
		t.Errorf("Access after Close: %v; want ErrUnavailable", err)
	}
	if err := s.Issue(t.Context(), accessOnly()); !errors.Is(err, grant.ErrUnavailable) {
		t.Errorf("Issue after Close: %v; want ErrUnavailable", err)
	}
}
