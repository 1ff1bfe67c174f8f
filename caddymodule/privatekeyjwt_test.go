package caddymodule

// private_key_jwt client authentication (RFC 7523 §2.2, SPEC §3.1)
// through the gateway: clients with a certificate or a jwks_url sign a
// client assertion instead of sending a secret.

import (
	"crypto"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
)

type pkjwtGateway struct {
	base, tokenURL string
	f              *fixture
	svcKey         crypto.Signer // client svc's key, by certificate
	jwksKey        crypto.Signer // client svc-jwks's key, published with kid c1
	jwks           *jwksEndpoint
}

// startPKJWTGateway serves clients svc (certificate), svc-jwks (jwks_url),
// down (a jwks_url answering 500) and web (a secret) with the given store
// line ("" for the default memory store).
func startPKJWTGateway(t *testing.T, store string) *pkjwtGateway {
	t.Helper()
	f := newFixture(t)
	g := &pkjwtGateway{f: f, svcKey: newECKey(t), jwksKey: newECKey(t)}
	g.jwks = newJWKSEndpoint(t, publicJWK(t, g.jwksKey, "c1"))
	down := newJWKSEndpoint(t)
	down.set(func(e *jwksEndpoint) { e.status = http.StatusInternalServerError })
	port := freePort(t)
	g.base = fmt.Sprintf("http://127.0.0.1:%d", port)
	g.tokenURL = g.base + "/oauth2/token"
	startCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	jwt_grant {
		issuer_url %s
		%s
		trusted_issuer idp {
			issuer %s
			certificate %s
			alias https://alias.example
		}
		client svc {
			certificate %s
		}
		client svc-jwks {
			jwks_url %s
		}
		client down {
			jwks_url %s
			jwks_timeout 300ms
		}
		client web {
			secret %s
		}
	}
}
`, port, g.base, store, testIdP, f.certPath, writeCert(t, f.dir, "svc.pem", g.svcKey), g.jwks.URL, down.URL, f.hash))
	return g
}

// clientAssertion is a valid client assertion of svc unless claims
// override it (a nil value deletes a claim).
func (g *pkjwtGateway) clientAssertion(t testing.TB, claims map[string]any) string {
	t.Helper()
	c := map[string]any{"iss": "svc", "sub": "svc", "aud": g.tokenURL, "exp": time.Now().Add(2 * time.Minute).Unix()}
	for k, v := range claims {
		c[k] = v
	}
	return signAs(t, g.svcKey, "", c)
}

func (g *pkjwtGateway) grantAssertion(t testing.TB, claims map[string]any) string {
	t.Helper()
	c := map[string]any{"iss": testIdP, "sub": "alice", "aud": g.tokenURL}
	for k, v := range claims {
		c[k] = v
	}
	return signAs(t, g.f.key, "", c)
}

// pkjwtForm is a JWT bearer grant authenticated by a client assertion.
func pkjwtForm(assertion, clientAssertion string) url.Values {
	f := jwtBearerForm(assertion)
	f.Set("client_assertion_type", grant.ClientAssertionTypeJWTBearer)
	f.Set("client_assertion", clientAssertion)
	return f
}

func TestPrivateKeyJWTClientGetsTokens(t *testing.T) {
	g := startPKJWTGateway(t, "")
	for _, tc := range []struct {
		name, client string
		key          crypto.Signer
		kid          string
	}{
		{"client with a certificate", "svc", g.svcKey, ""},
		{"client with a jwks_url", "svc-jwks", g.jwksKey, "c1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := signAs(t, tc.key, tc.kid, map[string]any{"iss": tc.client, "sub": tc.client, "aud": g.tokenURL})
			r := postForm(t, g.tokenURL, pkjwtForm(g.grantAssertion(t, nil), ca), "", "")
			wantStatus(t, r, 200, "token request")
			if r.str("refresh_token") == "" {
				t.Errorf("no refresh token: %s", r.raw)
			}
			in := postForm(t, g.base+"/oauth2/introspect", url.Values{"token": {r.str("access_token")}}, "web", g.f.secret)
			if in.body["client_id"] != tc.client {
				t.Errorf("token's client_id %v, want %s", in.body["client_id"], tc.client)
			}
		})
	}
}

func TestPrivateKeyJWTFailuresAreInvalidClient(t *testing.T) {
	g := startPKJWTGateway(t, "")
	now := time.Now()
	stranger := newECKey(t)
	cases := []struct {
		name   string
		claims map[string]any
		key    crypto.Signer
		form   func(url.Values)
		basic  bool
		status int
		code   string
	}{
		{name: "wrong iss: no such client", claims: map[string]any{"iss": "nobody", "sub": "nobody"}, status: 401, code: "invalid_client"},
		{name: "sub differs from iss", claims: map[string]any{"sub": "alice"}, status: 401, code: "invalid_client"},
		{name: "wrong aud", claims: map[string]any{"aud": "https://elsewhere.example/oauth2/token"}, status: 401, code: "invalid_client"},
		{name: "aud of a trusted issuer's alias is not enough", claims: map[string]any{"aud": "https://alias.example"}, status: 401, code: "invalid_client"},
		{name: "missing exp", claims: map[string]any{"exp": nil}, status: 401, code: "invalid_client"},
		{name: "expired", claims: map[string]any{"iat": now.Add(-10 * time.Minute).Unix(), "exp": now.Add(-5 * time.Minute).Unix()}, status: 401, code: "invalid_client"},
		{name: "iat too old", claims: map[string]any{"iat": now.Add(-time.Hour).Unix()}, status: 401, code: "invalid_client"},
		{name: "missing jti", claims: map[string]any{"jti": nil}, status: 401, code: "invalid_client"},
		{name: "bad signature", key: stranger, status: 401, code: "invalid_client"},
		{name: "secret client using private_key_jwt", claims: map[string]any{"iss": "web", "sub": "web"}, status: 401, code: "invalid_client"},
		{name: "form client_id of another client", form: func(f url.Values) { f.Set("client_id", "svc-jwks") }, status: 401, code: "invalid_client"},
		{name: "two auth methods: Basic too", basic: true, status: 400, code: "invalid_request"},
		{name: "two auth methods: client_secret too", form: func(f url.Values) { f.Set("client_secret", fixtureSecret) }, status: 400, code: "invalid_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key := tc.key
			if key == nil {
				key = g.svcKey
			}
			c := map[string]any{"iss": "svc", "sub": "svc", "aud": g.tokenURL, "exp": now.Add(2 * time.Minute).Unix()}
			for k, v := range tc.claims {
				c[k] = v
			}
			f := pkjwtForm(g.grantAssertion(t, nil), signAs(t, key, "", c))
			if tc.form != nil {
				tc.form(f)
			}
			var id, secret string
			if tc.basic {
				id, secret = "web", g.f.secret
			}
			r := postForm(t, g.tokenURL, f, id, secret)
			checkOAuthError(t, r, tc.status, tc.code)
			if tc.status == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic ") {
				t.Errorf("WWW-Authenticate %q", r.header.Get("WWW-Authenticate"))
			}
		})
	}
}

func TestPrivateKeyJWTReplayedJTIIsInvalidClient(t *testing.T) {
	for _, backend := range []string{"memory", "redis"} {
		t.Run(backend, func(t *testing.T) {
			g := startPKJWTGateway(t, storeLine(t, backend))
			ca := g.clientAssertion(t, nil)
			wantStatus(t, postForm(t, g.tokenURL, pkjwtForm(g.grantAssertion(t, nil), ca), "", ""), 200, "first use")
			checkOAuthError(t, postForm(t, g.tokenURL, pkjwtForm(g.grantAssertion(t, nil), ca), "", ""), 401, "invalid_client")

			// The same holds where nothing is issued: the mark is
			// claimed on its own.
			tok := postForm(t, g.tokenURL, pkjwtForm(g.grantAssertion(t, nil), g.clientAssertion(t, nil)), "", "")
			introspect := url.Values{"token": {tok.str("access_token")}, "client_assertion_type": {grant.ClientAssertionTypeJWTBearer},
				"client_assertion": {g.clientAssertion(t, nil)}}
			wantStatus(t, postForm(t, g.base+"/oauth2/introspect", introspect, "", ""), 200, "introspection")
			checkOAuthError(t, postForm(t, g.base+"/oauth2/introspect", introspect, "", ""), 401, "invalid_client")
		})
	}
}

func TestPrivateKeyJWTFailedGrantKeepsTheClientJTIUnused(t *testing.T) {
	for _, backend := range []string{"memory", "redis"} {
		t.Run(backend, func(t *testing.T) {
			g := startPKJWTGateway(t, storeLine(t, backend))
			ca := g.clientAssertion(t, nil)
			bad := g.grantAssertion(t, map[string]any{"sub": nil})
			checkOAuthError(t, postForm(t, g.tokenURL, pkjwtForm(bad, ca), "", ""), 400, "invalid_grant")
			wantStatus(t, postForm(t, g.tokenURL, pkjwtForm(g.grantAssertion(t, nil), ca), "", ""), 200, "same client assertion, good grant")
		})
	}
}

func TestPrivateKeyJWTClientKeysUnavailableIs503(t *testing.T) {
	g := startPKJWTGateway(t, "")
	ca := signAs(t, g.svcKey, "", map[string]any{"iss": "down", "sub": "down", "aud": g.tokenURL})
	start := time.Now()
	r := postForm(t, g.tokenURL, pkjwtForm(g.grantAssertion(t, nil), ca), "", "")
	checkOAuthError(t, r, 503, "temporarily_unavailable")
	if r.header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("took %v", took)
	}
}

func TestPrivateKeyJWTAtIntrospectionAndRevocation(t *testing.T) {
	g := startPKJWTGateway(t, "")
	tok := postForm(t, g.tokenURL, pkjwtForm(g.grantAssertion(t, nil), g.clientAssertion(t, nil)), "", "")
	wantStatus(t, tok, 200, "token")
	auth := func(token string) url.Values {
		return url.Values{"token": {token}, "client_assertion_type": {grant.ClientAssertionTypeJWTBearer},
			"client_assertion": {g.clientAssertion(t, nil)}}
	}
	in := postForm(t, g.base+"/oauth2/introspect", auth(tok.str("access_token")), "", "")
	if in.status != 200 || in.body["active"] != true {
		t.Fatalf("introspection: %s", in)
	}
	wantStatus(t, postForm(t, g.base+"/oauth2/revoke", auth(tok.str("refresh_token")), "", ""), 200, "revocation")
	in = postForm(t, g.base+"/oauth2/introspect", auth(tok.str("access_token")), "", "")
	if in.status != 200 || in.body["active"] != false {
		t.Fatalf("introspection after revoking the chain: %s", in)
	}
	bad := auth(tok.str("access_token"))
	bad.Set("client_assertion", g.clientAssertion(t, map[string]any{"aud": "https://elsewhere.example"}))
	checkOAuthError(t, postForm(t, g.base+"/oauth2/introspect", bad, "", ""), 401, "invalid_client")
}

func TestPrivateKeyJWTInMetadata(t *testing.T) {
	g := startPKJWTGateway(t, "")
	r := get(t, g.base+"/.well-known/oauth-authorization-server", "")
	wantStatus(t, r, 200, "metadata")
	methods, _ := r.body["token_endpoint_auth_methods_supported"].([]any)
	if !slices.Contains(methods, any("private_key_jwt")) {
		t.Errorf("token_endpoint_auth_methods_supported %v lacks private_key_jwt", methods)
	}
	algs, _ := r.body["token_endpoint_auth_signing_alg_values_supported"].([]any)
	if !slices.Contains(algs, any("ES256")) || slices.Contains(algs, any("HS256")) {
		t.Errorf("token_endpoint_auth_signing_alg_values_supported %v", algs)
	}
}
