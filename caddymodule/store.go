package caddymodule

import (
	"cmp"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/redis/go-redis/v9"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/memstore"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/redisstore"
)

// go-redis has one logger for the whole process (redis.SetLogger; v9.23
// has no per-client logger), which a plugin has no business replacing:
// the library's own messages go where the program that embeds it says.
func init() {
	caddy.RegisterModule(MemoryStore{})
	caddy.RegisterModule(RedisStore{})
}

// StoreModule is a guest module in the jwt_grant.stores namespace.
type StoreModule interface {
	// Store is the shared store, valid between Provision and Cleanup.
	Store() grant.Store
}

// stores shares one store per configuration across handlers and config
// reloads: a reload provisions the new handlers (taking a reference)
// before it cleans up the old ones, so live connections and the memory
// store's tokens survive it. A store the new config no longer uses is
// closed only once the old config's requests are done with it (drain.go).
var stores = caddy.NewUsagePool()

type sharedStore struct {
	grant.Store
	// size is the memory store's bound, which every handler sharing it
	// must agree on.
	size int
}

func (s sharedStore) Destruct() error {
	s.Store.(*drainingStore).release()
	return nil
}

// openShared takes a reference to the store under key, building it with
// open if it is not open yet.
func openShared(key string, open func() (grant.Store, error), size int) (sharedStore, error) {
	v, _, err := stores.LoadOrNew(key, func() (caddy.Destructor, error) {
		st, err := open()
		if err != nil {
			return nil, err
		}
		return sharedStore{Store: newDrainingStore(st), size: size}, nil
	})
	if err != nil {
		return sharedStore{}, err
	}
	return v.(sharedStore), nil
}

// MemoryStore keeps tokens in the Caddy process: one store shared by every
// handler of the process, lost when it exits.
type MemoryStore struct {
	// MaxEntries bounds the number of records (tokens and replay marks);
	// when it is reached, new grants are answered 503. Default 1000000.
	MaxEntries int `json:"max_entries,omitempty"`

	store grant.Store
	key   string
}

// CaddyModule returns the Caddy module information.
func (MemoryStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "jwt_grant.stores.memory",
		New: func() caddy.Module { return new(MemoryStore) },
	}
}

// Provision takes a reference to the process's memory store. Every
// MemoryStore shares that one store, so that a jwt_grant_auth finds the
// tokens of any jwt_grant; its size is therefore one for the process, and
// a handler asking for another size is refused rather than silently given
// the first one's (a reload that changes max_entries needs a restart, as
// resizing live would evict tokens or replay marks).
func (m *MemoryStore) Provision(caddy.Context) error {
	size := cmp.Or(m.MaxEntries, memstore.DefaultMaxEntries)
	m.key = "memory"
	sh, err := openShared(m.key, func() (grant.Store, error) {
		return memstore.New(memstore.Options{MaxEntries: size}), nil
	}, size)
	if err != nil {
		return fmt.Errorf("store memory: %w", err)
	}
	m.store = sh.Store
	if sh.size != size {
		return fmt.Errorf("store memory: max_entries %d differs from the %d of the process's memory store, which every handler shares; restart Caddy to resize it", size, sh.size)
	}
	return nil
}

// Validate rejects a negative bound.
func (m *MemoryStore) Validate() error {
	if m.MaxEntries < 0 {
		return fmt.Errorf("store memory: negative max_entries %d", m.MaxEntries)
	}
	return nil
}

// Store returns the shared memory store.
func (m *MemoryStore) Store() grant.Store { return m.store }

// Cleanup releases the reference taken by Provision.
func (m *MemoryStore) Cleanup() error {
	if m.store == nil {
		return nil
	}
	_, err := stores.Delete(m.key)
	m.store = nil
	return err
}

// UnmarshalCaddyfile parses `store memory [{ max_entries <n> }]`, from
// the token "memory" on.
func (m *MemoryStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the module name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		if err := once(d, seen, "store memory"); err != nil {
			return err
		}
		switch d.Val() {
		case "max_entries":
			n, err := intArg(d)
			if err != nil {
				return err
			}
			m.MaxEntries = n
		default:
			return d.Errf("store memory: unknown option %q", d.Val())
		}
	}
	return nil
}

// RedisStore keeps tokens in Redis, where other gateways and downstream
// services can read them (record format in README.md). Its connection
// settings map onto one redis.UniversalOptions: a sentinel master name
// makes a sentinel-backed client, several addresses a cluster client,
// else a single-node client.
type RedisStore struct {
	// URL is redis://[user:pass@]host[:port][/db], or rediss:// for TLS,
	// parsed by go-redis. It may hold placeholders such as
	// {env.REDIS_URL}, resolved at provisioning. The fields below add to
	// it or override it.
	URL string `json:"url,omitempty"`
	// Addresses are host:port: one for a single node, several for a
	// cluster (as seeds), or the sentinels when Sentinel is set.
	Addresses []string `json:"addresses,omitempty"`
	// Sentinel is the master name of a Sentinel deployment; Username and
	// Password then authenticate to the master.
	Sentinel string `json:"sentinel,omitempty"`
	// Username authenticates with Redis ACLs (Redis 6 and later).
	Username string `json:"username,omitempty"`
	// Password may be a placeholder such as {env.REDIS_PASSWORD}; it is
	// never logged.
	Password string `json:"password,omitempty"`
	// DB is the database number; a cluster has only database 0.
	DB int `json:"db,omitempty"`
	// TLS connects over TLS (implied by a rediss:// URL).
	TLS bool `json:"tls,omitempty"`
	// InsecureSkipVerify accepts any server certificate, for test set-ups
	// only; it needs TLS.
	InsecureSkipVerify bool `json:"insecure_skip_verify,omitempty"`
	// KeyPrefix starts every key, so that one Redis can serve several
	// deployments. Default "jwtgrant:".
	KeyPrefix string `json:"key_prefix,omitempty"`
	// DialTimeout bounds connecting. Default go-redis's 5s.
	DialTimeout caddy.Duration `json:"dial_timeout,omitempty"`
	// ReadTimeout bounds waiting for a reply. Default go-redis's 3s.
	ReadTimeout caddy.Duration `json:"read_timeout,omitempty"`
	// WriteTimeout bounds sending a command. Default: ReadTimeout.
	WriteTimeout caddy.Duration `json:"write_timeout,omitempty"`
	// PoolSize is the number of connections per node. Default ten per
	// CPU.
	PoolSize int `json:"pool_size,omitempty"`
	// WaitReplicas, when above zero, answers a grant, rotation or
	// revocation only after that many replicas acknowledged its write
	// (Redis WAIT, pipelined with it), else 503 temporarily_unavailable,
	// so that no token answered 200 and no replay record is lost when
	// Sentinel promotes a replica. Each such write then takes a replica
	// round trip longer. Not supported on a cluster.
	WaitReplicas int `json:"wait_replicas,omitempty"`
	// WaitTimeout bounds the wait for the replicas; it must be shorter
	// than ReadTimeout. Default: half the read timeout.
	WaitTimeout caddy.Duration `json:"wait_timeout,omitempty"`
	// Cache, when above zero, keeps up to that many records read from
	// Redis in the process with go-redis's client-side caching: Redis
	// tells the client the moment any client changes or deletes a cached
	// key (RESP3 CLIENT TRACKING), so a revocation made by any gateway or
	// service takes effect at once, and a jwt_grant_auth verifying a token
	// it has seen costs no round trip. A single node on db 0 only:
	// go-redis cannot keep it on a cluster, behind sentinels or on
	// another database.
	Cache int `json:"cache,omitempty"`
	// Pipeline sends the store's reads (jwt_grant_auth, introspection)
	// and its writes of one script each (the token exchange, refresh)
	// through go-redis's autopipeline (experimental in go-redis), which
	// writes the commands of concurrent requests to Redis together so
	// that they share a round trip (a call with no other in flight goes
	// plain). Writes with wait_replicas still go on
	// their own, with their WAIT. A single node only, and not with Cache.
	Pipeline bool `json:"pipeline,omitempty"`

	store grant.Store
	key   string
	// name is the addresses, for errors and logs.
	name string
}

// CaddyModule returns the Caddy module information.
func (RedisStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "jwt_grant.stores.redis",
		New: func() caddy.Module { return new(RedisStore) },
	}
}

// parseRedisURL is redis.ParseURL kept to what this module maps onto its
// options: a redis:// or rediss:// URL naming a host, without the query
// parameters that would configure a client the block configures here
// (refused rather than ignored, so that a misspelt setting fails at
// adapt time). Errors never contain the URL, which may hold a password.
func parseRedisURL(raw string) (*redis.Options, error) {
	u, err := url.Parse(raw)
	if err != nil {
		// url.Error quotes the whole URL, password and all.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("malformed redis URL: %v", err)
	}
	switch {
	case u.Scheme != "redis" && u.Scheme != "rediss":
		return nil, fmt.Errorf("redis URL scheme must be redis or rediss, not %q", u.Scheme)
	case u.Opaque != "" || u.Host == "":
		return nil, errors.New("redis URL has no host")
	case u.RawQuery != "" || u.Fragment != "":
		return nil, errors.New("redis URL may not have a query or fragment; use the store redis block for other settings")
	}
	o, err := redis.ParseURL(raw)
	if err != nil {
		return nil, fmt.Errorf("malformed redis URL: %w", err)
	}
	return o, nil
}

// options resolves placeholders and maps the configuration onto one
// redis.UniversalOptions.
func (r *RedisStore) options() (*redis.UniversalOptions, error) {
	repl := caddy.NewReplacer()
	uo := new(redis.UniversalOptions)
	if r.URL != "" {
		o, err := parseRedisURL(repl.ReplaceKnown(r.URL, ""))
		if err != nil {
			return nil, fmt.Errorf("url: %w", err)
		}
		uo.Addrs, uo.Username, uo.Password, uo.DB, uo.TLSConfig = []string{o.Addr}, o.Username, o.Password, o.DB, o.TLSConfig
	}
	for _, a := range r.Addresses {
		uo.Addrs = append(uo.Addrs, repl.ReplaceKnown(a, ""))
	}
	uo.MasterName = r.Sentinel
	if r.Username != "" {
		uo.Username = repl.ReplaceKnown(r.Username, "")
	}
	if r.Password != "" {
		uo.Password = repl.ReplaceKnown(r.Password, "")
	}
	if r.DB != 0 {
		uo.DB = r.DB
	}
	if (r.TLS || r.InsecureSkipVerify) && uo.TLSConfig == nil {
		// The server name is taken from each address as it is dialled.
		uo.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if r.InsecureSkipVerify && uo.TLSConfig != nil {
		uo.TLSConfig.InsecureSkipVerify = true
	}
	uo.DialTimeout = time.Duration(r.DialTimeout)
	uo.ReadTimeout = time.Duration(r.ReadTimeout)
	uo.WriteTimeout = time.Duration(r.WriteTimeout)
	uo.PoolSize = r.PoolSize
	return uo, nil
}

// Provision resolves placeholders, maps the configuration and takes a
// reference to the shared client of it. No network I/O happens here: the
// client dials on first use, so an unreachable Redis does not stop Caddy
// from starting (requests get 503 until it is back).
func (r *RedisStore) Provision(ctx caddy.Context) error {
	uo, err := r.options()
	if err != nil {
		return fmt.Errorf("store redis: %w", err)
	}
	r.name = strings.Join(uo.Addrs, ",")
	// The pool key is a digest of the resolved settings, password
	// included, so that two handlers share a pool only when they would
	// connect the same way.
	resolved := *r
	resolved.URL, resolved.Addresses = "", uo.Addrs
	resolved.Username, resolved.Password, resolved.DB = uo.Username, uo.Password, uo.DB
	resolved.TLS = uo.TLSConfig != nil
	raw, err := json.Marshal(resolved)
	if err != nil {
		return fmt.Errorf("%s: %w", r, err)
	}
	sum := sha256.Sum256(raw)
	r.key = "redis:" + hex.EncodeToString(sum[:])
	sh, err := openShared(r.key, func() (grant.Store, error) {
		return redisstore.New(uo, redisstore.Options{KeyPrefix: r.KeyPrefix, Logger: ctx.Logger(),
			WaitReplicas: r.WaitReplicas, WaitTimeout: time.Duration(r.WaitTimeout), CacheEntries: r.Cache, Pipeline: r.Pipeline})
	}, 0)
	if err != nil {
		return fmt.Errorf("%s: %w", r, err)
	}
	r.store = sh.Store
	return nil
}

// Validate rejects what the store accepts but this module's settings
// contradict; the store itself refuses, at Provision, options no client
// could use (no address, a cluster with a db, negative numbers).
func (r *RedisStore) Validate() error {
	if r.InsecureSkipVerify && !r.TLS && !strings.HasPrefix(r.URL, "rediss://") {
		return fmt.Errorf("%s: insecure_skip_verify needs tls", r)
	}
	return nil
}

// Store returns the shared Redis store.
func (r *RedisStore) Store() grant.Store { return r.store }

// String names the store for logs and errors, without credentials.
func (r *RedisStore) String() string {
	if r.name == "" {
		return "store redis"
	}
	return "store redis " + r.name
}

// Cleanup releases the reference taken by Provision; the last one closes
// the connections.
func (r *RedisStore) Cleanup() error {
	if r.store == nil {
		return nil
	}
	_, err := stores.Delete(r.key)
	r.store = nil
	return err
}

// UnmarshalCaddyfile parses `store redis <url>` or `store redis { … }`,
// from the token "redis" on. A URL without placeholders is parsed here, so
// that a malformed one fails `caddy adapt` with its line.
//
// Syntax:
//
//	store redis [<url>] {
//		url           <url>
//		address       <host:port>...
//		sentinel      <master-name>
//		username      <name>
//		password      <secret>
//		db            <n>
//		tls           [insecure_skip_verify]
//		key_prefix    <prefix>
//		dial_timeout  <duration>
//		read_timeout  <duration>
//		write_timeout <duration>
//		pool_size     <n>
//		wait_replicas <n> [<timeout>]
//		cache         <max_entries>
//		pipeline
//	}
func (r *RedisStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the module name
	seen := map[string]bool{}
	if d.NextArg() {
		if err := r.parseURLArg(d); err != nil {
			return err
		}
		seen["url"] = true
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	for d.NextBlock(0) {
		opt := d.Val()
		if err := once(d, seen, "store redis", "address"); err != nil {
			return err
		}
		var err error
		switch opt {
		case "address":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			r.Addresses = append(r.Addresses, args...)
		case "url":
			if !d.NextArg() {
				return d.ArgErr()
			}
			err = r.parseURLArg(d)
			if err == nil && d.NextArg() {
				err = d.ArgErr()
			}
		case "sentinel":
			r.Sentinel, err = oneArg(d)
		case "username":
			r.Username, err = oneArg(d)
		case "password":
			r.Password, err = oneArg(d)
		case "db":
			r.DB, err = intArg(d)
		case "tls":
			r.TLS = true
			if d.NextArg() {
				if d.Val() != "insecure_skip_verify" {
					return d.Errf("store redis: tls: unknown option %q", d.Val())
				}
				r.InsecureSkipVerify = true
			}
			if d.NextArg() {
				return d.ArgErr()
			}
		case "key_prefix":
			r.KeyPrefix, err = oneArg(d)
		case "dial_timeout":
			r.DialTimeout, err = durationArg(d)
		case "read_timeout":
			r.ReadTimeout, err = durationArg(d)
		case "write_timeout":
			r.WriteTimeout, err = durationArg(d)
		case "pool_size":
			r.PoolSize, err = intArg(d)
		case "wait_replicas":
			err = r.parseWaitReplicas(d)
		case "cache":
			r.Cache, err = intArg(d)
		case "pipeline":
			r.Pipeline = true
			if d.NextArg() {
				err = d.ArgErr()
			}
		default:
			return d.Errf("store redis: unknown option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	if r.URL == "" && len(r.Addresses) == 0 {
		return d.Err("store redis: a URL or an address is required")
	}
	if r.WaitReplicas > 0 && r.Sentinel == "" && len(r.Addresses) > 1 {
		return d.Err("store redis: wait_replicas is not supported on a cluster")
	}
	if err := r.checkCache(); err != nil {
		return d.Err(err.Error())
	}
	if err := r.checkPipeline(); err != nil {
		return d.Err(err.Error())
	}
	if r.WaitReplicas > 0 && r.WaitTimeout > 0 && r.ReadTimeout > 0 && r.WaitTimeout >= r.ReadTimeout {
		return d.Errf("store redis: wait_replicas timeout %v must be shorter than read_timeout %v",
			time.Duration(r.WaitTimeout), time.Duration(r.ReadTimeout))
	}
	return nil
}

// checkCache refuses at adapt time a cache go-redis would not keep (the
// store refuses it again at Provision, where placeholders are resolved).
func (r *RedisStore) checkCache() error {
	if r.Cache == 0 {
		return nil
	}
	db := r.DB
	if r.URL != "" && !strings.Contains(r.URL, "{") {
		if o, err := parseRedisURL(r.URL); err == nil && db == 0 {
			db = o.DB
		}
	}
	switch {
	case r.Sentinel != "":
		return errors.New("store redis: cache is not supported behind sentinels (go-redis caches on a single node only)")
	case len(r.Addresses) > 1 || (r.URL != "" && len(r.Addresses) > 0):
		return errors.New("store redis: cache is not supported on a cluster (go-redis caches on a single node only)")
	case db != 0:
		return fmt.Errorf("store redis: cache needs db 0, not %d (go-redis tracks keys of db 0 only)", db)
	}
	return nil
}

// checkPipeline refuses at adapt time pipelined reads the store
// would refuse at Provision: the store keeps one autopipeliner on a
// single node's client, and the cache answers most reads without a
// round trip to batch.
func (r *RedisStore) checkPipeline() error {
	switch {
	case !r.Pipeline:
		return nil
	case r.Sentinel != "":
		return errors.New("store redis: pipeline is not supported behind sentinels (a single node only)")
	case len(r.Addresses) > 1 || (r.URL != "" && len(r.Addresses) > 0):
		return errors.New("store redis: pipeline is not supported on a cluster (a single node only)")
	case r.Cache > 0:
		return errors.New("store redis: pipeline and cache cannot be combined")
	}
	return nil
}

// parseWaitReplicas takes `wait_replicas <n> [<timeout>]`.
func (r *RedisStore) parseWaitReplicas(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) < 1 || len(args) > 2 {
		return d.ArgErr()
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 {
		return d.Errf("wait_replicas: not a positive integer: %q", args[0])
	}
	r.WaitReplicas = n
	if len(args) == 2 {
		t, err := caddy.ParseDuration(args[1])
		if err != nil || t <= 0 {
			return d.Errf("wait_replicas: malformed timeout %q", args[1])
		}
		r.WaitTimeout = caddy.Duration(t)
	}
	return nil
}

// parseURLArg takes the URL at the dispenser's token, checking it now
// unless a placeholder leaves that to Provision.
func (r *RedisStore) parseURLArg(d *caddyfile.Dispenser) error {
	r.URL = d.Val()
	if strings.Contains(r.URL, "{") {
		return nil
	}
	if _, err := parseRedisURL(r.URL); err != nil {
		return d.Errf("store redis: %v", err)
	}
	return nil
}

// Caddyfile argument helpers shared by every parser of this package.

func oneArg(d *caddyfile.Dispenser) (string, error) {
	if !d.NextArg() {
		return "", d.ArgErr()
	}
	v := d.Val()
	if d.NextArg() {
		return "", d.ArgErr()
	}
	return v, nil
}

func intArg(d *caddyfile.Dispenser) (int, error) {
	name := d.Val()
	v, err := oneArg(d)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, d.Errf("%s: not a non-negative integer: %q", name, v)
	}
	return n, nil
}

func durationArg(d *caddyfile.Dispenser) (caddy.Duration, error) {
	name := d.Val()
	v, err := oneArg(d)
	if err != nil {
		return 0, err
	}
	dur, err := caddy.ParseDuration(v)
	if err != nil || dur < 0 {
		return 0, d.Errf("%s: malformed duration %q", name, v)
	}
	return caddy.Duration(dur), nil
}

// Interface guards
var (
	_ caddy.Module          = (*MemoryStore)(nil)
	_ StoreModule           = (*MemoryStore)(nil)
	_ caddy.Provisioner     = (*MemoryStore)(nil)
	_ caddy.Validator       = (*MemoryStore)(nil)
	_ caddy.CleanerUpper    = (*MemoryStore)(nil)
	_ caddyfile.Unmarshaler = (*MemoryStore)(nil)
	_ caddy.Module          = (*RedisStore)(nil)
	_ StoreModule           = (*RedisStore)(nil)
	_ caddy.Provisioner     = (*RedisStore)(nil)
	_ caddy.Validator       = (*RedisStore)(nil)
	_ caddy.CleanerUpper    = (*RedisStore)(nil)
	_ caddyfile.Unmarshaler = (*RedisStore)(nil)
	_ fmt.Stringer          = (*RedisStore)(nil)
)
