package redisstore

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// DefaultKeyPrefix is the key prefix of Options that leave KeyPrefix empty.
const DefaultKeyPrefix = "jwtgrant:"

// Options configures a Store. The zero value of every field but Addrs means
// the default.
type Options struct {
	// Addrs are host:port addresses: one for a single node, several for a
	// cluster (as seeds), or the sentinels when MasterName is set.
	Addrs []string
	// MasterName, when set, selects sentinel mode: the master of that name
	// is looked up through the sentinels in Addrs. Username and Password
	// then authenticate to the master; the sentinels are reached without.
	MasterName string
	Username   string
	Password   string
	// DB is the database number; a cluster has only database 0.
	DB int
	// TLS connects with TLS (rediss://); InsecureSkipVerify accepts any
	// server certificate, for test set-ups only.
	TLS                bool
	InsecureSkipVerify bool
	// KeyPrefix starts every key (default DefaultKeyPrefix), so that one
	// Redis can serve several deployments and downstream services know
	// where to look.
	KeyPrefix string
	// Timeouts default to the client library's (5 s dial, 3 s read and
	// write). A request's context deadline, when sooner, applies as well.
	DialTimeout  time.Duration
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// PoolSize is the number of connections per node (default ten per
	// CPU).
	PoolSize int
}

// String describes o for logs and errors with the password redacted.
func (o Options) String() string {
	// A type without methods, so that %+v prints fields and not String.
	type plain Options
	p := plain(o)
	if p.Password != "" {
		p.Password = "[REDACTED]"
	}
	return fmt.Sprintf("redisstore.Options%+v", p)
}

// GoString redacts the password from %#v as String does from %v.
func (o Options) GoString() string { return o.String() }

// mode is how a Store reaches Redis.
func (o Options) mode() string {
	switch {
	case o.MasterName != "":
		return "sentinel"
	case len(o.Addrs) > 1:
		return "cluster"
	}
	return "single"
}

func (o Options) validate() error {
	switch {
	case len(o.Addrs) == 0:
		return errors.New("redisstore: no address")
	case o.DB < 0:
		return fmt.Errorf("redisstore: negative db %d", o.DB)
	case o.mode() == "cluster" && o.DB != 0:
		return fmt.Errorf("redisstore: a cluster has only db 0, not %d", o.DB)
	case o.InsecureSkipVerify && !o.TLS:
		return errors.New("redisstore: insecure_skip_verify needs tls")
	case o.DialTimeout < 0 || o.ReadTimeout < 0 || o.WriteTimeout < 0:
		return errors.New("redisstore: negative timeout")
	case o.PoolSize < 0:
		return fmt.Errorf("redisstore: negative pool size %d", o.PoolSize)
	}
	for _, a := range o.Addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("redisstore: address %q is not host:port", a)
		}
	}
	return nil
}

// ParseURL parses redis://[user:password@]host[:port][/db], or rediss://
// for TLS, into Options for a single node. The port defaults to 6379 and
// the database to 0. Query parameters are refused rather than ignored, so
// that a misspelt setting fails at configuration time.
//
// Errors never contain the URL, which may hold a password.
func ParseURL(raw string) (Options, error) {
	var o Options
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return o, fmt.Errorf("redisstore: malformed redis URL: %v", err)
	}
	switch u.Scheme {
	case "redis":
	case "rediss":
		o.TLS = true
	default:
		return o, fmt.Errorf("redisstore: redis URL scheme must be redis or rediss, not %q", u.Scheme)
	}
	if u.Opaque != "" || u.Host == "" {
		return o, errors.New("redisstore: redis URL has no host")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return o, errors.New("redisstore: redis URL may not have a query or fragment; use the store redis block for other settings")
	}
	host, port := u.Hostname(), u.Port()
	if host == "" || strings.Contains(host, ",") {
		return o, errors.New("redisstore: redis URL must name exactly one host")
	}
	if port == "" {
		port = "6379"
	}
	o.Addrs = []string{net.JoinHostPort(host, port)}
	if u.User != nil {
		o.Username = u.User.Username()
		o.Password, _ = u.User.Password()
	}
	if db := strings.TrimPrefix(u.Path, "/"); db != "" {
		n, err := strconv.Atoi(db)
		if err != nil || n < 0 {
			return o, fmt.Errorf("redisstore: redis URL path must be a database number, not %q", db)
		}
		o.DB = n
	}
	return o, nil
}
