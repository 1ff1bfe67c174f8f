package grant_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/keys"
)

func metadataOf(t *testing.T, e *lcEnv) map[string]any {
	t.Helper()
	serve, ok := e.srv.Endpoints()["/.well-known/oauth-authorization-server"]
	if !ok {
		t.Fatal("the metadata endpoint is not routed")
	}
	w := httptest.NewRecorder()
	serve(w, httptest.NewRequest(http.MethodGet, "/.well-known/oauth-authorization-server", nil))
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("%d %v", w.Code, w.Header())
	}
	var doc map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

func strs(v ...string) []any {
	out := make([]any, len(v))
	for i, s := range v {
		out[i] = s
	}
	return out
}

func TestMetadataListsExactlyWhatIsConfigured(t *testing.T) {
	secretMethods := strs("client_secret_basic", "client_secret_post")
	keyClient := &grant.Client{ID: "k", Keys: keys.Static{{Public: lcKey.Public()}}, GrantTypes: []string{grant.GrantJWTBearer}}
	cases := []struct {
		name   string
		mutate func(*grant.Config)
		want   map[string]any
	}{
		{"secret clients with refresh tokens", nil, map[string]any{
			"issuer":                                        lcIssuerURL,
			"token_endpoint":                                lcIssuerURL + "/oauth2/token",
			"introspection_endpoint":                        lcIssuerURL + "/oauth2/introspect",
			"revocation_endpoint":                           lcIssuerURL + "/oauth2/revoke",
			"response_types_supported":                      []any{},
			"dpop_signing_alg_values_supported":             strs(keys.DefaultAlgorithms...),
			"grant_types_supported":                         strs(grant.GrantTypeJWTBearer, "refresh_token"),
			"token_endpoint_auth_methods_supported":         secretMethods,
			"introspection_endpoint_auth_methods_supported": secretMethods,
			"revocation_endpoint_auth_methods_supported":    secretMethods,
		}},
		{"refresh_token_ttl off drops refresh_token; endpoints off are absent; jwks_uri with a jwks path", func(c *grant.Config) {
			c.RefreshTokenTTL = 0
			c.IntrospectionPath, c.RevocationPath = "", ""
			c.JWKSPath = "/oauth2/jwks"
			c.IssuerURL = lcIssuerURL + "/"
		}, map[string]any{
			"issuer":                                lcIssuerURL + "/",
			"token_endpoint":                        lcIssuerURL + "/oauth2/token",
			"jwks_uri":                              lcIssuerURL + "/oauth2/jwks",
			"response_types_supported":              []any{},
			"dpop_signing_alg_values_supported":     strs(keys.DefaultAlgorithms...),
			"grant_types_supported":                 strs(grant.GrantTypeJWTBearer),
			"token_endpoint_auth_methods_supported": secretMethods,
		}},
		{"no client may refresh: no refresh_token; a private_key_jwt client adds its method and algorithms", func(c *grant.Config) {
			c.IntrospectionPath = ""
			for _, t := range c.Tenants {
				for _, cl := range t.Clients {
					cl.RefreshTTL = -1
				}
			}
			c.Tenants["acme"].Clients["k"] = keyClient
		}, map[string]any{
			"issuer":                                                lcIssuerURL,
			"token_endpoint":                                        lcIssuerURL + "/oauth2/token",
			"revocation_endpoint":                                   lcIssuerURL + "/oauth2/revoke",
			"response_types_supported":                              []any{},
			"dpop_signing_alg_values_supported":                     strs(keys.DefaultAlgorithms...),
			"grant_types_supported":                                 strs(grant.GrantTypeJWTBearer),
			"token_endpoint_auth_methods_supported":                 strs("client_secret_basic", "client_secret_post", "private_key_jwt"),
			"token_endpoint_auth_signing_alg_values_supported":      strs(keys.DefaultAlgorithms...),
			"revocation_endpoint_auth_methods_supported":            strs("client_secret_basic", "client_secret_post", "private_key_jwt"),
			"revocation_endpoint_auth_signing_alg_values_supported": strs(keys.DefaultAlgorithms...),
		}},
		{"only private_key_jwt clients, without the refresh grant", func(c *grant.Config) {
			c.IntrospectionPath, c.RevocationPath = "", ""
			c.Tenants = map[string]*grant.Tenant{"": {Issuers: map[string]*grant.Issuer{"https://idp": lcIssuer()},
				Clients: map[string]*grant.Client{"k": keyClient}}}
		}, map[string]any{
			"issuer":                                           lcIssuerURL,
			"token_endpoint":                                   lcIssuerURL + "/oauth2/token",
			"response_types_supported":                         []any{},
			"dpop_signing_alg_values_supported":                strs(keys.DefaultAlgorithms...),
			"grant_types_supported":                            strs(grant.GrantTypeJWTBearer),
			"token_endpoint_auth_methods_supported":            strs("private_key_jwt"),
			"token_endpoint_auth_signing_alg_values_supported": strs(keys.DefaultAlgorithms...),
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newLCEnv(t, nil, tc.mutate)
			if got := metadataOf(t, e); !reflect.DeepEqual(got, tc.want) {
				g, _ := json.MarshalIndent(got, "", "  ")
				w, _ := json.MarshalIndent(tc.want, "", "  ")
				t.Fatalf("got\n%s\nwant\n%s", g, w)
			}
		})
	}
}

func TestMetadataEndpointAnswersGETAndHEADOnly(t *testing.T) {
	e := newLCEnv(t, nil, func(c *grant.Config) { c.RefreshTokenTTL = time.Hour })
	serve := e.srv.Endpoints()["/.well-known/oauth-authorization-server"]
	get := httptest.NewRecorder()
	serve(get, httptest.NewRequest(http.MethodGet, "/", nil))
	head := httptest.NewRecorder()
	serve(head, httptest.NewRequest(http.MethodHead, "/", nil))
	if head.Code != 200 || head.Body.Len() != 0 || head.Header().Get("Content-Length") != get.Header().Get("Content-Length") {
		t.Fatalf("HEAD: %d %q %v", head.Code, head.Body, head.Header())
	}
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		w := httptest.NewRecorder()
		serve(w, httptest.NewRequest(m, "/", nil))
		if w.Code != 405 || w.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: %d Allow %q", m, w.Code, w.Header().Get("Allow"))
		}
	}
}

func TestEndpointsRouteEveryEnabledEndpoint(t *testing.T) {
	e := newLCEnv(t, nil, nil)
	m := e.srv.Endpoints()
	for _, p := range []string{"/oauth2/token", "/oauth2/introspect", "/oauth2/revoke", "/.well-known/oauth-authorization-server"} {
		if m[p] == nil {
			t.Errorf("%s is not routed", p)
		}
	}
	e = newLCEnv(t, nil, func(c *grant.Config) { c.IntrospectionPath, c.RevocationPath, c.MetadataPath = "", "", "" })
	if n := len(e.srv.Endpoints()); n != 1 {
		t.Errorf("with every optional endpoint off, %d endpoints are routed", n)
	}
}
