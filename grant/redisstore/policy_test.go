package redisstore

import (
	"crypto/rand"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/internal/testredis"
)

func TestStoreWarnsOnceWhenRedisMayEvictReplayRecords(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		args   []string
		policy string // "" no warning
	}{
		{name: "noeviction (Redis's default) is not warned about"},
		{name: "allkeys-lru is warned about once", args: []string{"--maxmemory-policy", "allkeys-lru"}, policy: "allkeys-lru"},
		{name: "volatile-ttl is warned about once", args: []string{"--maxmemory-policy", "volatile-ttl"}, policy: "volatile-ttl"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := testredis.StartWith(t, tc.args...)
			core, logs := observer.New(zapcore.InfoLevel)
			s := newStore(t, &redis.UniversalOptions{Addrs: []string{srv.Addr()}}, Options{Logger: zap.New(core)})
			if logs.Len() != 0 {
				t.Fatalf("New logged before any use: %v", logs.All())
			}
			for range 3 {
				now := time.Now()
				is := &grant.Issuance{
					Marks:      []grant.Mark{{Key: grant.HashToken(rand.Text()), Until: now.Add(time.Minute)}},
					AccessHash: grant.HashToken(rand.Text()),
					Access:     &grant.AccessRecord{TokenRecord: grant.TokenRecord{V: grant.RecordVersion, Sub: "alice", Iat: now.Unix(), Exp: now.Add(time.Hour).Unix()}},
				}
				if err := s.Issue(t.Context(), is); err != nil {
					t.Fatal(err)
				}
				if _, err := s.Access(t.Context(), is.AccessHash); err != nil {
					t.Fatal(err)
				}
			}
			warned := logs.FilterLevelExact(zapcore.WarnLevel).All()
			if tc.policy == "" {
				if len(warned) != 0 {
					t.Fatalf("warned about noeviction: %v", warned)
				}
				return
			}
			if len(warned) != 1 {
				t.Fatalf("%d warnings after 6 calls; want exactly one: %v", len(warned), warned)
			}
			if got := warned[0].ContextMap()["maxmemory_policy"]; got != tc.policy {
				t.Fatalf("warning names policy %v; want %s", got, tc.policy)
			}
		})
	}
}
