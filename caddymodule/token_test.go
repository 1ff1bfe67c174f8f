package caddymodule

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/keys"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/internal/testredis"
)

const testIdP = "https://idp.example"

// gateway is a jwt_grant served by the in-process Caddy.
type gateway struct {
	base     string // http://127.0.0.1:port
	tokenURL string
	f        *fixture
}

// startGateway serves a jwt_grant with one trusted issuer "idp" (the
// fixture's key), a client "app" (the fixture's secret), the given store
// line and extra directives inside the jwt_grant block.
func startGateway(t testing.TB, store, extra string) *gateway {
	t.Helper()
	f := newFixture(t)
	port := freePort(t)
	g := &gateway{base: fmt.Sprintf("http://127.0.0.1:%d", port), f: f}
	g.tokenURL = g.base + "/oauth2/token"
	startCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	jwt_grant {
		issuer_url %s
		%s
		%s
		trusted_issuer idp {
			issuer %s
			certificate %s
			claims email
		}
		trusted_issuer other {
			issuer https://other.example
			certificate %s
		}
		client app {
			secret %s
			issuers idp
		}
		client refreshless {
			secret %s
			grant_types jwt-bearer
			scopes read
		}
		client refresh-only {
			secret %s
			grant_types refresh_token
		}
	}
	respond "not an endpoint" 418
}
`, port, g.base, store, extra, testIdP, f.certPath, f.certPath, f.hash, f.hash, f.hash))
	return g
}

func (g *gateway) assertion(t testing.TB, claims map[string]any) string {
	c := map[string]any{"iss": testIdP, "sub": "alice", "aud": g.tokenURL}
	for k, v := range claims {
		c[k] = v
	}
	return g.f.assertion(t, c)
}

func (g *gateway) token(t testing.TB, form url.Values) response {
	return postForm(t, g.tokenURL, form, "app", g.f.secret)
}

// checkOAuthError asserts an RFC 6749 §5.2 error answer.
func checkOAuthError(t testing.TB, r response, status int, code string) {
	t.Helper()
	if r.status != status || r.str("error") != code {
		t.Fatalf("got %s, want %d %s", r, status, code)
	}
	checkNoStore(t, r)
}

func checkNoStore(t testing.TB, r response) {
	t.Helper()
	if r.header.Get("Cache-Control") != "no-store" || r.header.Get("Pragma") != "no-cache" {
		t.Fatalf("missing no-store headers: %v", r.header)
	}
	if !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
		t.Fatalf("content type %q", r.header.Get("Content-Type"))
	}
}

var base64URL43 = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)

func TestTokenEndpointIssuesStoredTokens(t *testing.T) {
	g := startGateway(t, "", "")
	r := g.token(t, jwtBearerForm(g.assertion(t, map[string]any{"email": "alice@example.com"})))
	if r.status != http.StatusOK {
		t.Fatalf("got %s", r)
	}
	checkNoStore(t, r)
	if r.str("token_type") != "Bearer" || r.body["expires_in"] != float64(3600) {
		t.Fatalf("response %s", r.raw)
	}
	if !base64URL43.MatchString(r.str("access_token")) || !base64URL43.MatchString(r.str("refresh_token")) {
		t.Fatalf("tokens are not 256-bit base64url: %s", r.raw)
	}
	if _, ok := r.body["scope"]; ok {
		t.Fatalf("scope answered though none was requested: %s", r.raw)
	}
}

func TestTokenEndpointClientSecretPost(t *testing.T) {
	g := startGateway(t, "", "")
	form := jwtBearerForm(g.assertion(t, nil), "client_id", "app", "client_secret", g.f.secret)
	if r := postForm(t, g.tokenURL, form, "", ""); r.status != http.StatusOK {
		t.Fatalf("client_secret_post: %s", r)
	}
}

func TestTokenEndpointErrorTable(t *testing.T) {
	g := startGateway(t, "", "")
	other := strangerKey()
	badSig, _ := keys.Sign(other, "RS256", "", "JWT", map[string]any{
		"iss": testIdP, "sub": "alice", "aud": g.tokenURL, "exp": time.Now().Add(time.Minute).Unix()})
	type req struct {
		method, contentType, body, query string
		id, secret                       string
	}
	form := func(v url.Values) string { return v.Encode() }
	ok := func() string { return form(jwtBearerForm(g.assertion(t, nil))) }
	cases := []struct {
		name   string
		req    req
		status int
		code   string
	}{
		{"GET is not allowed", req{method: "GET"}, 405, "invalid_request"},
		{"JSON body is rejected", req{contentType: "application/json", body: `{"grant_type":"x"}`}, 400, "invalid_request"},
		{"body over 64 KiB is rejected", req{body: "grant_type=" + grant.GrantTypeJWTBearer + "&assertion=" + strings.Repeat("a", 65*1024)}, 413, "invalid_request"},
		{"repeated parameter is rejected", req{body: ok() + "&grant_type=" + url.QueryEscape(grant.GrantTypeJWTBearer)}, 400, "invalid_request"},
		{"missing grant_type is rejected", req{body: "assertion=x"}, 400, "invalid_request"},
		{"missing assertion is rejected", req{body: "grant_type=" + url.QueryEscape(grant.GrantTypeJWTBearer)}, 400, "invalid_request"},
		{"two client auth methods are rejected", req{body: ok() + "&client_id=app&client_secret=x"}, 400, "invalid_request"},
		{"unknown tenantDomain is rejected", req{body: ok(), query: "tenantDomain=nope.example"}, 400, "invalid_request"},
		{"unknown grant type is unsupported", req{body: "grant_type=password&username=a&password=b"}, 400, "unsupported_grant_type"},
		{"unknown client is invalid_client", req{body: ok(), id: "nobody"}, 401, "invalid_client"},
		{"wrong secret is invalid_client", req{body: ok(), secret: "wrong"}, 401, "invalid_client"},
		{"no credentials is invalid_client", req{body: ok(), id: "-"}, 401, "invalid_client"},
		{"client without the grant type is unauthorized_client", req{body: ok(), id: "refresh-only"}, 400, "unauthorized_client"},
		{"client without the issuer is unauthorized_client",
			req{body: form(jwtBearerForm(g.assertion(t, map[string]any{"iss": "https://other.example"})))}, 400, "unauthorized_client"},
		{"bad signature is invalid_grant", req{body: form(jwtBearerForm(badSig))}, 400, "invalid_grant"},
		{"expired assertion is invalid_grant",
			req{body: form(jwtBearerForm(g.assertion(t, map[string]any{"exp": time.Now().Add(-time.Hour).Unix(), "iat": time.Now().Add(-2 * time.Hour).Unix()})))}, 400, "invalid_grant"},
		{"scope beyond the client's is invalid_scope", req{body: form(jwtBearerForm(g.assertion(t, nil), "scope", "write")), id: "refreshless"}, 400, "invalid_scope"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.req.method
			if m == "" {
				m = http.MethodPost
			}
			u := g.tokenURL
			if tc.req.query != "" {
				u += "?" + tc.req.query
			}
			hr, _ := http.NewRequest(m, u, strings.NewReader(tc.req.body))
			ct := tc.req.contentType
			if ct == "" {
				ct = "application/x-www-form-urlencoded"
			}
			hr.Header.Set("Content-Type", ct)
			id, secret := tc.req.id, tc.req.secret
			if id == "" {
				id = "app"
			}
			if secret == "" {
				secret = g.f.secret
			}
			if id != "-" {
				hr.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
			}
			r := do(t, hr)
			checkOAuthError(t, r, tc.status, tc.code)
			switch r.status {
			case 401:
				if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), `Basic realm="`) {
					t.Fatalf("401 without a Basic challenge: %v", r.header)
				}
			case 405:
				if r.header.Get("Allow") != "POST" {
					t.Fatalf("405 without Allow: POST: %v", r.header)
				}
			}
			if strings.Contains(r.raw, g.f.secret) || strings.Contains(r.raw, "eyJ") {
				t.Fatalf("answer echoes a secret or an assertion: %s", r.raw)
			}
		})
	}
}

func TestScopeRules(t *testing.T) {
	g := startGateway(t, "", "")
	cases := []struct {
		name       string
		claimScope any
		formScope  *string
		client     string
		want       string // granted scope, or an error code
	}{
		{"nothing requested grants no scope", nil, nil, "app", ""},
		{"form scope is granted", nil, ptr("read write"), "app", "read write"},
		{"assertion scope claim is used when the form has none", "read write", nil, "app", "read write"},
		{"form scope must be within the assertion's scope claim", "read", ptr("read write"), "app", "invalid_scope"},
		{"form scope may narrow the assertion's", "read write", ptr("write"), "app", "write"},
		{"client scopes bound the grant", nil, ptr("read"), "refreshless", "read"},
		{"client scopes refuse the rest", "read write", nil, "refreshless", "invalid_scope"},
		{"malformed scope token is invalid_scope", nil, ptr("re\"ad"), "app", "invalid_scope"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			claims := map[string]any{}
			if tc.claimScope != nil {
				claims["scope"] = tc.claimScope
			}
			form := jwtBearerForm(g.assertion(t, claims))
			if tc.formScope != nil {
				form.Set("scope", *tc.formScope)
			}
			r := postForm(t, g.tokenURL, form, tc.client, g.f.secret)
			if tc.want == "invalid_scope" {
				checkOAuthError(t, r, 400, "invalid_scope")
				return
			}
			if r.status != 200 || r.str("scope") != tc.want {
				t.Fatalf("got %s, want scope %q", r, tc.want)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestRefreshTokenOnlyWhenAllowed(t *testing.T) {
	g := startGateway(t, "", "")
	r := postForm(t, g.tokenURL, jwtBearerForm(g.assertion(t, nil)), "refreshless", g.f.secret)
	if r.status != 200 || r.str("refresh_token") != "" {
		t.Fatalf("client without refresh_token grant got %s", r)
	}
	g2 := startGateway(t, "", "refresh_token_ttl off")
	r = g2.token(t, jwtBearerForm(g2.assertion(t, nil)))
	if r.status != 200 || r.str("refresh_token") != "" {
		t.Fatalf("refresh_token_ttl off still issued one: %s", r)
	}
}

func TestAccessTokenTTLBoundsExpiresIn(t *testing.T) {
	g := startGateway(t, "", "access_token_ttl 90s")
	r := g.token(t, jwtBearerForm(g.assertion(t, nil)))
	if r.status != 200 || r.body["expires_in"] != float64(90) {
		t.Fatalf("got %s, want expires_in 90", r)
	}
}

func TestReplayIsRejected(t *testing.T) {
	for _, backend := range []string{"memory", "redis"} {
		t.Run(backend, func(t *testing.T) {
			g := startGateway(t, storeLine(t, backend), "")
			a := g.assertion(t, nil)
			if r := g.token(t, jwtBearerForm(a)); r.status != 200 {
				t.Fatalf("first use: %s", r)
			}
			checkOAuthError(t, g.token(t, jwtBearerForm(a)), 400, "invalid_grant")
		})
	}
}

func TestReplayRaceHasOneWinner(t *testing.T) {
	for _, backend := range []string{"memory", "redis"} {
		t.Run(backend, func(t *testing.T) {
			g := startGateway(t, storeLine(t, backend), "")
			a := g.assertion(t, map[string]any{"jti": "race-" + backend})
			const n = 20
			var wg sync.WaitGroup
			statuses := make([]int, n)
			start := make(chan struct{})
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					statuses[i] = g.token(t, jwtBearerForm(a)).status
				}()
			}
			close(start)
			wg.Wait()
			wins := 0
			for _, s := range statuses {
				switch s {
				case 200:
					wins++
				case 400:
				default:
					t.Fatalf("unexpected status %d", s)
				}
			}
			if wins != 1 {
				t.Fatalf("%d of %d concurrent uses of one jti succeeded, want exactly 1", wins, n)
			}
		})
	}
}

func TestRejectedAssertionDoesNotBurnItsJTI(t *testing.T) {
	g := startGateway(t, "", "")
	other := strangerKey()
	claims := map[string]any{"iss": testIdP, "sub": "alice", "aud": g.tokenURL, "jti": "precious",
		"exp": time.Now().Add(time.Minute).Unix()}
	forged, _ := keys.Sign(other, "RS256", "", "JWT", claims)
	checkOAuthError(t, g.token(t, jwtBearerForm(forged)), 400, "invalid_grant")
	// A failure after the assertion checks (scope) must not burn it either.
	checkOAuthError(t, postForm(t, g.tokenURL, jwtBearerForm(g.assertion(t, map[string]any{"jti": "precious"}), "scope", "admin"), "refreshless", g.f.secret), 400, "invalid_scope")
	if r := g.token(t, jwtBearerForm(g.assertion(t, map[string]any{"jti": "precious"}))); r.status != 200 {
		t.Fatalf("the genuine assertion was refused after a forged one with its jti: %s", r)
	}
}

// storeLine is the store directive for a backend; redis gets a fresh
// redis-server of its own.
func storeLine(t *testing.T, backend string) string {
	if backend == "memory" {
		return "store memory"
	}
	return "store redis " + testredis.Start(t).URL()
}

func TestRedisRecordFormat(t *testing.T) {
	srv := testredis.Start(t)
	g := startGateway(t, "store redis "+srv.URL(), "")
	r := g.token(t, jwtBearerForm(g.assertion(t, map[string]any{"email": "alice@example.com"}), "scope", "read"))
	if r.status != 200 {
		t.Fatalf("got %s", r)
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	ctx := t.Context()
	sum := sha256.Sum256([]byte(r.str("access_token")))
	key := "jwtgrant:at:" + hex.EncodeToString(sum[:])
	raw, err := rdb.Get(ctx, key).Result()
	if err != nil {
		t.Fatalf("GET %s: %v", key, err)
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(raw), &rec); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"v": float64(1), "sub": "alice", "client_id": "app", "scope": "read",
		"iss": g.base, "assertion_iss": testIdP, "tenant": ""}
	for k, v := range want {
		if rec[k] != v {
			t.Errorf("record %s = %v, want %v", k, rec[k], v)
		}
	}
	if aud, _ := rec["aud"].([]any); len(aud) != 1 || aud[0] != "app" {
		t.Errorf("record aud = %v, want [app]", rec["aud"])
	}
	if claims, _ := rec["claims"].(map[string]any); claims["email"] != "alice@example.com" {
		t.Errorf("record claims = %v", rec["claims"])
	}
	exp, _ := rec["exp"].(float64)
	iat, _ := rec["iat"].(float64)
	if exp-iat != 3600 {
		t.Errorf("exp - iat = %v, want 3600", exp-iat)
	}
	ttl := rdb.TTL(ctx, key).Val()
	if ttl < 3590*time.Second || ttl > 3600*time.Second {
		t.Errorf("TTL %v, want the record to expire at exp", ttl)
	}
	// No token, assertion or secret is stored in clear anywhere.
	keys := rdb.Keys(ctx, "*").Val()
	for _, k := range keys {
		v, _ := rdb.Dump(ctx, k).Result()
		for _, secret := range []string{r.str("access_token"), r.str("refresh_token"), g.f.secret} {
			if strings.Contains(k, secret) || strings.Contains(v, secret) {
				t.Fatalf("key %s holds a token or secret in clear", k)
			}
		}
	}
	if len(keys) < 3 {
		t.Fatalf("keys %v: want access, refresh and replay records", keys)
	}
}

func TestRedisKeyPrefix(t *testing.T) {
	srv := testredis.Start(t)
	g := startGateway(t, fmt.Sprintf("store redis {\n address %s\n key_prefix edge1:\n }", srv.Addr()), "")
	r := g.token(t, jwtBearerForm(g.assertion(t, nil)))
	if r.status != 200 {
		t.Fatalf("got %s", r)
	}
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	if n := rdb.Exists(t.Context(), "edge1:at:"+grant.HashToken(r.str("access_token"))).Val(); n != 1 {
		t.Fatal("record not under the configured key_prefix")
	}
}

func TestRedisOutageIs503AndRecovers(t *testing.T) {
	srv := testredis.Start(t)
	g := startGateway(t, fmt.Sprintf("store redis {\n address %s\n dial_timeout 300ms\n read_timeout 300ms\n write_timeout 300ms\n }", srv.Addr()), "")
	if r := g.token(t, jwtBearerForm(g.assertion(t, nil))); r.status != 200 {
		t.Fatalf("before the outage: %s", r)
	}
	srv.Stop()
	r := g.token(t, jwtBearerForm(g.assertion(t, nil)))
	checkOAuthError(t, r, 503, "temporarily_unavailable")
	if r.header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	if r.str("access_token") != "" {
		t.Fatal("a token was answered while the store was down")
	}
	srv.Restart()
	var last response
	for range 50 {
		if last = g.token(t, jwtBearerForm(g.assertion(t, nil))); last.status == 200 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no recovery after Redis came back: %s", last)
}

func TestFallthroughToNextHandler(t *testing.T) {
	g := startGateway(t, "", "")
	if r := get(t, g.base+"/somewhere/else", ""); r.status != 418 {
		t.Fatalf("non-endpoint request got %s, want the next handler's 418", r)
	}
}

func TestConfigReloadsShareOneRedisPoolAndKeepTokens(t *testing.T) {
	srv := testredis.Start(t)
	store := "store redis " + srv.URL()
	g := startGateway(t, store, "")
	first := g.token(t, jwtBearerForm(g.assertion(t, nil)))
	if first.status != 200 {
		t.Fatalf("before reloads: %s", first)
	}
	clients := func() int {
		out, err := srv.Do("CLIENT", "LIST")
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(out, "id=")
	}
	var after int
	for i := range 5 {
		// Each startGateway loads a new config: a reload of the one Caddy.
		g = startGateway(t, store, "")
		if r := g.token(t, jwtBearerForm(g.assertion(t, nil))); r.status != 200 {
			t.Fatalf("after reload %d: %s", i+1, r)
		}
		if i == 0 {
			after = clients()
		}
	}
	if n := clients(); n > after {
		t.Fatalf("Redis connections grew from %d to %d over reloads: a pool leaks", after, n)
	}
	r := postForm(t, g.base+"/oauth2/introspect", url.Values{"token": {first.str("access_token")}}, "app", g.f.secret)
	if r.status != 200 || r.body["active"] != true {
		t.Fatalf("a token minted before the reloads is gone: %s", r)
	}
}
