package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// scaleSite is how one generated configuration differs from another: the
// number of trusted issuers and of clients of its jwt_grant, and the
// memory store's bound (every handler of a process must name the same).
type scaleSite struct {
	issuers, clients int
	maxEntries       int
	// refreshOff turns refresh tokens off, so that an exchange leaves an
	// access record and a replay mark and nothing else.
	refreshOff bool
	// redisURL, when set, adds a second site on redisPort with the same
	// jwt_grant on that Redis.
	redisURL  string
	redisPort int
}

// scaleIssuer is the name, iss and key file of trusted issuer i.
func scaleIssuer(i int) (name, iss, file string) {
	return fmt.Sprintf("i%d", i), fmt.Sprintf("https://issuer-%d.invalid", i), fmt.Sprintf("issuer-%d.pem", i)
}

// scaleClient is the client_id of client i.
func scaleClient(i int) string { return fmt.Sprintf("c%d", i) }

// scaleCaddyfile is a Caddyfile with s.issuers trusted issuers (EdDSA
// public keys in issuer-<i>.pem next to it) and s.clients clients, every
// one of them with the same secret hash: a client's secret is checked
// once and then served from the verified-outcome cache, so what a request
// pays for the number of clients is the lookup of its client, which the
// shared hash does not change. The site serves the token endpoint,
// jwt_grant_auth at /auth and a bare respond at /respond.
func scaleCaddyfile(admin, port int, s scaleSite, hash string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "{\n\tadmin 127.0.0.1:%d\n\tpersist_config off\n\tauto_https off\n\tlog {\n\t\tlevel WARN\n\t}\n}\n", admin)
	memory := "memory"
	if s.maxEntries > 0 {
		memory = fmt.Sprintf("memory {\n\t\t\t\tmax_entries %d\n\t\t\t}", s.maxEntries)
	}
	site := func(port int, store string) {
		fmt.Fprintf(&b, "http://127.0.0.1:%d {\n\troute /oauth2/* {\n\t\tjwt_grant {\n\t\t\tissuer_url %s\n\t\t\tstore %s\n", port, issuerURL, store)
		if s.refreshOff {
			b.WriteString("\t\t\trefresh_token_ttl off\n")
		}
		for i := range s.issuers {
			name, iss, file := scaleIssuer(i)
			fmt.Fprintf(&b, "\t\t\ttrusted_issuer %s {\n\t\t\t\tissuer %s\n\t\t\t\tcertificate %s\n\t\t\t}\n", name, iss, file)
		}
		for i := range s.clients {
			fmt.Fprintf(&b, "\t\t\tclient %s {\n\t\t\t\tsecret %s\n\t\t\t}\n", scaleClient(i), hash)
		}
		fmt.Fprintf(&b, "\t\t}\n\t}\n\troute /auth {\n\t\tjwt_grant_auth {\n\t\t\tstore %s\n\t\t}\n\t\trespond \"ok\"\n\t}\n", store)
		b.WriteString("\troute /respond {\n\t\trespond \"ok\"\n\t}\n}\n")
	}
	site(port, memory)
	if s.redisURL != "" {
		site(s.redisPort, "redis "+s.redisURL)
	}
	return b.String()
}

// residentKB is the VmRSS line of a /proc/<pid>/status, in kB.
func residentKB(status []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("unexpected VmRSS line %q", sc.Text())
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, errors.New("no VmRSS line")
}

// processRSS is the resident memory of process pid, in bytes.
func processRSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	kb, err := residentKB(b)
	return kb * 1024, err
}

// rssPoint is the resident size at a number of live tokens.
type rssPoint struct {
	tokens int
	rss    int64
}

// perToken is the least-squares slope of resident size over live tokens,
// in bytes per token, and the resident size it extrapolates to at n
// tokens; ok is false with fewer than two distinct token counts.
func perToken(points []rssPoint, n int) (slope float64, at int64, ok bool) {
	if len(points) < 2 {
		return 0, 0, false
	}
	var sx, sy float64
	for _, p := range points {
		sx += float64(p.tokens)
		sy += float64(p.rss)
	}
	mx, my := sx/float64(len(points)), sy/float64(len(points))
	var sxy, sxx float64
	for _, p := range points {
		dx := float64(p.tokens) - mx
		sxy += dx * (float64(p.rss) - my)
		sxx += dx * dx
	}
	if sxx == 0 {
		return 0, 0, false
	}
	slope = sxy / sxx
	return slope, int64(my + slope*(float64(n)-mx)), true
}

// fillTokenHash is the store hash of the i-th token of a fill: the
// tokens are seed-i, so that a test can present one.
func fillTokenHash(seed string, i int) string {
	sum := sha256.Sum256([]byte(seed + "-" + strconv.Itoa(i)))
	return hex.EncodeToString(sum[:])
}

// fillRedis writes n access records straight into Redis as the store
// does (SPEC §4: SET {prefix}at:{hex(sha256(token))} <JSON> with a TTL
// ending at the record's exp), each a copy of template, the JSON of a
// record the gateway wrote itself, under the hash of token seed-i. It
// pipelines batches of 1,000 SETs on four connections.
func fillRedis(ctx context.Context, rdb redis.UniversalClient, prefix string, template []byte, ttl time.Duration, seed string, n int) error {
	const batch, workers = 1000, 4
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for start := range next {
				pipe := rdb.Pipeline()
				for i := start; i < min(n, start+batch); i++ {
					pipe.Set(ctx, prefix+"at:"+fillTokenHash(seed, i), template, ttl)
				}
				if _, err := pipe.Exec(ctx); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for start := 0; start < n; start += batch {
		next <- start
	}
	close(next)
	wg.Wait()
	return firstErr
}

// randomSeed is a fresh seed for fillTokenHash.
func randomSeed() string { return rand.Text() }
