// Package storetest is the conformance suite of grant.Store: every store
// runs it, so that the token endpoint can rely on one behaviour whichever
// backend an operator configures.
package storetest

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
)

// raceWorkers is how many goroutines contend in the race tests: enough to
// make a lost update likely if the store had one.
const raceWorkers = 20

// Run runs the conformance suite but for expiry (see RunExpiry). newStore
// is called once per subtest and must return an empty-looking store (a
// shared backend is fine: the suite uses fresh random keys); subtests run
// in parallel.
func Run(t *testing.T, newStore func(t *testing.T) grant.Store) {
	t.Helper()
	for _, tc := range []struct {
		name string
		test func(t *testing.T, s grant.Store)
	}{
		{"Issue writes records readable by Access and Refresh", issueWritesRecords},
		{"records round-trip every field", recordsRoundTrip},
		{"stored records are not aliased by the caller", recordsNotAliased},
		{"copied claims of any JSON value round-trip through rotation, reuse and revocation", oddClaimsRoundTrip},
		{"Issue with an existing replay mark returns ErrReplay and writes nothing", issueReplayWritesNothing},
		{"a replay names the first held mark, in the order given", replayNamesFirstHeldMark},
		{"a retried Issue of the same issuance is not a replay", issueRetryIsIdempotent},
		{"Issue rejects an issuance it cannot store", issueRejectsMalformed},
		{"Rotate of a live token marks it rotated and writes the next tokens", rotateLive},
		{"Rotate of a rotated token returns ErrRefreshReuse and deletes the whole chain", rotateReuse},
		{"a retried Rotate with the same next tokens is not a reuse", rotateRetryIsIdempotent},
		{"Rotate of an unknown token returns ErrNotFound and writes nothing", rotateUnknown},
		{"concurrent Rotate of one token lets exactly one win", rotateRace},
		{"concurrent Issue with one replay mark lets exactly one win", issueRace},
		{"ClaimMarks claims all marks or, on a held one, none", claimMarksAllOrNone},
		{"ClaimMarks and Issue share one replay namespace", claimMarksSharesNamespace},
		{"concurrent ClaimMarks with one mark lets exactly one win", claimMarksRace},
		{"RevokeAccess deletes only that access record", revokeAccess},
		{"RevokeChain deletes every access and refresh token of the chain", revokeChain},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.test(t, s)
		})
	}
}

// RunExpiry runs the expiry rules, each in a testing/synctest bubble whose
// fake clock the store must read (time.Now), so that no rule waits out a
// TTL in real time. newStore is called inside the bubble. A store that
// leaves expiry to a server with a clock of its own cannot run in a bubble:
// it proves instead that it hands the server the right time to live.
func RunExpiry(t *testing.T, newStore func(t *testing.T) grant.Store) {
	t.Helper()
	for _, r := range []expiring{
		{"a replay mark expires at its Until", markExpires},
		{"records expire at their Exp", recordsExpire},
		{"a chain lives as long as its longest-lived token", chainOutlivesItsTokens},
	} {
		t.Run(r.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := newStore(t)
				defer func() { _ = s.Close() }()
				at, check := r.arm(t, s)
				// The bubble's clock jumps; stores expire with
				// millisecond precision.
				time.Sleep(time.Until(at) + time.Millisecond)
				check(t)
			})
		})
	}
}

// expiring is a rule about expiry: arm writes and returns when to check.
type expiring struct {
	name string
	arm  func(t *testing.T, s grant.Store) (at time.Time, check func(t *testing.T))
}

// token is one token's hash and record, as the token endpoint would make it.
type token struct {
	hash    string
	access  *grant.AccessRecord
	refresh *grant.RefreshRecord
}

// randomID makes hashes and chain ids unique across subtests that share a
// backend.
func randomID() string { return grant.HashToken(rand.Text()) }

// newIssuance builds a grant of an access token and, when chain is not "",
// a refresh token of that chain, both living for ttl.
func newIssuance(chain string, ttl time.Duration, marks ...grant.Mark) *grant.Issuance {
	now := time.Now()
	exp := now.Add(ttl).Unix()
	is := &grant.Issuance{
		Marks:      marks,
		AccessHash: randomID(),
		Access: &grant.AccessRecord{
			TokenRecord: grant.TokenRecord{
				V:            grant.RecordVersion,
				Sub:          "alice",
				ClientID:     "client-1",
				Scope:        "read write",
				Aud:          []string{"api"},
				Iss:          "https://as.example",
				AssertionIss: "https://idp.example",
				Iat:          now.Unix(),
				Exp:          exp,
				Tenant:       "",
				Claims:       map[string]json.RawMessage{},
			},
			Chain: chain,
		},
	}
	if chain != "" {
		is.RefreshHash = randomID()
		is.Refresh = &grant.RefreshRecord{
			TokenRecord: grant.TokenRecord{
				V:            grant.RecordVersion,
				Sub:          "alice",
				ClientID:     "client-1",
				Scope:        "read write",
				Aud:          []string{"api"},
				Iss:          "https://as.example",
				AssertionIss: "https://idp.example",
				Iat:          now.Unix(),
				Exp:          exp,
				Tenant:       "",
				Claims:       map[string]json.RawMessage{},
			},
			Chain: chain,
		}
	}
	return is
}

func mark(until time.Duration) grant.Mark {
	return grant.Mark{Key: randomID(), Until: time.Now().Add(until)}
}

func mustIssue(t *testing.T, s grant.Store, is *grant.Issuance) {
	t.Helper()
	if err := s.Issue(t.Context(), is); err != nil {
		t.Fatalf("Issue: %v", err)
	}
}

// wantAccess fails unless the access record under hash equals want (nil:
// absent).
func wantAccess(t *testing.T, s grant.Store, hash string, want *grant.AccessRecord) {
	t.Helper()
	got, err := s.Access(t.Context(), hash)
	switch {
	case want == nil && !errors.Is(err, grant.ErrNotFound):
		t.Errorf("Access(%.8s…) = %+v, %v; want ErrNotFound", hash, got, err)
	case want != nil && err != nil:
		t.Errorf("Access(%.8s…): %v", hash, err)
	case want != nil && !reflect.DeepEqual(got, want):
		t.Errorf("Access(%.8s…) = %+v; want %+v", hash, got, want)
	}
}

// wantRefresh is wantAccess for refresh records.
func wantRefresh(t *testing.T, s grant.Store, hash string, want *grant.RefreshRecord) {
	t.Helper()
	got, err := s.Refresh(t.Context(), hash)
	switch {
	case want == nil && !errors.Is(err, grant.ErrNotFound):
		t.Errorf("Refresh(%.8s…) = %+v, %v; want ErrNotFound", hash, got, err)
	case want != nil && err != nil:
		t.Errorf("Refresh(%.8s…): %v", hash, err)
	case want != nil && !reflect.DeepEqual(got, want):
		t.Errorf("Refresh(%.8s…) = %+v; want %+v", hash, got, want)
	}
}

// rotated is rec as Rotate leaves it.
func rotated(rec *grant.RefreshRecord) *grant.RefreshRecord {
	r := *rec
	r.Rotated = true
	return &r
}

func issueWritesRecords(t *testing.T, s grant.Store) {
	is := newIssuance(randomID(), time.Hour, mark(time.Minute))
	mustIssue(t, s, is)
	wantAccess(t, s, is.AccessHash, is.Access)
	wantRefresh(t, s, is.RefreshHash, is.Refresh)

	// An access token without refresh token is a grant too.
	only := newIssuance("", time.Hour)
	mustIssue(t, s, only)
	wantAccess(t, s, only.AccessHash, only.Access)
	wantAccess(t, s, randomID(), nil)
	wantRefresh(t, s, randomID(), nil)
}

func recordsRoundTrip(t *testing.T, s grant.Store) {
	chain := randomID()
	now := time.Now().Unix()
	claims := map[string]json.RawMessage{
		"email":  json.RawMessage(`"alice@example.com"`),
		"groups": json.RawMessage(`["a","b"]`),
		"n":      json.RawMessage(`12345678901234567890`),
		"nested": json.RawMessage(`{"x":[1,2.5,null,true],"y":"\u00e9\"q"}`),
	}
	is := &grant.Issuance{
		AccessHash: randomID(),
		Access: &grant.AccessRecord{
			TokenRecord: grant.TokenRecord{
				V:            grant.RecordVersion,
				Sub:          "sub ü",
				ClientID:     "client-1",
				Scope:        "",
				Aud:          []string{"api-1", "api-2"},
				Iss:          "https://as.example",
				AssertionIss: "https://idp.example",
				Iat:          now,
				Exp:          now + 3600,
				Tenant:       "",
				Claims:       claims,
			},
			JTI:   "jti-1",
			Chain: chain,
		},
		RefreshHash: randomID(),
		Refresh: &grant.RefreshRecord{
			TokenRecord: grant.TokenRecord{
				V:            grant.RecordVersion,
				Sub:          "sub ü",
				ClientID:     "client-1",
				Scope:        "read",
				Aud:          []string{"api-1", "api-2"},
				Iss:          "https://as.example",
				AssertionIss: "https://idp.example",
				Iat:          now,
				Exp:          now + 7200,
				Tenant:       "",
				Claims:       claims,
			},
			Chain: chain,
		},
	}
	mustIssue(t, s, is)
	wantAccess(t, s, is.AccessHash, is.Access)
	wantRefresh(t, s, is.RefreshHash, is.Refresh)

	// Empty collections stay empty rather than turning into null, and a
	// tenant other than the top level survives.
	other := newIssuance(randomID(), time.Hour)
	other.Access.Aud, other.Access.Tenant = []string{}, "tenant.example"
	other.Refresh.Tenant = "tenant.example"
	mustIssue(t, s, other)
	wantAccess(t, s, other.AccessHash, other.Access)
	wantRefresh(t, s, other.RefreshHash, other.Refresh)
}

// oddClaims are copied claims that Go's encoding/json accepts and Redis's
// cjson does not, a store's scripts included: a lone surrogate escape, as
// JavaScript's JSON.stringify emits it, and nesting deeper than cjson's
// limit of 1000. The rest imitate a record's own members from inside the
// claims.
func oddClaims() map[string]json.RawMessage {
	return map[string]json.RawMessage{
		"lone":     json.RawMessage(`"\ud800x"`),
		"deep":     json.RawMessage(strings.Repeat("[", 1001) + strings.Repeat("]", 1001)),
		"chain":    json.RawMessage(`"not-the-chain"`),
		"rotated":  json.RawMessage(`true`),
		"tail":     json.RawMessage(`",\"chain\":\"x\",\"rotated\":true}"`),
		"big":      json.RawMessage(`1e400`),
		"negative": json.RawMessage(`-0`),
	}
}

func oddClaimsRoundTrip(t *testing.T, s grant.Store) {
	chain := randomID()
	first := newIssuance(chain, time.Hour)
	first.Access.Claims, first.Refresh.Claims = oddClaims(), oddClaims()
	mustIssue(t, s, first)
	wantAccess(t, s, first.AccessHash, first.Access)
	wantRefresh(t, s, first.RefreshHash, first.Refresh)

	next := newIssuance(chain, time.Hour)
	next.Access.Claims, next.Refresh.Claims = oddClaims(), oddClaims()
	if err := s.Rotate(t.Context(), first.RefreshHash, next); err != nil {
		t.Fatalf("Rotate with odd claims: %v", err)
	}
	wantRefresh(t, s, first.RefreshHash, rotated(first.Refresh))
	wantRefresh(t, s, next.RefreshHash, next.Refresh)
	wantAccess(t, s, next.AccessHash, next.Access)

	// Reuse of the rotated token still finds and revokes the whole chain.
	if err := s.Rotate(t.Context(), first.RefreshHash, newIssuance(chain, time.Hour)); !errors.Is(err, grant.ErrRefreshReuse) {
		t.Fatalf("Rotate of a rotated token with odd claims: %v; want ErrRefreshReuse", err)
	}
	wantAccess(t, s, next.AccessHash, nil)
	wantRefresh(t, s, next.RefreshHash, nil)

	other := newIssuance(randomID(), time.Hour)
	other.Access.Claims, other.Refresh.Claims = oddClaims(), oddClaims()
	mustIssue(t, s, other)
	if err := s.RevokeChain(t.Context(), other.Refresh.Chain); err != nil {
		t.Fatalf("RevokeChain with odd claims: %v", err)
	}
	wantAccess(t, s, other.AccessHash, nil)
	wantRefresh(t, s, other.RefreshHash, nil)
}

func recordsNotAliased(t *testing.T, s grant.Store) {
	is := newIssuance(randomID(), time.Hour)
	is.Access.Claims["k"] = json.RawMessage(`"v"`)
	want := *is.Access
	want.Aud = []string{"api"}
	want.Claims = map[string]json.RawMessage{"k": json.RawMessage(`"v"`)}
	mustIssue(t, s, is)

	// Mutating what was written, or a refresh record that was read, must
	// not reach the stored record. An access record that was read is
	// read-only (grant.Store.Access: a store may share one decoding among
	// its readers), so it is not mutated here.
	is.Access.Sub, is.Access.Aud[0] = "mallory", "evil"
	is.Access.Claims["k"][1] = 'X'
	is.Access.Claims["added"] = json.RawMessage(`1`)
	wantAccess(t, s, is.AccessHash, &want)

	r, err := s.Refresh(t.Context(), is.RefreshHash)
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	r.Rotated = true
	if r, err := s.Refresh(t.Context(), is.RefreshHash); err != nil || r.Rotated {
		t.Errorf("Refresh after mutating a read copy: Rotated=%v, %v; want false, nil", r != nil && r.Rotated, err)
	}
}

func issueReplayWritesNothing(t *testing.T, s grant.Store) {
	seen := mark(time.Minute)
	mustIssue(t, s, newIssuance(randomID(), time.Hour, seen))

	fresh := mark(time.Minute)
	replay := newIssuance(randomID(), time.Hour, fresh, seen)
	err := s.Issue(t.Context(), replay)
	if !errors.Is(err, grant.ErrReplay) {
		t.Fatalf("Issue with a seen mark: %v; want ErrReplay", err)
	}
	wantReplayOf(t, err, seen)
	wantAccess(t, s, replay.AccessHash, nil)
	wantRefresh(t, s, replay.RefreshHash, nil)
	// The mark listed before the seen one was not claimed either.
	mustIssue(t, s, newIssuance("", time.Hour, fresh))
}

// soon is a whole Unix second at least 300 ms ahead: Exp has a resolution
// of seconds, and the record must be seen alive before it expires.
func soon() int64 { return time.Now().Add(1300 * time.Millisecond).Unix() }

func markExpires(t *testing.T, s grant.Store) (time.Time, func(*testing.T)) {
	m := mark(500 * time.Millisecond)
	mustIssue(t, s, newIssuance("", time.Hour, m))
	if err := s.Issue(t.Context(), newIssuance("", time.Hour, m)); !errors.Is(err, grant.ErrReplay) {
		t.Fatalf("Issue before Until: %v; want ErrReplay", err)
	}
	return m.Until, func(t *testing.T) { mustIssue(t, s, newIssuance("", time.Hour, m)) }
}

func recordsExpire(t *testing.T, s grant.Store) (time.Time, func(*testing.T)) {
	is := newIssuance(randomID(), time.Hour)
	is.Access.Exp, is.Refresh.Exp = soon(), soon()
	mustIssue(t, s, is)
	wantAccess(t, s, is.AccessHash, is.Access)
	wantRefresh(t, s, is.RefreshHash, is.Refresh)
	return time.Unix(max(is.Access.Exp, is.Refresh.Exp), 0), func(t *testing.T) {
		wantAccess(t, s, is.AccessHash, nil)
		wantRefresh(t, s, is.RefreshHash, nil)
	}
}

// wantReplayOf fails unless err is a *grant.ReplayError naming m.
func wantReplayOf(t *testing.T, err error, m grant.Mark) {
	t.Helper()
	var re *grant.ReplayError
	if !errors.As(err, &re) {
		t.Fatalf("replay error %v (%T) is not a *grant.ReplayError", err, err)
	}
	if re.Key != m.Key {
		t.Fatalf("ReplayError names mark %.8s…; want %.8s…", re.Key, m.Key)
	}
}

func replayNamesFirstHeldMark(t *testing.T, s grant.Store) {
	a, b := mark(time.Minute), mark(time.Minute)
	mustIssue(t, s, newIssuance("", time.Hour, a, b))
	for _, tc := range []struct {
		name  string
		marks []grant.Mark
		want  grant.Mark
	}{
		{"Issue, held mark last", []grant.Mark{mark(time.Minute), b}, b},
		{"Issue, two held marks", []grant.Mark{b, a}, b},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantReplayOf(t, s.Issue(t.Context(), newIssuance("", time.Hour, tc.marks...)), tc.want)
		})
		t.Run("ClaimMarks"+strings.TrimPrefix(tc.name, "Issue"), func(t *testing.T) {
			wantReplayOf(t, s.ClaimMarks(t.Context(), tc.marks), tc.want)
		})
	}
}

func issueRetryIsIdempotent(t *testing.T, s grant.Store) {
	// A client library that retries after a lost reply sends the very
	// same issuance again: its fresh access hash tells it from a replay.
	is := newIssuance(randomID(), time.Hour, mark(time.Minute), mark(time.Minute))
	mustIssue(t, s, is)
	mustIssue(t, s, is)
	wantAccess(t, s, is.AccessHash, is.Access)

	other := newIssuance(randomID(), time.Hour, is.Marks...)
	if err := s.Issue(t.Context(), other); !errors.Is(err, grant.ErrReplay) {
		t.Fatalf("Issue of other tokens with the same marks: %v; want ErrReplay", err)
	}
}

func issueRejectsMalformed(t *testing.T, s grant.Store) {
	for _, tc := range []struct {
		name  string
		spoil func(is *grant.Issuance)
	}{
		{"no access record", func(is *grant.Issuance) { is.Access = nil }},
		{"no access hash", func(is *grant.Issuance) { is.AccessHash = "" }},
		{"refresh record without hash", func(is *grant.Issuance) { is.RefreshHash = "" }},
		{"refresh hash without record", func(is *grant.Issuance) { is.Refresh = nil }},
		{"refresh record without chain", func(is *grant.Issuance) { is.Refresh.Chain = "" }},
		{"access record without expiry", func(is *grant.Issuance) { is.Access.Exp = 0 }},
		{"refresh record without expiry", func(is *grant.Issuance) { is.Refresh.Exp = 0 }},
		{"mark without key", func(is *grant.Issuance) { is.Marks[0].Key = "" }},
		{"mark without time", func(is *grant.Issuance) { is.Marks[0].Until = time.Time{} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			is := newIssuance(randomID(), time.Hour, mark(time.Minute))
			tc.spoil(is)
			err := s.Issue(t.Context(), is)
			if err == nil || errors.Is(err, grant.ErrReplay) || errors.Is(err, grant.ErrUnavailable) {
				t.Fatalf("Issue: %v; want a plain error", err)
			}
			if is.AccessHash != "" {
				wantAccess(t, s, is.AccessHash, nil)
			}
		})
	}
}

func rotateLive(t *testing.T, s grant.Store) {
	chain := randomID()
	first := newIssuance(chain, time.Hour)
	mustIssue(t, s, first)
	next := newIssuance(chain, 2*time.Hour)
	next.Refresh.Scope = "read write" // first-granted scope carries over
	next.Access.Scope = "read"        // a refresh may narrow the access token
	if err := s.Rotate(t.Context(), first.RefreshHash, next); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	wantRefresh(t, s, first.RefreshHash, rotated(first.Refresh))
	wantRefresh(t, s, next.RefreshHash, next.Refresh)
	wantAccess(t, s, next.AccessHash, next.Access)
	// The access token issued before keeps living until its own expiry.
	wantAccess(t, s, first.AccessHash, first.Access)

	// Refresh settings that issue no new refresh token still rotate.
	last := newIssuance("", time.Hour)
	if err := s.Rotate(t.Context(), next.RefreshHash, last); err != nil {
		t.Fatalf("Rotate without a next refresh token: %v", err)
	}
	wantRefresh(t, s, next.RefreshHash, rotated(next.Refresh))
	wantAccess(t, s, last.AccessHash, last.Access)
}

func rotateReuse(t *testing.T, s grant.Store) {
	chain := randomID()
	gen := []*grant.Issuance{newIssuance(chain, time.Hour)}
	mustIssue(t, s, gen[0])
	for i := 1; i < 3; i++ {
		gen = append(gen, newIssuance(chain, time.Hour))
		if err := s.Rotate(t.Context(), gen[i-1].RefreshHash, gen[i]); err != nil {
			t.Fatalf("Rotate %d: %v", i, err)
		}
	}
	bystander := newIssuance(randomID(), time.Hour)
	mustIssue(t, s, bystander)

	attempt := newIssuance(chain, time.Hour)
	if err := s.Rotate(t.Context(), gen[0].RefreshHash, attempt); !errors.Is(err, grant.ErrRefreshReuse) {
		t.Fatalf("Rotate of a rotated token: %v; want ErrRefreshReuse", err)
	}
	for i, is := range append(gen, attempt) {
		t.Logf("generation %d", i)
		wantAccess(t, s, is.AccessHash, nil)
		wantRefresh(t, s, is.RefreshHash, nil)
	}
	wantAccess(t, s, bystander.AccessHash, bystander.Access)
	wantRefresh(t, s, bystander.RefreshHash, bystander.Refresh)
}

func rotateRetryIsIdempotent(t *testing.T, s grant.Store) {
	chain := randomID()
	first := newIssuance(chain, time.Hour)
	mustIssue(t, s, first)
	next := newIssuance(chain, time.Hour)
	for i := 0; i < 2; i++ {
		if err := s.Rotate(t.Context(), first.RefreshHash, next); err != nil {
			t.Fatalf("Rotate attempt %d: %v", i+1, err)
		}
	}
	wantAccess(t, s, first.AccessHash, first.Access)
	wantAccess(t, s, next.AccessHash, next.Access)
	wantRefresh(t, s, next.RefreshHash, next.Refresh)

	// Without a next refresh token the access token identifies the retry.
	last := newIssuance("", time.Hour)
	for i := 0; i < 2; i++ {
		if err := s.Rotate(t.Context(), next.RefreshHash, last); err != nil {
			t.Fatalf("Rotate without refresh token, attempt %d: %v", i+1, err)
		}
	}
	wantAccess(t, s, last.AccessHash, last.Access)
}

func rotateUnknown(t *testing.T, s grant.Store) {
	next := newIssuance(randomID(), time.Hour)
	if err := s.Rotate(t.Context(), randomID(), next); !errors.Is(err, grant.ErrNotFound) {
		t.Fatalf("Rotate of an unknown token: %v; want ErrNotFound", err)
	}
	wantAccess(t, s, next.AccessHash, nil)
	wantRefresh(t, s, next.RefreshHash, nil)
}

func rotateRace(t *testing.T, s grant.Store) {
	chain := randomID()
	first := newIssuance(chain, time.Hour)
	mustIssue(t, s, first)
	errs := race(func(int) error {
		return s.Rotate(t.Context(), first.RefreshHash, newIssuance(chain, time.Hour))
	})
	wins := 0
	for _, err := range errs {
		switch {
		case err == nil:
			wins++
		case errors.Is(err, grant.ErrRefreshReuse), errors.Is(err, grant.ErrNotFound):
			// A loser is a reuse, or arrives after a reuse removed the chain.
		default:
			t.Errorf("Rotate: unexpected error %v", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d of %d concurrent rotations succeeded; want exactly 1", wins, raceWorkers)
	}
}

func issueRace(t *testing.T, s grant.Store) {
	m := mark(time.Minute)
	grants := make([]*grant.Issuance, raceWorkers)
	for i := range grants {
		grants[i] = newIssuance(randomID(), time.Hour, m)
	}
	errs := race(func(i int) error { return s.Issue(t.Context(), grants[i]) })
	wins := 0
	for i, err := range errs {
		switch {
		case err == nil:
			wins++
			wantAccess(t, s, grants[i].AccessHash, grants[i].Access)
		case errors.Is(err, grant.ErrReplay):
			wantAccess(t, s, grants[i].AccessHash, nil)
		default:
			t.Errorf("Issue: unexpected error %v", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d of %d concurrent issues with one mark succeeded; want exactly 1", wins, raceWorkers)
	}
}

// race runs f on raceWorkers goroutines released at once.
func race(f func(i int) error) []error {
	errs := make([]error, raceWorkers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = f(i)
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

func revokeAccess(t *testing.T, s grant.Store) {
	is := newIssuance(randomID(), time.Hour)
	other := newIssuance("", time.Hour)
	mustIssue(t, s, is)
	mustIssue(t, s, other)
	if err := s.RevokeAccess(t.Context(), is.AccessHash); err != nil {
		t.Fatalf("RevokeAccess: %v", err)
	}
	wantAccess(t, s, is.AccessHash, nil)
	wantRefresh(t, s, is.RefreshHash, is.Refresh)
	wantAccess(t, s, other.AccessHash, other.Access)
	if err := s.RevokeAccess(t.Context(), is.AccessHash); err != nil {
		t.Fatalf("RevokeAccess of a missing record: %v; want nil", err)
	}
}

func revokeChain(t *testing.T, s grant.Store) {
	chain := randomID()
	first := newIssuance(chain, time.Hour)
	mustIssue(t, s, first)
	next := newIssuance(chain, time.Hour)
	if err := s.Rotate(t.Context(), first.RefreshHash, next); err != nil {
		t.Fatalf("Rotate: %v", err)
	}
	bystander := newIssuance(randomID(), time.Hour)
	mustIssue(t, s, bystander)
	if err := s.RevokeChain(t.Context(), chain); err != nil {
		t.Fatalf("RevokeChain: %v", err)
	}
	for _, is := range []*grant.Issuance{first, next} {
		wantAccess(t, s, is.AccessHash, nil)
		wantRefresh(t, s, is.RefreshHash, nil)
	}
	wantAccess(t, s, bystander.AccessHash, bystander.Access)
	wantRefresh(t, s, bystander.RefreshHash, bystander.Refresh)
	if err := s.RevokeChain(t.Context(), randomID()); err != nil {
		t.Fatalf("RevokeChain of an unknown chain: %v; want nil", err)
	}
}

func chainOutlivesItsTokens(t *testing.T, s grant.Store) (time.Time, func(*testing.T)) {
	// A client's access_token_ttl may exceed its refresh_token_ttl, or
	// the other way round; revoking the chain must find every live token.
	longAccess := newIssuance(randomID(), time.Hour)
	longAccess.Refresh.Exp = soon()
	longRefresh := newIssuance(randomID(), time.Hour)
	longRefresh.Access.Exp = soon()
	mustIssue(t, s, longAccess)
	mustIssue(t, s, longRefresh)
	return time.Unix(max(longAccess.Refresh.Exp, longRefresh.Access.Exp), 0), func(t *testing.T) {
		wantRefresh(t, s, longAccess.RefreshHash, nil)
		wantAccess(t, s, longRefresh.AccessHash, nil)
		// Writes give a store the occasion to purge what has expired.
		for range 3 {
			mustIssue(t, s, newIssuance(randomID(), time.Hour))
		}
		for _, is := range []*grant.Issuance{longAccess, longRefresh} {
			if err := s.RevokeChain(t.Context(), is.Refresh.Chain); err != nil {
				t.Fatalf("RevokeChain: %v", err)
			}
		}
		wantAccess(t, s, longAccess.AccessHash, nil)
		wantRefresh(t, s, longRefresh.RefreshHash, nil)
	}
}

func newMark() grant.Mark {
	return grant.Mark{Key: randomID(), Until: time.Now().Add(time.Minute)}
}

func claimMarksAllOrNone(t *testing.T, s grant.Store) {
	ctx := t.Context()
	a, b, c := newMark(), newMark(), newMark()
	if err := s.ClaimMarks(ctx, []grant.Mark{a}); err != nil {
		t.Fatalf("first claim: %v", err)
	}
	err := s.ClaimMarks(ctx, []grant.Mark{b, a})
	if !errors.Is(err, grant.ErrReplay) {
		t.Fatalf("claim with a held mark: %v, want ErrReplay", err)
	}
	wantReplayOf(t, err, a)
	// b must not have been taken by the refused claim.
	if err := s.ClaimMarks(ctx, []grant.Mark{b, c}); err != nil {
		t.Fatalf("a refused claim took a mark: %v", err)
	}
}

func claimMarksSharesNamespace(t *testing.T, s grant.Store) {
	ctx := t.Context()
	m := newMark()
	if err := s.ClaimMarks(ctx, []grant.Mark{m}); err != nil {
		t.Fatal(err)
	}
	is := newIssuance("", time.Minute, m)
	if err := s.Issue(ctx, is); !errors.Is(err, grant.ErrReplay) {
		t.Fatalf("Issue with a claimed mark: %v, want ErrReplay", err)
	}
	if _, err := s.Access(ctx, is.AccessHash); !errors.Is(err, grant.ErrNotFound) {
		t.Fatalf("refused Issue wrote its record: %v", err)
	}
	m2 := newMark()
	if err := s.Issue(ctx, newIssuance("", time.Minute, m2)); err != nil {
		t.Fatal(err)
	}
	if err := s.ClaimMarks(ctx, []grant.Mark{m2}); !errors.Is(err, grant.ErrReplay) {
		t.Fatalf("ClaimMarks of a mark an Issue holds: %v, want ErrReplay", err)
	}
}

func claimMarksRace(t *testing.T, s grant.Store) {
	m := newMark()
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	start := make(chan struct{})
	for range raceWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			err := s.ClaimMarks(t.Context(), []grant.Mark{m})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, grant.ErrReplay):
				t.Errorf("ClaimMarks: %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d of %d concurrent claims won, want 1", wins, raceWorkers)
	}
}
