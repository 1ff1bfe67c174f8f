package caddymodule

import (
	"strings"
	"testing"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/internal/testredis"
)

// SPEC §6: copied claims of any JSON value the assertion may carry
// round-trip through refresh, introspection and revocation on both stores,
// also those Redis's cjson refuses (as in grant/storetest).
func TestCopiedClaimsCjsonRefusesRoundTripOnBothStores(t *testing.T) {
	deep := strings.Repeat("[", 1001) + strings.Repeat("]", 1001)
	for _, store := range []struct{ name, line string }{
		{"memory", ""},
		{"redis", "store redis " + testredis.Start(t).URL()},
	} {
		t.Run(store.name, func(t *testing.T) {
			e := startEdge(t, edgeConfig{store: store.line})
			// The edge's issuer copies email and groups.
			a := rawJWS(t, fixtureKey(), rs256Header, rawClaims(e.tokenURL, `,"email":"\ud800x","groups":`+deep))
			r := postForm(t, e.tokenURL, jwtBearerForm(a), "app", e.f.secret)
			if r.status != 200 {
				t.Fatalf("grant: %s", r)
			}
			for i := range 3 {
				if in := e.introspect(t, "app", r.str("access_token")); in.body["active"] != true || !strings.Contains(in.raw, `"email":"\ud800x"`) || !strings.Contains(in.raw, deep) {
					t.Fatalf("introspection of generation %d: %.200s", i, in.raw)
				}
				if g := get(t, e.api+"/any", r.str("access_token")); g.status != 200 {
					t.Fatalf("jwt_grant_auth, generation %d: %.200s", i, g.raw)
				}
				old := r.str("refresh_token")
				if r = e.refresh(t, old); r.status != 200 {
					t.Fatalf("refresh %d: %s", i, r)
				}
				if in := e.introspect(t, "app", old); in.body["active"] != false {
					t.Fatalf("a rotated refresh token is active: %.200s", in.raw)
				}
			}
			if rv := e.revoke(t, "app", r.str("refresh_token")); rv.status != 200 {
				t.Fatalf("revocation: %s", rv)
			}
			wantChallenge(t, get(t, e.api+"/any", r.str("access_token")), 401, challengeInvalid)
			if in := e.introspect(t, "app", r.str("refresh_token")); in.body["active"] != false {
				t.Fatalf("a revoked refresh token is active: %.200s", in.raw)
			}
		})
	}
}
