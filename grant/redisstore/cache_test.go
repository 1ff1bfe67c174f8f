package redisstore

import (
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// go-redis would silently run without the cache where it cannot keep it
// true; the store refuses instead, naming why.
func TestCacheIsRefusedWhereGoRedisCannotKeepIt(t *testing.T) {
	for _, tc := range []struct {
		name string
		uo   redis.UniversalOptions
		want string
	}{
		{"a cluster", redis.UniversalOptions{Addrs: []string{"127.0.0.1:7000", "127.0.0.1:7001"}}, "not a cluster"},
		{"sentinels", redis.UniversalOptions{Addrs: []string{"127.0.0.1:26379"}, MasterName: "m"}, "not a sentinel"},
		{"a database other than 0", redis.UniversalOptions{Addrs: []string{"127.0.0.1:7000"}, DB: 2}, "db 0"},
		{"RESP2", redis.UniversalOptions{Addrs: []string{"127.0.0.1:7000"}, Protocol: 2}, "RESP3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(&tc.uo, Options{CacheEntries: 100})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v; want an error containing %q", err, tc.want)
			}
		})
	}
	if _, err := New(&redis.UniversalOptions{Addrs: []string{"127.0.0.1:7000"}}, Options{CacheEntries: -1}); err == nil {
		t.Fatal("a negative cache size was accepted")
	}
	s, err := New(&redis.UniversalOptions{Addrs: []string{"127.0.0.1:7000"}}, Options{CacheEntries: 100})
	if err != nil {
		t.Fatalf("a single node on db 0: %v", err)
	}
	_ = s.Close()
}
