package memstore

import (
	"crypto/rand"
	"runtime"
	"testing"
	"time"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
)

// exchangeLike is what one exchange writes: an access record shaped as
// the token endpoint's (subject, client, aud, issuers, no claims), its
// replay mark, and, with refresh, a refresh record and its chain.
func exchangeLike(now time.Time, refresh bool) *grant.Issuance {
	rec := grant.TokenRecord{V: grant.RecordVersion, Sub: "service-account-42", ClientID: "bench", Scope: "",
		Aud: []string{"https://gateway.example"}, Iss: "https://gateway.example", AssertionIss: "https://issuer.example",
		Iat: now.Unix(), Exp: now.Add(time.Hour).Unix(), Claims: nil}
	is := &grant.Issuance{
		Marks:      []grant.Mark{{Key: grant.HashToken(rand.Text()), Until: now.Add(time.Hour)}},
		AccessHash: grant.HashToken(rand.Text()),
		Access:     &grant.AccessRecord{TokenRecord: rec},
	}
	if refresh {
		chain := grant.HashToken(rand.Text())
		rec.Exp = now.Add(24 * time.Hour).Unix()
		is.RefreshHash = grant.HashToken(rand.Text())
		is.Refresh = &grant.RefreshRecord{TokenRecord: rec, Chain: chain}
	}
	return is
}

// liveHeap is the heap in use after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkLiveTokenBytes is the memory a live token holds in the store:
// the live heap after b.N grants less the live heap before, per grant
// (Go heap only; the process's resident size adds the runtime's and the
// allocator's overhead on top, which loadgen -scale measures on Caddy).
// With -benchtime 1000000x it holds a million live tokens at once.
// "access" is the access record alone; "exchange" adds the replay mark
// every exchange leaves (refresh_token_ttl off); "exchange+refresh" the
// refresh record and chain of the default configuration.
func BenchmarkLiveTokenBytes(b *testing.B) {
	for _, tc := range []struct {
		name           string
		marks, refresh bool
	}{{"access", false, false}, {"exchange", true, false}, {"exchange+refresh", true, true}} {
		b.Run(tc.name, func(b *testing.B) {
			// Each issuance is made in the loop and dropped by it, as the
			// token endpoint's is after its request, so that the heap
			// after the loop holds what the store keeps and nothing else
			// (ns/op includes making them).
			s := New(Options{MaxEntries: 4*b.N + 16})
			before := liveHeap()
			now := time.Now()
			for range b.N {
				is := exchangeLike(now, tc.refresh)
				if !tc.marks {
					is.Marks = nil
				}
				if err := s.Issue(b.Context(), is); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			after := liveHeap()
			if s.Len() == 0 {
				b.Fatal("the store holds nothing")
			}
			b.ReportMetric(float64(int64(after)-int64(before))/float64(b.N), "B/live-token")
			runtime.KeepAlive(s)
		})
	}
}
