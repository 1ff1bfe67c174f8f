package redisstore

import (
	"context"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// Whether the maxmemory-policy check has run: it runs after the first
// successful store call, and again after one that could not read the
// policy, so that a Redis down at start-up is checked once it answers.
const (
	policyUnchecked = iota
	policyChecking
	policyChecked
)

// checkPolicy warns, once per Store, when a Redis it reaches may evict
// keys: every record and replay mark carries a TTL, so under any
// maxmemory-policy but noeviction a Redis short of memory may drop a
// replay mark, and the assertion it guards could be exchanged again. It
// reads the policy from INFO rather than CONFIG GET, which managed Redis
// services often disable. ctx is the first successful call's: the check
// costs that one call a round trip, bounded by the client's timeouts.
func (s *Store) checkPolicy(ctx context.Context) {
	if s.log == nil || !s.policy.CompareAndSwap(policyUnchecked, policyChecking) {
		return
	}
	ctx = context.WithoutCancel(ctx)
	check := func(ctx context.Context, c *redis.Client) error {
		info := c.InfoMap(ctx, "memory")
		if err := info.Err(); err != nil {
			return err
		}
		if p := info.Item("Memory", "maxmemory_policy"); p != "" && p != "noeviction" {
			s.log.Warn("redis may evict replay records: set maxmemory-policy noeviction",
				zap.String("store", s.String()), zap.String("server", c.Options().Addr), zap.String("maxmemory_policy", p))
		}
		return nil
	}
	var err error
	switch c := s.client().(type) {
	case *redis.ClusterClient:
		err = c.ForEachMaster(ctx, check)
	case *redis.Client:
		err = check(ctx, c)
	}
	if err != nil {
		s.policy.Store(policyUnchecked)
		return
	}
	s.policy.Store(policyChecked)
}
