package caddymodule

// Several gateways on one Redis race the same assertion and the same
// refresh token (SPEC §3.1 check 10, §3.2; README "Several gateways"): the
// in-process Caddy and two separate Caddy processes, all with the same
// key_prefix, on a single node, behind Sentinel and on a Cluster. Each
// request of a race is held behind a barrier until every one of them is
// ready, so that they reach the gateways together.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/internal/testredis"
)

// raceCopies is how many copies of a request each gateway gets per round.
const raceCopies = 3

func TestGatewaysRaceOneJTIAndOneRefreshTokenOnEachTopology(t *testing.T) {
	topologies := []struct {
		name string
		// store starts the topology and returns the store block and a
		// check, run after the rounds, that the records went where the
		// topology sends them.
		store func(t *testing.T) (string, func(t *testing.T))
	}{
		{"single node", func(t *testing.T) (string, func(t *testing.T)) {
			srv := testredis.Start(t)
			return raceStore("url " + srv.URL()), func(t *testing.T) { wantRaceKeys(t, "the node", srv) }
		}},
		{"sentinel", func(t *testing.T) (string, func(t *testing.T)) {
			master := testredis.Start(t)
			replica := testredis.StartReplica(t, master)
			s1 := testredis.StartSentinel(t, master, "racemaster")
			s2 := testredis.StartSentinel(t, master, "racemaster")
			// wait_replicas as README's Sentinel example has it, with a
			// timeout no loopback replica misses on a busy machine.
			store := raceStore("address "+s1.Addr()+" "+s2.Addr(), "sentinel racemaster",
				"read_timeout 10s", "wait_replicas 1 5s")
			return store, func(t *testing.T) {
				wantRaceKeys(t, "the master", master)
				wantRaceKeys(t, "the replica", replica)
			}
		}},
		{"cluster", func(t *testing.T) (string, func(t *testing.T)) {
			nodes := testredis.StartCluster(t, 3)
			addrs := make([]string, len(nodes))
			for i, n := range nodes {
				addrs[i] = n.Addr()
			}
			return raceStore("address " + strings.Join(addrs, " ")), func(t *testing.T) {
				for i, n := range nodes {
					wantRaceKeys(t, fmt.Sprintf("cluster node %d", i), n)
				}
			}
		}},
	}
	for _, topo := range topologies {
		t.Run(topo.name, func(t *testing.T) {
			begin := time.Now()
			store, check := topo.store(t)
			gws := startGateways(t, edgeConfig{store: store}, 2)
			started := time.Since(begin)
			client := raceClient(t)
			t.Run("three gateways", func(t *testing.T) { raceRounds(t, client, gws, 30) })
			t.Run("two gateways", func(t *testing.T) { raceRounds(t, client, gws[:2], 10) })
			check(t)
			t.Logf("%s: Redis and %d gateways up in %v, everything in %v", topo.name, len(gws),
				started.Round(time.Millisecond), time.Since(begin).Round(time.Millisecond))
		})
	}
}

// raceStore is a store redis block with the races' key_prefix and lines.
func raceStore(lines ...string) string {
	return "store redis {\n\t\t\t" + strings.Join(append(lines, "key_prefix race:"), "\n\t\t\t") + "\n\t\t}"
}

// wantRaceKeys fails unless srv holds records under the races' key_prefix.
func wantRaceKeys(t *testing.T, name string, srv *testredis.Server) {
	t.Helper()
	keys, err := srv.Do("KEYS", "race:*")
	if err != nil || keys == "" {
		t.Errorf("%s holds no race:* key (%v); the gateways did not use it", name, err)
	}
}

// startGateways serves the edge in this process and in processes separate
// Caddy processes, all with cfg.
func startGateways(t *testing.T, cfg edgeConfig, processes int) []*edge {
	t.Helper()
	first := newEdge(t)
	startCaddy(t, first.caddyfile(cfg))
	gws := []*edge{first}
	for range processes {
		e := newEdge(t)
		startCaddyProcess(t, e.caddyfile(cfg), e.api+"/")
		gws = append(gws, e)
	}
	return gws
}

// raceClient keeps enough idle connections for a round's requests, so
// that rounds after the first reach the gateways without dialling.
func raceClient(t *testing.T) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 4 * raceCopies}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// raceAnswer is one answer of a race. Only status and error are ever
// printed: a winner's body holds tokens.
type raceAnswer struct {
	gateway int
	status  int
	body    map[string]any
	err     error
}

func (a raceAnswer) String() string {
	if a.err != nil {
		return fmt.Sprintf("gateway %d: %v", a.gateway, a.err)
	}
	return fmt.Sprintf("gateway %d: %d %v", a.gateway, a.status, a.body["error"])
}

func (a raceAnswer) str(key string) string {
	s, _ := a.body[key].(string)
	return s
}

// race posts form as client app to the token endpoint of every gateway,
// raceCopies times each, all at once.
func race(client *http.Client, gws []*edge, form url.Values, secret string) []raceAnswer {
	answers := make([]raceAnswer, len(gws)*raceCopies)
	var ready, done sync.WaitGroup
	start := make(chan struct{})
	for i := range answers {
		g := i % len(gws)
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			req, err := http.NewRequest(http.MethodPost, gws[g].tokenURL, strings.NewReader(form.Encode()))
			if err != nil {
				ready.Done()
				answers[i] = raceAnswer{gateway: g, err: err}
				return
			}
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth("app", url.QueryEscape(secret))
			ready.Done()
			<-start
			answers[i] = raceAnswer{gateway: g}
			resp, err := client.Do(req)
			if err != nil {
				answers[i].err = err
				return
			}
			defer resp.Body.Close()
			raw, err := io.ReadAll(resp.Body)
			answers[i].status, answers[i].err = resp.StatusCode, err
			_ = json.Unmarshal(raw, &answers[i].body)
		}()
	}
	ready.Wait()
	close(start)
	done.Wait()
	return answers
}

// raceTally counts a kind of race's answers over the rounds.
type raceTally struct {
	rounds, winners, losers int
	wins                    map[int]int    // by gateway
	answers                 map[string]int // by status and error
}

// winner records answers and returns the one 200 among them, failing the
// test unless there is exactly one and every other is 400 invalid_grant.
func (c *raceTally) winner(t *testing.T, what string, round int, answers []raceAnswer) raceAnswer {
	t.Helper()
	if c.wins == nil {
		c.wins, c.answers = map[int]int{}, map[string]int{}
	}
	c.rounds++
	var won []raceAnswer
	for _, a := range answers {
		if a.err != nil {
			t.Fatalf("%s round %d: %v", what, round, a)
		}
		c.answers[fmt.Sprintf("%d %v", a.status, a.body["error"])]++
		switch {
		case a.status == 200:
			won = append(won, a)
			c.wins[a.gateway]++
		case a.status == 400 && a.body["error"] == "invalid_grant":
			c.losers++
		default:
			t.Errorf("%s round %d: a loser got %v, want 400 invalid_grant", what, round, a)
		}
	}
	c.winners += len(won)
	if len(won) != 1 {
		t.Fatalf("%s round %d: %d of %d requests won (%v), want exactly 1", what, round, len(won), len(answers), won)
	}
	if t.Failed() {
		t.FailNow()
	}
	return won[0]
}

func (c *raceTally) String() string {
	statuses := make([]string, 0, len(c.answers))
	for k, n := range c.answers {
		statuses = append(statuses, fmt.Sprintf("%q×%d", k, n))
	}
	sort.Strings(statuses)
	return fmt.Sprintf("%d rounds, %d winners (by gateway %v), %d losers; answers %s",
		c.rounds, c.winners, c.wins, c.losers, strings.Join(statuses, " "))
}

// raceRounds runs rounds of two races over gws. First the same assertion,
// one jti, at every gateway: one grant, and its access token passes every
// gateway's jwt_grant_auth. Then that grant's refresh token at every
// gateway: one rotation; the losers presented a token that was rotated by
// the time the store judged them, which is reuse, and SPEC §3.2 has reuse
// revoke every token of the chain: the winner's new tokens included
// (README "Refresh tokens", Races).
//
// On a cluster the rotation claims the old token first and files its new
// tokens in the chain after, in other round trips. A loser's revocation in
// between leaves a mark in the chain's place, and the rotation deletes its
// new tokens when it meets it (grant/redisstore's clusterWrite), so that
// the outcome is the single node's.
func raceRounds(t *testing.T, client *http.Client, gws []*edge, rounds int) {
	var jti, refresh raceTally
	begin := time.Now()
	f := gws[0].f
	aud := make([]string, len(gws))
	for i, g := range gws {
		aud[i] = g.tokenURL
	}
	for round := range rounds {
		// One gateway's turn per round for the single checks.
		turn := gws[round%len(gws)]

		a := f.assertion(t, map[string]any{"iss": testIdP, "sub": "alice", "aud": aud})
		grant := jti.winner(t, "jti", round, race(client, gws, jwtBearerForm(a), f.secret))
		at, rt := grant.str("access_token"), grant.str("refresh_token")
		if at == "" || rt == "" {
			t.Fatalf("jti round %d: the grant lacks a token: %v", round, grant.body["token_type"])
		}
		wantPassesEverywhere(t, fmt.Sprintf("jti round %d: the winner's access token", round), gws, at)
		wantInvalidGrant(t, fmt.Sprintf("jti round %d: the assertion once more", round), postForm(t, turn.tokenURL, jwtBearerForm(a), "app", f.secret))

		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
		next := refresh.winner(t, "refresh", round, race(client, gws, form, f.secret))
		// The chain as it was when the race began dies on every topology.
		wantRefusedEverywhere(t, fmt.Sprintf("refresh round %d: the grant's access token after the reuse", round), gws, at)
		wantInvalidGrant(t, fmt.Sprintf("refresh round %d: the raced refresh token", round), turn.refresh(t, rt))
		nextAT, nextRT := next.str("access_token"), next.str("refresh_token")
		if nextAT == "" || nextRT == "" || nextAT == at || nextRT == rt {
			t.Fatalf("refresh round %d: the rotation did not answer fresh tokens", round)
		}
		wantRefusedEverywhere(t, fmt.Sprintf("refresh round %d: the rotation's access token after the reuse (SPEC §3.2: reuse revokes the chain)", round), gws, nextAT)
		wantInvalidGrant(t, fmt.Sprintf("refresh round %d: the rotation's refresh token", round), turn.refresh(t, nextRT))
	}
	t.Logf("%d gateways, %d requests per race: jti: %v", len(gws), len(gws)*raceCopies, &jti)
	t.Logf("%d gateways, %d requests per race: refresh: %v", len(gws), len(gws)*raceCopies, &refresh)
	t.Logf("%d rounds in %v", rounds, time.Since(begin).Round(time.Millisecond))
}

// wantPassesEverywhere fails unless every gateway's jwt_grant_auth passes
// the access token tok.
func wantPassesEverywhere(t *testing.T, what string, gws []*edge, tok string) {
	t.Helper()
	for i, g := range gws {
		if r := get(t, g.api+"/any", tok); r.status != 200 || !strings.HasPrefix(r.raw, "sub=alice client=app ") {
			t.Fatalf("%s at gateway %d: %s", what, i, r)
		}
	}
}

// wantRefusedEverywhere fails unless every gateway's jwt_grant_auth
// refuses the access token tok as invalid.
func wantRefusedEverywhere(t *testing.T, what string, gws []*edge, tok string) {
	t.Helper()
	for i, g := range gws {
		if r := get(t, g.api+"/any", tok); r.status != 401 || r.header.Get("WWW-Authenticate") != challengeInvalid {
			t.Fatalf("%s at gateway %d: %s, want 401 invalid_token", what, i, r)
		}
	}
}

// wantInvalidGrant is checkOAuthError for 400 invalid_grant that prints
// only status and error: an unexpected success holds tokens.
func wantInvalidGrant(t *testing.T, what string, r response) {
	t.Helper()
	if r.status != 400 || r.str("error") != "invalid_grant" {
		t.Fatalf("%s: %d %q, want 400 invalid_grant", what, r.status, r.str("error"))
	}
	checkNoStore(t, r)
}
