// Command loadgen measures the gateway the way a user compares it: one
// Caddy, built from xcaddy.json, serving a bare respond route next to the
// token exchange and jwt_grant_auth, on the memory store and on a
// redis-server it starts itself on a free loopback port. Every scenario
// runs with the same keep-alive clients for the same time, and the table
// gives each as a ratio to respond measured in the same run, with the
// Caddy process's CPU time per request read from /proc.
//
//	go run ./internal/cmd/loadgen -caddy ./caddy -out BENCHMARKS.md
//
// Assertions are signed before the clock starts, so the figures are the
// gateway's, not the issuer's. With -record NAME it instead copies its
// standard input into the section NAME of the output file (make bench
// files the Go micro-benchmarks and the profile that way). With -scale it
// measures how the cost grows with the configuration and the live tokens,
// and RESP2 against RESP3, instead (scale.go; make bench-scale).
package main

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/keys"
)

// config is the command line.
type config struct {
	caddy    string
	redis    string
	clients  int
	duration time.Duration
	// rounds is how many times every scenario runs (run only).
	rounds     int
	assertions int
	out        string
	profile    string
	// profiled names the scenario -profile is taken during.
	profiled string
	note     string
	string
	record string
	// scale, live and fillTimeout are the -scale mode's (scale.go).
	scale       bool
	live        int
	fillTimeout time.Duration
	parts       map[string]bool
	// only, when set, keeps the scenarios whose names it matches (and
	// respond, which every ratio divides by); reverse runs them in the
	// opposite order after respond, so that two rows can swap places
	// between runs.
	only    string
	reverse bool
	// redisPID is the redis-server whose CPU time the results show
	// beside Caddy's (0: none).
	redisPID int
}

func main() {
	var c config
	flag.StringVar(&c.caddy, "caddy", "./caddy", "the Caddy binary to measure (make build makes it)")
	flag.StringVar(&c.redis, "redis-server", "redis-server", "the redis-server binary")
	flag.IntVar(&c.clients, "clients", 64, "concurrent keep-alive clients")
	flag.DurationVar(&c.duration, "duration", 5*time.Second, "how long each scenario runs")
	flag.IntVar(&c.rounds, "rounds", 3, "rounds of every scenario, each on a fresh Caddy and an emptied Redis; the table shows each row's median round")
	flag.IntVar(&c.assertions, "assertions", 60000, "assertions signed per algorithm; an exchange scenario that uses them all stops early")
	flag.StringVar(&c.out, "out", "BENCHMARKS.md", "the file whose sections receive the results (empty: standard output only)")
	flag.StringVar(&c.profile, "profile", "", "write a CPU profile of Caddy during one scenario (-profile-scenario) to this file, and its allocations beside it (NAME.allocs.pprof)")
	flag.StringVar(&c.profiled, "profile-scenario", "exchange RS256 redis", "the scenario -profile is taken during")
	flag.StringVar(&c.only, "only", "", "a regular expression: run only the scenarios whose names match it (and respond)")
	flag.BoolVar(&c.reverse, "reverse", false, "run the scenarios after respond in the opposite order")
	flag.StringVar(&c.note, "note", "", "conditions to state next to the figures (e.g. what else ran on the machine)")
	flag.StringVar(&c.record, "record", "", "copy standard input into this section of -out instead of measuring")
	flag.BoolVar(&c.scale, "scale", false, "measure how cost grows with issuers, clients and live tokens, and RESP2 against RESP3, instead (sections scale, live and resp of -out)")
	flag.IntVar(&c.live, "live", 1_000_000, "with -scale: the live tokens each store is filled with")
	flag.DurationVar(&c.fillTimeout, "fill-timeout", 10*time.Minute, "with -scale: the longest the memory store is filled for; RSS is extrapolated beyond")
	flag.Func("caddy-env", "KEY=VALUE added to Caddy's environment only, e.g. GOGC=400 (repeatable; the row labels do not show it, -note should)", func(v string) error {
		if !strings.Contains(v, "=") {
			return errors.New("want KEY=VALUE")
		}
		caddyEnv = append(caddyEnv, v)
		return nil
	})
	parts := flag.String("parts", "exchange,live,resp", "with -scale: the parts to run (exchange: issuers, clients and config load; live: live tokens and RSS; resp: RESP2 against RESP3)")
	flag.Parse()
	c.parts = map[string]bool{}
	for _, p := range strings.Split(*parts, ",") {
		c.parts[strings.TrimSpace(p)] = true
	}
	var err error
	switch {
	case c.record != "":
		err = record(c)
	case c.scale:
		err = runScale(c)
	default:
		err = run(c)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// record tees standard input into a section of the output file.
func record(c config) error {
	in, err := io.ReadAll(os.Stdin)
	if err != nil {
		return err
	}
	os.Stdout.Write(in)
	if c.out == "" {
		return nil
	}
	return writeSection(c.out, c.record, "```text\n"+strings.TrimSpace(string(in))+"\n```\n")
}

// algorithms are the assertion signatures measured, one per key family.
var algorithms = []string{"RS256", "ES256", "EdDSA"}

// issuerURL is the gateways' issuer: an assertion's aud is its token
// endpoint, so one set of assertions serves both stores' sites, whose
// replay marks are kept apart.
const issuerURL = "http://bench.invalid"

func run(c config) error {
	if c.clients < 1 || c.duration <= 0 || c.assertions < 1 || c.rounds < 1 {
		return errors.New("clients, duration, assertions and rounds must be positive")
	}
	caddyBin, err := filepath.Abs(c.caddy)
	if err != nil {
		return err
	}
	if _, err := os.Stat(caddyBin); err != nil {
		return fmt.Errorf("%w (run make build first)", err)
	}
	dir, err := os.MkdirTemp("", "loadgen-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	signers := map[string]crypto.Signer{}
	for _, alg := range algorithms {
		k, err := keys.GenerateKey(alg)
		if err != nil {
			return err
		}
		der, err := x509.MarshalPKIXPublicKey(k.Public())
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, alg+".pem"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
			return err
		}
		signers[alg] = k
	}
	secret := rand.Text()
	// The lowest cost: the gateway checks a secret once and then serves it
	// from its verified-outcome cache, so the cost does not show in the
	// figures either way.
	hash, err := bcrypt.GenerateFromPassword([]byte(secret), bcrypt.MinCost)
	if err != nil {
		return err
	}

	redisSrv, err := startRedis(c.redis, dir)
	if err != nil {
		return err
	}
	defer redisSrv.stop()
	c.redisPID = redisSrv.pid

	ports, err := freePorts(4)
	if err != nil {
		return err
	}
	admin, memSite, redisSite, pipeSite := ports[0], ports[1], ports[2], ports[3]
	caddyfile := buildCaddyfile(admin, memSite, redisSite, pipeSite, redisSrv.port, string(hash))
	if err := os.WriteFile(filepath.Join(dir, "Caddyfile"), []byte(caddyfile), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "signing %d assertions for each of %s\n", c.assertions, strings.Join(algorithms, ", "))
	signed := map[string][]string{}
	for _, alg := range algorithms {
		if signed[alg], err = signAssertions(signers[alg], alg, c.assertions+1); err != nil {
			return err
		}
	}

	b := &bench{c: c, caddyBin: caddyBin, dir: dir, admin: admin, redisPort: redisSrv.port, signed: signed, signers: signers,
		mem:   fmt.Sprintf("http://127.0.0.1:%d", memSite),
		red:   fmt.Sprintf("http://127.0.0.1:%d", redisSite),
		pipe:  fmt.Sprintf("http://127.0.0.1:%d", pipeSite),
		basic: "Basic " + basicValue("bench", secret)}
	env := describeMachine(caddyBin, c)
	fmt.Fprintln(os.Stderr, env)
	rounds := make([][]result, c.rounds)
	verify := make([]map[string]time.Duration, c.rounds)
	for r := range rounds {
		// The verification is timed again before each round, as the
		// machine's speed drifts between rounds: the floor of a round is
		// measured at the same speed as its rows.
		if verify[r], err = b.verifyCosts(); err != nil {
			return fmt.Errorf("timing the verification: %w", err)
		}
		if rounds[r], err = b.round(r); err != nil {
			return fmt.Errorf("round %d: %w", r+1, err)
		}
	}
	table := env + "\n" + formatTable(rounds) + formatFloor(rounds, verify)
	fmt.Print(table)
	if c.out == "" {
		return nil
	}
	return writeSection(c.out, "table", table)
}

// bench is what every round of a run shares: the Caddyfile's sites, the
// pre-signed assertions and the client's credentials.
type bench struct {
	c                config
	caddyBin, dir    string
	admin, redisPort int
	mem, red, pipe   string
	basic            string
	signed           map[string][]string
	signers          map[string]crypto.Signer
}

// verifyCosts is verifyCost for each algorithm, on the first of its
// assertions.
func (b *bench) verifyCosts() (map[string]time.Duration, error) {
	verify := map[string]time.Duration{}
	for _, alg := range algorithms {
		d, err := verifyCost(b.signers[alg].Public(), alg, b.signed[alg][0])
		if err != nil {
			return nil, err
		}
		verify[alg] = d
	}
	return verify, nil
}

// round runs every scenario once on a fresh Caddy and an emptied Redis,
// so that each round starts from the same state and takes the same
// assertions (their replay marks went with the previous round's stores).
// The CPU profile, when asked for, is taken in the first round.
func (b *bench) round(n int) ([]result, error) {
	c := b.c
	if err := flushRedis(b.redisPort); err != nil {
		return nil, err
	}
	cd, err := startCaddy(b.caddyBin, b.dir, b.mem+"/respond")
	if err != nil {
		return nil, err
	}
	defer cd.stop()
	// Each site pays the secret's hash once, and gives the token that
	// jwt_grant_auth is measured with.
	tokens := map[string]string{}
	for site, base := range map[string]string{"memory": b.mem, "redis": b.red, "redis, pipeline": b.pipe} {
		tok, err := exchangeOnce(base, b.basic, b.signed["RS256"][0])
		if err != nil {
			return nil, fmt.Errorf("%s site: %w", site, err)
		}
		tokens[site] = tok
	}
	// A DPoP-bound token on the Redis site, for the DPoP scenario (SPEC
	// §8): it costs a proof check and a replay write per request.
	dpop, err := newDPoPClient()
	if err != nil {
		return nil, err
	}
	dpopToken, err := dpop.exchange(b.red, b.basic, b.signed["EdDSA"][0])
	if err != nil {
		return nil, fmt.Errorf("dpop token: %w", err)
	}
	// Every site took the first RS256 assertion (each store keeps its own
	// replay marks: the pipelined site has a key prefix of its own), the
	// Redis site the first EdDSA one too; the measured runs start after
	// them.
	signed := map[string][]string{}
	for _, alg := range algorithms {
		signed[alg] = b.signed[alg][1:]
	}

	scenarios := []scenario{{name: "respond", get: b.mem + "/respond"}}
	for _, store := range []struct{ name, base string }{{"memory", b.mem}, {"redis", b.red}} {
		for _, alg := range algorithms {
			scenarios = append(scenarios, scenario{
				name: "exchange " + alg + " " + store.name, post: store.base + "/oauth2/token",
				auth: b.basic, bodies: signed[alg],
			})
		}
	}
	scenarios = append(scenarios,
		scenario{name: "exchange RS256 redis, pipeline", post: b.pipe + "/oauth2/token", auth: b.basic, bodies: signed["RS256"]},
		scenario{name: "jwt_grant_auth memory", get: b.mem + "/auth", bearer: tokens["memory"]},
		scenario{name: "jwt_grant_auth redis", get: b.red + "/auth", bearer: tokens["redis"]},
		scenario{name: "jwt_grant_auth redis, cache", get: b.red + "/auth-cached", bearer: tokens["redis"]},
		scenario{name: "jwt_grant_auth redis, pipeline", get: b.pipe + "/auth", bearer: tokens["redis, pipeline"]},
		scenario{name: "jwt_grant_auth redis, DPoP", get: b.red + "/auth", bearer: dpopToken,
			prepare: func(s *scenario) (err error) {
				s.dpop, err = dpop.proofs(2*c.assertions, s.get, s.bearer)
				return err
			}},
	)
	if scenarios, err = pick(scenarios, c.only, c.reverse); err != nil {
		return nil, err
	}
	// The memory store's exchanges run last: each leaves its 30,000 grants
	// live in Caddy's heap, whose marking by the garbage collector then
	// costs every later request of the process (about 0.015 ms of Caddy
	// CPU per jwt_grant_auth request after 90,000 grants on this machine),
	// a cost of the memory store that the Redis rows would otherwise carry.
	// The table keeps its order.
	order := make([]int, 0, len(scenarios))
	for _, last := range []bool{false, true} {
		for i, s := range scenarios {
			if fillsMemory(s) == last {
				order = append(order, i)
			}
		}
	}
	// A first, unrecorded respond pass opens the keep-alive connections and
	// warms Caddy up, so that respond, the row every ratio divides by, is
	// not measured cold while the rows after it are warm.
	if _, err := scenarios[0].run(c, cd.pid); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	results := make([]result, len(scenarios))
	for _, i := range order {
		s := scenarios[i]
		var prof *profiler
		if n == 0 && c.profile != "" && s.name == c.profiled {
			prof = startProfile(fmt.Sprintf("127.0.0.1:%d", b.admin), c.duration, c.profile)
		}
		if s.prepare != nil {
			if err := s.prepare(&s); err != nil {
				return nil, fmt.Errorf("%s: %w", s.name, err)
			}
		}
		r, err := s.run(c, cd.pid)
		if prof != nil {
			if perr := prof.wait(); perr != nil {
				fmt.Fprintln(os.Stderr, "profile:", perr)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		fmt.Fprintf(os.Stderr, "round %d  %-32s %8.0f req/s\n", n+1, s.name, r.rate())
		results[i] = r
	}
	return results, nil
}

// fillsMemory tells whether s leaves grants live in Caddy's memory store.
func fillsMemory(s scenario) bool {
	return s.post != "" && strings.HasSuffix(s.name, " memory")
}

// buildCaddyfile serves the scenarios: the memory store's site with the
// bare respond route, the Redis store's site with jwt_grant_auth with and
// without the local cache, and a site whose Redis store pipelines (its
// own key prefix, so that it takes the same assertions). Logs below WARN
// are off: a log line per request would measure the terminal.
func buildCaddyfile(admin, memSite, redisSite, pipeSite, redisPort int, hash string) string {
	var issuers strings.Builder
	for _, alg := range algorithms {
		fmt.Fprintf(&issuers, "\t\ttrusted_issuer %s {\n\t\t\tissuer %s-issuer\n\t\t\tcertificate %s.pem\n\t\t}\n", alg, alg, alg)
	}
	redisURL := fmt.Sprintf("redis://127.0.0.1:%d/0", redisPort)
	site := func(port int, store, extra string) string {
		return fmt.Sprintf(`http://127.0.0.1:%d {
	route /oauth2/* {
		jwt_grant {
			issuer_url %s
			store %s
%s			client bench {
				secret %s
			}
		}
	}
	route /auth {
		jwt_grant_auth {
			store %s
		}
		respond "ok"
	}
%s}
`, port, issuerURL, store, issuers.String(), hash, store, extra)
	}
	return fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	auto_https off
	log {
		level WARN
	}
}
`, admin) + site(memSite, "memory", "\troute /respond {\n\t\trespond \"ok\"\n\t}\n") +
		site(redisSite, "redis "+redisURL, fmt.Sprintf("\troute /auth-cached {\n\t\tjwt_grant_auth {\n\t\t\tstore redis %s {\n\t\t\t\tcache 100000\n\t\t\t}\n\t\t}\n\t\trespond \"ok\"\n\t}\n", redisURL)) +
		site(pipeSite, "redis "+redisURL+" {\n\t\t\t\tpipeline\n\t\t\t\tkey_prefix pipelined:\n\t\t\t}", "")
}

// signAssertions signs n assertions with their own jti, on every core.
func signAssertions(key crypto.Signer, alg string, n int) ([]string, error) {
	return signClaims(key, alg, n, nil)
}

// signClaims signs n assertions with their own jti, on every core, the
// claims of each changed by edit when it is set, and returns them as
// token request bodies.
func signClaims(key crypto.Signer, alg string, n int, edit func(map[string]any)) ([]string, error) {
	out := make([]string, n)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	workers := min(runtime.NumCPU(), n)
	now := time.Now()
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				claims := map[string]any{"iss": alg + "-issuer", "sub": "bench", "aud": issuerURL + "/oauth2/token",
					"iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "jti": rand.Text()}
				if edit != nil {
					edit(claims)
				}
				s, err := keys.Sign(key, alg, "", "JWT", claims)
				if err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
				out[i] = url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:jwt-bearer"}, "assertion": {s}}.Encode()
			}
		})
	}
	wg.Wait()
	return out, firstErr
}

func basicValue(id, secret string) string {
	req, _ := http.NewRequest(http.MethodGet, "http://x", nil)
	req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
	return strings.TrimPrefix(req.Header.Get("Authorization"), "Basic ")
}

// freePorts asks the kernel for n distinct free loopback ports, never
// Redis's 6379, holding each until all are found.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		if p := l.Addr().(*net.TCPAddr).Port; p != 6379 {
			ports = append(ports, p)
		}
	}
	return ports, nil
}

// process is a child the command started and stops.
type process struct {
	cmd  *exec.Cmd
	pid  int
	port int
	done chan struct{}
}

func (p *process) stop() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

func launch(cmd *exec.Cmd, logFile string) (*process, error) {
	f, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	p := &process{cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// startRedis starts a throw-away redis-server on a free loopback port.
func startRedis(binary, dir string) (*process, error) {
	ports, err := freePorts(1)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(binary, "--port", strconv.Itoa(ports[0]), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--daemonize", "no")
	logFile := filepath.Join(dir, "redis.log")
	p, err := launch(cmd, logFile)
	if err != nil {
		return nil, fmt.Errorf("starting redis-server: %w", err)
	}
	p.port = ports[0]
	deadline := time.Now().Add(10 * time.Second)
	for {
		if ping(p.port) == nil {
			return p, nil
		}
		select {
		case <-p.done:
			out, _ := os.ReadFile(logFile)
			return nil, fmt.Errorf("redis-server exited: %s", out)
		default:
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, errors.New("redis-server did not answer PING within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// flushRedis empties the redis-server on port, as a round starts.
func flushRedis(port int) error { return redisCommand(port, "FLUSHALL", "+OK", 30*time.Second) }

func ping(port int) error { return redisCommand(port, "PING", "+PONG", time.Second) }

// redisCommand sends an inline command without arguments to the
// redis-server on port and checks its one-line reply, within timeout.
func redisCommand(port int, cmd, reply string, timeout time.Duration) error {
	conn, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.Write([]byte(cmd + "\r\n")); err != nil {
		return err
	}
	buf := make([]byte, len(reply)+2)
	if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != reply+"\r\n" {
		return fmt.Errorf("%s: %q %v", cmd, buf, err)
	}
	return nil
}

// startCaddy runs Caddy on the Caddyfile in dir, with its data and config
// directories there too, and waits until ready answers 200.
// caddyEnv is what -caddy-env adds to the environment of every Caddy
// started.
var caddyEnv []string

func startCaddy(binary, dir, ready string) (*process, error) {
	cmd := exec.Command(binary, "run", "--config", "Caddyfile", "--adapter", "caddyfile")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	cmd.Env = append(cmd.Env, caddyEnv...)
	logFile := filepath.Join(dir, "caddy.log")
	p, err := launch(cmd, logFile)
	if err != nil {
		return nil, fmt.Errorf("starting caddy: %w", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(ready)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p, nil
			}
		}
		select {
		case <-p.done:
			out, _ := os.ReadFile(logFile)
			return nil, fmt.Errorf("caddy exited: %s", out)
		default:
		}
		if time.Now().After(deadline) {
			p.stop()
			out, _ := os.ReadFile(logFile)
			return nil, fmt.Errorf("caddy not ready within 30s: %v; log: %s", err, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// exchangeOnce makes one grant and returns its access token.
func exchangeOnce(base, basic, body string) (string, error) {
	req, _ := http.NewRequest(http.MethodPost, base+"/oauth2/token", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", basic)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("token endpoint answered %d: %s", resp.StatusCode, b)
	}
	const field = `"access_token":"`
	i := strings.Index(string(b), field)
	if i < 0 {
		return "", errors.New("no access_token in the answer")
	}
	tok, _, _ := strings.Cut(string(b)[i+len(field):], `"`)
	return tok, nil
}

// pick is the -only and -reverse flags applied to scenarios, whose first
// (respond) always stays first.
func pick(scenarios []scenario, only string, reverse bool) ([]scenario, error) {
	out := scenarios[:1:1]
	re, err := regexp.Compile(only)
	if err != nil {
		return nil, fmt.Errorf("-only: %w", err)
	}
	for _, s := range scenarios[1:] {
		if re.MatchString(s.name) {
			out = append(out, s)
		}
	}
	if reverse {
		slices.Reverse(out[1:])
	}
	return out, nil
}
