package grant_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/keys"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/memstore"
)

const issuerURL = "https://as.example"

type bench struct {
	srv    *grant.Server
	key    *rsa.PrivateKey
	secret string
	store  grant.Store
}

// issuerKey is the trusted issuer's key, made once on first use (not at
// package init, which every fuzz worker would pay for).
var issuerKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func newServer(t testing.TB, mutate func(*grant.Config)) *bench {
	t.Helper()
	hash := secretHash(t, "c:s/ecret")
	st := memstore.New(memstore.Options{})
	t.Cleanup(func() { st.Close() })
	cfg := grant.Config{
		IssuerURL: issuerURL, TokenPath: "/oauth2/token",
		Policy: grant.DefaultPolicy(), AccessTokenTTL: time.Hour, RefreshTokenTTL: 24 * time.Hour,
		Store: st, Secrets: testSecrets(),
		Tenants: map[string]*grant.Tenant{"": {
			Issuers: map[string]*grant.Issuer{
				"https://idp": {Name: "idp", Issuer: "https://idp", Algorithms: keys.DefaultAlgorithms,
					Keys: keys.Static{{Public: issuerKey().Public()}}},
				"svc-account@example": {Name: "svc", Issuer: "svc-account@example", Algorithms: keys.DefaultAlgorithms,
					Keys: keys.Static{{Public: issuerKey().Public()}}, ClientAuthOptional: true},
			},
			Clients: map[string]*grant.Client{
				"c:1": {ID: "c:1", SecretHash: hash, GrantTypes: []string{grant.GrantJWTBearer, grant.GrantRefreshToken}},
			},
		}},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := grant.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &bench{srv: srv, key: issuerKey(), secret: "c:s/ecret", store: st}
}

func (b *bench) assertion(t testing.TB, iss string, extra map[string]any) string {
	t.Helper()
	c := map[string]any{"iss": iss, "sub": "alice", "aud": issuerURL + "/oauth2/token",
		"iat": time.Now().Unix(), "exp": time.Now().Add(time.Minute).Unix(), "jti": rand.Text()}
	for k, v := range extra {
		c[k] = v
	}
	s, err := keys.Sign(b.key, "RS256", "", "JWT", c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (b *bench) post(form url.Values, setAuth func(*http.Request)) (*httptest.ResponseRecorder, map[string]any) {
	req := httptest.NewRequest(http.MethodPost, "/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if setAuth != nil {
		setAuth(req)
	}
	w := httptest.NewRecorder()
	b.srv.ServeToken(w, req)
	var body map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &body)
	return w, body
}

func basic(id, secret string) func(*http.Request) {
	return func(r *http.Request) { r.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret)) }
}

func form(assertion string) url.Values {
	return url.Values{"grant_type": {grant.GrantTypeJWTBearer}, "assertion": {assertion}}
}

func TestBasicCredentialsAreFormDecoded(t *testing.T) {
	b := newServer(t, nil)
	w, body := b.post(form(b.assertion(t, "https://idp", nil)), basic("c:1", b.secret))
	if w.Code != 200 {
		t.Fatalf("id and secret with reserved characters: %d %v", w.Code, body)
	}
	// Sent without the form-encoding step, "c%3A1" is another client id.
	w, _ = b.post(form(b.assertion(t, "https://idp", nil)), func(r *http.Request) { r.SetBasicAuth("c%253A1", b.secret) })
	if w.Code != 401 {
		t.Fatalf("double-encoded id accepted: %d", w.Code)
	}
}

func TestClientAuthOptionalIssuer(t *testing.T) {
	b := newServer(t, nil)
	w, body := b.post(form(b.assertion(t, "svc-account@example", map[string]any{"scope": "a b"})), nil)
	if w.Code != 200 {
		t.Fatalf("assertion-only request: %d %v", w.Code, body)
	}
	if _, ok := body["refresh_token"]; ok {
		t.Fatal("assertion-only request got a refresh token")
	}
	if body["scope"] != "a b" {
		t.Fatalf("scope from the assertion's claim: %v", body["scope"])
	}
	rec, err := b.store.Access(t.Context(), grant.HashToken(body["access_token"].(string)))
	if err != nil || rec.ClientID != "svc-account@example" || rec.Aud[0] != "svc-account@example" {
		t.Fatalf("record %+v, %v: client_id and audience must be the assertion's iss", rec, err)
	}

	cases := []struct {
		name, assertion string
		status          int
		code            string
	}{
		{"a bad assertion of an optional issuer is invalid_grant",
			b.assertion(t, "svc-account@example", map[string]any{"aud": "https://elsewhere"}), 400, "invalid_grant"},
		{"an issuer that requires client auth is invalid_client", b.assertion(t, "https://idp", nil), 401, "invalid_client"},
		{"a malformed assertion without client auth is invalid_client", "not.a.jws", 401, "invalid_client"},
		{"an unsigned assertion of an optional issuer is invalid_grant",
			unsignedJWS(map[string]any{"alg": "none"}, map[string]any{"iss": "svc-account@example"}), 400, "invalid_grant"},
		{"an HS256 assertion of an optional issuer is invalid_grant",
			unsignedJWS(map[string]any{"alg": "HS256"}, map[string]any{"iss": "svc-account@example"}), 400, "invalid_grant"},
		{"a crit assertion of an optional issuer is invalid_grant",
			unsignedJWS(map[string]any{"alg": "RS256", "crit": []string{"x"}}, map[string]any{"iss": "svc-account@example"}), 400, "invalid_grant"},
		{"an unsigned assertion of another issuer is invalid_client",
			unsignedJWS(map[string]any{"alg": "none"}, map[string]any{"iss": "https://idp"}), 401, "invalid_client"},
		{"an unknown issuer without client auth is invalid_client", b.assertion(t, "https://unknown", nil), 401, "invalid_client"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w, body := b.post(form(tc.assertion), nil)
			if w.Code != tc.status || body["error"] != tc.code {
				t.Fatalf("got %d %v, want %d %s", w.Code, body, tc.status, tc.code)
			}
		})
	}
}

func TestRefreshGrantRotates(t *testing.T) {
	b := newServer(t, nil)
	_, first := b.post(url.Values{"grant_type": {grant.GrantTypeJWTBearer}, "assertion": {b.assertion(t, "https://idp", nil)}, "scope": {"a b"}}, basic("c:1", b.secret))
	rt := first["refresh_token"].(string)
	refresh := func(token, scope string) (int, map[string]any) {
		f := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}}
		if scope != "" {
			f.Set("scope", scope)
		}
		w, body := b.post(f, basic("c:1", b.secret))
		return w.Code, body
	}
	code, second := refresh(rt, "a")
	if code != 200 || second["scope"] != "a" {
		t.Fatalf("narrowing refresh: %d %v", code, second)
	}
	if code, body := refresh(second["refresh_token"].(string), "a b c"); code != 400 || body["error"] != "invalid_scope" {
		t.Fatalf("widening refresh: %d %v", code, body)
	}
	code, third := refresh(second["refresh_token"].(string), "")
	if code != 200 || third["scope"] != "a b" {
		t.Fatalf("omitted scope must mean the first-granted scope: %d %v", code, third)
	}
	// Reuse of the first, rotated token revokes the chain.
	if code, body := refresh(rt, ""); code != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("reuse: %d %v", code, body)
	}
	if code, _ := refresh(third["refresh_token"].(string), ""); code != 400 {
		t.Fatal("the chain's newest refresh token survived reuse of an old one")
	}
	if _, err := b.store.Access(t.Context(), grant.HashToken(third["access_token"].(string))); err == nil {
		t.Fatal("the chain's access token survived reuse of an old refresh token")
	}
}

func BenchmarkTokenEndpointMemory(b *testing.B) {
	s := newServer(b, func(c *grant.Config) { c.RefreshTokenTTL = 0 })
	// Assertions are signed up front: the benchmark measures the gateway.
	assertions := make([]string, b.N)
	for i := range assertions {
		assertions[i] = s.assertion(b, "https://idp", nil)
	}
	auth := basic("c:1", s.secret)
	s.post(form(assertions[0]), auth) // warm the secret cache
	b.ReportAllocs()
	b.ResetTimer()
	for i := 1; i < b.N; i++ {
		if w, _ := s.post(form(assertions[i]), auth); w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
}

// unsignedJWS is a compact JWS with the given header and claims and a
// signature that verifies nothing.
func unsignedJWS(header, claims map[string]any) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c) + ".c2ln"
}

// An assertion answered 503 because the store refused the write can be
// presented again once the store has room: its replay record was not left
// behind (SPEC §6).
func TestAssertionRefusedByAFullStoreCanBePresentedAgain(t *testing.T) {
	full := memstore.New(memstore.Options{MaxEntries: 3})
	t.Cleanup(func() { full.Close() })
	b := newServer(t, func(c *grant.Config) { c.Store, c.RefreshTokenTTL = full, 0 })
	auth := basic("c:1", b.secret)
	w, first := b.post(form(b.assertion(t, "https://idp", nil)), auth) // a replay record and an access record
	if w.Code != 200 {
		t.Fatalf("first grant: %d %v", w.Code, first)
	}
	second := b.assertion(t, "https://idp", nil)
	if w, body := b.post(form(second), auth); w.Code != 503 || body["error"] != "temporarily_unavailable" || w.Header().Get("Retry-After") == "" {
		t.Fatalf("a grant the full store refuses: %d %v", w.Code, body)
	}
	if err := full.RevokeAccess(t.Context(), grant.HashToken(first["access_token"].(string))); err != nil {
		t.Fatal(err)
	}
	if w, body := b.post(form(second), auth); w.Code != 200 {
		t.Fatalf("the refused assertion presented again: %d %v", w.Code, body)
	}
}
