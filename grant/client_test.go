package grant_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/clientauth"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/keys"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/memstore"
)

// private_key_jwt (RFC 7523 §2.2, SPEC §3.1) through the token,
// introspection and refresh paths of a Server, with a real memstore.

const (
	pkIssuerURL = "https://as.example"
	pkTokenURL  = pkIssuerURL + "/oauth2/token"
)

var (
	pkKeyOnce  sync.Once
	pkClient   *ecdsa.PrivateKey // the private_key_jwt client's key
	pkStranger *ecdsa.PrivateKey // a key nobody trusts
	pkIdP      *rsa.PrivateKey   // the trusted issuer's key
	pkHash     *clientauth.Hash
)

func pkKeys() {
	pkKeyOnce.Do(func() {
		pkClient, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		pkStranger, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		pkIdP, _ = rsa.GenerateKey(rand.Reader, 2048)
		h, _ := bcrypt.GenerateFromPassword([]byte("web-secret"), bcrypt.MinCost)
		pkHash = &clientauth.Hash{Value: h, Comparer: bcryptComparer{}}
	})
}

// failingKeys is a client key source that is down with nothing cached.
type failingKeys struct{}

func (failingKeys) Keys(context.Context, string) ([]keys.Key, error) {
	return nil, fmt.Errorf("%w: test jwks down", keys.ErrUnavailable)
}

// pkTenant has one trusted issuer "idp", a private_key_jwt client "svc",
// a secret client "web", a private_key_jwt client "down" whose keys cannot
// be fetched, and an issuer whose iss equals the client id "svc", to show
// that grant and client replay marks live apart.
func pkTenant(domain string) *grant.Tenant {
	both := []string{grant.GrantJWTBearer, grant.GrantRefreshToken}
	idpKeys := keys.Static{{Public: pkIdP.Public()}}
	return &grant.Tenant{
		Domain: domain,
		Issuers: map[string]*grant.Issuer{
			"idp": {Name: "idp", Issuer: "idp", Algorithms: keys.DefaultAlgorithms, Keys: idpKeys},
			"svc": {Name: "svc-as-issuer", Issuer: "svc", Algorithms: keys.DefaultAlgorithms, Keys: idpKeys},
		},
		Clients: map[string]*grant.Client{
			"svc":  {ID: "svc", Keys: keys.Static{{Public: pkClient.Public()}}, GrantTypes: both},
			"web":  {ID: "web", SecretHash: pkHash, GrantTypes: both},
			"down": {ID: "down", Keys: failingKeys{}, GrantTypes: both},
		},
	}
}

type pkBench struct {
	srv   *grant.Server
	store grant.Store
}

func newPKBench(t *testing.T, wrap func(grant.Store) grant.Store) *pkBench {
	t.Helper()
	pkKeys()
	mem := memstore.New(memstore.Options{})
	t.Cleanup(func() { mem.Close() })
	var st grant.Store = mem
	if wrap != nil {
		st = wrap(mem)
	}
	srv, err := grant.New(grant.Config{
		IssuerURL: pkIssuerURL, TokenPath: "/oauth2/token", IntrospectionPath: "/oauth2/introspect",
		Policy: grant.DefaultPolicy(), AccessTokenTTL: time.Hour, RefreshTokenTTL: time.Hour,
		Store: st, Secrets: testSecrets(), Tenants: map[string]*grant.Tenant{"": pkTenant(""), "acme": pkTenant("acme")},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &pkBench{srv: srv, store: st}
}

// pkSign signs claims over defaults (a nil value deletes a claim).
func pkSign(t *testing.T, key crypto.Signer, defaults, claims map[string]any) string {
	t.Helper()
	for k, v := range claims {
		if v == nil {
			delete(defaults, k)
		} else {
			defaults[k] = v
		}
	}
	s, err := keys.Sign(key, keys.DefaultAlg(key), "", "JWT", defaults)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// clientAssertion is a valid client assertion of "svc" unless claims
// override it.
func clientAssertion(t *testing.T, claims map[string]any) string {
	now := time.Now()
	return pkSign(t, pkClient, map[string]any{
		"iss": "svc", "sub": "svc", "aud": pkTokenURL, "iat": now.Unix(),
		"exp": now.Add(2 * time.Minute).Unix(), "jti": rand.Text(),
	}, claims)
}

// grantAssertion is a valid assertion of the trusted issuer "idp".
func grantAssertion(t *testing.T, claims map[string]any) string {
	now := time.Now()
	return pkSign(t, pkIdP, map[string]any{
		"iss": "idp", "sub": "alice", "aud": pkTokenURL, "iat": now.Unix(),
		"exp": now.Add(2 * time.Minute).Unix(), "jti": rand.Text(),
	}, claims)
}

// pkForm is a JWT bearer token request authenticated by clientAssertion.
func pkForm(assertion, clientAssertion string) url.Values {
	return url.Values{
		"grant_type":            {grant.GrantTypeJWTBearer},
		"assertion":             {assertion},
		"client_assertion_type": {grant.ClientAssertionTypeJWTBearer},
		"client_assertion":      {clientAssertion},
	}
}

type pkResponse struct {
	code   int
	header http.Header
	body   map[string]any
	raw    string
}

func (r pkResponse) String() string { return fmt.Sprintf("%d %s", r.code, r.raw) }

func (b *pkBench) serve(h http.HandlerFunc, path string, form url.Values, setAuth func(*http.Request)) pkResponse {
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if setAuth != nil {
		setAuth(req)
	}
	w := httptest.NewRecorder()
	h(w, req)
	r := pkResponse{code: w.Code, header: w.Header(), raw: w.Body.String()}
	_ = json.Unmarshal(w.Body.Bytes(), &r.body)
	return r
}

func (b *pkBench) token(form url.Values, setAuth func(*http.Request)) pkResponse {
	return b.serve(b.srv.ServeToken, "/oauth2/token", form, setAuth)
}

func (b *pkBench) tokenIn(tenant string, form url.Values) pkResponse {
	return b.serve(b.srv.ServeToken, "/oauth2/token?tenantDomain="+tenant, form, nil)
}

func wantError(t *testing.T, r pkResponse, status int, code string) {
	t.Helper()
	if r.code != status || r.body["error"] != code {
		t.Fatalf("got %v, want %d %s", r, status, code)
	}
}

func TestPrivateKeyJWTAuthenticatesTheClient(t *testing.T) {
	b := newPKBench(t, nil)
	r := b.token(pkForm(grantAssertion(t, nil), clientAssertion(t, nil)), nil)
	if r.code != http.StatusOK || r.body["access_token"] == nil || r.body["refresh_token"] == nil {
		t.Fatalf("got %v, want 200 with access and refresh token", r)
	}
	rec, err := b.store.Access(t.Context(), grant.HashToken(r.body["access_token"].(string)))
	if err != nil || rec.ClientID != "svc" || rec.Sub != "alice" {
		t.Fatalf("token record %+v, %v: want client svc, subject alice", rec, err)
	}
}

func TestPrivateKeyJWTRules(t *testing.T) {
	b := newPKBench(t, nil)
	now := time.Now()
	cases := []struct {
		name   string
		claims map[string]any
		key    crypto.Signer
		form   func(url.Values)
		auth   func(*http.Request)
		status int
		code   string
	}{
		{name: "aud may be issuer_url", claims: map[string]any{"aud": pkIssuerURL}, status: 200},
		{name: "aud may be an array naming the token endpoint", claims: map[string]any{"aud": []string{"other", pkTokenURL}}, status: 200},
		{name: "form client_id equal to iss is accepted", form: func(f url.Values) { f.Set("client_id", "svc") }, status: 200},
		{name: "iss naming no client", claims: map[string]any{"iss": "nobody", "sub": "nobody"}, status: 401, code: "invalid_client"},
		{name: "missing iss", claims: map[string]any{"iss": nil}, status: 401, code: "invalid_client"},
		{name: "sub differs from iss", claims: map[string]any{"sub": "alice"}, status: 401, code: "invalid_client"},
		{name: "missing sub", claims: map[string]any{"sub": nil}, status: 401, code: "invalid_client"},
		{name: "form client_id differs from iss", form: func(f url.Values) { f.Set("client_id", "web") }, status: 401, code: "invalid_client"},
		{name: "aud names another server", claims: map[string]any{"aud": "https://elsewhere.example/token"}, status: 401, code: "invalid_client"},
		{name: "missing aud", claims: map[string]any{"aud": nil}, status: 401, code: "invalid_client"},
		{name: "missing exp", claims: map[string]any{"exp": nil}, status: 401, code: "invalid_client"},
		{name: "expired beyond clock skew", claims: map[string]any{"exp": now.Add(-2 * time.Minute).Unix(), "iat": now.Add(-5 * time.Minute).Unix()}, status: 401, code: "invalid_client"},
		{name: "exp as a string", claims: map[string]any{"exp": fmt.Sprint(now.Add(time.Minute).Unix())}, status: 401, code: "invalid_client"},
		{name: "nbf in the future", claims: map[string]any{"nbf": now.Add(10 * time.Minute).Unix()}, status: 401, code: "invalid_client"},
		{name: "iat older than iat_validity", claims: map[string]any{"iat": now.Add(-31 * time.Minute).Unix()}, status: 401, code: "invalid_client"},
		{name: "lifetime over max_assertion_lifetime", claims: map[string]any{"exp": now.Add(25 * time.Hour).Unix()}, status: 401, code: "invalid_client"},
		{name: "missing jti", claims: map[string]any{"jti": nil}, status: 401, code: "invalid_client"},
		{name: "empty jti", claims: map[string]any{"jti": ""}, status: 401, code: "invalid_client"},
		{name: "signed by another key", key: pkStranger, status: 401, code: "invalid_client"},
		{name: "secret client using private_key_jwt", claims: map[string]any{"iss": "web", "sub": "web"}, status: 401, code: "invalid_client"},
		{name: "not a JWS", form: func(f url.Values) { f.Set("client_assertion", "not.a.jws") }, status: 401, code: "invalid_client"},
		{name: "with Basic credentials too", auth: func(r *http.Request) { r.SetBasicAuth("web", "web-secret") }, status: 400, code: "invalid_request"},
		{name: "with client_secret too", form: func(f url.Values) { f.Set("client_secret", "web-secret"); f.Set("client_id", "svc") }, status: 400, code: "invalid_request"},
		{name: "client_assertion_type missing", form: func(f url.Values) { f.Del("client_assertion_type") }, status: 400, code: "invalid_request"},
		{name: "client_assertion_type of another profile", form: func(f url.Values) {
			f.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:saml2-bearer")
		}, status: 401, code: "invalid_client"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			key := tc.key
			if key == nil {
				key = pkClient
			}
			ca := pkSign(t, key, map[string]any{
				"iss": "svc", "sub": "svc", "aud": pkTokenURL, "iat": now.Unix(),
				"exp": now.Add(2 * time.Minute).Unix(), "jti": rand.Text(),
			}, tc.claims)
			f := pkForm(grantAssertion(t, nil), ca)
			if tc.form != nil {
				tc.form(f)
			}
			r := b.token(f, tc.auth)
			if tc.status == 200 {
				if r.code != 200 {
					t.Fatalf("got %v, want 200", r)
				}
				return
			}
			wantError(t, r, tc.status, tc.code)
			if tc.status == 401 && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic realm=") {
				t.Errorf("401 without a Basic challenge: %q", r.header.Get("WWW-Authenticate"))
			}
			if desc, _ := r.body["error_description"].(string); strings.Contains(desc, ca[:20]) {
				t.Errorf("error_description echoes the assertion: %q", desc)
			}
		})
	}
}

func TestPrivateKeyJWTReplayIsInvalidClient(t *testing.T) {
	b := newPKBench(t, nil)
	ca := clientAssertion(t, nil)
	if r := b.token(pkForm(grantAssertion(t, nil), ca), nil); r.code != 200 {
		t.Fatalf("first use: %v", r)
	}
	// A fresh grant assertion does not make a used client assertion new.
	r := b.token(pkForm(grantAssertion(t, nil), ca), nil)
	wantError(t, r, 401, "invalid_client")
}

func TestPrivateKeyJWTWholeRequestReplayIsInvalidClient(t *testing.T) {
	b := newPKBench(t, nil)
	f := pkForm(grantAssertion(t, nil), clientAssertion(t, nil))
	if r := b.token(f, nil); r.code != 200 {
		t.Fatalf("first use: %v", r)
	}
	wantError(t, b.token(f, nil), 401, "invalid_client")
}

func TestPrivateKeyJWTGrantReplayWithFreshClientAssertionIsInvalidGrant(t *testing.T) {
	b := newPKBench(t, nil)
	ga := grantAssertion(t, nil)
	if r := b.token(pkForm(ga, clientAssertion(t, nil)), nil); r.code != 200 {
		t.Fatalf("first use: %v", r)
	}
	wantError(t, b.token(pkForm(ga, clientAssertion(t, nil)), nil), 400, "invalid_grant")
}

func TestPrivateKeyJWTFailedGrantDoesNotSpendTheClientAssertion(t *testing.T) {
	b := newPKBench(t, nil)
	ca := clientAssertion(t, nil)
	badGrant := pkForm(grantAssertion(t, map[string]any{"aud": "https://elsewhere.example"}), ca)
	wantError(t, b.token(badGrant, nil), 400, "invalid_grant")
	badScope := pkForm(grantAssertion(t, nil), ca)
	badScope.Set("scope", `bad"scope`)
	wantError(t, b.token(badScope, nil), 400, "invalid_scope")
	if r := b.token(pkForm(grantAssertion(t, nil), ca), nil); r.code != 200 {
		t.Fatalf("the client assertion of failed grants was spent: %v", r)
	}
}

func TestPrivateKeyJWTReplayMarksArePerTenant(t *testing.T) {
	b := newPKBench(t, nil)
	ca := clientAssertion(t, nil)
	if r := b.token(pkForm(grantAssertion(t, nil), ca), nil); r.code != 200 {
		t.Fatalf("top level: %v", r)
	}
	if r := b.tokenIn("acme", pkForm(grantAssertion(t, nil), ca)); r.code != 200 {
		t.Fatalf("tenant acme after the top level: %v, want 200 (one use per tenant)", r)
	}
	wantError(t, b.tokenIn("acme", pkForm(grantAssertion(t, nil), ca)), 401, "invalid_client")
}

func TestPrivateKeyJWTAndGrantReplayNamespacesAreApart(t *testing.T) {
	b := newPKBench(t, nil)
	// The issuer "svc" and the client "svc" use the same jti: neither
	// spends the other's.
	jti := rand.Text()
	ga := grantAssertion(t, map[string]any{"iss": "svc", "jti": jti})
	if r := b.token(pkForm(ga, clientAssertion(t, nil)), nil); r.code != 200 {
		t.Fatalf("grant assertion: %v, want 200", r)
	}
	ca := clientAssertion(t, map[string]any{"jti": jti})
	if r := b.token(pkForm(grantAssertion(t, nil), ca), nil); r.code != 200 {
		t.Fatalf("client assertion with the jti of a used grant assertion: %v, want 200", r)
	}
}

func TestPrivateKeyJWTKeysUnavailableIs503(t *testing.T) {
	b := newPKBench(t, nil)
	ca := clientAssertion(t, map[string]any{"iss": "down", "sub": "down"})
	r := b.token(pkForm(grantAssertion(t, nil), ca), nil)
	wantError(t, r, 503, "temporarily_unavailable")
	if r.header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
}

func TestPrivateKeyJWTAtRefresh(t *testing.T) {
	b := newPKBench(t, nil)
	r := b.token(pkForm(grantAssertion(t, nil), clientAssertion(t, nil)), nil)
	if r.code != 200 {
		t.Fatal(r)
	}
	refresh := func(rt, ca string) pkResponse {
		return b.token(url.Values{
			"grant_type": {grant.GrantTypeRefreshToken}, "refresh_token": {rt},
			"client_assertion_type": {grant.ClientAssertionTypeJWTBearer}, "client_assertion": {ca},
		}, nil)
	}
	ca := clientAssertion(t, nil)
	r2 := refresh(r.body["refresh_token"].(string), ca)
	if r2.code != 200 {
		t.Fatalf("refresh: %v", r2)
	}
	wantError(t, refresh(r2.body["refresh_token"].(string), ca), 401, "invalid_client")
}

// claimingStore claims marks by itself and counts the claims, to show
// that introspection claims the client assertion's mark.
type claimingStore struct {
	grant.Store
	mu     sync.Mutex
	marks  map[string]bool
	claims int
}

func (s *claimingStore) ClaimMarks(_ context.Context, marks []grant.Mark) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.claims++
	for _, m := range marks {
		if s.marks[m.Key] {
			return grant.ErrReplay
		}
	}
	for _, m := range marks {
		s.marks[m.Key] = true
	}
	return nil
}

func TestPrivateKeyJWTAtIntrospectionIsReplayChecked(t *testing.T) {
	for _, tc := range []struct {
		name string
		wrap func(grant.Store) grant.Store
	}{
		{"memory store", nil},
		{"store counting its claims", func(s grant.Store) grant.Store {
			return &claimingStore{Store: s, marks: map[string]bool{}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newPKBench(t, tc.wrap)
			tok := b.token(pkForm(grantAssertion(t, nil), clientAssertion(t, nil)), nil)
			if tok.code != 200 {
				t.Fatal(tok)
			}
			ca := clientAssertion(t, nil)
			introspect := func() pkResponse {
				return b.serve(b.srv.ServeIntrospect, "/oauth2/introspect", url.Values{
					"token":                 {tok.body["access_token"].(string)},
					"client_assertion_type": {grant.ClientAssertionTypeJWTBearer}, "client_assertion": {ca},
				}, nil)
			}
			if r := introspect(); r.code != 200 || r.body["active"] != true {
				t.Fatalf("introspection by private_key_jwt: %v", r)
			}
			wantError(t, introspect(), 401, "invalid_client")
			if cs, ok := b.store.(*claimingStore); ok && cs.claims == 0 {
				t.Error("the store's ClaimMarks was not used")
			}
		})
	}
}

func TestPrivateKeyJWTStoreOutageIs503(t *testing.T) {
	b := newPKBench(t, func(s grant.Store) grant.Store { return downStore{s} })
	r := b.serve(b.srv.ServeIntrospect, "/oauth2/introspect", url.Values{
		"token":                 {"whatever"},
		"client_assertion_type": {grant.ClientAssertionTypeJWTBearer}, "client_assertion": {clientAssertion(t, nil)},
	}, nil)
	wantError(t, r, 503, "temporarily_unavailable")
}

// downStore cannot reach its backend.
type downStore struct{ grant.Store }

func (downStore) Issue(context.Context, *grant.Issuance) error {
	return fmt.Errorf("%w: test outage", grant.ErrUnavailable)
}

func (downStore) ClaimMarks(context.Context, []grant.Mark) error {
	return fmt.Errorf("%w: connection refused", grant.ErrUnavailable)
}

// A client assertion signed by a stranger's key tells nothing about who
// the client is: an unknown client, a secret client and a key client get
// one status and one description (SPEC §3.1).
func TestPrivateKeyJWTFailuresBeforeTheSignatureShareOneAnswer(t *testing.T) {
	b := newPKBench(t, nil)
	answers := map[string]bool{}
	for _, iss := range []string{"nobody", "web", "svc"} {
		now := time.Now()
		ca := pkSign(t, pkStranger, map[string]any{
			"iss": iss, "sub": iss, "aud": pkTokenURL, "iat": now.Unix(),
			"exp": now.Add(2 * time.Minute).Unix(), "jti": rand.Text(),
		}, nil)
		r := b.token(pkForm(grantAssertion(t, nil), ca), nil)
		wantError(t, r, 401, "invalid_client")
		answers[fmt.Sprint(r.body["error_description"])] = true
	}
	if len(answers) != 1 {
		t.Fatalf("descriptions %v, want one for every client", answers)
	}
}
