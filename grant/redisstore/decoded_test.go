package redisstore

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/internal/testredis"
)

// A record read again with the same bytes is not decoded again, while any
// change to it in Redis — rewritten by hand, deleted — is seen by the very
// next read, with the local cache and without it.
func TestAccessDecodesSameBytesOnceAndSeesEveryChange(t *testing.T) {
	t.Parallel()
	srv := testredis.Start(t)
	raw := inspect(t, srv.Addr())
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"plain", Options{}},
		{"cache", Options{CacheEntries: 100}},
		{"pipeline", Options{Pipeline: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t, &redis.UniversalOptions{Addrs: []string{srv.Addr()}}, tc.opts)
			is := issuance("", time.Hour)
			if err := s.Issue(t.Context(), is); err != nil {
				t.Fatal(err)
			}
			first, err := s.Access(t.Context(), is.AccessHash)
			if err != nil {
				t.Fatal(err)
			}
			again, err := s.Access(t.Context(), is.AccessHash)
			if err != nil {
				t.Fatal(err)
			}
			if again != first {
				t.Error("the same bytes were decoded again")
			}

			key := s.atKey(is.AccessHash)
			stored, err := raw.Get(t.Context(), key).Result()
			if err != nil {
				t.Fatal(err)
			}
			changed := strings.Replace(stored, `"sub":"alice"`, `"sub":"mallory"`, 1)
			if changed == stored {
				t.Fatalf("record without the expected subject: %s", stored)
			}
			if err := raw.Set(t.Context(), key, changed, time.Hour).Err(); err != nil {
				t.Fatal(err)
			}
			// With the cache, the rewrite reaches the store as an
			// invalidation message: poll, bounded generously.
			deadline := time.Now().Add(5 * time.Second)
			for {
				rec, err := s.Access(t.Context(), is.AccessHash)
				if err != nil {
					t.Fatal(err)
				}
				if rec.Sub == "mallory" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("still %q after the record was rewritten", rec.Sub)
				}
			}
			if first.Sub != "alice" {
				t.Errorf("a record handed out earlier changed: sub %q", first.Sub)
			}

			if err := raw.Del(t.Context(), key).Err(); err != nil {
				t.Fatal(err)
			}
			for {
				_, err := s.Access(t.Context(), is.AccessHash)
				if errors.Is(err, grant.ErrNotFound) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if time.Now().After(deadline) {
					t.Fatal("still found after the record was deleted")
				}
			}
		})
	}
}

// The decoded records are bounded: a working set larger than the bound
// keeps at most decodedMax of them, and each read still answers its own
// record.
func TestDecodedRecordsAreBounded(t *testing.T) {
	var d decoded
	for i := range decodedMax + 100 {
		v := fmt.Sprintf(`{"v":1,"sub":"s%d","exp":1}`, i)
		rec, err := d.access(v)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("s%d", i); rec.Sub != want {
			t.Fatalf("record %d: sub %q, want %q", i, rec.Sub, want)
		}
	}
	if n := len(d.m); n > decodedMax {
		t.Errorf("%d records held, bound %d", n, decodedMax)
	}
	if _, err := d.access(`{"v":`); err == nil {
		t.Error("malformed record decoded")
	}
	if _, ok := d.m[`{"v":`]; ok {
		t.Error("malformed record remembered")
	}
}
