package grant_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/memstore"
)

func TestResourceMetadataURLIsTheWellKnownPathBeforeTheResourcePath(t *testing.T) {
	cases := []struct {
		name, resource, url, path string
	}{
		{"a path follows the well-known segment", "https://api.example/mcp",
			"https://api.example/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource/mcp"},
		{"no path is the bare well-known path", "https://api.example",
			"https://api.example/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource"},
		{"a lone slash counts as no path", "https://api.example/",
			"https://api.example/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource"},
		{"port, deep path and trailing slash are kept", "http://127.0.0.1:8080/a/b/",
			"http://127.0.0.1:8080/.well-known/oauth-protected-resource/a/b/", "/.well-known/oauth-protected-resource/a/b/"},
		{"an escaped path stays escaped in the URL, unescaped in the route", "https://api.example/a%20b",
			"https://api.example/.well-known/oauth-protected-resource/a%20b", "/.well-known/oauth-protected-resource/a b"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u, p, err := grant.ResourceMetadataURL(tc.resource)
			if err != nil || u != tc.url || p != tc.path {
				t.Fatalf("got %q %q %v", u, p, err)
			}
		})
	}
	for _, bad := range []string{"https://api.example/mcp?x=1", "https://api.example/mcp#f", "urn:example:mcp", "/mcp", "https://u@api.example/", "ftp://api.example/"} {
		t.Run("refused: "+bad, func(t *testing.T) {
			if _, _, err := grant.ResourceMetadataURL(bad); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestVerifierResourceConfiguration(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  grant.VerifierConfig
		want string // "" accepted
	}{
		{"resource with an authorization server is accepted", grant.VerifierConfig{Resource: mcpURI, AuthorizationServers: []string{issuerURL}}, ""},
		{"resource requires an authorization server", grant.VerifierConfig{Resource: mcpURI}, "requires at least one authorization_server"},
		{"an authorization server requires resource", grant.VerifierConfig{AuthorizationServers: []string{issuerURL}}, "requires resource"},
		{"an authorization server must be an http(s) URL", grant.VerifierConfig{Resource: mcpURI, AuthorizationServers: []string{"as.example"}}, "authorization_server"},
		{"a resource with a query is refused", grant.VerifierConfig{Resource: mcpURI + "?v=1", AuthorizationServers: []string{issuerURL}}, "resource"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Check()
			if (tc.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestVerifierWithResourceAcceptsOnlyTokensForIt(t *testing.T) {
	st := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = st.Close() })
	v, err := grant.NewVerifier(grant.VerifierConfig{Store: st, Resource: mcpURI, AuthorizationServers: []string{issuerURL}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		aud  []string
		ok   bool
	}{
		{"a token for the resource is accepted", []string{mcpURI}, true},
		{"a token for it and another resource is accepted", []string{reportsURI, mcpURI}, true},
		{"scheme and host case do not matter", []string{"HTTPS://Mcp.Example/mcp"}, true},
		{"path case does", []string{"https://mcp.example/MCP"}, false},
		{"a token for another resource is invalid_token", []string{reportsURI}, false},
		{"a token for the client's audience is invalid_token", []string{"app"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			token := seed(t, st, func(r *grant.AccessRecord) { r.Aud = tc.aud })
			_, oerr := v.Verify(t.Context(), token)
			if tc.ok != (oerr == nil) || oerr != nil && (oerr.Status != 401 || oerr.Code != "invalid_token") {
				t.Fatalf("got %+v", oerr)
			}
		})
	}
}

func TestResourceChallengesNameTheMetadataAndTheScope(t *testing.T) {
	st := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = st.Close() })
	meta := `resource_metadata="https://mcp.example/.well-known/oauth-protected-resource/mcp"`
	scoped, _ := grant.NewVerifier(grant.VerifierConfig{Store: st, Realm: "mcp", Scope: []string{"tools:read", "admin"},
		Resource: mcpURI, AuthorizationServers: []string{issuerURL}})
	open, _ := grant.NewVerifier(grant.VerifierConfig{Store: st, Realm: "mcp", Resource: mcpURI, AuthorizationServers: []string{issuerURL}})
	token := seed(t, st, func(r *grant.AccessRecord) { r.Aud, r.Scope = []string{mcpURI}, "tools:read" })
	for _, tc := range []struct {
		name      string
		v         *grant.Verifier
		token     string
		status    int
		challenge string
	}{
		{"a missing token names the scope and the metadata", scoped, "", 401, `Bearer realm="mcp", scope="tools:read admin", ` + meta},
		{"an invalid token names the scope and the metadata", scoped, "unknown", 401, `Bearer realm="mcp", error="invalid_token", scope="tools:read admin", ` + meta},
		{"a missing scope names the metadata", scoped, token, 403, `Bearer realm="mcp", error="insufficient_scope", scope="tools:read admin", ` + meta},
		{"without required scopes a 401 names only the metadata", open, "", 401, `Bearer realm="mcp", ` + meta},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, oerr := tc.v.Verify(t.Context(), tc.token)
			if oerr == nil {
				t.Fatal("accepted")
			}
			w := httptest.NewRecorder()
			tc.v.WriteError(w, oerr)
			if w.Code != tc.status || w.Header().Get("WWW-Authenticate") != tc.challenge {
				t.Fatalf("got %d %q", w.Code, w.Header().Get("WWW-Authenticate"))
			}
		})
	}
}

func TestResourceMetadataDocumentIsServedWithoutAToken(t *testing.T) {
	st := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = st.Close() })
	v, err := grant.NewVerifier(grant.VerifierConfig{Store: st, Scope: []string{"tools:read"},
		Resource: mcpURI, AuthorizationServers: []string{issuerURL, "https://as2.example"}})
	if err != nil {
		t.Fatal(err)
	}
	if v.ResourceMetadataPath() != "/.well-known/oauth-protected-resource/mcp" {
		t.Fatalf("path %q", v.ResourceMetadataPath())
	}
	want := `{"resource":"https://mcp.example/mcp","authorization_servers":["https://as.example","https://as2.example"],` +
		`"scopes_supported":["tools:read"],"bearer_methods_supported":["header"],` +
		`"dpop_signing_alg_values_supported":["RS256","RS384","RS512","PS256","PS384","PS512","ES256","ES384","ES512","EdDSA"]}`
	for _, tc := range []struct {
		method string
		status int
		body   string
	}{
		{http.MethodGet, 200, want},
		{http.MethodHead, 200, ""},
		{http.MethodPost, 405, ""},
	} {
		t.Run(tc.method, func(t *testing.T) {
			w := httptest.NewRecorder()
			v.ServeResourceMetadata(w, httptest.NewRequest(tc.method, v.ResourceMetadataPath(), nil))
			if w.Code != tc.status || tc.status == 200 && (w.Body.String() != tc.body || w.Header().Get("Content-Type") != "application/json") {
				t.Fatalf("got %d %v %s", w.Code, w.Header(), w.Body)
			}
		})
	}
	plain, _ := grant.NewVerifier(grant.VerifierConfig{Store: st})
	if plain.ResourceMetadataPath() != "" || plain.ResourceMetadata() != nil {
		t.Fatal("a verifier without resource has metadata")
	}
}

// Every 401 and 403 challenge of a protected resource points to its
// metadata, whichever scheme it names (SPEC §7 with §8).
func TestResourceChallengesOfBothSchemesNameTheMetadata(t *testing.T) {
	st := memstore.New(memstore.Options{})
	t.Cleanup(func() { _ = st.Close() })
	v, err := grant.NewVerifier(grant.VerifierConfig{Store: st, Scope: []string{"tools:read"},
		Resource: mcpURI, AuthorizationServers: []string{issuerURL}})
	if err != nil {
		t.Fatal(err)
	}
	const meta = `resource_metadata="https://mcp.example/.well-known/oauth-protected-resource/mcp"`
	for _, tc := range []struct {
		name, authz string
	}{
		{"no credentials", ""},
		{"an unknown bearer token", "Bearer nope"},
		{"an unknown DPoP token without a proof", "DPoP nope"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, mcpURI, nil)
			if tc.authz != "" {
				r.Header.Set("Authorization", tc.authz)
			}
			_, oerr := v.Authenticate(r)
			if oerr == nil {
				t.Fatal("accepted")
			}
			w := httptest.NewRecorder()
			v.WriteError(w, oerr)
			challenges := w.Header().Values("WWW-Authenticate")
			if len(challenges) == 0 {
				t.Fatalf("%d without a challenge", w.Code)
			}
			for _, c := range challenges {
				if !strings.Contains(c, meta) {
					t.Errorf("challenge %q does not name the metadata", c)
				}
			}
		})
	}
}
