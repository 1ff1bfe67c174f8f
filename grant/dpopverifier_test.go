package grant_test

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/memstore"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/redisstore"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/internal/testredis"
)

const resourceURL = "https://api.example/r"

// seedBound stores an access token record bound to jkt ("" for a bearer
// token) and returns the token.
func seedBound(t *testing.T, st grant.Store, jkt string) string {
	t.Helper()
	return seed(t, st, func(r *grant.AccessRecord) {
		if jkt != "" {
			r.Cnf = &grant.Confirmation{JKT: jkt}
		}
	})
}

// resourceRequest is a GET of resourceURL with an Authorization header
// ("" for none) and DPoP proofs.
func resourceRequest(authorization string, proofs ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, resourceURL+"?q=1", nil)
	if authorization != "" {
		r.Header.Set("Authorization", authorization)
	}
	for _, p := range proofs {
		r.Header.Add("DPoP", p)
	}
	return r
}

func resourceProof(token string) *proof {
	return newProof("GET", resourceURL).with(map[string]any{"ath": grant.AccessTokenHash(token)})
}

func TestVerifierDPoPRules(t *testing.T) {
	const algs = `DPoP algs="RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA"`
	const (
		bearerInvalid = `Bearer realm="api", error="invalid_token"`
		dpopInvalid   = algs + `, error="invalid_token"`
		badProof      = algs + `, error="invalid_dpop_proof"`
	)
	cases := []struct {
		name      string
		mode      string
		request   func(bound, bearer string) *http.Request
		status    int
		challenge []string
	}{
		{"a bound token with its proof passes", "", func(bound, _ string) *http.Request {
			return resourceRequest("DPoP "+bound, resourceProof(bound).String())
		}, 200, nil},
		{"a Bearer token passes when DPoP is allowed", "", func(_, bearer string) *http.Request {
			return resourceRequest("Bearer " + bearer)
		}, 200, nil},
		{"no credentials get both challenges", "", func(string, string) *http.Request {
			return resourceRequest("")
		}, 401, []string{`Bearer realm="api"`, algs}},
		{"no credentials under dpop required get the DPoP challenge", grant.DPoPRequired, func(string, string) *http.Request {
			return resourceRequest("")
		}, 401, []string{algs}},
		{"no credentials under dpop off get the Bearer challenge", grant.DPoPOff, func(string, string) *http.Request {
			return resourceRequest("")
		}, 401, []string{`Bearer realm="api"`}},
		{"both schemes at once", "", func(bound, bearer string) *http.Request {
			r := resourceRequest("Bearer "+bearer, resourceProof(bound).String())
			r.Header.Add("Authorization", "DPoP "+bound)
			return r
		}, 400, []string{`Bearer realm="api", error="invalid_request"`}},
		{"a bound token presented as Bearer", "", func(bound, _ string) *http.Request {
			return resourceRequest("Bearer "+bound, resourceProof(bound).String())
		}, 401, []string{bearerInvalid}},
		{"a Bearer token presented as DPoP", "", func(_, bearer string) *http.Request {
			return resourceRequest("DPoP "+bearer, resourceProof(bearer).String())
		}, 401, []string{dpopInvalid}},
		{"a Bearer token under dpop required", grant.DPoPRequired, func(_, bearer string) *http.Request {
			return resourceRequest("Bearer " + bearer)
		}, 401, []string{dpopInvalid}},
		{"the DPoP scheme under dpop off", grant.DPoPOff, func(bound, _ string) *http.Request {
			return resourceRequest("DPoP "+bound, resourceProof(bound).String())
		}, 401, []string{bearerInvalid}},
		{"no proof", "", func(bound, _ string) *http.Request {
			return resourceRequest("DPoP " + bound)
		}, 401, []string{badProof}},
		{"two proofs", "", func(bound, _ string) *http.Request {
			return resourceRequest("DPoP "+bound, resourceProof(bound).String(), resourceProof(bound).String())
		}, 401, []string{badProof}},
		{"a missing ath", "", func(bound, _ string) *http.Request {
			return resourceRequest("DPoP "+bound, newProof("GET", resourceURL).String())
		}, 401, []string{badProof}},
		{"a wrong ath", "", func(bound, _ string) *http.Request {
			return resourceRequest("DPoP "+bound, resourceProof("another token").String())
		}, 401, []string{badProof}},
		{"a proof of another key", "", func(bound, _ string) *http.Request {
			p := resourceProof(bound)
			p.signer, p.jwkOf = dpopOther(), dpopOther()
			return resourceRequest("DPoP "+bound, p.String())
		}, 401, []string{badProof}},
		{"a proof for another method", "", func(bound, _ string) *http.Request {
			p := newProof("POST", resourceURL).with(map[string]any{"ath": grant.AccessTokenHash(bound)})
			return resourceRequest("DPoP "+bound, p.String())
		}, 401, []string{badProof}},
		{"a proof for another URL", "", func(bound, _ string) *http.Request {
			p := newProof("GET", "https://api.example/other").with(map[string]any{"ath": grant.AccessTokenHash(bound)})
			return resourceRequest("DPoP "+bound, p.String())
		}, 401, []string{badProof}},
		{"a stale proof", "", func(bound, _ string) *http.Request {
			return resourceRequest("DPoP "+bound, resourceProof(bound).with(map[string]any{"iat": time.Now().Add(-3 * time.Minute).Unix()}).String())
		}, 401, []string{badProof}},
		{"an unknown token with a good proof", "", func(string, string) *http.Request {
			return resourceRequest("DPoP unknown", resourceProof("unknown").String())
		}, 401, []string{dpopInvalid}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st := &countingStore{Store: memstore.New(memstore.Options{})}
			t.Cleanup(func() { _ = st.Close() })
			bound, bearer := seedBound(t, st, jktOf(t, dpopKey())), seedBound(t, st, "")
			writes := st.writes.Load()
			v, err := grant.NewVerifier(grant.VerifierConfig{Store: st, Realm: "api", DPoP: tc.mode})
			if err != nil {
				t.Fatal(err)
			}
			rec, oerr := v.Authenticate(tc.request(bound, bearer))
			if tc.status == 200 {
				if oerr != nil || rec == nil {
					t.Fatalf("refused: %v", oerr)
				}
				return
			}
			if oerr == nil {
				t.Fatal("accepted")
			}
			w := httptest.NewRecorder()
			v.WriteError(w, oerr)
			got := w.Header().Values("WWW-Authenticate")
			if w.Code != tc.status || len(got) != len(tc.challenge) {
				t.Fatalf("got %d %q, want %d %q", w.Code, got, tc.status, tc.challenge)
			}
			for i := range got {
				if got[i] != tc.challenge[i] {
					t.Fatalf("got %d %q, want %d %q", w.Code, got, tc.status, tc.challenge)
				}
			}
			if n := st.writes.Load() - writes; n != 0 {
				t.Fatalf("%d writes for a refused request", n)
			}
		})
	}
}

func TestVerifierDPoPProofIsSingleUse(t *testing.T) {
	st := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = st.Close() })
	v, _ := grant.NewVerifier(grant.VerifierConfig{Store: st})
	bound := seedBound(t, st, jktOf(t, dpopKey()))
	p := resourceProof(bound).String()
	if _, oerr := v.Authenticate(resourceRequest("DPoP "+bound, p)); oerr != nil {
		t.Fatalf("first use: %v", oerr)
	}
	if _, oerr := v.Authenticate(resourceRequest("DPoP "+bound, p)); oerr == nil || oerr.Code != grant.CodeInvalidDPoPProof {
		t.Fatalf("replay: %v", oerr)
	}
}

func TestVerifierDPoPReplayRaceAcrossTwoGatewaysOnOneRedis(t *testing.T) {
	srv := testredis.Start(t)
	var verifiers [2]*grant.Verifier
	var first grant.Store
	for i := range verifiers {
		st, err := redisstore.New(&redis.UniversalOptions{Addrs: []string{srv.Addr()}}, redisstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = st.Close() })
		if first == nil {
			first = st
		}
		if verifiers[i], err = grant.NewVerifier(grant.VerifierConfig{Store: st}); err != nil {
			t.Fatal(err)
		}
	}
	bound := seedBound(t, first, jktOf(t, dpopKey()))
	for round := range 20 {
		p := resourceProof(bound).String()
		var wg sync.WaitGroup
		var accepted [2]bool
		for i, v := range verifiers {
			wg.Go(func() {
				_, oerr := v.Authenticate(resourceRequest("DPoP "+bound, p))
				accepted[i] = oerr == nil
			})
		}
		wg.Wait()
		if accepted[0] == accepted[1] {
			t.Fatalf("round %d: accepted %v, want exactly one", round, accepted)
		}
	}
}

func TestVerifierDPoPResourceMetadata(t *testing.T) {
	st := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = st.Close() })
	for _, tc := range []struct {
		mode     string
		algs     []string
		required bool
	}{
		{"", []string{"ES256"}, false},
		{grant.DPoPRequired, []string{"ES256"}, true},
		{grant.DPoPOff, nil, false},
	} {
		v, err := grant.NewVerifier(grant.VerifierConfig{Store: st, DPoP: tc.mode, DPoPAlgorithms: []string{"ES256"},
			Resource: "https://api.example/mcp", AuthorizationServers: []string{"https://as.example"}})
		if err != nil {
			t.Fatal(err)
		}
		doc := v.ResourceMetadata()
		if !slices.Equal(doc.DPoPSigningAlgValuesSupported, tc.algs) || doc.DPoPBoundAccessTokensRequired != tc.required {
			t.Fatalf("dpop %q: algs %v, required %v; want %v, %v", tc.mode, doc.DPoPSigningAlgValuesSupported,
				doc.DPoPBoundAccessTokensRequired, tc.algs, tc.required)
		}
	}
	if _, err := grant.NewVerifier(grant.VerifierConfig{Store: st, DPoP: "maybe"}); err == nil {
		t.Fatal("an unknown dpop mode was accepted")
	}
}
