package grant_test

import (
	"crypto/rand"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/keys"
)

const enterpriseIdP = "https://enterprise-idp.example"

// withIDJAG adds the resources, an ID-JAG issuer, and an ID-JAG issuer
// that claims this server's own issuer_url.
func withIDJAG(cfg *grant.Config) {
	withResources(cfg)
	top := cfg.Tenants[""]
	top.Issuers[enterpriseIdP] = &grant.Issuer{Name: "enterprise", Issuer: enterpriseIdP, Algorithms: keys.DefaultAlgorithms,
		Keys: keys.Static{{Public: issuerKey().Public()}}, Profile: grant.ProfileIDJAG, Aliases: []string{"idjag-alias"},
		Scopes: []string{"tools:read", "tools:call", "reports:read", "other"}}
	top.Issuers[issuerURL] = &grant.Issuer{Name: "self", Issuer: issuerURL, Algorithms: keys.DefaultAlgorithms,
		Keys: keys.Static{{Public: issuerKey().Public()}}, Profile: grant.ProfileIDJAG}
}

// idJAG signs an ID-JAG for client c:1 and the MCP resource; extra
// overrides claims (nil deletes one); typ "" means oauth-id-jag+jwt.
func (b *bench) idJAG(t testing.TB, typ string, extra map[string]any) string {
	t.Helper()
	c := map[string]any{"iss": enterpriseIdP, "sub": "alice", "aud": issuerURL, "client_id": "c:1",
		"iat": time.Now().Unix(), "exp": time.Now().Add(5 * time.Minute).Unix(), "jti": rand.Text(),
		"resource": mcpURI, "scope": "tools:read tools:call"}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	if typ == "" {
		typ = grant.IDJAGType
	}
	s, err := keys.Sign(b.key, "RS256", "", typ, c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestIDJAGRules(t *testing.T) {
	b := newServer(t, withIDJAG)
	cases := []struct {
		name   string
		typ    string
		claims map[string]any
		params []string
		code   string // "" accepted
		desc   string // a fragment of the error description
		aud    []string
		scope  string
	}{
		{name: "a valid ID-JAG is granted for its resource and scope", aud: []string{mcpURI}, scope: "tools:read tools:call"},
		{name: "typ is a media type: case-insensitive, with application/", typ: "application/OAUTH-ID-JAG+JWT", aud: []string{mcpURI}, scope: "tools:read tools:call"},
		{name: "typ JWT is refused", typ: "JWT", code: "invalid_grant", desc: "typ"},
		{name: "typ application/ alone is refused", typ: "application/", code: "invalid_grant", desc: "typ"},
		{name: "typ of another +jwt type is refused", typ: "at+jwt", code: "invalid_grant", desc: "typ"},
		{name: "aud as a one-element array is accepted", claims: map[string]any{"aud": []string{issuerURL}}, aud: []string{mcpURI}, scope: "tools:read tools:call"},
		{name: "aud naming the token endpoint is refused", claims: map[string]any{"aud": issuerURL + "/oauth2/token"}, code: "invalid_grant", desc: "aud"},
		{name: "aud with two values is refused", claims: map[string]any{"aud": []string{issuerURL, issuerURL + "/oauth2/token"}}, code: "invalid_grant", desc: "aud"},
		{name: "aud naming an alias is refused", claims: map[string]any{"aud": "idjag-alias"}, code: "invalid_grant", desc: "aud"},
		{name: "aud with a trailing slash is refused", claims: map[string]any{"aud": issuerURL + "/"}, code: "invalid_grant"},
		{name: "missing client_id is refused", claims: map[string]any{"client_id": nil}, code: "invalid_grant", desc: "client_id"},
		{name: "non-string client_id is refused", claims: map[string]any{"client_id": 1}, code: "invalid_grant", desc: "client_id"},
		{name: "client_id of another client is refused", claims: map[string]any{"client_id": "c:2"}, code: "invalid_grant", desc: "another client"},
		{name: "missing jti is refused", claims: map[string]any{"jti": nil}, code: "invalid_grant", desc: "jti"},
		{name: "missing iat is refused", claims: map[string]any{"iat": nil}, code: "invalid_grant", desc: "iat"},
		{name: "an ID-JAG of this server's own issuer is refused", claims: map[string]any{"iss": issuerURL}, code: "invalid_grant", desc: "this server"},
		{name: "an unknown resource in the claim is invalid_target", claims: map[string]any{"resource": "https://elsewhere.example/"}, code: "invalid_target"},
		{name: "one unknown resource among known ones is invalid_target", claims: map[string]any{"resource": []string{mcpURI, "https://elsewhere.example/"}}, code: "invalid_target"},
		{name: "a resource claim that is not a string is refused", claims: map[string]any{"resource": 42}, code: "invalid_grant", desc: "resource"},
		{name: "the claim's resources are granted when the form names none",
			claims: map[string]any{"resource": []string{mcpURI, reportsURI}, "scope": "tools:read reports:read"},
			aud:    []string{mcpURI, reportsURI}, scope: "tools:read reports:read"},
		{name: "the form narrows the claim's resources",
			claims: map[string]any{"resource": []string{mcpURI, reportsURI}, "scope": "tools:read"}, params: []string{"resource", mcpURI},
			aud: []string{mcpURI}, scope: "tools:read"},
		{name: "a form resource outside the claim's is invalid_target", params: []string{"resource", reportsURI}, code: "invalid_target"},
		{name: "without resource anywhere the client's audience is used", claims: map[string]any{"resource": nil, "scope": "other"},
			aud: []string{"c:1"}, scope: "other"},
		{name: "without a resource claim the form's resource is granted", claims: map[string]any{"resource": nil}, params: []string{"resource", mcpURI},
			aud: []string{mcpURI}, scope: "tools:read tools:call"},
		{name: "a scope beyond the ID-JAG's scope is invalid_scope", params: []string{"scope", "tools:read other"}, code: "invalid_scope"},
		{name: "a scope beyond the resource's scopes is invalid_scope", claims: map[string]any{"scope": "tools:read reports:read"}, code: "invalid_scope"},
		{name: "the form may narrow the ID-JAG's scope", params: []string{"scope", "tools:read"}, aud: []string{mcpURI}, scope: "tools:read"},
		{name: "authorization_details is refused", claims: map[string]any{"authorization_details": []any{map[string]any{"type": "x"}}}, code: "invalid_grant", desc: "authorization_details"},
		{name: "the §3.1 checks still hold: an expired ID-JAG is refused", claims: map[string]any{"exp": time.Now().Add(-time.Hour).Unix()}, code: "invalid_grant", desc: "expired"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w, body := b.post(tokenForm(b.idJAG(t, tc.typ, tc.claims), tc.params...), basic("c:1", b.secret))
			if tc.code != "" {
				desc, _ := body["error_description"].(string)
				if w.Code != 400 || body["error"] != tc.code || !strings.Contains(desc, tc.desc) {
					t.Fatalf("got %d %v, want 400 %s (%q)", w.Code, body, tc.code, tc.desc)
				}
				return
			}
			if w.Code != 200 {
				t.Fatalf("refused: %d %v", w.Code, body)
			}
			if _, ok := body["refresh_token"]; ok {
				t.Fatal("an ID-JAG exchange got a refresh token")
			}
			if got, _ := body["scope"].(string); got != tc.scope {
				t.Fatalf("scope %q, want %q", got, tc.scope)
			}
			rec, err := b.store.Access(t.Context(), grant.HashToken(body["access_token"].(string)))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(rec.Aud, tc.aud) || rec.Profile != grant.ProfileIDJAG || rec.ClientID != "c:1" || rec.AssertionIss != enterpriseIdP {
				t.Fatalf("record %+v: want aud %v and profile id-jag", rec, tc.aud)
			}
		})
	}
}

func TestIDJAGIsSingleUse(t *testing.T) {
	b := newServer(t, withIDJAG)
	jag := b.idJAG(t, "", nil)
	if w, body := b.post(form(jag), basic("c:1", b.secret)); w.Code != 200 {
		t.Fatalf("first use: %d %v", w.Code, body)
	}
	if w, body := b.post(form(jag), basic("c:1", b.secret)); w.Code != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("replay: %d %v", w.Code, body)
	}
}

func TestIDJAGWithoutClientAuthenticationIsInvalidClient(t *testing.T) {
	b := newServer(t, withIDJAG)
	w, body := b.post(form(b.idJAG(t, "", nil)), nil)
	if w.Code != 401 || body["error"] != "invalid_client" || w.Header().Get("WWW-Authenticate") == "" {
		t.Fatalf("got %d %v", w.Code, body)
	}
}

func TestIssuerProfileConfiguration(t *testing.T) {
	for _, tc := range []struct {
		name   string
		issuer grant.Issuer
		want   string // "" accepted
	}{
		{"profile id-jag is accepted", grant.Issuer{Profile: grant.ProfileIDJAG}, ""},
		{"an unknown profile is refused", grant.Issuer{Profile: "saml"}, "unknown profile"},
		{"profile id-jag with client_auth optional is refused", grant.Issuer{Profile: grant.ProfileIDJAG, ClientAuthOptional: true}, "client_auth optional"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := grant.New(grant.Config{IssuerURL: issuerURL, TokenPath: "/t", AccessTokenTTL: time.Hour, Store: newServer(t, nil).store,
				Tenants: map[string]*grant.Tenant{"": {Issuers: map[string]*grant.Issuer{"x": func() *grant.Issuer {
					is := tc.issuer
					is.Name, is.Issuer, is.Algorithms, is.Keys = "x", "x", keys.DefaultAlgorithms, keys.Static{{Public: issuerKey().Public()}}
					return &is
				}()}}}})
			if (tc.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestMetadataListsTheIDJAGProfileOnlyWhenAnIssuerHasIt(t *testing.T) {
	with := metadataOf(t, newLCEnv(t, nil, func(c *grant.Config) {
		c.Tenants["acme"].Issuers["https://idp"].Profile = grant.ProfileIDJAG
	}))
	if !reflect.DeepEqual(with["authorization_grant_profiles_supported"], strs(grant.GrantProfileIDJAG)) {
		t.Fatalf("with an ID-JAG issuer in a tenant: %v", with)
	}
	without := metadataOf(t, newLCEnv(t, nil, nil))
	if _, ok := without["authorization_grant_profiles_supported"]; ok {
		t.Fatalf("without an ID-JAG issuer: %v", without)
	}
}
