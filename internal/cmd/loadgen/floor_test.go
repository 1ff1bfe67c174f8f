package main

import (
	"strings"
	"testing"
	"time"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/keys"
)

// fakeResult builds a result of n requests in one second with the given CPU
// times per request.
func fakeResult(name string, n int, caddy, gen, redis time.Duration) result {
	return result{name: name, ok: n, elapsed: time.Second,
		cpu: caddy * time.Duration(n), genCPU: gen * time.Duration(n), redisCPU: redis * time.Duration(n)}
}

// The floor of an exchange is respond's Caddy CPU plus the verification,
// plus one round trip on Redis; the ceiling divides respond's CPU per
// request by the floor's plus what the load generator and Redis spent.
func TestFloorOfAnExchangeIsRespondPlusVerificationPlusOneRoundTrip(t *testing.T) {
	us := time.Microsecond
	rs := []result{
		fakeResult("respond", 30000, 36*us, 29*us, 0),
		fakeResult("exchange RS256 memory", 12000, 116*us, 31*us, 0),
		fakeResult("exchange RS256 redis", 7500, 166*us, 43*us, 35*us),
		fakeResult("exchange ES256 redis", 6500, 211*us, 44*us, 32*us),
		fakeResult("jwt_grant_auth memory", 38000, 27*us, 21*us, 0),
		fakeResult("jwt_grant_auth redis", 28000, 38*us, 22*us, 5*us),
	}
	rows := floorRows(rs, map[string]time.Duration{"RS256": 46 * us})
	if len(rows) != 2 {
		t.Fatalf("rows = %+v, want the two RS256 exchanges (ES256 has no verification cost)", rows)
	}
	mem, red := rows[0], rows[1]
	if mem.name != "exchange RS256 memory" || mem.floor != 82*us || mem.caddy != 116*us || mem.others != 31*us {
		t.Errorf("memory row = %+v, want floor 82µs (36 + 46), caddy 116µs, others 31µs", mem)
	}
	// 65µs for respond over 82 + 31 = 113µs.
	if want := 65.0 / 113.0; abs(mem.ceil-want) > 1e-9 {
		t.Errorf("memory ceiling = %v, want %v", mem.ceil, want)
	}
	if want := 12000.0 / 30000.0; abs(mem.ratio-want) > 1e-9 {
		t.Errorf("memory ratio = %v, want %v", mem.ratio, want)
	}
	// The round trip is 38 − 27 = 11µs: floor 93µs, others 78µs.
	if red.floor != 93*us || red.others != 78*us {
		t.Errorf("redis row = %+v, want floor 93µs, others 78µs", red)
	}
	if want := 65.0 / 171.0; abs(red.ceil-want) > 1e-9 {
		t.Errorf("redis ceiling = %v, want %v", red.ceil, want)
	}

	// Without the jwt_grant_auth rows the round trip is unknown: the Redis
	// rows are left out rather than given a floor too low.
	rows = floorRows(rs[:4], map[string]time.Duration{"RS256": 46 * us})
	if len(rows) != 1 || rows[0].name != "exchange RS256 memory" {
		t.Errorf("rows without the round trip = %+v, want the memory row only", rows)
	}
	// Without respond there is no ratio to give.
	if rows := floorRows(rs[1:], map[string]time.Duration{"RS256": 46 * us}); rows != nil {
		t.Errorf("rows without respond = %+v, want none", rows)
	}
	table := formatFloor([][]result{rs}, []map[string]time.Duration{{"RS256": 46 * us}})
	for _, want := range []string{"RS256 0.046 ms", "| exchange RS256 redis | 0.166 ms | 0.093 ms | 0.073 ms | 0.078 ms | 0.065 ms | 0.25 | 0.38 |"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	// Timed before each round, the verification's range is stated.
	table = formatFloor([][]result{rs, rs}, []map[string]time.Duration{{"RS256": 46 * us}, {"RS256": 40 * us}})
	if want := "RS256 0.040 ms–0.046 ms"; !strings.Contains(table, want) {
		t.Errorf("table lacks %q:\n%s", want, table)
	}
}

func abs(x float64) float64 { return max(x, -x) }

// verifyCost times a real verification of a signed assertion, and refuses
// a key that does not verify it rather than timing a failure.
func TestVerifyCostTimesAVerificationThatSucceeds(t *testing.T) {
	k, err := keys.GenerateKey("ES256")
	if err != nil {
		t.Fatal(err)
	}
	bodies, err := signAssertions(k, "ES256", 1)
	if err != nil {
		t.Fatal(err)
	}
	d, err := verifyCost(k.Public(), "ES256", bodies[0])
	if err != nil {
		t.Fatal(err)
	}
	if d <= 0 || d > time.Second {
		t.Errorf("one ES256 verification took %v of CPU", d)
	}
	other, err := keys.GenerateKey("ES256")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := verifyCost(other.Public(), "ES256", bodies[0]); err == nil {
		t.Error("a key that does not verify the assertion was timed")
	}
}

// Each row of the table is its median round by ratio to that round's own
// respond, and the range covers every round: a slow respond in one round
// moves no row by itself.
func TestTableRowsAreTheirMedianRoundByRatio(t *testing.T) {
	us := time.Microsecond
	round := func(respond, exchange int) []result {
		return []result{
			fakeResult("respond", respond, 30*us, 25*us, 0),
			fakeResult("exchange RS256 redis", exchange, 120*us, 30*us, 25*us),
		}
	}
	// Ratios 0.30, 0.20 and 0.25: the third round is the median, though
	// its rates are neither the middle respond nor the middle exchange.
	rounds := [][]result{round(30000, 9000), round(40000, 8000), round(36000, 9000)}
	m, ratios := medianRound(rounds, 1)
	if m != 2 {
		t.Errorf("median round = %d, want 2 (ratios %v)", m, ratios)
	}
	if len(ratios) != 3 || ratios[0] != 0.2 || ratios[2] != 0.3 {
		t.Errorf("ratios = %v, want 0.20, 0.25, 0.30", ratios)
	}
	table := formatTable(rounds)
	for _, want := range []string{"3 rounds", "| exchange RS256 redis | 9000 |", "| 0.25 | 0 |", "| 0.20–0.30 |", "| respond | 36000 |"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	floor := formatFloor(rounds, []map[string]time.Duration{{"RS256": 40 * us}, {"RS256": 40 * us}, {"RS256": 40 * us}})
	if floor != "" {
		t.Errorf("floor of Redis rows without the round trip's rows = %q, want none", floor)
	}
}
