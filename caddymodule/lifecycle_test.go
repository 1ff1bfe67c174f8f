package caddymodule

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/internal/testredis"
)

// The token lifecycle end to end (SPEC §3.2–3.5): expiry, revocation,
// refresh rotation and reuse, introspection and metadata, as a client and
// a protected API see them through real Caddy instances.

var backends = []string{"memory", "redis"}

// backendStore is the store line of a backend; redis gets a fresh
// redis-server of its own.
func backendStore(t testing.TB, backend string) string {
	t.Helper()
	if backend == "memory" {
		return "store memory"
	}
	return "store redis " + testredis.Start(t).URL()
}

func wantActive(t testing.TB, r response, tokenType string) {
	t.Helper()
	if r.status != 200 || r.body["active"] != true || r.str("token_type") != tokenType {
		t.Fatalf("want an active %s, got %s", tokenType, r)
	}
	checkNoStore(t, r)
}

func wantInactiveResponse(t testing.TB, r response) {
	t.Helper()
	if r.status != 200 || r.raw != `{"active":false}` {
		t.Fatalf(`want {"active":false}, got %s`, r)
	}
	checkNoStore(t, r)
}

func TestAccessTokenExpiryTakesEffectAtAuthAndIntrospection(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			clock := &fixedClock{t: time.Now()}
			// An hour, so that the store's own expiry (by the real clock)
			// never runs out during the test on a slow machine: the
			// refusal below is the gateway's clock's alone.
			e := startClockedEdge(t, backendStore(t, backend), "access_token_ttl 1h", clock.Now)
			tok := e.mint(t)
			if tok.body["expires_in"] != float64(3600) {
				t.Fatalf("expires_in %v, want 3600", tok.body["expires_in"])
			}
			at := tok.str("access_token")
			if r := get(t, e.api, at); r.status != 200 {
				t.Fatalf("a fresh token: %s", r)
			}
			wantActive(t, e.introspect(t, at), "Bearer")
			// One second before exp, the token still lives.
			clock.Add(time.Hour - time.Second)
			if r := get(t, e.api, at); r.status != 200 {
				t.Fatalf("the token died before its lifetime: %s", r)
			}
			clock.Add(2 * time.Second)
			wantChallenge(t, get(t, e.api, at), 401, challengeInvalid)
			wantInactiveResponse(t, e.introspect(t, at))
			// The refresh token outlives it and gets a working one.
			next := e.refresh(t, tok.str("refresh_token"))
			if next.status != 200 {
				t.Fatalf("refresh after expiry: %s", next)
			}
			if r := get(t, e.api, next.str("access_token")); r.status != 200 {
				t.Fatalf("the refreshed token: %s", r)
			}
		})
	}
}

// fixedClock is a clock that moves only when told.
type fixedClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fixedClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fixedClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// clockedEdge is a jwt_grant and a jwt_grant_auth that share one store and
// one clock, provisioned outside a Caddy config (which cannot hand a clock
// to its modules) and served over real HTTP.
type clockedEdge struct {
	f                       *fixture
	tokenURL, introspectURL string
	api                     string
}

func startClockedEdge(t *testing.T, store, grantExtra string, now func() time.Time) *clockedEdge {
	t.Helper()
	e := &clockedEdge{f: newFixture(t)}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)

	grantHandler := &Handler{now: now}
	d := caddyfile.NewTestDispenser(fmt.Sprintf("jwt_grant {\n issuer_url %s\n %s\n %s\n trusted_issuer idp {\n issuer %s\n certificate %s\n }\n client app {\n secret %s\n }\n}",
		clockedIssuer, store, grantExtra, testIdP, e.f.certPath, e.f.hash))
	if err := grantHandler.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	authHandler := &AuthHandler{now: now}
	if err := authHandler.UnmarshalCaddyfile(caddyfile.NewTestDispenser("jwt_grant_auth {\n " + store + "\n}")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []caddy.Provisioner{grantHandler, authHandler} {
		if err := p.Provision(ctx); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = grantHandler.Cleanup() })

	ok := caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
		_, err := io.WriteString(w, "ok")
		return err
	})
	serve := func(h caddyhttp.MiddlewareHandler) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
			if err := h.ServeHTTP(w, r, ok); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
			}
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	as := serve(grantHandler)
	e.tokenURL, e.introspectURL = as+defaultTokenPath, as+defaultIntrospectionPath
	e.api = serve(authHandler)
	return e
}

// clockedIssuer is the clocked edge's issuer_url, and so its assertions' aud.
const clockedIssuer = "https://as.example"

func (e *clockedEdge) mint(t testing.TB) response {
	t.Helper()
	a := e.f.assertion(t, map[string]any{"iss": testIdP, "sub": "alice", "aud": clockedIssuer})
	r := postForm(t, e.tokenURL, jwtBearerForm(a), "app", e.f.secret)
	if r.status != 200 || r.str("access_token") == "" {
		t.Fatalf("minting a token: %s", r)
	}
	return r
}

func (e *clockedEdge) refresh(t testing.TB, token string) response {
	t.Helper()
	return postForm(t, e.tokenURL, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}}, "app", e.f.secret)
}

func (e *clockedEdge) introspect(t testing.TB, token string) response {
	t.Helper()
	return postForm(t, e.introspectURL, url.Values{"token": {token}}, "app", e.f.secret)
}

func TestRevocationTakesEffectAtOnceAtAuthAndIntrospection(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := startEdge(t, edgeConfig{store: backendStore(t, backend)})
			tok := e.mint(t, "", "")
			at, rt := tok.str("access_token"), tok.str("refresh_token")
			if r := get(t, e.api+"/any", at); r.status != 200 {
				t.Fatalf("before revocation: %s", r)
			}
			r := e.revoke(t, "app", at)
			if r.status != 200 {
				t.Fatalf("revocation: %s", r)
			}
			checkNoStore(t, r)
			wantChallenge(t, get(t, e.api+"/any", at), 401, challengeInvalid)
			wantInactiveResponse(t, e.introspect(t, "app", at))

			// Revoking the refresh token revokes the access tokens of its chain.
			next := e.refresh(t, rt)
			if next.status != 200 {
				t.Fatalf("refresh: %s", next)
			}
			if r := e.revoke(t, "app", next.str("refresh_token")); r.status != 200 {
				t.Fatalf("revoking the refresh token: %s", r)
			}
			wantChallenge(t, get(t, e.api+"/any", next.str("access_token")), 401, challengeInvalid)
			wantInactiveResponse(t, e.introspect(t, "app", next.str("refresh_token")))
			checkOAuthError(t, e.refresh(t, next.str("refresh_token")), 400, "invalid_grant")

			// Revoking twice, or a token never issued, is still 200.
			for _, tok := range []string{at, "never-issued"} {
				if r := e.revoke(t, "app", tok); r.status != 200 {
					t.Fatalf("revoking a dead token: %s", r)
				}
			}
		})
	}
}

func TestRevocationOfAnotherClientsTokenIsRefusedAndLeavesItLive(t *testing.T) {
	e := startEdge(t, edgeConfig{})
	tok := e.mint(t, "", "")
	for _, kind := range []string{"access_token", "refresh_token"} {
		checkOAuthError(t, e.revoke(t, "rs", tok.str(kind)), 400, "unauthorized_client")
	}
	if r := get(t, e.api+"/any", tok.str("access_token")); r.status != 200 {
		t.Fatalf("the access token was revoked by another client: %s", r)
	}
	if r := e.refresh(t, tok.str("refresh_token")); r.status != 200 {
		t.Fatalf("the refresh token was revoked by another client: %s", r)
	}
}

func TestRevocationAndIntrospectionRequireClientAuthentication(t *testing.T) {
	e := startEdge(t, edgeConfig{})
	tok := e.mint(t, "", "").str("access_token")
	for _, u := range []string{e.introspectURL, e.revokeURL} {
		r := postForm(t, u, url.Values{"token": {tok}}, "", "")
		checkOAuthError(t, r, 401, "invalid_client")
		if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic realm=") {
			t.Fatalf("%s: challenge %q", u, r.header.Get("WWW-Authenticate"))
		}
		checkOAuthError(t, postForm(t, u, url.Values{"token": {tok}}, "app", "wrong"), 401, "invalid_client")
		r = get(t, u, "")
		if r.status != 405 || r.header.Get("Allow") != "POST" {
			t.Fatalf("%s GET: %s Allow %q", u, r, r.header.Get("Allow"))
		}
	}
	if r := get(t, e.api+"/any", tok); r.status != 200 {
		t.Fatalf("an unauthenticated revocation revoked the token: %s", r)
	}
}

func TestRefreshRotatesAndReuseRevokesTheChain(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := startEdge(t, edgeConfig{store: backendStore(t, backend)})
			first := e.mint(t, "", "read")
			second := e.refresh(t, first.str("refresh_token"))
			if second.status != 200 || second.str("refresh_token") == "" || second.str("refresh_token") == first.str("refresh_token") {
				t.Fatalf("refresh must rotate: %s", second)
			}
			checkNoStore(t, second)
			if second.str("scope") != "read" || second.body["token_type"] != "Bearer" {
				t.Fatalf("refresh response: %s", second)
			}
			for _, at := range []string{first.str("access_token"), second.str("access_token")} {
				if r := get(t, e.api+"/any", at); r.status != 200 {
					t.Fatalf("a live access token of the chain: %s", r)
				}
			}
			wantInactiveResponse(t, e.introspect(t, "app", first.str("refresh_token")))

			// Reuse of the rotated token: invalid_grant, and the chain dies.
			checkOAuthError(t, e.refresh(t, first.str("refresh_token")), 400, "invalid_grant")
			for _, at := range []string{first.str("access_token"), second.str("access_token")} {
				wantChallenge(t, get(t, e.api+"/any", at), 401, challengeInvalid)
			}
			checkOAuthError(t, e.refresh(t, second.str("refresh_token")), 400, "invalid_grant")

			// Another grant's chain is untouched.
			other := e.mint(t, "", "")
			if r := get(t, e.api+"/any", other.str("access_token")); r.status != 200 {
				t.Fatalf("another chain: %s", r)
			}
		})
	}
}

func TestRefreshByAnotherTenantsClientIsInvalidGrantAndHarmless(t *testing.T) {
	e := startEdge(t, edgeConfig{})
	tok := e.mint(t, "", "")
	// acme's "app" is another client than the top level's "app".
	r := postForm(t, e.tokenURL+"?tenantDomain=acme", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.str("refresh_token")}}, "app", e.f.secret)
	checkOAuthError(t, r, 400, "invalid_grant")
	if r := e.refresh(t, tok.str("refresh_token")); r.status != 200 {
		t.Fatalf("the owner's refresh token was harmed: %s", r)
	}
}

// postFormRaw is postForm for goroutines: it reports instead of failing.
func postFormRaw(u string, form url.Values, clientID, secret string) (int, map[string]any, error) {
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var body map[string]any
	_ = json.Unmarshal(raw, &body)
	return resp.StatusCode, body, nil
}

// A race of refreshes with one token: exactly one wins. The others
// presented a token that, by the time the store judged them, was rotated:
// that is reuse, so the chain is revoked, the winner's tokens included
// (docs/lifecycle.md).
func TestRefreshRaceOf20HasExactlyOneWinner(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) {
			e := startEdge(t, edgeConfig{store: backendStore(t, backend)})
			rt := e.mint(t, "", "").str("refresh_token")
			const n = 20
			type result struct {
				status int
				body   map[string]any
				err    error
			}
			results := make([]result, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					s, b, err := postFormRaw(e.tokenURL, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, "app", e.f.secret)
					results[i] = result{s, b, err}
				}()
			}
			close(start)
			wg.Wait()
			wins := 0
			var winner map[string]any
			for _, r := range results {
				switch {
				case r.err != nil:
					t.Fatal(r.err)
				case r.status == 200:
					wins++
					winner = r.body
				case r.status != 400 || r.body["error"] != "invalid_grant":
					t.Fatalf("a losing refresh got %d %v", r.status, r.body)
				}
			}
			if wins != 1 {
				t.Fatalf("%d of %d concurrent refreshes with one token succeeded, want exactly 1", wins, n)
			}
			checkOAuthError(t, e.refresh(t, rt), 400, "invalid_grant")
			wantChallenge(t, get(t, e.api+"/any", winner["access_token"].(string)), 401, challengeInvalid)
		})
	}
}

func TestRefreshScopeNarrowsOnlyThatAccessToken(t *testing.T) {
	e := startEdge(t, edgeConfig{})
	first := e.mint(t, "", "read admin")
	if r := get(t, e.api+"/scoped", first.str("access_token")); r.status != 200 {
		t.Fatalf("the first token: %s", r)
	}
	narrow := e.refresh(t, first.str("refresh_token"), "read")
	if narrow.status != 200 || narrow.str("scope") != "read" {
		t.Fatalf("narrowing: %s", narrow)
	}
	wantChallenge(t, get(t, e.api+"/scoped", narrow.str("access_token")), 403,
		`Bearer realm="jwt_grant", error="insufficient_scope", scope="read admin"`)
	if r := e.introspect(t, "app", narrow.str("access_token")); r.str("scope") != "read" {
		t.Fatalf("introspection of the narrowed token: %s", r)
	}
	// An omitted scope is the first-granted one, not the last narrowed one.
	full := e.refresh(t, narrow.str("refresh_token"))
	if full.status != 200 || full.str("scope") != "read admin" {
		t.Fatalf("omitted scope after narrowing: %s", full)
	}
	if r := get(t, e.api+"/scoped", full.str("access_token")); r.status != 200 {
		t.Fatalf("the full-scope token: %s", r)
	}
	checkOAuthError(t, e.refresh(t, full.str("refresh_token"), "read admin write"), 400, "invalid_scope")
}

func TestIntrospectionOfLiveRotatedAndRevokedTokens(t *testing.T) {
	e := startEdge(t, edgeConfig{})
	tok := e.mint(t, "", "read")
	at, rt := tok.str("access_token"), tok.str("refresh_token")

	r := e.introspect(t, "app", at)
	wantActive(t, r, "Bearer")
	for k, want := range map[string]any{"sub": "alice", "client_id": "app", "scope": "read", "iss": e.as,
		"tenant": "", "assertion_iss": testIdP, "v": float64(1)} {
		if r.body[k] != want {
			t.Errorf("%s = %v, want %v", k, r.body[k], want)
		}
	}
	if aud, _ := r.body["aud"].([]any); len(aud) != 1 || aud[0] != "app" {
		t.Errorf("aud = %v", r.body["aud"])
	}
	if claims, _ := r.body["claims"].(map[string]any); claims["email"] != "alice@example.com" {
		t.Errorf("claims = %v", r.body["claims"])
	}
	exp, _ := r.body["exp"].(float64)
	iat, _ := r.body["iat"].(float64)
	if exp-iat != 3600 || time.Since(time.Unix(int64(iat), 0)) > time.Minute {
		t.Errorf("iat %v exp %v", iat, exp)
	}
	// Any authenticated client of the tenant may introspect (a resource
	// server registered as a client); introspection by acme's "app" sees
	// nothing of the top level.
	wantActive(t, e.introspect(t, "rs", at), "Bearer")
	acme := postForm(t, e.introspectURL+"?tenantDomain=acme", url.Values{"token": {at}}, "app", e.f.secret)
	wantInactiveResponse(t, acme)

	wantActive(t, e.introspect(t, "app", rt), "refresh_token")
	next := e.refresh(t, rt)
	wantInactiveResponse(t, e.introspect(t, "app", rt))
	wantActive(t, e.introspect(t, "app", next.str("refresh_token")), "refresh_token")

	if r := e.revoke(t, "app", next.str("access_token")); r.status != 200 {
		t.Fatal(r)
	}
	wantInactiveResponse(t, e.introspect(t, "app", next.str("access_token")))
	wantInactiveResponse(t, e.introspect(t, "app", "never-issued"))
}

func TestMetadataDocumentDescribesTheConfiguredServer(t *testing.T) {
	e := startEdge(t, edgeConfig{})
	r := get(t, e.as+"/.well-known/oauth-authorization-server", "")
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Fatalf("got %s", r)
	}
	want := map[string]any{
		"issuer":                                        e.as,
		"token_endpoint":                                e.tokenURL,
		"introspection_endpoint":                        e.introspectURL,
		"revocation_endpoint":                           e.revokeURL,
		"response_types_supported":                      []any{},
		"grant_types_supported":                         []any{grant.GrantTypeJWTBearer, "refresh_token"},
		"token_endpoint_auth_methods_supported":         []any{"client_secret_basic", "client_secret_post"},
		"introspection_endpoint_auth_methods_supported": []any{"client_secret_basic", "client_secret_post"},
		"revocation_endpoint_auth_methods_supported":    []any{"client_secret_basic", "client_secret_post"},
		"dpop_signing_alg_values_supported":             []any{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"},
	}
	got, _ := json.Marshal(r.body)
	wantJSON, _ := json.Marshal(want)
	if string(got) != string(wantJSON) {
		t.Fatalf("got  %s\nwant %s", got, wantJSON)
	}
	if r := getWith(t, e.as+"/.well-known/oauth-authorization-server", ""); r.status != 200 {
		t.Fatal(r)
	}
	req, _ := http.NewRequest(http.MethodPost, e.as+"/.well-known/oauth-authorization-server", nil)
	if r := do(t, req); r.status != 405 || r.header.Get("Allow") != "GET, HEAD" {
		t.Fatalf("POST: %s Allow %q", r, r.header.Get("Allow"))
	}
}

func TestMetadataOmitsWhatIsOff(t *testing.T) {
	e := newEdge(t)
	startCaddy(t, strings.NewReplacer("{AS}", e.as, "{IDP}", testIdP, "{CERT}", e.f.certPath, "{HASH}", e.f.hash).Replace(`{AS} {
	jwt_grant {
		issuer_url {AS}
		introspection_path off
		revocation_path off
		metadata_path /meta
		refresh_token_ttl off
		trusted_issuer idp {
			issuer {IDP}
			certificate {CERT}
		}
		client app {
			secret {HASH}
		}
	}
	respond "not an endpoint" 404
}
`))
	r := get(t, e.as+"/meta", "")
	if r.status != 200 {
		t.Fatal(r)
	}
	for _, k := range []string{"introspection_endpoint", "revocation_endpoint", "jwks_uri",
		"introspection_endpoint_auth_methods_supported", "revocation_endpoint_auth_methods_supported"} {
		if _, ok := r.body[k]; ok {
			t.Errorf("%s is present: %s", k, r.raw)
		}
	}
	if gt, _ := json.Marshal(r.body["grant_types_supported"]); string(gt) != `["`+grant.GrantTypeJWTBearer+`"]` {
		t.Errorf("grant_types_supported %s with refresh_token_ttl off", gt)
	}
	if r := get(t, e.as+"/.well-known/oauth-authorization-server", ""); r.status != 404 {
		t.Errorf("the default metadata path still answers: %s", r)
	}
}

// Two Caddy instances, one in this process and one a separate process,
// share one Redis: what one mints the other verifies, refreshes,
// introspects and revokes, and a revocation on one fails at the other at
// once.
func TestTwoCaddyInstancesShareOneRedis(t *testing.T) {
	srv := testredis.Start(t)
	cfg := edgeConfig{store: "store redis " + srv.URL()}
	one := startEdge(t, cfg)
	two := newEdge(t)
	startCaddyProcess(t, two.caddyfile(cfg), two.api+"/")

	tok := one.mint(t, "", "read")
	at := tok.str("access_token")
	if r := get(t, two.api+"/proxy", at); r.status != 200 || !strings.HasPrefix(r.raw, "alice|app|read|") {
		t.Fatalf("the second instance's API: %s", r)
	}
	wantActive(t, two.introspect(t, "app", at), "Bearer")

	if r := two.revoke(t, "app", at); r.status != 200 {
		t.Fatalf("revocation on the second instance: %s", r)
	}
	wantChallenge(t, get(t, one.api+"/any", at), 401, challengeInvalid)
	wantChallenge(t, get(t, two.api+"/any", at), 401, challengeInvalid)

	// A refresh on one instance rotates the token for both.
	next := two.refresh(t, tok.str("refresh_token"))
	if next.status != 200 {
		t.Fatalf("refresh on the second instance: %s", next)
	}
	if r := get(t, one.api+"/any", next.str("access_token")); r.status != 200 {
		t.Fatalf("the first instance's API with a token refreshed on the second: %s", r)
	}
	checkOAuthError(t, one.refresh(t, tok.str("refresh_token")), 400, "invalid_grant")
	wantChallenge(t, get(t, two.api+"/any", next.str("access_token")), 401, challengeInvalid)

	// And the other way round.
	theirs := two.mint(t, "", "").str("access_token")
	if r := get(t, one.api+"/any", theirs); r.status != 200 {
		t.Fatalf("a token minted on the second instance at the first: %s", r)
	}
	if r := one.revoke(t, "app", theirs); r.status != 200 {
		t.Fatal(r)
	}
	wantChallenge(t, get(t, two.api+"/any", theirs), 401, challengeInvalid)
}

// A config reload keeps the memory store, and so the live tokens, of the
// process: both handlers take their reference before the old ones let go.
func TestConfigReloadKeepsMemoryStoreTokensAtAuth(t *testing.T) {
	e := startEdge(t, edgeConfig{})
	tok := e.mint(t, "", "").str("access_token")
	// The same Caddyfile with another listener is a real reload.
	cfg, err := adaptCaddyfile(globalOptions + e.caddyfile(edgeConfig{}) + fmt.Sprintf("\nhttp://127.0.0.1:%d {\n\trespond ok\n}\n", freePort(t)))
	if err != nil {
		t.Fatal(err)
	}
	if err := loadCaddy(cfg); err != nil {
		t.Fatal(err)
	}
	if r := get(t, e.api+"/any", tok); r.status != 200 {
		t.Fatalf("after a reload: %s", r)
	}
}
