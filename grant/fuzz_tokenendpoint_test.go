package grant_test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/clientauth"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/keys"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/memstore"
)

// fuzzNow is the token endpoint's clock while fuzzing: fixed, so that the
// seeds' assertions stay valid however long the fuzzer runs.
var fuzzNow = time.Unix(1_800_000_000, 0)

const fuzzSecret = "c:s/ecret"

// fuzzSecretHash is the one client's secret, hashed once at bcrypt's
// lowest cost.
var fuzzSecretHash = sync.OnceValue(func() *clientauth.Hash {
	h, err := bcrypt.GenerateFromPassword([]byte(fuzzSecret), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	return &clientauth.Hash{Value: h, Comparer: bcryptComparer{}}
})

// fuzzTokenServer is newServer's configuration on a fixed clock, with a
// fresh memory store, so that every input meets the same state: a seed
// assertion is never a replay of an earlier input's.
func fuzzTokenServer(t *testing.T) *grant.Server {
	st := memstore.New(memstore.Options{})
	t.Cleanup(func() { st.Close() })
	srv, err := grant.New(grant.Config{
		IssuerURL: issuerURL, TokenPath: "/oauth2/token",
		Policy: grant.DefaultPolicy(), AccessTokenTTL: time.Hour, RefreshTokenTTL: 24 * time.Hour,
		Store: st, Secrets: testSecrets(), Now: func() time.Time { return fuzzNow },
		Tenants: map[string]*grant.Tenant{
			"": {
				Issuers: map[string]*grant.Issuer{
					"https://idp": {Name: "idp", Issuer: "https://idp", Algorithms: keys.DefaultAlgorithms,
						Keys: keys.Static{{Public: issuerKey().Public()}}, Scopes: []string{"a", "b"}},
					"svc-account@example": {Name: "svc", Issuer: "svc-account@example", Algorithms: keys.DefaultAlgorithms,
						Keys: keys.Static{{Public: issuerKey().Public()}}, ClientAuthOptional: true},
				},
				Clients: map[string]*grant.Client{
					"c:1": {ID: "c:1", SecretHash: fuzzSecretHash(), GrantTypes: []string{grant.GrantJWTBearer, grant.GrantRefreshToken}},
				},
			},
			"t.example": {Domain: "t.example", Issuers: map[string]*grant.Issuer{}, Clients: map[string]*grant.Client{}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return srv
}

// fuzzAssertion is an assertion of iss, valid at fuzzNow.
func fuzzAssertion(f *testing.F, iss string) string {
	s, err := keys.Sign(issuerKey(), "RS256", "", "JWT", map[string]any{
		"iss": iss, "sub": "alice", "aud": issuerURL + "/oauth2/token",
		"iat": fuzzNow.Unix(), "exp": fuzzNow.Add(time.Minute).Unix(), "jti": "j-" + iss, "scope": "a"})
	if err != nil {
		f.Fatal(err)
	}
	return s
}

// tokenStatuses are the statuses SPEC §3.1 gives the token endpoint.
var tokenStatuses = []int{200, 400, 401, 405, 413, 503}

// tokenErrors are the error codes the token endpoint answers with.
var tokenErrors = []string{
	grant.CodeInvalidRequest, grant.CodeInvalidClient, grant.CodeInvalidGrant, grant.CodeUnauthorizedClient,
	grant.CodeUnsupportedGrantType, grant.CodeInvalidScope, grant.CodeTemporarilyUnavailable,
}

// FuzzTokenEndpoint sends arbitrary requests to the token endpoint: the
// method, the query string (tenantDomain), the Content-Type and
// Authorization headers and the body. Every answer has one of SPEC's
// statuses and the RFC 6749 shape, and nothing is issued without an
// assertion signed by the issuer's key and, unless the issuer has
// client_auth optional, the client's secret.
// formLimit is SPEC §3.1's 64 KiB bound on a token request's body.
const formLimit = 64 << 10

func FuzzTokenEndpoint(f *testing.F) {
	const form = "application/x-www-form-urlencoded"
	idp, svc := fuzzAssertion(f, "https://idp"), fuzzAssertion(f, "svc-account@example")
	basicAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape("c:1")+":"+url.QueryEscape(fuzzSecret)))
	jwtBearer := "grant_type=" + url.QueryEscape(grant.GrantTypeJWTBearer) + "&assertion="
	f.Add("POST", "", form, basicAuth, jwtBearer+idp)
	f.Add("POST", "", form, basicAuth, jwtBearer+idp+"&scope=a+b")
	f.Add("POST", "", form, "", jwtBearer+svc)
	f.Add("POST", "", form, "", jwtBearer+idp+"&client_id=c%3A1&client_secret="+url.QueryEscape(fuzzSecret))
	f.Add("POST", "tenantDomain=t.example", form, basicAuth, jwtBearer+idp)
	f.Add("POST", "tenantDomain=a&tenantDomain=b", form+"; charset=utf-8", "Basic !!!", jwtBearer+idp+"&assertion=x")
	f.Add("POST", "", form, basicAuth, "grant_type=refresh_token&refresh_token=abc")
	f.Add("POST", "", form, "", jwtBearer+idp+"&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion="+idp)
	f.Add("GET", "", "text/plain", "Bearer x", "")
	f.Add("POST", "%zz", form, "basic Yzox", "grant_type=%zz")

	f.Fuzz(func(t *testing.T, method, query, contentType, authorization, body string) {
		if len(body) > 2*formLimit {
			return // the size bound is the seeds' to prove; the rest is time
		}
		r := &http.Request{
			Method: method, URL: &url.URL{Path: "/oauth2/token", RawQuery: query},
			Header: http.Header{}, Body: io.NopCloser(strings.NewReader(body)),
			ContentLength: int64(len(body)), Host: "as.example",
		}
		r = r.WithContext(t.Context())
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		if authorization != "" {
			r.Header.Set("Authorization", authorization)
		}
		w := httptest.NewRecorder()
		fuzzTokenServer(t).ServeToken(w, r)
		checkTokenAnswer(t, r, body, w)
	})
}

// checkTokenAnswer asserts what every token endpoint answer must be.
func checkTokenAnswer(t *testing.T, r *http.Request, body string, w *httptest.ResponseRecorder) {
	t.Helper()
	h := w.Header()
	if !slices.Contains(tokenStatuses, w.Code) {
		t.Fatalf("status %d is not one of SPEC's: %s", w.Code, w.Body)
	}
	if h.Get("Cache-Control") != "no-store" || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
		t.Fatalf("%d without no-store JSON headers: %v", w.Code, h)
	}
	var members map[string]json.RawMessage
	if err := json.Unmarshal(w.Body.Bytes(), &members); err != nil {
		t.Fatalf("%d body is not a JSON object: %v", w.Code, err)
	}
	if w.Code == 200 {
		checkIssued(t, r, body, members)
		return
	}
	var e struct {
		Error       string `json:"error"`
		Description string `json:"error_description"`
	}
	_ = json.Unmarshal(w.Body.Bytes(), &e)
	for m := range members {
		if m != "error" && m != "error_description" {
			t.Fatalf("error body has member %q: %s", m, w.Body)
		}
	}
	if !slices.Contains(tokenErrors, e.Error) {
		t.Fatalf("%d with error %q", w.Code, e.Error)
	}
	switch w.Code {
	case 401:
		if e.Error != grant.CodeInvalidClient || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Basic realm=") {
			t.Fatalf("401 %q without a Basic challenge: %v", e.Error, h)
		}
	case 405:
		if r.Method == http.MethodPost || h.Get("Allow") != "POST" {
			t.Fatalf("405 to %q, Allow %q", r.Method, h.Get("Allow"))
		}
	case 413:
		if e.Error != grant.CodeInvalidRequest || len(body) <= formLimit {
			t.Fatalf("413 %q for a body of %d bytes", e.Error, len(body))
		}
	case 503:
		if e.Error != grant.CodeTemporarilyUnavailable || h.Get("Retry-After") == "" {
			t.Fatalf("503 %q without Retry-After", e.Error)
		}
	}
	if r.Method == http.MethodPost && w.Code == 405 {
		t.Fatal("405 to a POST")
	}
	for _, in := range inputPieces(r, body) {
		if echoes(e.Description, in) {
			t.Fatalf("description %q echoes the input %q", e.Description, in)
		}
	}
}

// checkIssued: a 200 is the RFC 6749 §5.1 shape, and the request carried
// an assertion the issuer's key signed and either the client's secret
// or, for the client_auth optional issuer, no client authentication.
func checkIssued(t *testing.T, r *http.Request, body string, members map[string]json.RawMessage) {
	t.Helper()
	var resp struct {
		AccessToken  string `json:"access_token"`
		TokenType    string `json:"token_type"`
		ExpiresIn    int64  `json:"expires_in"`
		RefreshToken string `json:"refresh_token"`
	}
	b, _ := json.Marshal(members)
	_ = json.Unmarshal(b, &resp)
	if resp.AccessToken == "" || resp.TokenType != "Bearer" || resp.ExpiresIn <= 0 {
		t.Fatalf("200 without the RFC 6749 members: %s", b)
	}
	form, err := url.ParseQuery(body)
	if err != nil {
		t.Fatalf("200 for a body that is not form encoding: %v", err)
	}
	jws, err := jose.ParseSignedCompact(form.Get("assertion"), []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatalf("200 for an assertion go-jose cannot parse: %v", err)
	}
	payload, err := jws.Verify(issuerKey().Public())
	if err != nil {
		t.Fatalf("200 for an assertion the issuer did not sign: %v", err)
	}
	var claims struct {
		Iss string `json:"iss"`
	}
	_ = json.Unmarshal(payload, &claims)
	id, secret, basic := r.BasicAuth()
	switch {
	case basic:
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
		if id != "c:1" || secret != fuzzSecret {
			t.Fatalf("200 with Basic credentials of %q that are not the client's", id)
		}
	case form.Has("client_secret"):
		if form.Get("client_id") != "c:1" || form.Get("client_secret") != fuzzSecret {
			t.Fatal("200 with a posted secret that is not the client's")
		}
	case claims.Iss != "svc-account@example":
		t.Fatalf("200 without client authentication for iss %q", claims.Iss)
	}
	if resp.RefreshToken != "" && claims.Iss == "svc-account@example" && !basic && !form.Has("client_secret") {
		t.Fatal("a request without client authentication got a refresh token")
	}
}

// descriptionNames are the parameter and media type names the fixed
// descriptions spell out, the only blank-free text of 12 characters or
// more in them.
var descriptionNames = []string{"application/x-www-form-urlencoded", "client_assertion_type", "client_secret",
	"refresh_token", "tenantDomain", "authenticated", "authentication"}

// echoes reports whether desc shows the input piece in: judged only for
// a piece longer than any word of a fixed description, without blanks,
// and not part of one of descriptionNames, so that a fixed description
// can never match it.
func echoes(desc, in string) bool {
	if len(in) < 12 || strings.ContainsAny(in, " \t") {
		return false
	}
	for _, name := range descriptionNames {
		if strings.Contains(name, in) {
			return false
		}
	}
	return strings.Contains(desc, in)
}

// inputPieces are the parts of a request an error description must not
// show: the form values and the Basic credentials.
func inputPieces(r *http.Request, body string) []string {
	pieces := []string{body, r.Header.Get("Authorization")}
	if form, err := url.ParseQuery(body); err == nil {
		for _, v := range form {
			pieces = append(pieces, v...)
		}
	}
	if id, secret, ok := r.BasicAuth(); ok {
		pieces = append(pieces, id, secret)
	}
	return pieces
}
