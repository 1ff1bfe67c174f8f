package caddymodule

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/redis/go-redis/v9"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/memstore"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/redisstore"
)

func init() {
	caddy.RegisterModule(MemoryStore{})
	caddy.RegisterModule(RedisStore{})
	redis.SetLogger(redisLogger{})
}

// StoreModule is a guest module in the jwt_grant.stores namespace.
type StoreModule interface {
	// Store is the shared store, valid between Provision and Cleanup.
	Store() grant.Store
}

// stores shares one store per configuration across handlers and config
// reloads: a reload provisions the new handlers (taking a reference)
// before it cleans up the old ones, so live connections and the memory
// store's tokens survive it.
var stores = caddy.NewUsagePool()

type sharedStore struct{ grant.Store }

func (s sharedStore) Destruct() error { return s.Store.Close() }

// openShared takes a reference to the store under key, building it with
// open if it is not open yet.
func openShared(key string, open func() (grant.Store, error)) (grant.Store, error) {
	v, _, err := stores.LoadOrNew(key, func() (caddy.Destructor, error) {
		st, err := open()
		if err != nil {
			return nil, err
		}
		return sharedStore{st}, nil
	})
	if err != nil {
		return nil, err
	}
	return v.(sharedStore).Store, nil
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
// MemoryStore shares the same one; the first to open it sets its size.
func (m *MemoryStore) Provision(caddy.Context) error {
	m.key = "memory"
	st, err := openShared(m.key, func() (grant.Store, error) {
		return memstore.New(memstore.Options{MaxEntries: m.MaxEntries}), nil
	})
	if err != nil {
		return err
	}
	m.store = st
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
	for d.NextBlock(0) {
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
// services can read them (record format in README.md).
type RedisStore struct {
	// URL is redis://[user:pass@]host:port/db, or rediss:// for TLS. It
	// is an alternative to the fields below.
	URL string `json:"url,omitempty"`
	// Addresses are host:port; several mean a cluster, or the sentinels
	// when Sentinel is set.
	Addresses []string `json:"addresses,omitempty"`
	// Sentinel is the master name of a Sentinel deployment.
	Sentinel string `json:"sentinel,omitempty"`
	Username string `json:"username,omitempty"`
	// Password may be a placeholder such as {env.REDIS_PASSWORD}.
	Password string `json:"password,omitempty"`
	DB       int    `json:"db,omitempty"`
	// TLS connects over TLS; InsecureSkipVerify skips the server
	// certificate check (tests only).
	TLS                bool `json:"tls,omitempty"`
	InsecureSkipVerify bool `json:"insecure_skip_verify,omitempty"`
	// KeyPrefix prefixes every key. Default "jwtgrant:".
	KeyPrefix    string         `json:"key_prefix,omitempty"`
	DialTimeout  caddy.Duration `json:"dial_timeout,omitempty"`
	ReadTimeout  caddy.Duration `json:"read_timeout,omitempty"`
	WriteTimeout caddy.Duration `json:"write_timeout,omitempty"`
	PoolSize     int            `json:"pool_size,omitempty"`

	store grant.Store
	key   string
}

// CaddyModule returns the Caddy module information.
func (RedisStore) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "jwt_grant.stores.redis",
		New: func() caddy.Module { return new(RedisStore) },
	}
}

// options resolves placeholders and builds the client options. No network
// I/O happens here: the client dials on first use, so an unreachable
// Redis does not stop Caddy from starting (requests get 503 until it is
// back).
func (r *RedisStore) options() (redisstore.Options, error) {
	repl := caddy.NewReplacer()
	var opts redisstore.Options
	if r.URL != "" {
		var err error
		opts, err = redisstore.ParseURL(repl.ReplaceKnown(r.URL, ""))
		if err != nil {
			return opts, fmt.Errorf("store redis: %w", err)
		}
	}
	for _, a := range r.Addresses {
		opts.Addrs = append(opts.Addrs, repl.ReplaceKnown(a, ""))
	}
	if r.Sentinel != "" {
		opts.MasterName = r.Sentinel
	}
	if r.Username != "" {
		opts.Username = repl.ReplaceKnown(r.Username, "")
	}
	if r.Password != "" {
		opts.Password = repl.ReplaceKnown(r.Password, "")
	}
	if r.DB != 0 {
		opts.DB = r.DB
	}
	opts.TLS = opts.TLS || r.TLS
	opts.InsecureSkipVerify = r.InsecureSkipVerify
	if r.KeyPrefix != "" {
		opts.KeyPrefix = r.KeyPrefix
	}
	opts.DialTimeout = time.Duration(r.DialTimeout)
	opts.ReadTimeout = time.Duration(r.ReadTimeout)
	opts.WriteTimeout = time.Duration(r.WriteTimeout)
	opts.PoolSize = r.PoolSize
	if len(opts.Addrs) == 0 {
		return opts, fmt.Errorf("store redis: an address or URL is required")
	}
	return opts, nil
}

// Provision takes a reference to the shared client of this configuration.
func (r *RedisStore) Provision(caddy.Context) error {
	opts, err := r.options()
	if err != nil {
		return err
	}
	// The pool key is a digest of the resolved options, password
	// included, so that two handlers share a pool only when they would
	// connect the same way.
	raw, _ := json.Marshal(opts)
	sum := sha256.Sum256(raw)
	r.key = "redis:" + hex.EncodeToString(sum[:])
	st, err := openShared(r.key, func() (grant.Store, error) { return redisstore.New(opts) })
	if err != nil {
		return fmt.Errorf("store redis %s: %w", opts, err)
	}
	r.store = st
	return nil
}

// Store returns the shared Redis store.
func (r *RedisStore) Store() grant.Store { return r.store }

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
// from the token "redis" on.
func (r *RedisStore) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the module name
	if d.NextArg() {
		r.URL = d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
	}
	for d.NextBlock(0) {
		opt := d.Val()
		var err error
		switch opt {
		case "address":
			r.Addresses = append(r.Addresses, d.RemainingArgs()...)
			if len(r.Addresses) == 0 {
				return d.ArgErr()
			}
		case "url":
			r.URL, err = oneArg(d)
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
	_ StoreModule           = (*MemoryStore)(nil)
	_ caddy.Provisioner     = (*MemoryStore)(nil)
	_ caddy.CleanerUpper    = (*MemoryStore)(nil)
	_ caddyfile.Unmarshaler = (*MemoryStore)(nil)
	_ StoreModule           = (*RedisStore)(nil)
	_ caddy.Provisioner     = (*RedisStore)(nil)
	_ caddy.CleanerUpper    = (*RedisStore)(nil)
	_ caddyfile.Unmarshaler = (*RedisStore)(nil)
)

// redisLogger sends go-redis's own messages (failed dials, mostly) to
// Caddy's log instead of stderr.
type redisLogger struct{}

func (redisLogger) Printf(_ context.Context, format string, v ...any) {
	caddy.Log().Named("jwt_grant.redis").Warn(fmt.Sprintf(format, v...))
}
