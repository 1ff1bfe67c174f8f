package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/internal/testredis"
)

// edge is the gateway of docs/lifecycle.md: jwt_grant on one site (the
// authorization server), jwt_grant_auth routes on another (the API), and
// a third site as the upstream the API proxies to.
type edge struct {
	f                                  *fixture
	as, api, backend                   string // base URLs
	tokenURL, introspectURL, revokeURL string
}

// edgeConfig varies the edge Caddyfile.
type edgeConfig struct {
	// store is the store line of both handlers; "" omits it (the
	// default memory store).
	store string
	// grantExtra are more lines inside jwt_grant.
	grantExtra string
}

func newEdge(t testing.TB) *edge {
	t.Helper()
	e := &edge{f: newFixture(t)}
	e.as = fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	e.api = fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	e.backend = fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	e.tokenURL = e.as + "/oauth2/token"
	e.introspectURL = e.as + "/oauth2/introspect"
	e.revokeURL = e.as + "/oauth2/revoke"
	return e
}

// startEdge serves the edge Caddyfile in this process.
func startEdge(t testing.TB, cfg edgeConfig) *edge {
	t.Helper()
	e := newEdge(t)
	startCaddy(t, e.caddyfile(cfg))
	return e
}

// caddyfile is the edge's configuration. The API routes, one per rule of
// SPEC §2.2:
//
//	/any        any live token of the top level; echoes the placeholders
//	/scoped     scope read admin
//	/aud        audience other app
//	/wrongaud   audience nobody
//	/acme       tenant acme
//	/anytenant  tenant *
//	/realm      realm "my api"
//	/proxy      reverse_proxy to the backend with the claims as headers
func (e *edge) caddyfile(cfg edgeConfig) string {
	auth := func(opts string) string {
		return "jwt_grant_auth {\n\t\t\t" + cfg.store + "\n\t\t\t" + opts + "\n\t\t}"
	}
	r := strings.NewReplacer(
		"{AS}", e.as, "{API}", e.api, "{BACKEND}", e.backend, "{BACKEND_HOST}", strings.TrimPrefix(e.backend, "http://"),
		"{STORE}", cfg.store, "{EXTRA}", cfg.grantExtra, "{CERT}", e.f.certPath, "{HASH}", e.f.hash, "{IDP}", testIdP,
		"{AUTH}", auth(""), "{AUTH_SCOPED}", auth("scope read admin"), "{AUTH_AUD}", auth("audience other app"),
		"{AUTH_WRONGAUD}", auth("audience nobody"), "{AUTH_ACME}", auth("tenant acme"),
		"{AUTH_ANYTENANT}", auth("tenant *"), "{AUTH_REALM}", auth(`realm "my api"`),
	)
	return r.Replace(`{AS} {
	jwt_grant {
		issuer_url {AS}
		{STORE}
		{EXTRA}
		trusted_issuer idp {
			issuer {IDP}
			certificate {CERT}
			claims email groups
		}
		client app {
			secret {HASH}
		}
		client rs {
			secret {HASH}
			grant_types jwt-bearer
		}
		tenant acme {
			trusted_issuer idp {
				issuer {IDP}
				certificate {CERT}
				claims email groups
			}
			client app {
				secret {HASH}
			}
		}
	}
	respond "not an endpoint" 404
}

{API} {
	handle /any {
		{AUTH}
		respond "sub={http.auth.user.id} client={http.auth.user.client_id} scope={http.auth.user.scope} tenant={http.auth.user.tenant} email={http.auth.user.claim.email} groups={http.auth.user.claim.groups} nope={http.auth.user.claim.nope}"
	}
	handle /scoped {
		{AUTH_SCOPED}
		respond "scoped"
	}
	handle /aud {
		{AUTH_AUD}
		respond "aud"
	}
	handle /wrongaud {
		{AUTH_WRONGAUD}
		respond "wrongaud"
	}
	handle /acme {
		{AUTH_ACME}
		respond "acme"
	}
	handle /anytenant {
		{AUTH_ANYTENANT}
		respond "anytenant {http.auth.user.tenant}"
	}
	handle /realm {
		{AUTH_REALM}
		respond "realm"
	}
	handle /proxy {
		{AUTH}
		reverse_proxy {BACKEND_HOST} {
			header_up X-Subject {http.auth.user.id}
			header_up X-Client {http.auth.user.client_id}
			header_up X-Scope {http.auth.user.scope}
			header_up X-Tenant {http.auth.user.tenant}
			header_up X-Email {http.auth.user.claim.email}
			header_up X-Groups {http.auth.user.claim.groups}
		}
	}
	respond "unprotected" 200
}

{BACKEND} {
	respond "{http.request.header.X-Subject}|{http.request.header.X-Client}|{http.request.header.X-Scope}|{http.request.header.X-Tenant}|{http.request.header.X-Email}|{http.request.header.X-Groups}|{http.request.header.Authorization}"
}
`)
}

// mint exchanges a fresh assertion for tokens as client app (of tenant,
// "" for the top level) and fails the test unless it gets them.
func (e *edge) mint(t testing.TB, tenant, scope string) response {
	t.Helper()
	u := e.tokenURL
	if tenant != "" {
		u += "?tenantDomain=" + url.QueryEscape(tenant)
	}
	a := e.f.assertion(t, map[string]any{"iss": testIdP, "sub": "alice", "aud": e.tokenURL,
		"email": "alice@example.com", "groups": []string{"admins", "ops"}})
	form := jwtBearerForm(a)
	if scope != "" {
		form.Set("scope", scope)
	}
	r := postForm(t, u, form, "app", e.f.secret)
	if r.status != 200 || r.str("access_token") == "" {
		t.Fatalf("minting a token: %s", r)
	}
	return r
}

func (e *edge) refresh(t testing.TB, token string, scope ...string) response {
	t.Helper()
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}}
	if len(scope) > 0 {
		form.Set("scope", scope[0])
	}
	return postForm(t, e.tokenURL, form, "app", e.f.secret)
}

func (e *edge) introspect(t testing.TB, client, token string) response {
	t.Helper()
	return postForm(t, e.introspectURL, url.Values{"token": {token}}, client, e.f.secret)
}

func (e *edge) revoke(t testing.TB, client, token string) response {
	t.Helper()
	return postForm(t, e.revokeURL, url.Values{"token": {token}}, client, e.f.secret)
}

// getWith sends a GET with the given Authorization header ("" for none).
func getWith(t testing.TB, u, authorization string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	return do(t, req)
}

// wantChallenge asserts a refusal of jwt_grant_auth: its status and its
// exact WWW-Authenticate.
func wantChallenge(t testing.TB, r response, status int, challenge string) {
	t.Helper()
	if r.status != status || r.header.Get("WWW-Authenticate") != challenge {
		t.Fatalf("got %s with WWW-Authenticate %q, want %d %q", r, r.header.Get("WWW-Authenticate"), status, challenge)
	}
	if strings.Contains(r.raw, "unprotected") || strings.Contains(r.raw, "sub=") {
		t.Fatalf("the protected handler ran: %s", r)
	}
}

const (
	challengeMissing = `Bearer realm="jwt_grant"`
	challengeInvalid = `Bearer realm="jwt_grant", error="invalid_token"`
)

func TestAuthWithoutABearerTokenIs401WithABareChallenge(t *testing.T) {
	e := startEdge(t, edgeConfig{})
	tok := e.mint(t, "", "").str("access_token")
	cases := []struct {
		name, path, authorization string
	}{
		{"no Authorization header", "/any", ""},
		{"a Basic Authorization header", "/any", "Basic YXBwOnNlY3JldA=="},
		{"the Bearer scheme without a token", "/any", "Bearer"},
		{"a token in the query string is never read", "/any?access_token=" + url.QueryEscape(tok), ""},
		{"a token in the query string with a Basic header", "/any?access_token=" + url.QueryEscape(tok), "Basic YXBwOnNlY3JldA=="},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := getWith(t, e.api+tc.path, tc.authorization)
			wantChallenge(t, r, 401, challengeMissing)
			if r.header.Get("Cache-Control") != "no-store" || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
				t.Fatalf("headers %v", r.header)
			}
			if _, ok := r.body["error"]; ok {
				t.Fatalf("a request without a token got an error code (RFC 6750 §3.1): %s", r)
			}
		})
	}
}

func TestAuthInvalidTokensAre401InvalidToken(t *testing.T) {
	e := startEdge(t, edgeConfig{})
	top := e.mint(t, "", "read").str("access_token")
	acme := e.mint(t, "acme", "read").str("access_token")
	refresh := e.mint(t, "", "").str("refresh_token")
	cases := []struct {
		name, path, token string
	}{
		{"an unknown token", "/any", "never-issued-token"},
		{"a refresh token is not an access token", "/any", refresh},
		{"a token without a shared audience", "/wrongaud", top},
		{"a tenant's token where only the top level is accepted", "/any", acme},
		{"the top level's token where only tenant acme is accepted", "/acme", top},
		{"an invalid token at a scoped route is 401, not 403", "/scoped", acme},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := get(t, e.api+tc.path, tc.token)
			wantChallenge(t, r, 401, challengeInvalid)
			if r.str("error") != "invalid_token" {
				t.Fatalf("body %s", r.raw)
			}
		})
	}
}

func TestAuthMissingScopeIs403InsufficientScope(t *testing.T) {
	e := startEdge(t, edgeConfig{})
	for _, scope := range []string{"", "read", "read write"} {
		r := get(t, e.api+"/scoped", e.mint(t, "", scope).str("access_token"))
		wantChallenge(t, r, 403, `Bearer realm="jwt_grant", error="insufficient_scope", scope="read admin"`)
		if r.str("error") != "insufficient_scope" {
			t.Fatalf("body %s", r.raw)
		}
	}
	if r := get(t, e.api+"/scoped", e.mint(t, "", "admin read write").str("access_token")); r.status != 200 || r.raw != "scoped" {
		t.Fatalf("a token with every required scope: %s", r)
	}
}

func TestAuthAcceptsALiveTokenAndSetsThePlaceholders(t *testing.T) {
	e := startEdge(t, edgeConfig{})
	tok := e.mint(t, "", "read write").str("access_token")
	want := `sub=alice client=app scope=read write tenant= email=alice@example.com groups=["admins","ops"] nope=`
	for _, scheme := range []string{"Bearer", "bearer", "BEARER"} {
		r := getWith(t, e.api+"/any", scheme+" "+tok)
		if r.status != 200 || r.raw != want {
			t.Fatalf("%s: got %s, want 200 %s", scheme, r, want)
		}
	}
}

func TestAuthPlaceholdersReachTheBackendThroughReverseProxy(t *testing.T) {
	e := startEdge(t, edgeConfig{})
	tok := e.mint(t, "", "read").str("access_token")
	r := get(t, e.api+"/proxy", tok)
	want := `alice|app|read||alice@example.com|["admins","ops"]|Bearer ` + tok
	if r.status != 200 || r.raw != want {
		t.Fatalf("backend saw %s, want %s", r, want)
	}
	wantChallenge(t, get(t, e.api+"/proxy", "forged"), 401, challengeInvalid)

	// header_up replaces what the client sent, an empty value included:
	// the backend cannot be fooled by a client's own X-Subject or X-Tenant.
	req, _ := http.NewRequest(http.MethodGet, e.api+"/proxy", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("X-Subject", "mallory")
	req.Header.Set("X-Tenant", "evil")
	if r := do(t, req); r.status != 200 || r.raw != want {
		t.Fatalf("with spoofed headers the backend saw %s, want %s", r, want)
	}
}

func TestAuthAudienceAcceptsATokenSharingOneValue(t *testing.T) {
	e := startEdge(t, edgeConfig{})
	// app's tokens have its client id as audience.
	if r := get(t, e.api+"/aud", e.mint(t, "", "").str("access_token")); r.status != 200 || r.raw != "aud" {
		t.Fatalf("got %s", r)
	}
}

func TestAuthTenantSelectsWhoseTokensAreAccepted(t *testing.T) {
	e := startEdge(t, edgeConfig{})
	top := e.mint(t, "", "").str("access_token")
	acme := e.mint(t, "acme", "").str("access_token")
	cases := []struct {
		name, path, token, want string
	}{
		{"tenant acme accepts acme's tokens", "/acme", acme, "acme"},
		{"tenant * accepts a tenant's tokens", "/anytenant", acme, "anytenant acme"},
		{"tenant * accepts the top level's tokens", "/anytenant", top, "anytenant "},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if r := get(t, e.api+tc.path, tc.token); r.status != 200 || r.raw != tc.want {
				t.Fatalf("got %s, want 200 %q", r, tc.want)
			}
		})
	}
}

func TestAuthRealmIsConfigurable(t *testing.T) {
	e := startEdge(t, edgeConfig{})
	wantChallenge(t, get(t, e.api+"/realm", ""), 401, `Bearer realm="my api"`)
	wantChallenge(t, get(t, e.api+"/realm", "unknown"), 401, `Bearer realm="my api", error="invalid_token"`)
}

// The memory store is one per process: jwt_grant and jwt_grant_auth that
// name it (or name no store) see the same tokens.
func TestAuthSharesTheMemoryStoreWithJWTGrant(t *testing.T) {
	for _, store := range []string{"", "store memory"} {
		t.Run("store line "+store, func(t *testing.T) {
			e := startEdge(t, edgeConfig{store: store})
			if r := get(t, e.api+"/any", e.mint(t, "", "").str("access_token")); r.status != 200 {
				t.Fatalf("got %s", r)
			}
		})
	}
}

// One site both issues and protects: jwt_grant answers its endpoints
// and passes everything else on to jwt_grant_auth, with no order option.
func TestAuthAndGrantInOneSiteNeedNoOrderOption(t *testing.T) {
	e := newEdge(t)
	startCaddy(t, strings.NewReplacer("{AS}", e.as, "{IDP}", testIdP, "{CERT}", e.f.certPath, "{HASH}", e.f.hash).Replace(`{AS} {
	respond "protected {http.auth.user.id}"
	jwt_grant_auth
	jwt_grant {
		issuer_url {AS}
		trusted_issuer idp {
			issuer {IDP}
			certificate {CERT}
		}
		client app {
			secret {HASH}
		}
	}
}
`))
	tok := e.mint(t, "", "").str("access_token")
	if r := get(t, e.as+"/anything", tok); r.status != 200 || r.raw != "protected alice" {
		t.Fatalf("got %s", r)
	}
	wantChallenge(t, get(t, e.as+"/anything", ""), 401, challengeMissing)
	// The metadata endpoint is jwt_grant's, so it is not behind jwt_grant_auth.
	if r := get(t, e.as+"/.well-known/oauth-authorization-server", ""); r.status != 200 {
		t.Fatalf("metadata: %s", r)
	}
}

func TestAuthDirectiveOrderIsAfterBasicAuthAndJWTGrant(t *testing.T) {
	cfg, err := adaptCaddyfile(`:8080 {
	respond "x"
	jwt_grant_auth
	basic_auth {
		bob $2a$04$QtY4W/xM8NYqqAzmE8uCqu5Uq4.rqyXbw1uBh0UIhGuGbrpo8qOFi
	}
	jwt_grant {
		issuer_url https://as.example
	}
}`)
	if err != nil {
		t.Fatal(err)
	}
	s := string(cfg)
	grantAt := strings.Index(s, `"handler":"jwt_grant"`)
	basicAt := strings.Index(s, `"handler":"authentication"`)
	authAt := strings.Index(s, `"handler":"jwt_grant_auth"`)
	respondAt := strings.Index(s, `"handler":"static_response"`)
	if grantAt < 0 || basicAt < 0 || authAt < 0 || respondAt < 0 || !(grantAt < basicAt && basicAt < authAt && authAt < respondAt) {
		t.Fatalf("want jwt_grant, basic_auth, jwt_grant_auth, respond in that order:\n%s", s)
	}
}

func TestAuthCaddyfileToJSON(t *testing.T) {
	cfg, err := adaptCaddyfile(`:8080 {
	jwt_grant_auth {
		store redis redis://127.0.0.1:6380/2
		audience api other
		audience third
		scope read write
		tenant acme
		realm "my api"
	}
}`)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Routes []struct {
						Handle []json.RawMessage `json:"handle"`
					} `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(cfg, &doc); err != nil {
		t.Fatal(err)
	}
	var got string
	for _, srv := range doc.Apps.HTTP.Servers {
		for _, r := range srv.Routes {
			for _, h := range r.Handle {
				if strings.Contains(string(h), "jwt_grant_auth") {
					got = string(h)
				}
			}
		}
	}
	want := `{"audience":["api","other","third"],"handler":"jwt_grant_auth","realm":"my api","scope":["read","write"],"store":{"backend":"redis","url":"redis://127.0.0.1:6380/2"},"tenant":"acme"}`
	if got != want {
		t.Fatalf("got  %s\nwant %s\nin %s", got, want, cfg)
	}
}

func TestAuthCaddyfileErrorsFailAtAdapt(t *testing.T) {
	cases := []struct{ name, block, want string }{
		{"an unknown option", "jwt_grant_auth {\n\t\tnope x\n\t}", `unknown option "nope"`},
		{"an argument on the directive line", "jwt_grant_auth extra", "wrong argument count"},
		{"audience without values", "jwt_grant_auth {\n\t\taudience\n\t}", "wrong argument count"},
		{"tenant with two values", "jwt_grant_auth {\n\t\ttenant a b\n\t}", "wrong argument count"},
		{"a realm with a quote", "jwt_grant_auth {\n\t\trealm `a\"b`\n\t}", "realm"},
		{"a malformed scope", "jwt_grant_auth {\n\t\tscope `re\"ad`\n\t}", "scope"},
		{"a wildcard tenant pattern", "jwt_grant_auth {\n\t\ttenant *.example\n\t}", "tenant"},
		{"an unknown store", "jwt_grant_auth {\n\t\tstore nope\n\t}", "nope"},
		{"a repeated tenant", "jwt_grant_auth {\n\t\ttenant a\n\t\ttenant b\n\t}", "tenant is already set in this block, at Caddyfile:4"},
		{"a repeated realm", "jwt_grant_auth {\n\t\trealm a\n\t\trealm b\n\t}", "realm is already set in this block, at Caddyfile:4"},
		{"a repeated store", "jwt_grant_auth {\n\t\tstore memory\n\t\tstore memory\n\t}", "store is already set in this block, at Caddyfile:4"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := adaptCaddyfile(":8080 {\n\t" + tc.block + "\n\trespond ok\n}")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

// Redis down under jwt_grant_auth is 503 and never a pass; once it is
// back, tokens minted after the restart are accepted again (a restarted
// test Redis has lost its data, so older tokens are gone).
func TestAuthRedisOutageIs503AndRecovers(t *testing.T) {
	srv := testredis.Start(t)
	store := fmt.Sprintf("store redis {\n\t\t\taddress %s\n\t\t\tdial_timeout 300ms\n\t\t\tread_timeout 300ms\n\t\t\twrite_timeout 300ms\n\t\t}", srv.Addr())
	e := startEdge(t, edgeConfig{store: store})
	tok := e.mint(t, "", "read").str("access_token")
	if r := get(t, e.api+"/any", tok); r.status != 200 {
		t.Fatalf("before the outage: %s", r)
	}
	srv.Stop()
	for _, path := range []string{"/any", "/scoped", "/proxy"} {
		r := get(t, e.api+path, tok)
		if r.status != 503 || r.header.Get("Retry-After") == "" || r.str("error") != "temporarily_unavailable" {
			t.Fatalf("%s during the outage: %s %v", path, r, r.header)
		}
	}
	// A missing token needs no store: still 401.
	wantChallenge(t, get(t, e.api+"/any", ""), 401, challengeMissing)
	srv.Restart()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := postForm(t, e.tokenURL, jwtBearerForm(e.f.assertion(t, map[string]any{"iss": testIdP, "sub": "alice", "aud": e.tokenURL})), "app", e.f.secret)
		if r.status == 200 {
			if r := get(t, e.api+"/any", r.str("access_token")); r.status != 200 {
				t.Fatalf("after recovery: %s", r)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recovery after Redis came back: %s", r)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestAuthMoreThanOneAuthorizationHeaderIs400InvalidRequest(t *testing.T) {
	e := startEdge(t, edgeConfig{})
	tok := e.mint(t, "", "").str("access_token")
	cases := []struct {
		name    string
		path    string
		headers []string
	}{
		{"a second bearer token after a live one", "/any", []string{"Bearer " + tok, "Bearer forged"}},
		{"a live bearer token after a forged one", "/any", []string{"Bearer forged", "Bearer " + tok}},
		{"a Basic header after a live bearer token never reaches the upstream", "/proxy", []string{"Bearer " + tok, "Basic YXBwOnNlY3JldA=="}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, e.api+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, h := range tc.headers {
				req.Header.Add("Authorization", h)
			}
			r := do(t, req)
			wantChallenge(t, r, 400, `Bearer realm="jwt_grant", error="invalid_request"`)
			if r.str("error") != "invalid_request" {
				t.Fatalf("body %s; want error invalid_request", r.raw)
			}
		})
	}
	// One header with the same token still passes.
	if r := getWith(t, e.api+"/any", "Bearer "+tok); r.status != 200 {
		t.Fatalf("a single header after the refusals: %s", r)
	}
}
