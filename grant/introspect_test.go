package grant_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/clientauth"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/keys"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/memstore"
)

// The lifecycle tests (introspection, revocation, metadata, bearer
// verification) share lcEnv: a Server over a memory store whose clock can
// be moved forward, so that expiry is judged by the server's clock while
// the store still holds the record.

const lcIssuerURL = "https://as.example"

var lcKey, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

type lcEnv struct {
	srv    *grant.Server
	store  grant.Store
	offset atomic.Int64 // added to time.Now, nanoseconds
}

// lcSecret is the secret of every client: client ids and tenants tell
// them apart.
const lcSecret = "lc-secret"

var lcHash = sync.OnceValue(func() *clientauth.Hash {
	h, err := bcrypt.GenerateFromPassword([]byte(lcSecret), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	return &clientauth.Hash{Value: h, Comparer: bcryptComparer{}}
})

func lcIssuer() *grant.Issuer {
	return &grant.Issuer{Name: "idp", Issuer: "https://idp", Algorithms: keys.DefaultAlgorithms,
		Keys: keys.Static{{Public: lcKey.Public()}}, Claims: []string{"email", "groups"}}
}

func lcClient(id string) *grant.Client {
	return &grant.Client{ID: id, SecretHash: lcHash(), GrantTypes: []string{grant.GrantJWTBearer, grant.GrantRefreshToken}}
}

func newLCEnv(t testing.TB, store grant.Store, mutate func(*grant.Config)) *lcEnv {
	t.Helper()
	if store == nil {
		ms := memstore.New(memstore.Options{})
		t.Cleanup(func() { _ = ms.Close() })
		store = ms
	}
	e := &lcEnv{store: store}
	cfg := grant.Config{
		IssuerURL: lcIssuerURL, TokenPath: "/oauth2/token",
		IntrospectionPath: "/oauth2/introspect", RevocationPath: "/oauth2/revoke",
		MetadataPath: "/.well-known/oauth-authorization-server",
		Policy:       grant.DefaultPolicy(), AccessTokenTTL: time.Hour, RefreshTokenTTL: 24 * time.Hour,
		Store: store, Secrets: testSecrets(),
		Tenants: map[string]*grant.Tenant{
			"": {Issuers: map[string]*grant.Issuer{"https://idp": lcIssuer()},
				Clients: map[string]*grant.Client{"app": lcClient("app"), "rs": lcClient("rs")}},
			"acme": {Domain: "acme", Issuers: map[string]*grant.Issuer{"https://idp": lcIssuer()},
				Clients: map[string]*grant.Client{"app": lcClient("app")}},
		},
		Now: func() time.Time { return time.Now().Add(time.Duration(e.offset.Load())) },
	}
	if mutate != nil {
		mutate(&cfg)
	}
	srv, err := grant.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	return e
}

// advance moves the server's clock forward.
func (e *lcEnv) advance(d time.Duration) { e.offset.Add(int64(d)) }

type lcResp struct {
	code   int
	header http.Header
	body   map[string]any
	raw    string
}

func (r lcResp) String() string { return fmt.Sprintf("%d %s", r.code, r.raw) }

// call posts form to one endpoint of the server as client (Basic auth;
// no auth when client is ""), in tenant ("" for the top level).
func (e *lcEnv) call(t testing.TB, serve http.HandlerFunc, tenant, client string, form url.Values) lcResp {
	t.Helper()
	target := "/endpoint"
	if tenant != "" {
		target += "?tenantDomain=" + url.QueryEscape(tenant)
	}
	req := httptest.NewRequest(http.MethodPost, target, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if client != "" {
		req.SetBasicAuth(url.QueryEscape(client), url.QueryEscape(lcSecret))
	}
	w := httptest.NewRecorder()
	serve(w, req)
	r := lcResp{code: w.Code, header: w.Header(), raw: w.Body.String()}
	_ = json.Unmarshal(w.Body.Bytes(), &r.body)
	return r
}

// mint runs the JWT bearer grant for client in tenant and returns the
// token response.
func (e *lcEnv) mint(t testing.TB, tenant, client, scope string) lcResp {
	t.Helper()
	now := time.Now()
	a, err := keys.Sign(lcKey, "ES256", "", "JWT", map[string]any{
		"iss": "https://idp", "sub": "alice", "aud": lcIssuerURL, "iat": now.Unix(),
		"exp": now.Add(time.Minute).Unix(), "jti": rand.Text(),
		"email": "alice@example.com", "groups": []string{"admins", "ops"},
	})
	if err != nil {
		t.Fatal(err)
	}
	f := url.Values{"grant_type": {grant.GrantTypeJWTBearer}, "assertion": {a}}
	if scope != "" {
		f.Set("scope", scope)
	}
	r := e.call(t, e.srv.ServeToken, tenant, client, f)
	if r.code != http.StatusOK {
		t.Fatalf("minting a token: %v", r)
	}
	return r
}

func (e *lcEnv) refresh(t testing.TB, tenant, client, token string, scope ...string) lcResp {
	t.Helper()
	f := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {token}}
	if len(scope) > 0 {
		f.Set("scope", scope[0])
	}
	return e.call(t, e.srv.ServeToken, tenant, client, f)
}

func (e *lcEnv) introspect(t testing.TB, tenant, client, token string, hint ...string) lcResp {
	t.Helper()
	f := url.Values{"token": {token}}
	if len(hint) > 0 {
		f.Set("token_type_hint", hint[0])
	}
	return e.call(t, e.srv.ServeIntrospect, tenant, client, f)
}

func (e *lcEnv) revoke(t testing.TB, tenant, client, token string) lcResp {
	t.Helper()
	return e.call(t, e.srv.ServeRevoke, tenant, client, url.Values{"token": {token}})
}

func wantInactive(t testing.TB, r lcResp) {
	t.Helper()
	if r.code != http.StatusOK || !reflect.DeepEqual(r.body, map[string]any{"active": false}) {
		t.Fatalf(`want 200 {"active":false}, got %v`, r)
	}
}

// outageStore fails every operation as an unreachable backend does.
type outageStore struct{ grant.Store }

var errDown = fmt.Errorf("%w: connection refused", grant.ErrUnavailable)

func (outageStore) Access(context.Context, string) (*grant.AccessRecord, error) { return nil, errDown }
func (outageStore) Refresh(context.Context, string) (*grant.RefreshRecord, error) {
	return nil, errDown
}
func (outageStore) RevokeAccess(context.Context, string) error { return errDown }
func (outageStore) RevokeChain(context.Context, string) error  { return errDown }

func TestIntrospectionOfALiveAccessTokenReturnsEveryRecordMember(t *testing.T) {
	e := newLCEnv(t, nil, nil)
	tok := e.mint(t, "", "app", "read write")
	r := e.introspect(t, "", "app", tok.body["access_token"].(string))
	if r.code != http.StatusOK || r.header.Get("Cache-Control") != "no-store" || r.header.Get("Pragma") != "no-cache" {
		t.Fatalf("status and cache headers: %v %v", r, r.header)
	}
	b := r.body
	for k, want := range map[string]any{
		"active": true, "token_type": "Bearer", "sub": "alice", "client_id": "app", "scope": "read write",
		"iss": lcIssuerURL, "assertion_iss": "https://idp", "tenant": "", "v": float64(1),
		"aud":    []any{"app"},
		"claims": map[string]any{"email": "alice@example.com", "groups": []any{"admins", "ops"}},
	} {
		if !reflect.DeepEqual(b[k], want) {
			t.Errorf("%s = %#v, want %#v", k, b[k], want)
		}
	}
	exp, _ := b["exp"].(float64)
	iat, _ := b["iat"].(float64)
	if iat == 0 || exp-iat != 3600 {
		t.Errorf("iat %v exp %v: want exp = iat + access_token_ttl", b["iat"], b["exp"])
	}
	// SPEC §4: introspection answers the members of the stored record.
	rec, err := e.store.Access(t.Context(), grant.HashToken(tok.body["access_token"].(string)))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(rec)
	var members map[string]any
	_ = json.Unmarshal(raw, &members)
	for k, v := range members {
		if !reflect.DeepEqual(b[k], v) {
			t.Errorf("record member %s = %#v, introspection says %#v", k, v, b[k])
		}
	}
}

func TestIntrospectionOfALiveRefreshTokenSaysRefreshToken(t *testing.T) {
	e := newLCEnv(t, nil, nil)
	tok := e.mint(t, "acme", "app", "read")
	for _, hint := range []string{"", "refresh_token", "access_token"} {
		r := e.introspect(t, "acme", "app", tok.body["refresh_token"].(string), hint)
		if r.code != 200 || r.body["active"] != true || r.body["token_type"] != "refresh_token" ||
			r.body["tenant"] != "acme" || r.body["scope"] != "read" || r.body["sub"] != "alice" {
			t.Fatalf("hint %q: %v", hint, r)
		}
	}
	// The hint only orders the search: an access token is found whatever it says.
	r := e.introspect(t, "acme", "app", tok.body["access_token"].(string), "refresh_token")
	if r.body["active"] != true || r.body["token_type"] != "Bearer" {
		t.Fatalf("access token with a refresh_token hint: %v", r)
	}
}

func TestIntrospectionAnswersInactiveForEverythingButALiveToken(t *testing.T) {
	e := newLCEnv(t, nil, nil)
	rotated := e.mint(t, "", "app", "")
	if r := e.refresh(t, "", "app", rotated.body["refresh_token"].(string)); r.code != 200 {
		t.Fatalf("refresh: %v", r)
	}
	revoked := e.mint(t, "", "app", "")
	if r := e.revoke(t, "", "app", revoked.body["access_token"].(string)); r.code != 200 {
		t.Fatalf("revoke: %v", r)
	}
	acme := e.mint(t, "acme", "app", "")
	cases := []struct{ name, tenant, token string }{
		{"an unknown token", "", "no-such-token"},
		{"a rotated refresh token", "", rotated.body["refresh_token"].(string)},
		{"a revoked access token", "", revoked.body["access_token"].(string)},
		{"another tenant's access token", "", acme.body["access_token"].(string)},
		{"another tenant's refresh token", "", acme.body["refresh_token"].(string)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { wantInactive(t, e.introspect(t, tc.tenant, "app", tc.token)) })
	}
}

func TestIntrospectionOfAnExpiredTokenIsInactiveByTheServersClock(t *testing.T) {
	e := newLCEnv(t, nil, nil)
	tok := e.mint(t, "", "app", "")
	if r := e.introspect(t, "", "app", tok.body["access_token"].(string)); r.body["active"] != true {
		t.Fatalf("fresh token: %v", r)
	}
	// The memory store still holds the record (its own clock is real
	// time); the server's clock alone decides.
	e.advance(time.Hour)
	wantInactive(t, e.introspect(t, "", "app", tok.body["access_token"].(string)))
	if r := e.introspect(t, "", "app", tok.body["refresh_token"].(string)); r.body["active"] != true {
		t.Fatalf("the refresh token outlives the access token: %v", r)
	}
	e.advance(24 * time.Hour)
	wantInactive(t, e.introspect(t, "", "app", tok.body["refresh_token"].(string)))
}

func TestIntrospectionByAnotherClientOfTheTenantIsAllowed(t *testing.T) {
	e := newLCEnv(t, nil, nil)
	tok := e.mint(t, "", "app", "read")
	r := e.introspect(t, "", "rs", tok.body["access_token"].(string))
	if r.body["active"] != true || r.body["client_id"] != "app" {
		t.Fatalf("a resource server's client must see the caller's token: %v", r)
	}
}

func TestIntrospectionRequestRules(t *testing.T) {
	e := newLCEnv(t, nil, nil)
	tok := e.mint(t, "", "app", "").body["access_token"].(string)
	cases := []struct {
		name    string
		req     func() *http.Request
		status  int
		code    string
		headers map[string]string
	}{
		{"GET is 405 with Allow: POST", func() *http.Request { return httptest.NewRequest(http.MethodGet, "/", nil) },
			405, "invalid_request", map[string]string{"Allow": "POST"}},
		{"no client authentication is 401 invalid_client", func() *http.Request { return lcForm("token=" + tok) },
			401, "invalid_client", map[string]string{"WWW-Authenticate": `Basic realm="jwt_grant"`}},
		{"a wrong secret is 401 invalid_client", func() *http.Request {
			r := lcForm("token=" + tok)
			r.SetBasicAuth("app", "wrong")
			return r
		}, 401, "invalid_client", nil},
		{"client_secret_post is accepted", func() *http.Request {
			return lcForm("client_id=app&client_secret=" + url.QueryEscape(lcSecret) + "&token=" + tok)
		}, 200, "", nil},
		{"a missing token is 400 invalid_request", func() *http.Request {
			r := lcForm("token_type_hint=access_token")
			r.SetBasicAuth("app", lcSecret)
			return r
		}, 400, "invalid_request", nil},
		{"a repeated token is 400 invalid_request", func() *http.Request {
			r := lcForm("token=a&token=b")
			r.SetBasicAuth("app", lcSecret)
			return r
		}, 400, "invalid_request", nil},
		{"an unknown tenantDomain is 400 invalid_request", func() *http.Request {
			r := lcForm("token=" + tok)
			r.URL.RawQuery = "tenantDomain=nope"
			r.SetBasicAuth("app", lcSecret)
			return r
		}, 400, "invalid_request", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for name, serve := range map[string]http.HandlerFunc{"introspection": e.srv.ServeIntrospect, "revocation": e.srv.ServeRevoke} {
				if tc.status == 200 && name == "revocation" {
					continue // would revoke tok for the other subtests
				}
				w := httptest.NewRecorder()
				serve(w, tc.req())
				var body map[string]any
				_ = json.Unmarshal(w.Body.Bytes(), &body)
				if w.Code != tc.status || (tc.code != "" && body["error"] != tc.code) {
					t.Errorf("%s: %d %s, want %d %s", name, w.Code, w.Body, tc.status, tc.code)
				}
				if w.Header().Get("Cache-Control") != "no-store" {
					t.Errorf("%s: Cache-Control %q", name, w.Header().Get("Cache-Control"))
				}
				for k, v := range tc.headers {
					if got := w.Header().Get(k); got != v {
						t.Errorf("%s: %s = %q, want %q", name, k, got, v)
					}
				}
			}
		})
	}
}

func lcForm(body string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return r
}

func TestIntrospectionAndRevocationAnswer503WhenTheStoreIsDown(t *testing.T) {
	ms := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = ms.Close() })
	e := newLCEnv(t, outageStore{ms}, nil)
	for name, serve := range map[string]http.HandlerFunc{"introspection": e.srv.ServeIntrospect, "revocation": e.srv.ServeRevoke} {
		r := e.call(t, serve, "", "app", url.Values{"token": {"some-token"}})
		if r.code != 503 || r.body["error"] != "temporarily_unavailable" || r.header.Get("Retry-After") == "" {
			t.Errorf("%s: %v %v", name, r, r.header)
		}
		if _, ok := r.body["active"]; ok {
			t.Errorf("%s: an outage must never answer an introspection result", name)
		}
	}
}
