package main

// The floor of an exchange: what no implementation of the grant inside
// this Caddy can avoid paying, measured in the same run as the table, so
// that every run says how far the exchange is from it and what ratio to
// respond the exchange could reach if the gateway's own code cost
// nothing.

import (
	"crypto"
	"fmt"
	"net/url"
	"runtime"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/sys/unix"
)

// verifyRounds is how many signature verifications verifyCost times:
// about a tenth of a second for the slowest algorithm here.
const verifyRounds = 2000

// verifyCost is the CPU time of one signature verification of the
// assertion in body (a token request form) with pub, through the same
// go-jose call the gateway makes (check 3), on one locked thread so that
// the thread's own CPU time is the measure and nothing else running on
// the machine is counted. It runs before the clock of any scenario starts.
func verifyCost(pub crypto.PublicKey, alg, body string) (time.Duration, error) {
	form, err := url.ParseQuery(body)
	if err != nil {
		return 0, err
	}
	jws, err := jose.ParseSignedCompact(form.Get("assertion"), []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
	if err != nil {
		return 0, err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before, err := threadCPU()
	if err != nil {
		return 0, err
	}
	for range verifyRounds {
		if _, err := jws.Verify(pub); err != nil {
			return 0, fmt.Errorf("%s: %w", alg, err)
		}
	}
	after, err := threadCPU()
	if err != nil {
		return 0, err
	}
	return (after - before) / verifyRounds, nil
}

// threadCPU is the calling thread's user plus system time.
func threadCPU() (time.Duration, error) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}

// floorRow is one exchange of the run set against its floor.
type floorRow struct {
	name string
	// caddy is Caddy's CPU per exchange; floor the part of it no grant
	// code can avoid: respond's Caddy CPU per request (Caddy's own
	// handling), one signature verification and, on Redis, one round
	// trip's client CPU (jwt_grant_auth on Redis less on memory, the
	// same request with and without its one GET).
	caddy, floor time.Duration
	// others is what the load generator and redis-server spent per
	// exchange: they share the cores with Caddy.
	others time.Duration
	// respond is what Caddy, the load generator and redis-server spent
	// per respond request in the same round: the ceiling's numerator.
	respond     time.Duration
	ratio, ceil float64
}

// floorRows sets every exchange of rs against its floor. verify holds the
// verification cost per algorithm; a row whose algorithm has none, or a
// run without respond, gives nothing. The ceiling is the ratio to respond
// the exchange would reach if Caddy spent only the floor on it and the
// load generator and Redis what they spent in this run: the cores are
// shared, so the rate of each scenario is the cores over the CPU time all
// three processes spend per request.
func floorRows(rs []result, verify map[string]time.Duration) []floorRow {
	byName := map[string]result{}
	for _, r := range rs {
		byName[r.name] = r
	}
	resp, ok := byName["respond"]
	if !ok || resp.ok == 0 {
		return nil
	}
	base := resp.perRequest(resp.cpu)
	respTotal := base + resp.perRequest(resp.genCPU) + resp.perRequest(resp.redisCPU)
	var roundTrip time.Duration
	mem, okMem := byName["jwt_grant_auth memory"]
	red, okRed := byName["jwt_grant_auth redis"]
	haveRoundTrip := okMem && okRed && mem.ok > 0 && red.ok > 0
	if haveRoundTrip {
		roundTrip = max(0, red.perRequest(red.cpu)-mem.perRequest(mem.cpu))
	}
	var out []floorRow
	for _, r := range rs {
		f := strings.Fields(r.name)
		if len(f) < 3 || f[0] != "exchange" || r.ok == 0 {
			continue
		}
		v, ok := verify[f[1]]
		if !ok {
			continue
		}
		row := floorRow{name: r.name, caddy: r.perRequest(r.cpu), floor: base + v,
			others: r.perRequest(r.genCPU) + r.perRequest(r.redisCPU), respond: respTotal, ratio: r.rate() / resp.rate()}
		if strings.HasPrefix(f[2], "redis") {
			if !haveRoundTrip {
				continue
			}
			row.floor += roundTrip
		}
		row.ceil = float64(respTotal) / float64(row.floor+row.others)
		out = append(out, row)
	}
	return out
}

// formatFloor is floorRows as a Markdown table with the figures it was
// computed from: for each exchange the round the results table shows
// (medianRound), with the verification costs timed before it (verify[n]
// for rounds[n]).
func formatFloor(rounds [][]result, verify []map[string]time.Duration) string {
	if len(rounds) == 0 {
		return ""
	}
	perRound := make([]map[string]floorRow, len(rounds))
	for n, round := range rounds {
		perRound[n] = map[string]floorRow{}
		for _, r := range floorRows(round, verify[n]) {
			perRound[n][r.name] = r
		}
	}
	// Each exchange's row is taken from the round the results table
	// shows for it.
	var rows []floorRow
	for i, r := range rounds[0] {
		m, _ := medianRound(rounds, i)
		if row, ok := perRound[m][r.name]; ok {
			rows = append(rows, row)
		}
	}
	if len(rows) == 0 {
		return ""
	}
	var sb strings.Builder
	sb.WriteString("\nThe exchanges against their floor (Caddy's CPU for respond + one signature verification")
	sb.WriteString(" + on Redis one round trip's client CPU; the ceiling is the ratio to respond with the grant's own code at zero:")
	sb.WriteString(" respond's CPU per request over the floor's plus the load generator's and Redis's per exchange; each row is its median round, with that round's respond):\n")
	algs := make([]string, 0, len(algorithms))
	for _, alg := range algorithms {
		var lo, hi time.Duration
		for _, v := range verify {
			if d, ok := v[alg]; ok {
				if lo == 0 || d < lo {
					lo = d
				}
				hi = max(hi, d)
			}
		}
		switch {
		case lo == 0:
		case lo == hi:
			algs = append(algs, fmt.Sprintf("%s %s", alg, ms(lo)))
		default:
			algs = append(algs, fmt.Sprintf("%s %s–%s", alg, ms(lo), ms(hi)))
		}
	}
	fmt.Fprintf(&sb, "signature verification per assertion, measured on one thread before each round: %s.\n", strings.Join(algs, ", "))
	sb.WriteString("\n| exchange | Caddy CPU/req | of it the floor | the gateway's own | load generator + Redis CPU/req | respond's CPU/req, all three | × respond | ceiling × respond |\n")
	sb.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		fmt.Fprintf(&sb, "| %s | %s | %s | %s | %s | %s | %.2f | %.2f |\n", r.name, ms(r.caddy), ms(r.floor),
			ms(max(0, r.caddy-r.floor)), ms(r.others), ms(r.respond), r.ratio, r.ceil)
	}
	return sb.String()
}
