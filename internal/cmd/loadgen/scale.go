package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/keys"
)

// scaleIssuers is the most trusted issuers a scale configuration has.
const scaleIssuers = 1000

// scaleConfigs are the configurations the exchange is measured on, in
// the order they are loaded; the first is the baseline of the ratios.
var scaleConfigs = []scaleSite{
	{issuers: 1, clients: 10},
	{issuers: 100, clients: 10},
	{issuers: 1000, clients: 10},
	{issuers: 1, clients: 10000},
	{issuers: 1000, clients: 10000},
}

// runScale measures how the gateway's cost grows with its configuration
// and its live tokens (issue 9), and RESP2 against RESP3 on Redis, and
// writes the sections scale, live and resp of the output file.
func runScale(c config) error {
	if c.clients < 1 || c.duration <= 0 || c.assertions < 1 || c.live < 10 {
		return errors.New("clients, duration and assertions must be positive, live at least 10")
	}
	caddyBin, err := filepath.Abs(c.caddy)
	if err != nil {
		return err
	}
	if _, err := os.Stat(caddyBin); err != nil {
		return fmt.Errorf("%w (run make build first)", err)
	}
	dir, err := os.MkdirTemp("", "loadgen-scale-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	fmt.Fprintf(os.Stderr, "generating %d EdDSA issuer keys\n", scaleIssuers)
	signers := make([]crypto.Signer, scaleIssuers)
	for i := range signers {
		k, err := keys.GenerateKey("EdDSA")
		if err != nil {
			return err
		}
		der, err := x509.MarshalPKIXPublicKey(k.Public())
		if err != nil {
			return err
		}
		_, _, file := scaleIssuer(i)
		if err := os.WriteFile(filepath.Join(dir, file), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
			return err
		}
		signers[i] = k
	}
	secret := randomSeed()
	hash, err := bcrypt.GenerateFromPassword([]byte(secret), bcrypt.MinCost)
	if err != nil {
		return err
	}
	redisSrv, err := startRedis(c.redis, dir)
	if err != nil {
		return err
	}
	defer redisSrv.stop()
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	admin, site, redisSite := ports[0], ports[1], ports[2]
	env := describeMachine(caddyBin, c)
	fmt.Fprintln(os.Stderr, env)

	if c.parts["exchange"] {
		if err := scalePart(c, env, "scale", func() (string, error) {
			growth, loads, err := scaleExchange(c, caddyBin, dir, admin, site, signers, string(hash), secret)
			return growth + "\n" + loads, err
		}); err != nil {
			return err
		}
	}
	if c.parts["live"] {
		if err := scalePart(c, env, "live", func() (string, error) {
			return scaleLive(c, caddyBin, dir, admin, site, redisSite, redisSrv, signers[0], string(hash), secret)
		}); err != nil {
			return err
		}
	}
	if c.parts["resp"] {
		return scalePart(c, env, "resp", func() (string, error) { return compareRESP(c, redisSrv) })
	}
	return nil
}

// scalePart runs one part of -scale and writes its section.
func scalePart(c config, env, section string, part func() (string, error)) error {
	text, err := part()
	if err != nil {
		return err
	}
	text = env + "\n" + text
	fmt.Print(text)
	if c.out == "" {
		return nil
	}
	return writeSection(c.out, section, text)
}

// scaleExchange loads each of scaleConfigs into a fresh Caddy through its
// admin endpoint, timing `caddy adapt` and the load, and measures the
// exchange with assertions from the first and the last issuer, presented
// by the last client.
func scaleExchange(c config, caddyBin, dir string, admin, site int, signers []crypto.Signer, hash, secret string) (growth, loads string, err error) {
	boot := fmt.Sprintf("{\n\tadmin 127.0.0.1:%d\n\tpersist_config off\n\tauto_https off\n\tlog {\n\t\tlevel WARN\n\t}\n}\nhttp://127.0.0.1:%d {\n\trespond \"ok\"\n}\n", admin, site)
	if err := os.WriteFile(filepath.Join(dir, "Caddyfile"), []byte(boot), 0o600); err != nil {
		return "", "", err
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", site)
	var (
		results  []result
		loadRows strings.Builder
	)
	loadRows.WriteString("\n| trusted issuers | clients | Caddyfile | `caddy adapt` (process) | load: provision + start (`POST /load`) |\n|---:|---:|---:|---:|---:|\n")
	for n, sc := range scaleConfigs {
		file := fmt.Sprintf("Caddyfile-%d-%d", sc.issuers, sc.clients)
		text := scaleCaddyfile(admin, site, sc, hash)
		if err := os.WriteFile(filepath.Join(dir, file), []byte(text), 0o600); err != nil {
			return "", "", err
		}
		// A fresh Caddy for each configuration: the grants the previous
		// one's exchanges left in its memory store would otherwise fill
		// the store (a full store is a 503) and make the garbage collector
		// mark more with every configuration, a cost that grows with the
		// order of the rows, not with the configuration.
		cd, err := startCaddy(caddyBin, dir, base+"/")
		if err != nil {
			return "", "", err
		}
		measured, err := func() ([]result, error) {
			defer cd.stop()
			adaptTime, loadTime, err := adaptAndLoad(caddyBin, dir, file, admin)
			if err != nil {
				return nil, fmt.Errorf("%d issuers, %d clients: %w", sc.issuers, sc.clients, err)
			}
			fmt.Fprintf(&loadRows, "| %d | %d | %d KB | %s | %s |\n", sc.issuers, sc.clients, len(text)/1024, ms(adaptTime), ms(loadTime))
			fmt.Fprintf(os.Stderr, "%d issuers, %d clients: adapt %v, load %v\n", sc.issuers, sc.clients, adaptTime, loadTime)
			var rs []result
			if n == 0 {
				respond := scenario{name: "respond", get: base + "/respond"}
				if _, err := respond.run(c, cd.pid); err != nil { // warm-up, unrecorded
					return nil, err
				}
				r, err := respond.run(c, cd.pid)
				if err != nil {
					return nil, err
				}
				rs = append(rs, r)
			}
			client := scaleClient(sc.clients - 1)
			basic := "Basic " + basicValue(client, secret)
			from := []int{0}
			if sc.issuers > 1 {
				from = append(from, sc.issuers-1)
			}
			for _, i := range from {
				_, iss, _ := scaleIssuer(i)
				bodies, err := signAs(signers[i], "EdDSA", iss, c.assertions+1)
				if err != nil {
					return nil, err
				}
				// The first exchange pays the client's secret hash once.
				if _, err := exchangeOnce(base, basic, bodies[0]); err != nil {
					return nil, fmt.Errorf("%d issuers, %d clients: %w", sc.issuers, sc.clients, err)
				}
				which := "first"
				if i > 0 {
					which = "last"
				}
				s := scenario{name: fmt.Sprintf("exchange, %s (the %s), %s", count(sc.issuers, "issuer"), which, count(sc.clients, "client")),
					post: base + "/oauth2/token", auth: basic, bodies: bodies[1:]}
				r, err := s.run(c, cd.pid)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", s.name, err)
				}
				fmt.Fprintf(os.Stderr, "%-50s %8.0f req/s\n", s.name, r.rate())
				rs = append(rs, r)
			}
			return rs, nil
		}()
		if err != nil {
			return "", "", err
		}
		results = append(results, measured...)
	}
	return "Exchange (EdDSA assertions, `client_secret_basic`, memory store) by configuration size; × is the rate over that of the first configuration's:\n" +
			formatRatios(results, 1, "× 1 issuer, 10 clients"),
		"Configuration load time by size (one run each; `caddy adapt` includes starting the process; each configuration is loaded into a fresh Caddy, replacing a bare respond site):\n" +
			loadRows.String(), nil
}

// adaptAndLoad times `caddy adapt` of file and then the POST /load of its
// JSON to the admin endpoint, which answers once the configuration is
// provisioned and serving.
func adaptAndLoad(caddyBin, dir, file string, admin int) (adapt, load time.Duration, err error) {
	cmd := exec.Command(caddyBin, "adapt", "--config", file, "--adapter", "caddyfile")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	t0 := time.Now()
	out, err := cmd.Output()
	adapt = time.Since(t0)
	if err != nil {
		return 0, 0, fmt.Errorf("caddy adapt: %w: %s", err, stderr.String())
	}
	// Relative certificate paths are read by the Caddy process, whose
	// working directory is dir too.
	t0 = time.Now()
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/load", admin), "application/json", bytes.NewReader(out))
	if err != nil {
		return 0, 0, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	load = time.Since(t0)
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("POST /load: %s: %s", resp.Status, body)
	}
	return adapt, load, nil
}

// signAs signs n grant assertions from iss, each with its own jti.
func signAs(key crypto.Signer, alg, iss string, n int) ([]string, error) {
	return signClaims(key, alg, n, func(claims map[string]any) { claims["iss"] = iss })
}

// scaleLive measures jwt_grant_auth with 10 and with c.live live tokens
// on each store, and Caddy's resident memory as the memory store fills.
// The memory store is filled through the real token endpoint (refresh
// tokens off, so an exchange leaves one access record and one replay
// mark), for at most c.fillTimeout; the Redis store by writing records
// in its format straight into Redis.
func scaleLive(c config, caddyBin, dir string, admin, site, redisSite int, redisSrv *process, signer crypto.Signer, hash, secret string) (string, error) {
	redisURL := fmt.Sprintf("redis://127.0.0.1:%d/0", redisSrv.port)
	sc := scaleSite{issuers: 1, clients: 1, maxEntries: 2*c.live + 100_000, refreshOff: true, redisURL: redisURL, redisPort: redisSite}
	if err := os.WriteFile(filepath.Join(dir, "Caddyfile"), []byte(scaleCaddyfile(admin, site, sc, hash)), 0o600); err != nil {
		return "", err
	}
	mem := fmt.Sprintf("http://127.0.0.1:%d", site)
	red := fmt.Sprintf("http://127.0.0.1:%d", redisSite)
	cd, err := startCaddy(caddyBin, dir, mem+"/respond")
	if err != nil {
		return "", err
	}
	defer cd.stop()
	basic := "Basic " + basicValue(scaleClient(0), secret)
	_, iss, _ := scaleIssuer(0)

	// Ten live tokens in each store, the first of which is presented.
	bodies, err := signAs(signer, "EdDSA", iss, 20)
	if err != nil {
		return "", err
	}
	tokens := map[string]string{}
	for i, b := range bodies {
		base, store := mem, "memory"
		if i >= 10 {
			base, store = red, "redis"
		}
		tok, err := exchangeOnce(base, basic, b)
		if err != nil {
			return "", fmt.Errorf("%s: %w", store, err)
		}
		if tokens[store] == "" {
			tokens[store] = tok
		}
	}
	warm := scenario{name: "respond", get: mem + "/respond"}
	if _, err := warm.run(c, cd.pid); err != nil {
		return "", err
	}
	var results []result
	auth := func(store, base string, live int, note ...string) error {
		s := scenario{name: fmt.Sprintf("jwt_grant_auth %s, %d live tokens", store, live), get: base + "/auth", bearer: tokens[store]}
		for _, n := range note {
			s.name += ", " + n
		}
		r, err := s.run(c, cd.pid)
		if err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "%-50s %8.0f req/s\n", s.name, r.rate())
		results = append(results, r)
		return nil
	}
	if err := auth("memory", mem, 10); err != nil {
		return "", err
	}
	if err := auth("redis", red, 10); err != nil {
		return "", err
	}

	// Redis first, while Caddy's heap is still small: a copy of the
	// record the gateway wrote for the presented token, under c.live-10
	// other hashes. Then the memory store, whose million tokens make
	// every garbage collection of the process mark a large heap.
	rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", redisSrv.port)})
	defer rdb.Close()
	ctx := context.Background()
	template, err := rdb.Get(ctx, "jwtgrant:at:"+grant.HashToken(tokens["redis"])).Bytes()
	if err != nil {
		return "", fmt.Errorf("reading the gateway's record: %w", err)
	}
	used0, err := usedMemory(ctx, rdb)
	if err != nil {
		return "", err
	}
	t1 := time.Now()
	if err := fillRedis(ctx, rdb, "jwtgrant:", template, time.Hour, randomSeed(), c.live-10); err != nil {
		return "", err
	}
	redisFill := time.Since(t1)
	used1, err := usedMemory(ctx, rdb)
	if err != nil {
		return "", err
	}
	keys, err := rdb.DBSize(ctx).Result()
	if err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "Redis: %d keys written in %v\n", keys, redisFill.Round(time.Millisecond))
	if err := auth("redis", red, c.live); err != nil {
		return "", err
	}

	rss0, err := processRSS(cd.pid)
	if err != nil {
		return "", err
	}
	points := []rssPoint{{10, rss0}}
	fmt.Fprintf(os.Stderr, "filling the memory store to %d live tokens through the token endpoint (at most %v)\n", c.live, c.fillTimeout)
	t0 := time.Now()
	filled, err := fillMemory(c, mem, basic, signer, iss, c.live-10, func(done int) {
		if rss, err := processRSS(cd.pid); err == nil {
			points = append(points, rssPoint{10 + done, rss})
			fmt.Fprintf(os.Stderr, "  %d live tokens, RSS %d MiB, %v\n", 10+done, rss>>20, time.Since(t0).Round(time.Second))
		}
	})
	if err != nil {
		return "", err
	}
	fillTime := time.Since(t0)
	liveMem := 10 + filled
	rss1, err := processRSS(cd.pid)
	if err != nil {
		return "", err
	}
	if points[len(points)-1].tokens != liveMem {
		points = append(points, rssPoint{liveMem, rss1})
	}
	if err := auth("memory", mem, liveMem); err != nil {
		return "", err
	}
	// Redis again, with the memory store's tokens on Caddy's heap.
	if err := auth("redis", red, c.live, "memory store full"); err != nil {
		return "", err
	}

	var b strings.Builder
	b.WriteString("`jwt_grant_auth` (uncached) with few and many live tokens in its store; × is the rate over that of the same store with 10:\n")
	b.WriteString(formatRatiosBy(results, func(r result) string { return strings.SplitN(r.name, ",", 2)[0] }, "× 10 live tokens"))
	fmt.Fprintf(&b, "\nFilling: the memory store took %d exchanges through the token endpoint in %v (%.0f/s, %d clients, assertions signed on the fly by the load generator)",
		filled, fillTime.Round(time.Second), float64(filled)/fillTime.Seconds(), c.clients)
	if filled < c.live-10 {
		fmt.Fprintf(&b, ", short of the %d asked for within %v", c.live-10, c.fillTimeout)
	}
	fmt.Fprintf(&b, "; Redis took %d records written by the load generator (pipelined `SET … PX`, copies of a record the gateway wrote) in %v, and holds %d keys.\n",
		c.live-10, redisFill.Round(time.Millisecond), keys)
	b.WriteString("\nCaddy's resident memory (VmRSS) as the memory store fills (each exchange leaves an access record and a replay mark):\n\n| live tokens | VmRSS |\n|---:|---:|\n")
	for _, p := range points {
		fmt.Fprintf(&b, "| %d | %d MiB |\n", p.tokens, p.rss>>20)
	}
	if slope, at, ok := perToken(points, c.live); ok {
		fmt.Fprintf(&b, "\nSlope: %.0f bytes of VmRSS per live token", slope)
		if liveMem < c.live {
			fmt.Fprintf(&b, "; extrapolated to %d live tokens: %d MiB", c.live, at>>20)
		}
		b.WriteString(".\n")
	}
	fmt.Fprintf(&b, "Redis `used_memory` grew by %d MiB for %d records: %.0f bytes per live token.\n",
		(used1-used0)>>20, c.live-10, float64(used1-used0)/float64(c.live-10))
	return b.String(), nil
}

// fillMemory runs c.clients clients, each signing an assertion and
// exchanging it, until n exchanges succeeded or c.fillTimeout passed;
// progress is called every tenth of n. It returns the exchanges made.
func fillMemory(c config, base, basic string, signer crypto.Signer, iss string, n int, progress func(done int)) (int, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: c.clients, MaxConnsPerHost: c.clients, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var (
		claimed, done, failed atomic.Int64
		firstErr              atomic.Value
		wg                    sync.WaitGroup
		progressMu            sync.Mutex
	)
	step := int64(max(1, n/10))
	deadline := time.Now().Add(c.fillTimeout)
	for range c.clients {
		wg.Go(func() {
			for time.Now().Before(deadline) && failed.Load() < 100 {
				if claimed.Add(1) > int64(n) {
					return
				}
				bodies, err := signAs(signer, "EdDSA", iss, 1)
				if err != nil {
					firstErr.CompareAndSwap(nil, err.Error())
					failed.Add(1)
					continue
				}
				req, _ := http.NewRequest(http.MethodPost, base+"/oauth2/token", strings.NewReader(bodies[0]))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("Authorization", basic)
				resp, err := client.Do(req)
				if err != nil {
					firstErr.CompareAndSwap(nil, err.Error())
					failed.Add(1)
					claimed.Add(-1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					firstErr.CompareAndSwap(nil, "status "+resp.Status)
					failed.Add(1)
					claimed.Add(-1)
					continue
				}
				if d := done.Add(1); d%step == 0 {
					progressMu.Lock()
					progress(int(d))
					progressMu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	if failed.Load() >= 100 {
		return int(done.Load()), fmt.Errorf("filling the memory store: %d failures, the first: %v", failed.Load(), firstErr.Load())
	}
	return int(done.Load()), nil
}

// usedMemory is INFO memory's used_memory, in bytes.
func usedMemory(ctx context.Context, rdb *redis.Client) (int64, error) {
	info, err := rdb.Info(ctx, "memory").Result()
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			var n int64
			_, err := fmt.Sscan(v, &n)
			return n, err
		}
	}
	return 0, errors.New("INFO memory has no used_memory")
}

// formatRatios is the results as a Markdown table, each rate also as a
// ratio to that of results[baseIndex].
func formatRatios(rs []result, baseIndex int, header string) string {
	return formatRatiosBy(rs, func(result) string { return "" }, header, baseIndex)
}

// formatRatiosBy is the results as a Markdown table, each rate also as a
// ratio to that of the first result of the same group, or, given a
// baseIndex, to that of rs[baseIndex].
func formatRatiosBy(rs []result, group func(result) string, header string, baseIndex ...int) string {
	first := map[string]float64{}
	for _, r := range rs {
		if _, ok := first[group(r)]; !ok {
			first[group(r)] = r.rate()
		}
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "\n| scenario | req/s | p50 | p99 | Caddy CPU/req | %s | failed |\n", header)
	sb.WriteString("|---|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rs {
		base := first[group(r)]
		if len(baseIndex) > 0 && baseIndex[0] < len(rs) {
			base = rs[baseIndex[0]].rate()
		}
		sb.WriteString(r.row(base))
	}
	return sb.String()
}

// count is n and noun, plural unless n is 1.
func count(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
