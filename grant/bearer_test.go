package grant_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/memstore"
)

func TestBearerTokenComesOnlyFromTheAuthorizationHeader(t *testing.T) {
	cases := []struct {
		name, header, query, want string
	}{
		{name: "Bearer scheme", header: "Bearer abc", want: "abc"},
		{name: "the scheme is case-insensitive", header: "bEaReR abc", want: "abc"},
		{name: "extra spaces around the token are ignored", header: "Bearer   abc  ", want: "abc"},
		{name: "no header is no token", want: ""},
		{name: "Basic is no token", header: "Basic YTpi", want: ""},
		{name: "the scheme alone is no token", header: "Bearer", want: ""},
		{name: "the scheme must be followed by a space", header: "Bearerabc", want: ""},
		{name: "the query string is never read", query: "access_token=abc", want: ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/?"+tc.query, nil)
			if tc.header != "" {
				r.Header.Set("Authorization", tc.header)
			}
			if got := grant.BearerToken(r); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// seed stores an access token record with the given changes to a
// default one and returns the token.
func seed(t *testing.T, st grant.Store, change func(*grant.AccessRecord)) string {
	t.Helper()
	now := time.Now().Unix()
	rec := &grant.AccessRecord{
		TokenRecord: grant.TokenRecord{
			V:            1,
			Sub:          "alice",
			ClientID:     "app",
			Scope:        "read write",
			Aud:          []string{"api", "app"},
			Iss:          lcIssuerURL,
			AssertionIss: "https://idp",
			Iat:          now,
			Exp:          now + 3600,
			Tenant:       "",
			Claims:       map[string]json.RawMessage{"email": json.RawMessage(`"alice@example.com"`)},
		},
	}
	if change != nil {
		change(rec)
	}
	token := "tok-" + t.Name() + "-" + time.Now().Format(time.RFC3339Nano)
	if err := st.Issue(t.Context(), &grant.Issuance{AccessHash: grant.HashToken(token), Access: rec}); err != nil {
		t.Fatal(err)
	}
	return token
}

func TestVerifierRules(t *testing.T) {
	st := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = st.Close() })
	acme := func(r *grant.AccessRecord) { r.Tenant = "acme" }
	cases := []struct {
		name   string
		cfg    grant.VerifierConfig
		record func(*grant.AccessRecord) // nil: default record; token "" when noToken
		token  string                    // overrides the seeded token when set
		clock  time.Duration             // the verifier's clock, ahead of real time
		reason string                    // "" accepted
		status int
		code   string
	}{
		{name: "a live token of the top level is accepted"},
		{name: "no token is 401 without an error code", token: "-", reason: "missing_token", status: 401},
		{name: "an unknown token is 401 invalid_token", token: "never-issued", reason: "unknown_token", status: 401, code: "invalid_token"},
		{name: "a token expired by the verifier's clock is 401 invalid_token", clock: time.Hour, reason: "expired", status: 401, code: "invalid_token"},
		{name: "a token one second before exp is accepted", clock: time.Hour - 2*time.Second},
		{name: "unset tenant rejects a tenant's token", record: acme, reason: "wrong_tenant", status: 401, code: "invalid_token"},
		{name: "a tenant accepts its own tokens", cfg: grant.VerifierConfig{Tenant: "acme"}, record: acme},
		{name: "a tenant rejects the top level's tokens", cfg: grant.VerifierConfig{Tenant: "acme"}, reason: "wrong_tenant", status: 401, code: "invalid_token"},
		{name: "* accepts a tenant's tokens", cfg: grant.VerifierConfig{Tenant: "*"}, record: acme},
		{name: "* accepts the top level's tokens", cfg: grant.VerifierConfig{Tenant: "*"}},
		{name: "an audience shared with the token is accepted", cfg: grant.VerifierConfig{Audience: []string{"other", "api"}}},
		{name: "no shared audience is 401 invalid_token", cfg: grant.VerifierConfig{Audience: []string{"other"}}, reason: "wrong_audience", status: 401, code: "invalid_token"},
		{name: "every required scope granted is accepted", cfg: grant.VerifierConfig{Scope: []string{"write", "read"}}},
		{name: "a missing scope is 403 insufficient_scope", cfg: grant.VerifierConfig{Scope: []string{"read", "admin"}}, reason: "insufficient_scope", status: 403, code: "insufficient_scope"},
		{name: "a scope's prefix is not the scope", cfg: grant.VerifierConfig{Scope: []string{"rea"}}, reason: "insufficient_scope", status: 403, code: "insufficient_scope"},
		{name: "a token with no scope lacks every scope", cfg: grant.VerifierConfig{Scope: []string{"read"}},
			record: func(r *grant.AccessRecord) { r.Scope = "" }, reason: "insufficient_scope", status: 403, code: "insufficient_scope"},
		{name: "an invalid token is 401 before any scope is judged", cfg: grant.VerifierConfig{Scope: []string{"admin"}},
			record: acme, reason: "wrong_tenant", status: 401, code: "invalid_token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Store = st
			cfg.Now = func() time.Time { return time.Now().Add(tc.clock) }
			v, err := grant.NewVerifier(cfg)
			if err != nil {
				t.Fatal(err)
			}
			token := seed(t, st, tc.record)
			switch tc.token {
			case "-":
				token = ""
			case "":
			default:
				token = tc.token
			}
			rec, oerr := v.Verify(t.Context(), token)
			if tc.reason == "" {
				if oerr != nil || rec == nil || rec.Sub != "alice" {
					t.Fatalf("refused: %v", oerr)
				}
				return
			}
			if oerr == nil {
				t.Fatalf("accepted, want %s", tc.reason)
			}
			if rec != nil || oerr.Reason != tc.reason || oerr.Status != tc.status || oerr.Code != tc.code {
				t.Fatalf("got %+v, want %s %d %q", oerr, tc.reason, tc.status, tc.code)
			}
		})
	}
}

func TestVerifierChallengesAreExactlyRFC6750s(t *testing.T) {
	st := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = st.Close() })
	v, err := grant.NewVerifier(grant.VerifierConfig{Store: st, Scope: []string{"read", "admin"}, Realm: "api"})
	if err != nil {
		t.Fatal(err)
	}
	down, _ := grant.NewVerifier(grant.VerifierConfig{Store: outageStore{st}, Realm: "api"})
	token := seed(t, st, nil)
	cases := []struct {
		name      string
		v         *grant.Verifier
		token     string
		status    int
		challenge string
		body      string
	}{
		{"missing token", v, "", 401, `Bearer realm="api"`, `{"error_description":"a bearer token is required"}`},
		{"invalid token", v, "unknown", 401, `Bearer realm="api", error="invalid_token"`, `{"error":"invalid_token","error_description":"the access token is invalid"}`},
		{"insufficient scope", v, token, 403, `Bearer realm="api", error="insufficient_scope", scope="read admin"`,
			`{"error":"insufficient_scope","error_description":"the access token lacks a required scope"}`},
		{"store down", down, token, 503, "", `{"error":"temporarily_unavailable","error_description":"token store is unavailable"}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, oerr := tc.v.Verify(t.Context(), tc.token)
			if oerr == nil {
				t.Fatal("accepted")
			}
			w := httptest.NewRecorder()
			tc.v.WriteError(w, oerr)
			if w.Code != tc.status || w.Header().Get("WWW-Authenticate") != tc.challenge || w.Body.String() != tc.body {
				t.Fatalf("got %d %q %s", w.Code, w.Header().Get("WWW-Authenticate"), w.Body)
			}
			if w.Header().Get("Content-Type") != "application/json; charset=utf-8" || w.Header().Get("Cache-Control") != "no-store" {
				t.Fatalf("headers %v", w.Header())
			}
			if (tc.status == 503) != (w.Header().Get("Retry-After") != "") {
				t.Fatalf("Retry-After %q with %d", w.Header().Get("Retry-After"), tc.status)
			}
		})
	}
}

type countingObserver struct{ storeErrors atomic.Int32 }

func (*countingObserver) Grant(string, string, string, time.Duration) {}
func (o *countingObserver) StoreError(string)                         { o.storeErrors.Add(1) }

func TestVerifierNeverPassesWhenTheStoreIsDown(t *testing.T) {
	st := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = st.Close() })
	token := seed(t, st, nil)
	obs := &countingObserver{}
	v, _ := grant.NewVerifier(grant.VerifierConfig{Store: outageStore{st}, Observer: obs})
	rec, oerr := v.Verify(t.Context(), token)
	if rec != nil || oerr == nil || oerr.Status != 503 || oerr.Code != "temporarily_unavailable" {
		t.Fatalf("got %v %+v", rec, oerr)
	}
	if obs.storeErrors.Load() != 1 {
		t.Fatalf("store errors counted: %d", obs.storeErrors.Load())
	}
}

// readCounter counts store reads.
type readCounter struct {
	grant.Store
	reads atomic.Int32
}

func (c *readCounter) Access(ctx context.Context, hash string) (*grant.AccessRecord, error) {
	c.reads.Add(1)
	return c.Store.Access(ctx, hash)
}

func TestVerifierReadsTheStoreOnceAndCachesNothing(t *testing.T) {
	st := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = st.Close() })
	rc := &readCounter{Store: st}
	v, _ := grant.NewVerifier(grant.VerifierConfig{Store: rc})
	token := seed(t, st, nil)
	if _, oerr := v.Verify(t.Context(), token); oerr != nil {
		t.Fatal(oerr)
	}
	if n := rc.reads.Load(); n != 1 {
		t.Fatalf("%d store reads for one verification", n)
	}
	if err := st.RevokeAccess(t.Context(), grant.HashToken(token)); err != nil {
		t.Fatal(err)
	}
	if _, oerr := v.Verify(t.Context(), token); oerr == nil || oerr.Reason != "unknown_token" {
		t.Fatalf("a revoked token must fail at once, got %+v", oerr)
	}
	// A missing token needs no read at all.
	_, _ = v.Verify(t.Context(), "")
	if n := rc.reads.Load(); n != 2 {
		t.Fatalf("%d store reads for two verifications and a missing token", n)
	}
}

func TestVerifierConfigRejectsWhatCannotBeAChallenge(t *testing.T) {
	cases := []struct {
		name string
		cfg  grant.VerifierConfig
	}{
		{"a realm with a quote", grant.VerifierConfig{Realm: `a"b`}},
		{"a realm with a backslash", grant.VerifierConfig{Realm: `a\b`}},
		{"a realm with a newline", grant.VerifierConfig{Realm: "a\nb"}},
		{"a scope with a quote", grant.VerifierConfig{Scope: []string{`re"ad`}}},
		{"an empty scope", grant.VerifierConfig{Scope: []string{""}}},
		{"an empty audience", grant.VerifierConfig{Audience: []string{""}}},
		{"a tenant pattern", grant.VerifierConfig{Tenant: "*.example"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.Check(); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if err := (grant.VerifierConfig{Realm: "my api", Scope: []string{"read:all"}, Tenant: "*"}).Check(); err != nil {
		t.Fatalf("a valid config: %v", err)
	}
	if _, err := grant.NewVerifier(grant.VerifierConfig{}); err == nil {
		t.Fatal("a verifier without a store was built")
	}
}

func BenchmarkVerifyMemory(b *testing.B) {
	st := memstore.New(memstore.Options{})
	b.Cleanup(func() { _ = st.Close() })
	now := time.Now().Unix()
	token := "bench-token"
	rec := &grant.AccessRecord{
		TokenRecord: grant.TokenRecord{
			V:        1,
			Sub:      "alice",
			ClientID: "app",
			Scope:    "read write",
			Aud:      []string{"api"},
			Iat:      now,
			Exp:      now + 3600,
			Claims:   map[string]json.RawMessage{},
		},
	}
	if err := st.Issue(context.Background(), &grant.Issuance{AccessHash: grant.HashToken(token), Access: rec}); err != nil {
		b.Fatal(err)
	}
	v, _ := grant.NewVerifier(grant.VerifierConfig{Store: st, Audience: []string{"api"}, Scope: []string{"read"}})
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, oerr := v.Verify(ctx, token); oerr != nil {
				b.Fatal(oerr)
			}
		}
	})
}

func TestVerifierRefusesMoreThanOneAuthorizationHeader(t *testing.T) {
	st := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = st.Close() })
	v, err := grant.NewVerifier(grant.VerifierConfig{Store: st, Realm: "api"})
	if err != nil {
		t.Fatal(err)
	}
	token := seed(t, st, nil)
	cases := []struct {
		name    string
		headers []string
		refused bool
	}{
		{name: "one live bearer token is accepted", headers: []string{"Bearer " + token}},
		{name: "a second bearer token after a live one is 400", headers: []string{"Bearer " + token, "Bearer forged"}, refused: true},
		{name: "a live bearer token after another is 400", headers: []string{"Bearer forged", "Bearer " + token}, refused: true},
		{name: "the same live token twice is 400", headers: []string{"Bearer " + token, "Bearer " + token}, refused: true},
		{name: "a Basic header after a live bearer token is 400", headers: []string{"Bearer " + token, "Basic YTpi"}, refused: true},
		{name: "two headers without a bearer token are 400", headers: []string{"Basic YTpi", "Basic YzpE"}, refused: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			for _, h := range tc.headers {
				r.Header.Add("Authorization", h)
			}
			_, oerr := v.Authenticate(r)
			if !tc.refused {
				if oerr != nil {
					t.Fatalf("refused: %v", oerr)
				}
				return
			}
			if oerr == nil {
				t.Fatal("accepted")
			}
			w := httptest.NewRecorder()
			v.WriteError(w, oerr)
			const challenge = `Bearer realm="api", error="invalid_request"`
			if w.Code != 400 || w.Header().Get("WWW-Authenticate") != challenge || oerr.Code != "invalid_request" {
				t.Fatalf("got %d %q %s, want 400 %q", w.Code, w.Header().Get("WWW-Authenticate"), w.Body, challenge)
			}
		})
	}
}
