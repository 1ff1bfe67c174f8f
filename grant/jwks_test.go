package grant

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// jeNoStore satisfies New; the JWKS endpoint never reaches the store.
type jeNoStore struct{ Store }

func jeServer(t *testing.T, minter Minter, jwksPath string) *Server {
	t.Helper()
	s, err := New(Config{
		IssuerURL: testIssuerURL, TokenPath: "/oauth2/token", JWKSPath: jwksPath,
		AccessTokenTTL: 3600e9, Store: jeNoStore{}, Minter: minter,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func jeGet(s *Server, method string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	s.ServeJWKS(w, httptest.NewRequest(method, "/oauth2/jwks", nil))
	return w
}

func TestJWKSEndpointPublishesTheSigningKeyOnly(t *testing.T) {
	m, err := NewJWTMinter(testKeys().rsa)
	if err != nil {
		t.Fatal(err)
	}
	w := jeGet(jeServer(t, m, "/oauth2/jwks"), http.MethodGet)
	if w.Code != http.StatusOK {
		t.Fatalf("status %d, want 200", w.Code)
	}
	if ct := w.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if cc := w.Header().Get("Cache-Control"); cc != "public, max-age=300" {
		t.Errorf("Cache-Control %q, want public, max-age=300", cc)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(w.Body.Bytes(), &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 1 {
		t.Fatalf("%d keys, want 1", len(set.Keys))
	}
	k := set.Keys[0]
	if !k.IsPublic() || k.KeyID != m.KeyID() || k.Algorithm != "RS256" || k.Use != "sig" {
		t.Errorf("key = kid %q alg %q use %q public %v", k.KeyID, k.Algorithm, k.Use, k.IsPublic())
	}
	// No private member may appear, whatever go-jose's marshalling does.
	var raw struct{ Keys []map[string]any }
	_ = json.Unmarshal(w.Body.Bytes(), &raw)
	for _, member := range []string{"d", "p", "q", "dp", "dq", "qi"} {
		if _, ok := raw.Keys[0][member]; ok {
			t.Errorf("published key has private member %q", member)
		}
	}
}

func TestJWKSEndpointMethods(t *testing.T) {
	m, err := NewJWTMinter(testKeys().ed)
	if err != nil {
		t.Fatal(err)
	}
	s := jeServer(t, m, "/oauth2/jwks")
	for _, tc := range []struct {
		method string
		status int
		body   bool
	}{
		{http.MethodGet, http.StatusOK, true},
		{http.MethodHead, http.StatusOK, false},
		{http.MethodPost, http.StatusMethodNotAllowed, true},
		{http.MethodDelete, http.StatusMethodNotAllowed, true},
	} {
		t.Run(tc.method, func(t *testing.T) {
			w := jeGet(s, tc.method)
			if w.Code != tc.status || (w.Body.Len() > 0) != tc.body {
				t.Errorf("status %d, body %d bytes; want %d, body %v", w.Code, w.Body.Len(), tc.status, tc.body)
			}
			if tc.status == http.StatusMethodNotAllowed && w.Header().Get("Allow") != "GET, HEAD" {
				t.Errorf("Allow %q, want GET, HEAD", w.Header().Get("Allow"))
			}
		})
	}
}

func TestJWKSEndpointOfOpaqueTokensIsAnEmptySet(t *testing.T) {
	w := jeGet(jeServer(t, nil, "/oauth2/jwks"), http.MethodGet)
	if w.Code != http.StatusOK || w.Body.String() != `{"keys":[]}` {
		t.Errorf("got %d %s, want 200 {\"keys\":[]}", w.Code, w.Body)
	}
}

func TestJWKSEndpointIsRoutedOnlyWhenItHasAPath(t *testing.T) {
	m, err := NewJWTMinter(testKeys().p384)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := jeServer(t, m, "/keys").Endpoints()["/keys"]; !ok {
		t.Error("jwks_path /keys is not routed")
	}
	if eps := jeServer(t, m, "").Endpoints(); len(eps) != 1 {
		t.Errorf("without jwks_path %d endpoints are routed, want the token endpoint only", len(eps))
	}
}
