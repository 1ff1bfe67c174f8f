package caddymodule

// Tenants (SPEC §2.1 tenant blocks, §3.1 ?tenantDomain=, §2.2 tenant):
// each tenant has its own trusted issuers, clients and replay records,
// inherits nothing from the top level, and its tokens say whose they are.

import (
	"crypto"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

const (
	tenantA = "a.example"
	tenantB = "b.example"
	// Every tenant and the top level trust an issuer named idp with this
	// iss value, tenant B with a key of its own.
	sharedIss = "https://idp.example"
	aOnlyIss  = "https://a-idp.example"
)

type tenantGateway struct {
	base, tokenURL string
	f              *fixture
	keyB           crypto.Signer
	secretB        string
}

func startTenantGateway(t *testing.T) *tenantGateway {
	t.Helper()
	f := newFixture(t)
	keyB := newECKey(t)
	certB := writeCert(t, f.dir, "b.pem", keyB)
	const secretB = "tenant-b secret"
	hashB, err := bcrypt.GenerateFromPassword([]byte(secretB), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	g := &tenantGateway{base: fmt.Sprintf("http://127.0.0.1:%d", port), f: f, keyB: keyB, secretB: secretB}
	g.tokenURL = g.base + "/oauth2/token"
	startCaddy(t, fmt.Sprintf(`http://127.0.0.1:%[1]d {
	jwt_grant {
		issuer_url %[2]s
		trusted_issuer idp {
			issuer %[3]s
			certificate %[4]s
		}
		client app {
			secret %[5]s
		}
		tenant %[6]s {
			trusted_issuer idp {
				issuer %[3]s
				certificate %[4]s
			}
			trusted_issuer a-idp {
				issuer %[7]s
				certificate %[4]s
			}
			client app {
				secret %[5]s
			}
			client a-only {
				secret %[5]s
			}
		}
		tenant %[8]s {
			trusted_issuer idp {
				issuer %[3]s
				certificate %[9]s
			}
			client app {
				secret %[10]s
			}
		}
	}
	handle /a/* {
		jwt_grant_auth {
			tenant %[6]s
		}
		respond "a:{http.auth.user.tenant}"
	}
	handle /any/* {
		jwt_grant_auth {
			tenant *
		}
		respond "any:{http.auth.user.tenant}"
	}
	handle /top/* {
		jwt_grant_auth
		respond "top:{http.auth.user.tenant}"
	}
}
`, port, g.base, sharedIss, f.certPath, f.hash, tenantA, aOnlyIss, tenantB, certB, string(hashB)))
	return g
}

// tokenURLOf is the token endpoint of a tenant ("" for the top level).
func (g *tenantGateway) endpoint(path, tenant string) string {
	if tenant == "" {
		return g.base + path
	}
	return g.base + path + "?tenantDomain=" + url.QueryEscape(tenant)
}

// assertion is signed with the fixture's key unless key is given.
func (g *tenantGateway) assertion(t testing.TB, iss string, key crypto.Signer, claims map[string]any) string {
	t.Helper()
	if key == nil {
		key = g.f.key
	}
	c := map[string]any{"iss": iss, "sub": "alice", "aud": g.tokenURL}
	for k, v := range claims {
		c[k] = v
	}
	return signAs(t, key, "", c)
}

// issue gets a token in tenant as client app, with the tenant's secret.
func (g *tenantGateway) issue(t testing.TB, tenant string) response {
	t.Helper()
	key, secret := crypto.Signer(g.f.key), g.f.secret
	if tenant == tenantB {
		key, secret = g.keyB, g.secretB
	}
	r := postForm(t, g.endpoint("/oauth2/token", tenant), jwtBearerForm(g.assertion(t, sharedIss, key, nil)), "app", secret)
	if r.status != http.StatusOK {
		t.Fatalf("issuing in tenant %q: %s", tenant, r)
	}
	return r
}

func TestTenantsHaveTheirOwnIssuersAndClients(t *testing.T) {
	g := startTenantGateway(t)
	cases := []struct {
		name           string
		tenant         string
		client, secret string
		iss            string
		key            crypto.Signer // nil: the fixture's key
		status         int
		code           string
	}{
		{"top level", "", "app", g.f.secret, sharedIss, nil, 200, ""},
		{"tenant a", tenantA, "app", g.f.secret, sharedIss, nil, 200, ""},
		{"tenant a's own client and issuer", tenantA, "a-only", g.f.secret, aOnlyIss, nil, 200, ""},
		{"tenant b with its own key and secret", tenantB, "app", g.secretB, sharedIss, g.keyB, 200, ""},
		{"a tenant's client is unknown at the top level", "", "a-only", g.f.secret, sharedIss, nil, 401, "invalid_client"},
		{"a tenant's client is unknown in another tenant", tenantB, "a-only", g.f.secret, sharedIss, g.keyB, 401, "invalid_client"},
		{"a tenant's issuer is unknown at the top level", "", "app", g.f.secret, aOnlyIss, nil, 400, "invalid_grant"},
		{"a tenant's issuer is unknown in another tenant", tenantB, "app", g.secretB, aOnlyIss, nil, 400, "invalid_grant"},
		{"the same client id has its tenant's secret", tenantB, "app", g.f.secret, sharedIss, g.keyB, 401, "invalid_client"},
		{"the same issuer has its tenant's keys", tenantB, "app", g.secretB, sharedIss, nil, 400, "invalid_grant"},
		{"the top level does not inherit a tenant's key", "", "app", g.f.secret, sharedIss, g.keyB, 400, "invalid_grant"},
		{"unknown tenantDomain", "nowhere.example", "app", g.f.secret, sharedIss, nil, 400, "invalid_request"},
		{"empty tenantDomain", "", "app", g.f.secret, sharedIss, nil, 400, "invalid_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u := g.endpoint("/oauth2/token", tc.tenant)
			if tc.name == "empty tenantDomain" {
				u = g.tokenURL + "?tenantDomain="
			}
			r := postForm(t, u, jwtBearerForm(g.assertion(t, tc.iss, tc.key, nil)), tc.client, tc.secret)
			if tc.status == 200 {
				wantStatus(t, r, 200, tc.name)
				return
			}
			checkOAuthError(t, r, tc.status, tc.code)
		})
	}
}

// TestTenantReplayRecordsAreSharedPerIss: one assertion is exchanged once
// on the gateway, whichever tenant it is presented to first (SPEC §3.1
// check 10: every tenant that trusts the same iss shares its replay
// records). The contract changed: before, each tenant kept its own.
func TestTenantReplayRecordsAreSharedPerIss(t *testing.T) {
	g := startTenantGateway(t)
	a := g.assertion(t, sharedIss, nil, nil)
	wantStatus(t, postForm(t, g.endpoint("/oauth2/token", tenantA), jwtBearerForm(a), "app", g.f.secret), 200, "first use in tenant a")
	for _, tenant := range []string{"", tenantA} {
		r := postForm(t, g.endpoint("/oauth2/token", tenant), jwtBearerForm(a), "app", g.f.secret)
		checkOAuthError(t, r, 400, "invalid_grant")
	}
}

func TestTenantTokensRecordTheirTenant(t *testing.T) {
	g := startTenantGateway(t)
	introspect := func(token, tenant, secret string) response {
		return postForm(t, g.endpoint("/oauth2/introspect", tenant), url.Values{"token": {token}}, "app", secret)
	}
	top := g.issue(t, "")
	inA := g.issue(t, tenantA)

	for _, tc := range []struct {
		name, token, at, secret string
		active                  bool
		tenant                  string
	}{
		{"top-level token at the top level", top.str("access_token"), "", g.f.secret, true, ""},
		{"tenant a token in tenant a", inA.str("access_token"), tenantA, g.f.secret, true, tenantA},
		{"tenant a refresh token in tenant a", inA.str("refresh_token"), tenantA, g.f.secret, true, tenantA},
		{"tenant a token at the top level", inA.str("access_token"), "", g.f.secret, false, ""},
		{"tenant a token in tenant b", inA.str("access_token"), tenantB, g.secretB, false, ""},
		{"top-level token in tenant a", top.str("access_token"), tenantA, g.f.secret, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := introspect(tc.token, tc.at, tc.secret)
			wantStatus(t, r, 200, "introspection")
			if r.body["active"] != tc.active {
				t.Fatalf("active = %v, want %v: %s", r.body["active"], tc.active, r.raw)
			}
			if tc.active && r.body["tenant"] != tc.tenant {
				t.Fatalf("tenant = %v, want %q", r.body["tenant"], tc.tenant)
			}
		})
	}

	// A tenant's refresh token is unknown elsewhere, even to the client
	// of the same id.
	refresh := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {inA.str("refresh_token")}}
	checkOAuthError(t, postForm(t, g.tokenURL, refresh, "app", g.f.secret), 400, "invalid_grant")
	wantStatus(t, postForm(t, g.endpoint("/oauth2/token", tenantA), refresh, "app", g.f.secret), 200, "refresh in its tenant")
}

func TestTenantOptionOfJWTGrantAuth(t *testing.T) {
	g := startTenantGateway(t)
	tokens := map[string]string{
		"top": g.issue(t, "").str("access_token"),
		"a":   g.issue(t, tenantA).str("access_token"),
		"b":   g.issue(t, tenantB).str("access_token"),
	}
	for _, tc := range []struct {
		token, route string
		status       int
		body         string
	}{
		{"top", "/top/x", 200, "top:"},
		{"a", "/top/x", 401, ""},
		{"b", "/top/x", 401, ""},
		{"a", "/a/x", 200, "a:" + tenantA},
		{"top", "/a/x", 401, ""},
		{"b", "/a/x", 401, ""},
		{"top", "/any/x", 200, "any:"},
		{"a", "/any/x", 200, "any:" + tenantA},
		{"b", "/any/x", 200, "any:" + tenantB},
	} {
		t.Run(tc.token+" at "+tc.route, func(t *testing.T) {
			r := get(t, g.base+tc.route, tokens[tc.token])
			wantStatus(t, r, tc.status, tc.route)
			if tc.status == 200 && r.raw != tc.body {
				t.Fatalf("body %q, want %q", r.raw, tc.body)
			}
			if tc.status == 401 && !strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Fatalf("WWW-Authenticate %q, want invalid_token", r.header.Get("WWW-Authenticate"))
			}
		})
	}
}
