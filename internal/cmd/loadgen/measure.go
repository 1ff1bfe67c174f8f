package main

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// scenario is one row of the table: GETs of one URL with a bearer token,
// or POSTs of pre-signed bodies, each used once.
type scenario struct {
	name   string
	get    string
	bearer string
	// dpop, when set, are single-use proofs: the GET is sent as
	// `Authorization: DPoP <bearer>` with the next one.
	dpop []string
	// prepare, when set, runs before the scenario's clock starts (it
	// signs the proofs, whose iat must be fresh).
	prepare func(*scenario) error
	post    string
	auth    string
	bodies  []string
}

// result is what one scenario measured.
type result struct {
	name     string
	ok, fail int
	elapsed  time.Duration
	cpu      time.Duration // Caddy's user+system time during the run
	// redisCPU and genCPU are redis-server's (when config.redisPID is
	// set) and the load generator's own user+system time during the run:
	// they share the cores with Caddy.
	redisCPU, genCPU time.Duration
	latencies        []time.Duration
	exhausted        bool // the bodies ran out before the time did
}

func (r result) rate() float64 { return float64(r.ok) / r.elapsed.Seconds() }

func (r result) percentile(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	return r.latencies[min(len(r.latencies)-1, int(float64(len(r.latencies))*p))]
}

// run drives the scenario with c.clients keep-alive clients until
// c.duration has passed or its bodies are used up.
func (s scenario) run(c config, pid int) (result, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: c.clients, MaxConnsPerHost: c.clients, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var (
		next      atomic.Int64
		fail      atomic.Int64
		exhausted atomic.Bool
		firstErr  atomic.Value
		wg        sync.WaitGroup
	)
	lat := make([][]time.Duration, c.clients)
	cpu0, err := processCPU(pid)
	if err != nil {
		return result{}, err
	}
	redis0, gen0 := otherCPU(c.redisPID), otherCPU(os.Getpid())
	start := time.Now()
	deadline := start.Add(c.duration)
	for w := range c.clients {
		wg.Go(func() {
			own := make([]time.Duration, 0, 1<<14)
			for time.Now().Before(deadline) {
				var req *http.Request
				if s.post != "" {
					i := int(next.Add(1) - 1)
					if i >= len(s.bodies) {
						exhausted.Store(true)
						break
					}
					req, _ = http.NewRequest(http.MethodPost, s.post, strings.NewReader(s.bodies[i]))
					req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
					req.Header.Set("Authorization", s.auth)
				} else if s.dpop != nil {
					i := int(next.Add(1) - 1)
					if i >= len(s.dpop) {
						exhausted.Store(true)
						break
					}
					req, _ = http.NewRequest(http.MethodGet, s.get, nil)
					req.Header.Set("Authorization", "DPoP "+s.bearer)
					req.Header.Set("DPoP", s.dpop[i])
				} else {
					req, _ = http.NewRequest(http.MethodGet, s.get, nil)
					req.Header.Set("Authorization", "Bearer "+s.bearer)
				}
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					fail.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					fail.Add(1)
					firstErr.CompareAndSwap(nil, "status "+resp.Status)
					continue
				}
				own = append(own, time.Since(t0))
			}
			lat[w] = own
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu1, err := processCPU(pid)
	if err != nil {
		return result{}, err
	}
	r := result{name: s.name, fail: int(fail.Load()), elapsed: elapsed, cpu: cpu1 - cpu0, exhausted: exhausted.Load(),
		redisCPU: otherCPU(c.redisPID) - redis0, genCPU: otherCPU(os.Getpid()) - gen0}
	for _, l := range lat {
		r.latencies = append(r.latencies, l...)
	}
	r.ok = len(r.latencies)
	slices.Sort(r.latencies)
	if r.fail > 0 {
		fmt.Fprintf(os.Stderr, "%s: %d failed requests, the first: %v\n", s.name, r.fail, firstErr.Load())
	}
	return r, nil
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat's times: 100 on
// every Linux architecture Go supports (sysconf is not reachable
// without cgo).
const clockTicks = 100

// processCPU is the user plus system time the process has used so far,
// from fields 14 and 15 of /proc/<pid>/stat.
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("reading Caddy's CPU time: %w", err)
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	rest := b[bytes.LastIndexByte(b, ')')+2:]
	f := strings.Fields(string(rest))
	// rest starts at field 3, so utime (14) and stime (15) are f[11], f[12].
	if len(f) < 13 {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("unexpected /proc/%d/stat", pid)
	}
	return time.Duration(utime+stime) * time.Second / clockTicks, nil
}

// profiler fetches a CPU profile and an allocation profile (the
// allocations made over the same seconds) from Caddy's admin endpoint
// while a scenario runs; the second goes next to the first, named
// allocsFile(file).
type profiler struct{ done chan error }

func startProfile(admin string, d time.Duration, file string) *profiler {
	p := &profiler{done: make(chan error, 2)}
	secs := max(1, int(d.Seconds())-1)
	fetch := func(kind, file string) {
		resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/%s?seconds=%d", admin, kind, secs))
		if err != nil {
			p.done <- err
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			p.done <- fmt.Errorf("admin endpoint answered %s for %s", resp.Status, kind)
			return
		}
		b, err := io.ReadAll(resp.Body)
		if err == nil {
			err = os.WriteFile(file, b, 0o644)
		}
		p.done <- err
	}
	go fetch("profile", file)
	go fetch("allocs", allocsFile(file))
	return p
}

// allocsFile names the allocation profile written beside a CPU profile.
func allocsFile(file string) string {
	return strings.TrimSuffix(file, ".pprof") + ".allocs.pprof"
}

func (p *profiler) wait() error { return errors.Join(<-p.done, <-p.done) }

// describeMachine states what the figures were measured on and with.
func describeMachine(caddyBin string, c config) string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	version := "unknown"
	if out, err := exec.Command(caddyBin, "version").Output(); err == nil {
		version, _, _ = strings.Cut(strings.TrimSpace(string(out)), " ")
	}
	load := ""
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			load = strings.Join(f[:3], " ")
		}
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "Measured %s on %s, %d cores (the load generator on the same cores), %s, Caddy %s.\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), model, runtime.NumCPU(), runtime.Version(), version)
	fmt.Fprintf(&sb, "%d keep-alive clients, %v per scenario, HTTP/1.1 over loopback, Caddy logging at WARN; load average before the run: %s.\n",
		c.clients, c.duration, load)
	if c.note != "" {
		fmt.Fprintf(&sb, "%s\n", c.note)
	}
	return sb.String()
}

// formatTable is the rounds' results as a Markdown table: for each
// scenario the round whose ratio to that round's respond is the median,
// and the range of the ratio over all rounds.
func formatTable(rounds [][]result) string {
	var sb strings.Builder
	sb.WriteString(fmt.Sprintf("\n%d rounds, each on a fresh Caddy and an emptied Redis; each row is the scenario's median round by its ratio to that round's respond.\n", len(rounds)))
	sb.WriteString("\n| scenario | req/s | p50 | p99 | Caddy CPU/req | × respond | failed | Redis CPU/req | load generator CPU/req | × respond, every round |\n")
	sb.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	if len(rounds) == 0 {
		return sb.String()
	}
	for i := range rounds[0] {
		m, ratios := medianRound(rounds, i)
		r := rounds[m][i]
		sb.WriteString(r.row(respondRate(rounds[m]), ms(r.perRequest(r.redisCPU)), ms(r.perRequest(r.genCPU)), formatRange(ratios)))
	}
	return sb.String()
}

// respondRate is the rate of a round's respond row, 0 without one.
func respondRate(rs []result) float64 {
	for _, r := range rs {
		if r.name == "respond" {
			return r.rate()
		}
	}
	return 0
}

// medianRound is the round whose row i has the median ratio to its own
// round's respond (the lower middle one of an even count; respond's row
// the median by rate), with the ratios of every round in ascending order.
func medianRound(rounds [][]result, i int) (int, []float64) {
	type ratio struct {
		round   int
		x, rate float64
	}
	rs := make([]ratio, len(rounds))
	for n, round := range rounds {
		x := 0.0
		if base := respondRate(round); base > 0 {
			x = round[i].rate() / base
		}
		rs[n] = ratio{n, x, round[i].rate()}
	}
	// Equal ratios (respond's own, always 1) are ordered by rate, so that
	// respond's row is its median round by rate.
	slices.SortStableFunc(rs, func(a, b ratio) int { return cmp.Or(cmp.Compare(a.x, b.x), cmp.Compare(a.rate, b.rate)) })
	xs := make([]float64, len(rs))
	for n, r := range rs {
		xs[n] = r.x
	}
	return rs[(len(rs)-1)/2].round, xs
}

// formatRange is ascending ratios as "lo–hi", or the one ratio.
func formatRange(xs []float64) string {
	if len(xs) == 0 {
		return "–"
	}
	lo, hi := fmt.Sprintf("%.2f", xs[0]), fmt.Sprintf("%.2f", xs[len(xs)-1])
	if lo == hi {
		return lo
	}
	return lo + "–" + hi
}

// row is r as a line of a results table: rate, p50, p99, Caddy CPU per
// request, the rate over base ("–" without one) and failures, then the
// cells of more.
func (r result) row(base float64, more ...string) string {
	ratio := "–"
	if base > 0 {
		ratio = fmt.Sprintf("%.2f", r.rate()/base)
	}
	name := r.name
	if r.exhausted {
		name += " (assertions used up)"
	}
	var extra strings.Builder
	for _, m := range more {
		extra.WriteString(" " + m + " |")
	}
	return fmt.Sprintf("| %s | %.0f | %s | %s | %s | %s | %d |%s\n", name, r.rate(),
		ms(r.percentile(0.50)), ms(r.percentile(0.99)), ms(r.perRequest(r.cpu)), ratio, r.fail, extra.String())
}

// perRequest is cpu divided by the requests of the run.
func (r result) perRequest(cpu time.Duration) time.Duration {
	if n := r.ok + r.fail; n > 0 {
		return cpu / time.Duration(n)
	}
	return 0
}

// otherCPU is processCPU for a process that may be absent (pid 0): zero
// then, or when it cannot be read.
func otherCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	d, _ := processCPU(pid)
	return d
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }

// writeSection replaces the text between the section's markers in file,
// or appends the section, so that each part of make bench updates its own
// part and the hand-written text around them stays.
func writeSection(file, name, body string) error {
	begin, end := "<!-- loadgen:"+name+":begin -->", "<!-- loadgen:"+name+":end -->"
	old, err := os.ReadFile(file)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	text := string(old)
	section := begin + "\n" + strings.TrimSpace(body) + "\n" + end
	i, j := strings.Index(text, begin), strings.Index(text, end)
	if i >= 0 && j > i {
		text = text[:i] + section + text[j+len(end):]
	} else {
		text = strings.TrimRight(text, "\n") + "\n\n" + section + "\n"
	}
	return os.WriteFile(file, []byte(text), 0o644)
}
