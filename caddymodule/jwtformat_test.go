package caddymodule

// token_format jwt (SPEC §2.1, §3.5; RFC 9068): self-contained access
// tokens that a service verifies offline with the keys at jwks_path, and
// that are still stored so that revocation and jwt_grant_auth work.

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

const apiAudience = "https://api.example"

type jwtGateway struct {
	base, tokenURL string
	aud            string // of assertions: the token endpoint URL by issuer_url
	f              *fixture
}

// jwtSite is one site of a Caddyfile: a jwt_grant with token_format jwt
// signing with signingKey, a trusted issuer idp copying email and iss
// (a clash: the token's own iss must win), a client app with an audience,
// a tenant t.example, and /api/* behind jwt_grant_auth.
func jwtSite(port int, issuerURL, signingKey string, f *fixture) string {
	return fmt.Sprintf(`http://127.0.0.1:%[1]d {
	jwt_grant {
		issuer_url %[2]s
		token_format jwt
		signing_key %[3]s
		trusted_issuer idp {
			issuer https://idp.example
			certificate %[4]s
			claims email iss
		}
		client app {
			secret %[5]s
			audience %[6]s
		}
		tenant t.example {
			trusted_issuer idp {
				issuer https://idp.example
				certificate %[4]s
			}
			client app {
				secret %[5]s
			}
		}
	}
	handle /api/* {
		jwt_grant_auth {
			tenant *
		}
		respond "ok:{http.auth.user.id}"
	}
}
`, port, issuerURL, signingKey, f.certPath, f.hash, apiAudience)
}

func startJWTGateway(t *testing.T, signingKey string) *jwtGateway {
	t.Helper()
	f := newFixture(t)
	port := freePort(t)
	g := &jwtGateway{base: fmt.Sprintf("http://127.0.0.1:%d", port), f: f}
	g.tokenURL = g.base + "/oauth2/token"
	g.aud = g.tokenURL
	startCaddy(t, jwtSite(port, g.base, signingKey, f))
	return g
}

func (g *jwtGateway) issue(t testing.TB, tenant string, extra ...string) response {
	t.Helper()
	u := g.tokenURL
	if tenant != "" {
		u += "?tenantDomain=" + tenant
	}
	a := signAs(t, g.f.key, "", map[string]any{"iss": "https://idp.example", "sub": "alice", "aud": g.aud, "email": "alice@example.com"})
	r := postForm(t, u, jwtBearerForm(a, extra...), "app", g.f.secret)
	wantStatus(t, r, 200, "token request")
	return r
}

// fetchJWKS gets the published keys, as a resource server does.
func fetchJWKS(t testing.TB, base string) jose.JSONWebKeySet {
	t.Helper()
	r := get(t, base+"/oauth2/jwks", "")
	wantStatus(t, r, 200, "jwks")
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(r.raw), &set); err != nil {
		t.Fatalf("jwks %q: %v", r.raw, err)
	}
	return set
}

// verifyOffline verifies a JWT access token with a key set alone and
// returns its header and claims.
func verifyOffline(t testing.TB, set jose.JSONWebKeySet, token string) (jose.Header, map[string]any) {
	t.Helper()
	jws, err := jose.ParseSigned(token, []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.ES384, jose.ES512, jose.EdDSA})
	if err != nil {
		t.Fatalf("access token is not a JWS: %v", err)
	}
	hdr := jws.Signatures[0].Header
	keys := set.Key(hdr.KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %q matches %d published keys", hdr.KeyID, len(keys))
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		t.Fatalf("access token does not verify with the published key: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return hdr, claims
}

func TestJWTAccessTokenVerifiesWithThePublishedKeysAndCarriesItsClaims(t *testing.T) {
	key := newECKey(t)
	g := startJWTGateway(t, writeKeyPEM(t, t.TempDir(), "signing.key", key))
	r := g.issue(t, "", "scope", "read write")
	token := r.str("access_token")

	jwks := get(t, g.base+"/oauth2/jwks", "")
	if cc := jwks.header.Get("Cache-Control"); !strings.Contains(cc, "max-age=") {
		t.Errorf("jwks Cache-Control %q, want a max-age", cc)
	}
	hdr, claims := verifyOffline(t, fetchJWKS(t, g.base), token)
	if typ := hdr.ExtraHeaders[jose.HeaderType]; typ != "at+jwt" || hdr.Algorithm != "ES256" {
		t.Errorf("header typ %v alg %q, want at+jwt ES256", typ, hdr.Algorithm)
	}
	iat, _ := claims["iat"].(float64)
	jti, _ := claims["jti"].(string)
	want := map[string]any{
		"iss": g.base, "sub": "alice", "aud": apiAudience, "client_id": "app",
		"scope": "read write", "iat": iat, "exp": iat + r.body["expires_in"].(float64),
		"jti": jti, "email": "alice@example.com",
	}
	if jti == "" || iat == 0 || !reflect.DeepEqual(claims, want) {
		t.Errorf("claims\n%v\nwant\n%v", claims, want)
	}

	meta := get(t, g.base+"/.well-known/oauth-authorization-server", "")
	if meta.str("jwks_uri") != g.base+"/oauth2/jwks" {
		t.Errorf("metadata jwks_uri %q", meta.str("jwks_uri"))
	}
}

func TestJWTAccessTokenOfATenantNamesIt(t *testing.T) {
	g := startJWTGateway(t, writeKeyPEM(t, t.TempDir(), "signing.key", newECKey(t)))
	_, claims := verifyOffline(t, fetchJWKS(t, g.base), g.issue(t, "t.example").str("access_token"))
	if claims["tenant"] != "t.example" {
		t.Errorf("tenant claim %v, want t.example", claims["tenant"])
	}
	if _, ok := claims["scope"]; ok {
		t.Errorf("scope claim %v present though no scope was granted", claims["scope"])
	}
}

func TestJWTAccessTokenIsStoredAndRevocable(t *testing.T) {
	g := startJWTGateway(t, writeKeyPEM(t, t.TempDir(), "signing.key", newECKey(t)))
	r := g.issue(t, "")
	token := r.str("access_token")
	set := fetchJWKS(t, g.base)
	_, claims := verifyOffline(t, set, token)

	wantStatus(t, get(t, g.base+"/api/x", token), 200, "jwt_grant_auth before revocation")
	in := postForm(t, g.base+"/oauth2/introspect", url.Values{"token": {token}}, "app", g.f.secret)
	if in.body["active"] != true || in.body["jti"] != claims["jti"] {
		t.Fatalf("introspection %s: want active with the token's jti %v", in.raw, claims["jti"])
	}

	rev := postForm(t, g.base+"/oauth2/revoke", url.Values{"token": {token}}, "app", g.f.secret)
	wantStatus(t, rev, 200, "revocation")
	denied := get(t, g.base+"/api/x", token)
	wantStatus(t, denied, 401, "jwt_grant_auth after revocation")
	if !strings.Contains(denied.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("WWW-Authenticate %q", denied.header.Get("WWW-Authenticate"))
	}
	in = postForm(t, g.base+"/oauth2/introspect", url.Values{"token": {token}}, "app", g.f.secret)
	if in.body["active"] != false {
		t.Fatalf("introspection after revocation: %s", in.raw)
	}
	// What the documentation warns of: offline, the signature still
	// verifies; only the store knows the token is revoked.
	verifyOffline(t, set, token)

	// A refresh mints a new JWT with a new jti.
	next := postForm(t, g.tokenURL, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.str("refresh_token")}}, "app", g.f.secret)
	wantStatus(t, next, 200, "refresh")
	_, nextClaims := verifyOffline(t, set, next.str("access_token"))
	if nextClaims["jti"] == claims["jti"] || nextClaims["sub"] != "alice" {
		t.Errorf("refreshed token claims %v", nextClaims)
	}
}

func TestJWTAccessTokensOfTwoGatewaysWithOneKeyAreInterchangeable(t *testing.T) {
	f := newFixture(t)
	keyPath := writeKeyPEM(t, t.TempDir(), "signing.key", edKey())
	// The second gateway names the key through a placeholder.
	t.Setenv("JWTGRANT_TEST_SIGNING_KEY", keyPath)
	p1, p2 := freePort(t), freePort(t)
	issuer := "https://as.example" // one issuer behind a load balancer
	startCaddy(t, jwtSite(p1, issuer, keyPath, f)+jwtSite(p2, issuer, "{env.JWTGRANT_TEST_SIGNING_KEY}", f))
	g1 := &jwtGateway{base: fmt.Sprintf("http://127.0.0.1:%d", p1), aud: issuer + "/oauth2/token", f: f}
	g1.tokenURL = g1.base + "/oauth2/token"
	base2 := fmt.Sprintf("http://127.0.0.1:%d", p2)

	set1, set2 := fetchJWKS(t, g1.base), fetchJWKS(t, base2)
	if len(set1.Keys) != 1 || len(set2.Keys) != 1 || set1.Keys[0].KeyID != set2.Keys[0].KeyID || set1.Keys[0].Algorithm != "EdDSA" {
		t.Fatalf("published keys differ: %+v and %+v", set1.Keys, set2.Keys)
	}
	token := g1.issue(t, "").str("access_token")
	verifyOffline(t, set2, token)
	wantStatus(t, get(t, base2+"/api/x", token), 200, "the other gateway's jwt_grant_auth")
}

func TestJWKSPathIsServedOnlyForJWTTokens(t *testing.T) {
	f := newFixture(t)
	keyPath := writeKeyPEM(t, t.TempDir(), "signing.key", newECKey(t))
	for _, tc := range []struct {
		name, options, path string
		served              bool
	}{
		{"opaque tokens", "", "/oauth2/jwks", false},
		{"jwt tokens", "token_format jwt\n\t\tsigning_key " + keyPath, "/oauth2/jwks", true},
		{"jwt tokens, own path", "token_format jwt\n\t\tsigning_key " + keyPath + "\n\t\tjwks_path /keys.json", "/keys.json", true},
		{"jwt tokens, jwks_path off", "token_format jwt\n\t\tsigning_key " + keyPath + "\n\t\tjwks_path off", "/oauth2/jwks", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := freePort(t)
			startCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	jwt_grant {
		issuer_url https://as.example
		%s
		client app {
			secret %s
		}
	}
	respond "next handler" 418
}
`, port, tc.options, f.hash))
			r := get(t, fmt.Sprintf("http://127.0.0.1:%d%s", port, tc.path), "")
			if served := r.status == 200 && strings.Contains(r.raw, `"keys"`); served != tc.served {
				t.Fatalf("GET %s: %s; want served %v", tc.path, r, tc.served)
			}
		})
	}
}

func TestSigningKeyErrorsNameSigningKeyNeverTheKey(t *testing.T) {
	dir := t.TempDir()
	key := newECKey(t)
	good := writeKeyPEM(t, dir, "good.key", key)
	pemBytes, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated.key")
	if err := os.WriteFile(truncated, pemBytes[:len(pemBytes)-40], 0o600); err != nil {
		t.Fatal(err)
	}
	cert := writeCert(t, dir, "cert.pem", key)
	both := filepath.Join(dir, "two.key")
	other, _ := os.ReadFile(writeKeyPEM(t, dir, "other.key", newECKey(t)))
	if err := os.WriteFile(both, append(append([]byte{}, pemBytes...), other...), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("JWTGRANT_TEST_MISSING_KEY", filepath.Join(dir, "missing.key"))
	for _, tc := range []struct{ name, path, file string }{
		{"truncated key", truncated, "truncated.key"},
		{"a certificate, not a private key", cert, "cert.pem"},
		{"two private keys", both, "two.key"},
		{"placeholder naming a missing file", "{env.JWTGRANT_TEST_MISSING_KEY}", "missing.key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := adaptGrant("issuer_url https://as.example\ntoken_format jwt\nsigning_key " + tc.path)
			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			err = caddyValidate(cfg)
			if err == nil {
				t.Fatal("validate passed")
			}
			msg := err.Error()
			if !strings.Contains(msg, "signing_key") || !strings.Contains(msg, tc.file) {
				t.Errorf("error %q does not name signing_key and %s", msg, tc.file)
			}
			body := string(pemBytes[len("-----BEGIN PRIVATE KEY-----\n"):])
			if strings.Contains(msg, body[:32]) {
				t.Errorf("error %q quotes the key", msg)
			}
		})
	}
	cfg, err := adaptGrant("issuer_url https://as.example\ntoken_format jwt\nsigning_key " + good)
	if err != nil {
		t.Fatal(err)
	}
	if err := caddyValidate(cfg); err != nil {
		t.Fatalf("a good key fails validate: %v", err)
	}
}

// edKey is an Ed25519 key, made once per package.
var edKey = sync.OnceValue(func() ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
})
