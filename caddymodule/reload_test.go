package caddymodule

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/clientauth"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/internal/testredis"
)

// reloadGateway is a jwt_grant on a fixed port whose store line changes
// between loads, as an operator's edit of the store block would.
func reloadGateway(port int, f *fixture, store string) string {
	return fmt.Sprintf(`http://127.0.0.1:%d {
	jwt_grant {
		issuer_url http://127.0.0.1:%d
		%s
		trusted_issuer idp {
			issuer %s
			certificate %s
		}
		client app {
			secret %s
		}
	}
}
`, port, port, store, testIdP, f.certPath, f.hash)
}

// TestReloadsUnderLoadFailNothingAndLeakNoConnections proves SPEC §2: five
// reloads while requests flow, alternating a changed store redis block
// (a new pool each time), answer no request 5xx, and every old pool is
// closed once its requests are done.
func TestReloadsUnderLoadFailNothingAndLeakNoConnections(t *testing.T) {
	srv := testredis.Start(t)
	clients := func() int {
		out, err := srv.Do("CLIENT", "LIST")
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(out, "id=") - 1 // not the connection asking
	}
	before := clients()
	f := newFixture(t)
	port := freePort(t)
	tokenURL := fmt.Sprintf("http://127.0.0.1:%d/oauth2/token", port)
	load := func(store string) {
		t.Helper()
		cfg, err := adaptCaddyfile(globalOptions + reloadGateway(port, f, store))
		if err != nil {
			t.Fatal(err)
		}
		if err := loadCaddy(cfg); err != nil {
			t.Fatalf("loading %q: %v", store, err)
		}
	}
	stores := []string{
		"store redis {\n\t\t\taddress " + srv.Addr() + "\n\t\t\tpool_size 4\n\t\t}",
		"store redis {\n\t\t\taddress " + srv.Addr() + "\n\t\t\tpool_size 6\n\t\t}",
	}
	startCaddy(t, reloadGateway(port, f, stores[0]))

	// Fresh connections, so that the old server closing a kept-alive one
	// is not mistaken for an answer of the plugin.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 20 * time.Second}
	var ok, failed, transport atomic.Int64
	var firstFailure atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				a := f.assertion(t, map[string]any{"iss": testIdP, "sub": "alice", "aud": tokenURL})
				req, _ := http.NewRequest(http.MethodPost, tokenURL, strings.NewReader(jwtBearerForm(a).Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.SetBasicAuth("app", url.QueryEscape(f.secret))
				resp, err := client.Do(req)
				if err != nil {
					transport.Add(1)
					continue
				}
				resp.Body.Close()
				switch {
				case resp.StatusCode == 200:
					ok.Add(1)
				default:
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, resp.Status)
				}
			}
		})
	}
	for i := range 5 {
		time.Sleep(150 * time.Millisecond) // let requests flow on this config
		load(stores[(i+1)%2])
	}
	time.Sleep(150 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("%d grants answered 200 across five reloads, %d transport errors", ok.Load(), transport.Load())
	if n := failed.Load(); n > 0 {
		t.Errorf("%d requests failed across reloads (first: %v); want none", n, firstFailure.Load())
	}
	if ok.Load() == 0 {
		t.Fatal("no request succeeded: the load did not run")
	}

	// Off Redis altogether: every pool must close, once idle.
	load("store memory")
	deadline := time.Now().Add(15 * time.Second)
	for n := clients(); n > before; n = clients() {
		if time.Now().After(deadline) {
			t.Fatalf("Redis holds %d connections of the gateway after it left Redis, %d before; a pool leaks", n, before)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestReloadKeepsVerifiedSecretsVerified proves SPEC §2's "a reload is not
// a new bcrypt for every client": the verified-secret cache is one value
// shared by the configs before and after a reload (here one that changes
// the store), not rebuilt.
func TestReloadKeepsVerifiedSecretsVerified(t *testing.T) {
	secrets := func() []*clientauth.Secrets {
		var all []*clientauth.Secrets
		secretsPool.Range(func(_, v any) bool {
			all = append(all, v.(pooledSecrets).Secrets)
			return true
		})
		return all
	}
	f := newFixture(t)
	port := freePort(t)
	startCaddy(t, reloadGateway(port, f, "store memory"))
	first := secrets()
	if len(first) != 1 {
		t.Fatalf("%d secret caches after the first load; want 1", len(first))
	}
	srv := testredis.Start(t)
	cfg, err := adaptCaddyfile(globalOptions + reloadGateway(port, f, "store redis "+srv.URL()))
	if err != nil {
		t.Fatal(err)
	}
	if err := loadCaddy(cfg); err != nil {
		t.Fatal(err)
	}
	after := secrets()
	if len(after) != 1 || after[0] != first[0] {
		t.Fatalf("secret caches after a reload: %p; want the one of before, %p", after, first[0])
	}
}
