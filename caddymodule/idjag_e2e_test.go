package caddymodule

// The MCP flow of SPEC §7 through a Caddy configured from a Caddyfile: a
// test IdP (its keys served as a JWKS) signs ID-JAGs; the test plays the
// MCP client, discovering the resource's metadata from a 401 challenge,
// then the authorization server's, exchanging the ID-JAG and calling the
// protected route, which reverse_proxy forwards to an upstream that
// echoes the identity placeholders.

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/keys"
)

const enterpriseIdP = "https://idp.enterprise.example"

// mcpGateway is the Caddy of the MCP flow.
type mcpGateway struct {
	base, tokenURL, mcp, other string
	f                          *fixture
	kid                        string
}

func startMCPGateway(t *testing.T) *mcpGateway {
	t.Helper()
	f := newFixture(t)
	const kid = "idp-key-1"
	idp := newJWKSEndpoint(t, publicJWK(t, f.key, kid))
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{
			"path": r.URL.Path, "subject": r.Header.Get("X-Subject"),
			"client_id": r.Header.Get("X-Client-Id"), "scope": r.Header.Get("X-Scope"),
		})
	}))
	t.Cleanup(upstream.Close)
	port := freePort(t)
	g := &mcpGateway{base: fmt.Sprintf("http://127.0.0.1:%d", port), f: f, kid: kid}
	g.tokenURL, g.mcp, g.other = g.base+"/oauth2/token", g.base+"/mcp", g.base+"/reports"
	startCaddy(t, fmt.Sprintf(`http://127.0.0.1:%[1]d {
	jwt_grant {
		issuer_url %[2]s
		resource %[2]s/mcp {
			name "Test MCP server"
			scopes tools:read tools:call
		}
		resource %[2]s/reports {
			scopes reports:read
		}
		trusted_issuer enterprise {
			issuer %[3]s
			jwks_url %[4]s
			profile id-jag
		}
		trusted_issuer self {
			issuer %[2]s
			certificate %[5]s
			profile id-jag
		}
		client agent {
			secret %[6]s
		}
		client other-agent {
			secret %[6]s
		}
	}
	# A resource's handler must see its well-known metadata path too.
	@reports path /reports* /.well-known/oauth-protected-resource/reports
	handle @reports {
		jwt_grant_auth {
			resource %[2]s/reports
			authorization_server %[2]s
		}
		respond "reports"
	}
	handle {
		jwt_grant_auth {
			resource %[2]s/mcp
			authorization_server %[2]s
			scope tools:read
		}
		reverse_proxy %[7]s {
			header_up X-Subject {http.auth.user.id}
			header_up X-Client-Id {http.auth.user.client_id}
			header_up X-Scope {http.auth.user.scope}
		}
	}
}
`, port, g.base, enterpriseIdP, idp.URL, f.certPath, f.hash, upstream.URL))
	return g
}

// idJAG is what the enterprise IdP signs for client agent and the MCP
// server; claims override (a nil value deletes a claim), typ "" is the
// profile's.
func (g *mcpGateway) idJAG(t *testing.T, typ string, claims map[string]any) string {
	t.Helper()
	c := map[string]any{"iss": enterpriseIdP, "sub": "alice@enterprise.example", "aud": g.base, "client_id": "agent",
		"iat": time.Now().Unix(), "exp": time.Now().Add(5 * time.Minute).Unix(), "jti": rand.Text(),
		"resource": g.mcp, "scope": "tools:read tools:call"}
	for k, v := range claims {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	s, err := keys.Sign(g.f.key, "RS256", g.kid, cmpOr(typ, grant.IDJAGType), c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// challengeParam reads one auth-param of a WWW-Authenticate challenge.
func challengeParam(challenge, name string) string {
	m := regexp.MustCompile(name + `="([^"]*)"`).FindStringSubmatch(challenge)
	if m == nil {
		return ""
	}
	return m[1]
}

func TestMCPEnterpriseManagedAuthorizationFlow(t *testing.T) {
	g := startMCPGateway(t)

	// 1. The MCP client calls the server without a token and learns
	// from the challenge where the resource's metadata is.
	r := get(t, g.mcp, "")
	challenge := r.header.Get("WWW-Authenticate")
	metaURL := challengeParam(challenge, "resource_metadata")
	if r.status != 401 || metaURL != g.base+"/.well-known/oauth-protected-resource/mcp" || challengeParam(challenge, "scope") != "tools:read" {
		t.Fatalf("challenge without a token: %v %q", r, challenge)
	}

	// 2. The resource's metadata, without a token, names the
	// authorization server.
	r = get(t, metaURL, "")
	if r.status != 200 || r.str("resource") != g.mcp ||
		fmt.Sprint(r.body["authorization_servers"]) != fmt.Sprint([]any{g.base}) ||
		fmt.Sprint(r.body["scopes_supported"]) != "[tools:read]" || fmt.Sprint(r.body["bearer_methods_supported"]) != "[header]" {
		t.Fatalf("resource metadata: %v", r)
	}

	// 3. The authorization server's metadata (RFC 8414) gives the token
	// endpoint and says it takes ID-JAGs.
	as, _ := r.body["authorization_servers"].([]any)
	r = get(t, as[0].(string)+"/.well-known/oauth-authorization-server", "")
	if r.status != 200 || r.str("token_endpoint") != g.tokenURL ||
		fmt.Sprint(r.body["authorization_grant_profiles_supported"]) != "["+grant.GrantProfileIDJAG+"]" ||
		!slices.Contains(r.body["grant_types_supported"].([]any), any(grant.GrantTypeJWTBearer)) {
		t.Fatalf("authorization server metadata: %v", r)
	}

	// 4. The client exchanges the ID-JAG its IdP gave it, authenticated.
	tok := postForm(t, r.str("token_endpoint"), jwtBearerForm(g.idJAG(t, "", nil), "resource", g.mcp), "agent", fixtureSecret)
	if tok.status != 200 || tok.str("resource") != g.mcp || tok.str("token_type") != "Bearer" || tok.str("scope") != "tools:read tools:call" {
		t.Fatalf("token: %v", tok)
	}
	if _, ok := tok.body["refresh_token"]; ok {
		t.Fatalf("an ID-JAG exchange got a refresh token: %v", tok)
	}

	// 5. The MCP server sees the caller's identity.
	r = get(t, g.mcp, tok.str("access_token"))
	if r.status != 200 || r.str("subject") != "alice@enterprise.example" || r.str("client_id") != "agent" ||
		r.str("scope") != "tools:read tools:call" || r.str("path") != "/mcp" {
		t.Fatalf("protected call: %v", r)
	}

	// 6. The token is for the MCP server only: another resource of the
	// same gateway refuses it, pointing to its own metadata.
	r = get(t, g.other, tok.str("access_token"))
	challenge = r.header.Get("WWW-Authenticate")
	if r.status != 401 || !strings.Contains(challenge, `error="invalid_token"`) ||
		challengeParam(challenge, "resource_metadata") != g.base+"/.well-known/oauth-protected-resource/reports" {
		t.Fatalf("a token for the MCP server at another resource: %v %q", r, challenge)
	}
	if r := get(t, g.base+"/.well-known/oauth-protected-resource/reports", ""); r.status != 200 || r.str("resource") != g.other {
		t.Fatalf("the other resource's metadata: %v", r)
	}
}

func TestMCPFlowRefusesEveryBadIDJAG(t *testing.T) {
	g := startMCPGateway(t)
	replayed := g.idJAG(t, "", nil)
	if r := postForm(t, g.tokenURL, jwtBearerForm(replayed), "agent", fixtureSecret); r.status != 200 {
		t.Fatalf("first use: %v", r)
	}
	// An ID-JAG whose iss is this server's issuer_url, signed with the
	// key of a trusted issuer configured (wrongly) under that iss.
	selfSigned, err := keys.Sign(g.f.key, "RS256", "", grant.IDJAGType, map[string]any{"iss": g.base, "sub": "alice", "aud": g.base,
		"client_id": "agent", "iat": time.Now().Unix(), "exp": time.Now().Add(time.Minute).Unix(), "jti": rand.Text()})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name      string
		assertion string
		form      []string
		client    string
		status    int
		code      string
	}{
		{name: "wrong typ", assertion: g.idJAG(t, "JWT", nil), code: "invalid_grant"},
		{name: "aud is the token endpoint URL", assertion: g.idJAG(t, "", map[string]any{"aud": g.tokenURL}), code: "invalid_grant"},
		{name: "aud has two values", assertion: g.idJAG(t, "", map[string]any{"aud": []string{g.base, g.tokenURL}}), code: "invalid_grant"},
		{name: "client_id of another client", assertion: g.idJAG(t, "", nil), client: "other-agent", code: "invalid_grant"},
		{name: "missing jti", assertion: g.idJAG(t, "", map[string]any{"jti": nil}), code: "invalid_grant"},
		{name: "missing iat", assertion: g.idJAG(t, "", map[string]any{"iat": nil}), code: "invalid_grant"},
		{name: "replayed ID-JAG", assertion: replayed, code: "invalid_grant"},
		{name: "unknown resource in the ID-JAG", assertion: g.idJAG(t, "", map[string]any{"resource": g.base + "/unknown"}), code: "invalid_target"},
		{name: "unknown resource requested", assertion: g.idJAG(t, "", nil), form: []string{"resource", g.base + "/unknown"}, code: "invalid_target"},
		{name: "resource requested outside the ID-JAG's", assertion: g.idJAG(t, "", nil), form: []string{"resource", g.other}, code: "invalid_target"},
		{name: "scope outside the resource's scopes", assertion: g.idJAG(t, "", map[string]any{"scope": "tools:read reports:read"}), code: "invalid_scope"},
		{name: "authorization_details", assertion: g.idJAG(t, "", map[string]any{"authorization_details": []any{map[string]any{"type": "mcp"}}}), code: "invalid_grant"},
		{name: "an ID-JAG from this server's own issuer", assertion: selfSigned, code: "invalid_grant"},
		{name: "no client authentication", assertion: g.idJAG(t, "", nil), client: "-", status: 401, code: "invalid_client"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			client := cmpOr(tc.client, "agent")
			if client == "-" {
				client = ""
			}
			f := jwtBearerForm(tc.assertion)
			for i := 0; i+1 < len(tc.form); i += 2 {
				f.Add(tc.form[i], tc.form[i+1])
			}
			r := postForm(t, g.tokenURL, f, client, fixtureSecret)
			want := tc.status
			if want == 0 {
				want = 400
			}
			if r.status != want || r.str("error") != tc.code {
				t.Fatalf("got %v, want %d %s", r, want, tc.code)
			}
		})
	}
}

func TestResourceParameterIsRepeatableAtTheGateway(t *testing.T) {
	g := startMCPGateway(t)
	f := jwtBearerForm(g.idJAG(t, "", map[string]any{"resource": []string{g.mcp, g.other}, "scope": "tools:read"}))
	f["resource"] = []string{g.mcp, g.other}
	r := postForm(t, g.tokenURL, f, "agent", fixtureSecret)
	if r.status != 200 || fmt.Sprint(r.body["resource"]) != fmt.Sprint([]any{g.mcp, g.other}) {
		t.Fatalf("two resources: %v", r)
	}
	for _, u := range []string{g.mcp, g.other} {
		if got := get(t, u, r.str("access_token")); got.status != 200 {
			t.Fatalf("a token for both resources at %s: %v", u, got)
		}
	}
	if r := postForm(t, g.tokenURL, url.Values{"grant_type": {grant.GrantTypeJWTBearer}, "assertion": {"a", "b"}}, "agent", fixtureSecret); r.status != 400 || r.str("error") != "invalid_request" {
		t.Fatalf("a repeated assertion: %v", r)
	}
}

// A refresh never drops the audience a chain was granted for, on either
// store: the refresh record carries the resources through the store's
// rotation.
func TestRefreshKeepsTheGrantedResourcesOnEveryStore(t *testing.T) {
	const mcp, reports = "https://mcp.example/mcp", "https://reports.example/"
	for _, backend := range []string{"memory", "redis"} {
		t.Run(backend, func(t *testing.T) {
			g := startGateway(t, storeLine(t, backend), "resource "+mcp+" {\n scopes read\n }\n resource "+reports)
			f := jwtBearerForm(g.assertion(t, nil), "scope", "read")
			f["resource"] = []string{mcp, reports}
			tok := postForm(t, g.tokenURL, f, "app", fixtureSecret)
			if tok.status != 200 || tok.str("refresh_token") == "" {
				t.Fatalf("grant: %v", tok)
			}
			audOf := func(r response) string {
				t.Helper()
				in := postForm(t, g.base+"/oauth2/introspect", url.Values{"token": {r.str("access_token")}}, "app", fixtureSecret)
				return fmt.Sprint(in.body["aud"], in.body["resource"])
			}
			both := fmt.Sprint([]any{mcp, reports}, []any{mcp, reports})
			refresh := func(rt string, extra ...string) response {
				t.Helper()
				f := url.Values{"grant_type": {grant.GrantTypeRefreshToken}, "refresh_token": {rt}}
				for i := 0; i+1 < len(extra); i += 2 {
					f.Add(extra[i], extra[i+1])
				}
				return postForm(t, g.tokenURL, f, "app", fixtureSecret)
			}
			kept := refresh(tok.str("refresh_token"))
			if kept.status != 200 || audOf(kept) != both {
				t.Fatalf("refresh without resource: %v, aud %s", kept, audOf(kept))
			}
			narrow := refresh(kept.str("refresh_token"), "resource", reports)
			if narrow.status != 200 || narrow.str("resource") != reports || audOf(narrow) != fmt.Sprint([]any{reports}, []any{reports}) {
				t.Fatalf("narrowing: %v", narrow)
			}
			again := refresh(narrow.str("refresh_token"))
			if again.status != 200 || audOf(again) != both {
				t.Fatalf("after narrowing, the chain's resources: %v, aud %s", again, audOf(again))
			}
			if r := refresh(again.str("refresh_token"), "resource", "https://elsewhere.example/"); r.status != 400 || r.str("error") != "invalid_target" {
				t.Fatalf("widening: %v", r)
			}
		})
	}
}
