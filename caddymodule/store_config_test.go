package caddymodule

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

func TestRedisURLIsParsedByGoRedis(t *testing.T) {
	for _, tc := range []struct {
		name, url  string
		addr       string
		user, pass string
		db         int
		tls        bool
	}{
		{"host and port", "redis://redis.internal:6380", "redis.internal:6380", "", "", 0, false},
		{"port defaults to 6379", "redis://redis.internal", "redis.internal:6379", "", "", 0, false},
		{"database from the path", "redis://h:1/3", "h:1", "", "", 3, false},
		{"empty path is database 0", "redis://h:1/", "h:1", "", "", 0, false},
		{"user and password", "redis://edge:s%40cret@h:1/0", "h:1", "edge", "s@cret", 0, false},
		{"password only", "redis://:s3cret@h:1", "h:1", "", "s3cret", 0, false},
		{"rediss means TLS", "rediss://h:6380/1", "h:6380", "", "", 1, true},
		{"IPv6 host", "redis://[::1]:7000", "[::1]:7000", "", "", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseRedisURL(tc.url)
			if err != nil {
				t.Fatalf("parseRedisURL: %v", err)
			}
			if o.Addr != tc.addr || o.Username != tc.user || o.Password != tc.pass || o.DB != tc.db || (o.TLSConfig != nil) != tc.tls {
				t.Fatalf("parseRedisURL = %s %q %q db %d tls %v; want %s %q %q db %d tls %v",
					o.Addr, o.Username, o.Password, o.DB, o.TLSConfig != nil, tc.addr, tc.user, tc.pass, tc.db, tc.tls)
			}
		})
	}
}

func TestRedisURLRefusesWhatTheModuleCannotHonour(t *testing.T) {
	for _, tc := range []struct{ name, url string }{
		{"other scheme", "http://h:1"},
		{"unix socket", "unix:///run/redis.sock"},
		{"no host", "redis:///0"},
		{"opaque", "redis:h:1"},
		{"database not a number", "redis://h:1/zero"},
		{"query parameters", "redis://h:1/0?dial_timeout=1s"},
		{"bad port", "redis://:hunter2@h:port/0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseRedisURL(tc.url)
			if err == nil {
				t.Fatalf("parseRedisURL(%q) succeeded; want an error", tc.url)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error leaks the password: %v", err)
			}
		})
	}
}

// provision runs a store module's life cycle as Caddy does: Validate
// after Provision, and Cleanup whatever happened.
func provision(t *testing.T, m interface {
	caddy.Provisioner
	caddy.Validator
	caddy.CleanerUpper
}) error {
	t.Helper()
	t.Cleanup(func() {
		if err := m.Cleanup(); err != nil {
			t.Errorf("Cleanup: %v", err)
		}
	})
	if err := m.Provision(caddy.Context{}); err != nil {
		return err
	}
	return m.Validate()
}

func TestRedisStoreErrorsNameTheStoreAndNoSecret(t *testing.T) {
	t.Setenv("JWTGRANT_TEST_REDIS_URL", "redis://:hunter2@h:port/0")
	for _, tc := range []struct {
		name  string
		store RedisStore
		want  string
	}{
		{"a placeholder URL is checked once replaced", RedisStore{URL: "{env.JWTGRANT_TEST_REDIS_URL}"}, "store redis: url: malformed redis URL"},
		{"an address without port", RedisStore{Addresses: []string{"127.0.0.1"}, Password: "hunter2"}, "store redis 127.0.0.1: "},
		{"a cluster with a db", RedisStore{Addresses: []string{"127.0.0.1:6380", "127.0.0.1:6381"}, DB: 1, Password: "hunter2"}, "store redis 127.0.0.1:6380,127.0.0.1:6381: "},
		{"insecure_skip_verify without tls", RedisStore{Addresses: []string{"127.0.0.1:6380"}, InsecureSkipVerify: true, Password: "hunter2"}, "store redis 127.0.0.1:6380: insecure_skip_verify needs tls"},
		{"a negative timeout", RedisStore{Addresses: []string{"127.0.0.1:6380"}, ReadTimeout: -1}, "store redis 127.0.0.1:6380: redisstore: negative timeout"},
		{"neither URL nor address", RedisStore{}, "store redis: redisstore: no address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := provision(t, &tc.store)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("error %v; want one starting %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "{") {
				t.Fatalf("error shows a secret or an options struct: %v", err)
			}
		})
	}
}

func TestRedisStoresShareAClientOnlyWhenTheyConnectAlike(t *testing.T) {
	t.Setenv("JWTGRANT_TEST_REDIS_PASSWORD", "hunter2")
	a := &RedisStore{Addresses: []string{"127.0.0.1:6380"}, Password: "{env.JWTGRANT_TEST_REDIS_PASSWORD}"}
	b := &RedisStore{URL: "redis://:hunter2@127.0.0.1:6380"}
	c := &RedisStore{Addresses: []string{"127.0.0.1:6380"}, Password: "other"}
	for _, s := range []*RedisStore{a, b, c} {
		if err := provision(t, s); err != nil {
			t.Fatal(err)
		}
	}
	if a.Store() != b.Store() {
		t.Error("two spellings of one connection have two clients")
	}
	if a.Store() == c.Store() {
		t.Error("two passwords share one client")
	}
	if got := a.String(); got != "store redis 127.0.0.1:6380" {
		t.Errorf("String() = %q", got)
	}
}

func TestMemoryStoreSizeIsOneForTheProcess(t *testing.T) {
	first := &MemoryStore{}
	if err := provision(t, first); err != nil {
		t.Fatal(err)
	}
	same := &MemoryStore{MaxEntries: 1_000_000} // the default, spelt out
	if err := provision(t, same); err != nil {
		t.Fatalf("the default spelt out: %v", err)
	}
	if same.Store() != first.Store() {
		t.Error("two handlers have two memory stores")
	}
	other := &MemoryStore{MaxEntries: 10}
	err := provision(t, other)
	if err == nil || !strings.Contains(err.Error(), "max_entries 10 differs from the 1000000") {
		t.Fatalf("a second size: %v; want an error naming both", err)
	}
	if err := provision(t, &MemoryStore{MaxEntries: -1}); err == nil {
		t.Fatal("a negative max_entries was accepted")
	}
}
