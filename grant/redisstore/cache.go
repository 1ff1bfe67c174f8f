package redisstore

import (
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// cacheMaxStaleness bounds how long a cached record may be served after
// it was read, whatever happened to its invalidation. Redis tells the
// client at once when a cached key changes (RESP3 tracking), so this is
// only a backstop for an invalidation lost with its connection; a record
// read again every few seconds costs one GET each time.
const cacheMaxStaleness = 5 * time.Second

// cacheOptions checks that go-redis can keep a client-side cache for uo
// and turns it on: go-redis's own cache, whose entries Redis invalidates
// through RESP3 CLIENT TRACKING the moment any client writes or deletes
// the key, so that a revocation made anywhere takes effect at once. The
// library disables the cache with a warning where it cannot keep it true
// (a cluster, a sentinel client, a database other than 0, RESP2); this
// turns those cases into errors, so that an operator who asked for a
// cache does not run without one.
func cacheOptions(uo *redis.UniversalOptions, entries int) error {
	switch {
	case entries < 0:
		return fmt.Errorf("negative cache size %d", entries)
	case entries == 0:
		return nil
	case mode(uo) != "single":
		// go-redis v9.23 caches on a standalone client only.
		return fmt.Errorf("cache needs a single Redis node, not a %s", mode(uo))
	case uo.DB != 0:
		return fmt.Errorf("cache needs db 0, not %d (go-redis tracks keys of db 0 only)", uo.DB)
	case uo.Protocol == 2:
		return errors.New("cache needs RESP3 (protocol 3) for the server's invalidation messages")
	}
	uo.Protocol = 3
	uo.ClientSideCacheConfig = &redis.ClientSideCacheConfig{MaxEntries: entries, MaxStaleness: cacheMaxStaleness}
	return nil
}
