package redisstore

import (
	"encoding/json"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/internal/testredis"
)

// cpuTime is the process's user and system time so far. Redis runs in
// its own process, so this is the client's side of a round trip alone.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkAccess is jwt_grant_auth's store read on a real redis-server:
// one GET and the record's decoding, with and without the local cache,
// sequential and from several goroutines. cpu-ns/op is this process's CPU
// per read (the client library, the decoding and the system calls), the
// figure that the gateway's CPU per request pays; ns/op includes Redis's
// own time and the scheduler's.
func BenchmarkAccess(b *testing.B) {
	srv := testredis.Start(b)
	for _, bc := range []struct {
		name     string
		cache    int
		parallel bool
		pipeline bool
	}{
		{"uncached", 0, false, false},
		{"uncached/parallel", 0, true, false},
		{"cached", 1000, false, false},
		{"cached/parallel", 1000, true, false},
		{"pipelined", 0, false, true},
		{"pipelined/parallel", 0, true, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s, err := New(&redis.UniversalOptions{Addrs: []string{srv.Addr()}}, Options{CacheEntries: bc.cache, Pipeline: bc.pipeline})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = s.Close() })
			is := issuance("", time.Hour)
			if err := s.Issue(b.Context(), is); err != nil {
				b.Fatal(err)
			}
			if _, err := s.Access(b.Context(), is.AccessHash); err != nil { // dials, fills the cache
				b.Fatal(err)
			}
			b.ReportAllocs()
			start := cpuTime(b)
			b.ResetTimer()
			if bc.parallel {
				b.SetParallelism(4)
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := s.Access(b.Context(), is.AccessHash); err != nil {
							b.Error(err)
							return
						}
					}
				})
			} else {
				for i := 0; i < b.N; i++ {
					if _, err := s.Access(b.Context(), is.AccessHash); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkDecodeAccess is the decoding of an access record alone, as
// Access does it after its GET (or its local cache's hit).
func BenchmarkDecodeAccess(b *testing.B) {
	is := issuance("", time.Hour)
	s := &Store{now: time.Now}
	e, err := s.encode(is)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		rec := new(grant.AccessRecord)
		if err := json.Unmarshal(e.atJSON, rec); err != nil {
			b.Fatal(err)
		}
	}
}
