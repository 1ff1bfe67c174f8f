package redisstore

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"
	"go.uber.org/zap"
)

// DefaultKeyPrefix is the key prefix of Options that leave KeyPrefix empty.
const DefaultKeyPrefix = "jwtgrant:"

// dialAttempts is how often one connection attempt is made before the
// command fails: the library's default of five attempts 100 ms apart
// would hold each request of an outage for seconds before its 503. After
// as many failed dials as the pool has connections, the library fails at
// once and probes once a second, so the store recovers within about a
// second of Redis coming back.
const dialAttempts = 1

// Options is what a Store adds to the client's own options: the connection
// itself is configured by redis.UniversalOptions alone.
type Options struct {
	// KeyPrefix starts every key (default DefaultKeyPrefix), so that one
	// Redis can serve several deployments and downstream services know
	// where to look.
	KeyPrefix string
	// Now is the gateway's clock (default time.Now). Expiries are sent to
	// Redis as durations measured by it, so that a Redis whose clock runs
	// ahead cannot shorten a replay mark (SPEC §3.1 check 10).
	Now func() time.Time
	// WaitReplicas, when above zero, makes every grant, rotation and
	// revocation wait (Redis WAIT, pipelined with the write) until that
	// many replicas have it, and fail with grant.ErrUnavailable
	// otherwise, so that a token answered 200 survives a failover to a
	// replica. Not supported on a cluster.
	WaitReplicas int
	// WaitTimeout bounds that wait; it must be shorter than the read
	// timeout. Default: half the read timeout.
	WaitTimeout time.Duration
	// Logger receives the one warning of a Redis whose maxmemory-policy
	// may evict replay records (see Store.checkPolicy); nil: no check.
	Logger *zap.Logger
	// CacheEntries, when above zero, keeps up to that many records read
	// from Redis in the process (go-redis client-side caching, kept true
	// by Redis's invalidation messages), so that verifying a token
	// already seen costs no round trip. A single node on db 0 over RESP3
	// only.
	CacheEntries int
	// Pipeline sends the store's single-command calls — Access's reads
	// and the scripts that issue, rotate and claim — through go-redis's
	// autopipeline, which writes the commands of concurrent requests to
	// Redis together, so that they share a round trip; a call with no
	// other in flight goes as a plain command. Writes that wait
	// for replicas (WaitReplicas) still go on their own, with their WAIT.
	// A single node only, and not with CacheEntries.
	Pipeline bool
}

// mode is how a Store reaches Redis, by the rules the README states: a
// master name means sentinels, several addresses a cluster.
func mode(uo *redis.UniversalOptions) string {
	switch {
	case uo.MasterName != "":
		return "sentinel"
	case len(uo.Addrs) > 1:
		return "cluster"
	}
	return "single"
}

// validate rejects options the client would accept and then fail on at
// every request, or silently read otherwise.
func validate(uo *redis.UniversalOptions) error {
	switch {
	case len(uo.Addrs) == 0:
		return errors.New("no address")
	case uo.DB < 0:
		return fmt.Errorf("negative db %d", uo.DB)
	case mode(uo) == "cluster" && uo.DB != 0:
		return fmt.Errorf("a cluster has only db 0, not %d", uo.DB)
	case uo.DialTimeout < 0 || uo.ReadTimeout < 0 || uo.WriteTimeout < 0:
		// The client reads these as "no timeout", and SPEC bounds every
		// store call by its timeouts.
		return errors.New("negative timeout")
	case uo.PoolSize < 0:
		return fmt.Errorf("negative pool size %d", uo.PoolSize)
	}
	for _, a := range uo.Addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("address %q is not host:port", a)
		}
	}
	return nil
}

// withDefaults is a copy of uo with what the store needs of its client.
func withDefaults(uo *redis.UniversalOptions) *redis.UniversalOptions {
	o := *uo
	if o.DialerRetries == 0 {
		o.DialerRetries = dialAttempts
	}
	if o.MaxRetries == 0 {
		// One attempt per command, so that a store call ends within
		// dial + write + read timeout (SPEC §6) rather than a multiple of
		// it. A retry would also re-send a write whose outcome is
		// unknown; the scripts would take it for the same grant, but the
		// client gets its 503 sooner and may send the request again.
		o.MaxRetries = -1
	}
	// A request's deadline bounds its Redis commands as well.
	o.ContextTimeoutEnabled = true
	if o.MaintNotificationsConfig == nil {
		// Maintenance notifications are a Redis Enterprise feature;
		// probing for them on every connection to an open-source Redis
		// only costs time (the sentinel client never probes).
		o.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	}
	return &o
}

// describe names a deployment for logs and errors: addresses and mode,
// never credentials.
func describe(uo *redis.UniversalOptions) string {
	addrs := strings.Join(uo.Addrs, ",")
	switch mode(uo) {
	case "sentinel":
		return fmt.Sprintf("%s (sentinel master %q)", addrs, uo.MasterName)
	case "cluster":
		return addrs + " (cluster)"
	}
	if uo.DB != 0 {
		return fmt.Sprintf("%s db %d", addrs, uo.DB)
	}
	return addrs
}
