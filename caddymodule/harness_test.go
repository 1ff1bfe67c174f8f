package caddymodule

// The end-to-end harness: the real Caddy, with our modules and the
// standard ones, configured from Caddyfiles and reached over real HTTP on
// free loopback ports. One Caddy config runs in this process at a time
// (caddy.Load replaces the previous one, which is a config reload); a
// second, separate Caddy runs as a child process of this test binary (see
// TestMain and startCaddyProcess).

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/keys"
)

// childEnv makes the test binary act as the caddy command.
const childEnv = "JWTGRANT_TEST_CADDY_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		caddycmd.Main()
		return
	}
	os.Exit(m.Run())
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		// The kernel may hand a closed port out again; a port this
		// process gave once is never given twice, so that two sites of
		// one test never share one.
		if _, taken := portsGiven.LoadOrStore(port, true); !taken {
			return port
		}
	}
}

// portsGiven are the ports freePort has handed out in this process.
var portsGiven sync.Map

// globalOptions keep a test Caddy to itself: no admin endpoint, no
// automatic HTTPS, nothing persisted.
const globalOptions = `{
	admin off
	auto_https off
	persist_config off
	skip_install_trust
	log {
		output discard
	}
}
`

// adaptCaddyfile turns a Caddyfile into JSON, failing on any warning-free
// error; it returns the adapter's error for tests of config errors.
func adaptCaddyfile(caddyfile string) ([]byte, error) {
	adapter := caddyconfig.GetAdapter("caddyfile")
	cfg, _, err := adapter.Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	return cfg, err
}

var caddyMu sync.Mutex

// startCaddy loads a Caddyfile (global options are prepended) into this
// process's Caddy. Loading again while one runs is a config reload.
func startCaddy(t testing.TB, caddyfile string) {
	t.Helper()
	startCaddyfile(t, globalOptions+caddyfile)
}

// startCaddyfile is startCaddy for a Caddyfile with global options of its
// own.
func startCaddyfile(t testing.TB, caddyfile string) {
	t.Helper()
	cfg, err := adaptCaddyfile(caddyfile)
	if err != nil {
		t.Fatalf("adapting Caddyfile: %v", err)
	}
	if err := loadCaddy(cfg); err != nil {
		t.Fatalf("loading config: %v", err)
	}
	t.Cleanup(func() {
		caddyMu.Lock()
		defer caddyMu.Unlock()
		_ = caddy.Stop()
	})
}

func loadCaddy(cfg []byte) error {
	caddyMu.Lock()
	defer caddyMu.Unlock()
	err := caddy.Load(cfg, true)
	// The old config's servers close their kept-alive connections; a
	// test's next request must not be sent on one of them and read a
	// reset that has nothing to do with the gateway.
	http.DefaultClient.CloseIdleConnections()
	return err
}

// testClock is the clock of the in-process Caddy's handlers in tests that
// need time to pass: real time plus an offset the test moves forward, so
// that cache ages and refresh intervals run out at once while assertions
// signed with real time stay valid. The child-process Caddy never sees it.
type testClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

// Advance moves the clock forward by d.
func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// useTestClock makes every handler provisioned from now on in this test
// run on a testClock. It is swapped under caddyMu, which Provision runs
// under (loadCaddy), and restored after the test's Caddy has stopped.
func useTestClock(t testing.TB) *testClock {
	t.Helper()
	c := &testClock{}
	caddyMu.Lock()
	now = c.Now
	caddyMu.Unlock()
	t.Cleanup(func() {
		caddyMu.Lock()
		defer caddyMu.Unlock()
		now = time.Now
	})
	return c
}

// startCaddyProcess runs a separate Caddy (this test binary in caddy
// command mode) on a Caddyfile and waits until url answers.
func startCaddyProcess(t testing.TB, caddyfile, readyURL string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(globalOptions+caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "run", "--config", path, "--adapter", "caddyfile")
	cmd.Env = append(os.Environ(), childEnv+"=1", "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(readyURL); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("second Caddy did not start; its output:\n%s", out.String())
}

// fixture is an issuer key on disk and a client secret with its hash, for
// Caddyfiles built by a test.
type fixture struct {
	dir      string
	key      crypto.Signer
	certPath string
	secret   string
	hash     string
}

// Test keys and the fixture's hash are made once per package: an RSA key
// costs tens of milliseconds, and the hash is at bcrypt.MinCost so that no
// test depends on the machine's speed (the secret cache is tested apart).
var (
	fixtureKey = sync.OnceValue(func() *rsa.PrivateKey { return mustRSAKey() })
	// strangerKey is an RSA key no configured issuer or client has.
	strangerKey = sync.OnceValue(func() *rsa.PrivateKey { return mustRSAKey() })
	fixtureHash = sync.OnceValue(func() string {
		h, err := bcrypt.GenerateFromPassword([]byte(fixtureSecret), bcrypt.MinCost)
		if err != nil {
			panic(err)
		}
		return string(h)
	})
)

func mustRSAKey() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}

const fixtureSecret = "s3cret/with+special chars"

func newFixture(t testing.TB) *fixture {
	t.Helper()
	f := &fixture{dir: t.TempDir(), key: fixtureKey(), secret: fixtureSecret, hash: fixtureHash()}
	f.certPath = writeCert(t, f.dir, "issuer.pem", f.key)
	return f
}

// writeCert writes a self-signed PEM certificate for key.
func writeCert(t testing.TB, dir, name string, key crypto.Signer) string {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test issuer"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// assertion signs claims with the fixture's key, filling iat, exp and a
// fresh jti unless the claims set them (a nil value deletes a claim).
func (f *fixture) assertion(t testing.TB, claims map[string]any) string {
	t.Helper()
	c := map[string]any{
		"iat": time.Now().Unix(),
		"exp": time.Now().Add(5 * time.Minute).Unix(),
		"jti": rand.Text(),
	}
	for k, v := range claims {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	s, err := keys.Sign(f.key, "RS256", "", "JWT", c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// response is a decoded answer of the gateway.
type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

// postForm posts form to u with optional Basic credentials (form-urlencoded
// first, as RFC 6749 §2.3.1 says).
func postForm(t testing.TB, u string, form url.Values, clientID, secret string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if clientID != "" {
		req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
	}
	return do(t, req)
}

func do(t testing.TB, req *http.Request) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(req.Context(), 20*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, header: resp.Header, raw: string(raw)}
	_ = json.Unmarshal(raw, &r.body)
	return r
}

func get(t testing.TB, u, bearer string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	return do(t, req)
}

// jwtBearerForm is a token request for the JWT bearer grant.
func jwtBearerForm(assertion string, extra ...string) url.Values {
	f := url.Values{"grant_type": {grant.GrantTypeJWTBearer}, "assertion": {assertion}}
	for i := 0; i+1 < len(extra); i += 2 {
		f.Set(extra[i], extra[i+1])
	}
	return f
}

func (r response) str(key string) string {
	s, _ := r.body[key].(string)
	return s
}

func (r response) String() string { return fmt.Sprintf("%d %s", r.status, r.raw) }
