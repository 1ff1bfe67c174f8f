package grant_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
)

const (
	mcpURI     = "https://mcp.example/mcp"
	reportsURI = "https://reports.example/"
	openURI    = "urn:example:open"
)

// withResources configures three resources: two with scopes, one open.
func withResources(cfg *grant.Config) {
	cfg.Resources = []grant.Resource{
		{URI: mcpURI, Name: "MCP", Scopes: []string{"tools:read", "tools:call"}},
		{URI: reportsURI, Scopes: []string{"reports:read"}},
		{URI: openURI},
	}
}

// tokenForm is a jwt-bearer request with the given extra parameters
// (name, value pairs; a name may repeat).
func tokenForm(assertion string, params ...string) url.Values {
	f := form(assertion)
	for i := 0; i+1 < len(params); i += 2 {
		f.Add(params[i], params[i+1])
	}
	return f
}

func TestNormalizeResourceURI(t *testing.T) {
	cases := []struct {
		name, in, want string
		bad            bool
	}{
		{name: "scheme and host are lowercased", in: "HTTPS://MCP.Example:8443/MCP", want: "https://mcp.example:8443/MCP"},
		{name: "userinfo, path and query keep their case", in: "https://User@Host/P?Q=A", want: "https://User@host/P?Q=A"},
		{name: "a URN keeps all but its scheme", in: "URN:Example:X", want: "urn:Example:X"},
		{name: "percent-encoding is not rewritten", in: "https://h/%7euser", want: "https://h/%7euser"},
		{name: "a relative reference is refused", in: "/mcp", bad: true},
		{name: "a fragment is refused", in: "https://h/mcp#x", bad: true},
		{name: "an empty fragment is refused", in: "https://h/mcp#", bad: true},
		{name: "an empty string is refused", in: "", bad: true},
		{name: "white space is refused", in: "https://h/a b", bad: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := grant.NormalizeResourceURI(tc.in)
			if tc.bad != (err != nil) || got != tc.want {
				t.Fatalf("got %q, %v", got, err)
			}
		})
	}
}

func TestConfiguredResourcesMustBeDistinctAbsoluteURIs(t *testing.T) {
	for _, tc := range []struct {
		name      string
		resources []grant.Resource
	}{
		{"a relative resource is refused", []grant.Resource{{URI: "mcp"}}},
		{"a resource with a fragment is refused", []grant.Resource{{URI: "https://h/#f"}}},
		{"two resources equal after normalisation are refused", []grant.Resource{{URI: "https://H/x"}, {URI: "https://h/x"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := newServer(t, nil).store
			_, err := grant.New(grant.Config{IssuerURL: issuerURL, TokenPath: "/t", AccessTokenTTL: 1, Store: st, Resources: tc.resources})
			if err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestResourceParameterRules(t *testing.T) {
	b := newServer(t, withResources)
	cases := []struct {
		name   string
		params []string
		status int
		code   string
		aud    []string
		resp   any // the response's resource member
		scope  string
	}{
		{name: "one resource is the token's audience and a string in the response",
			params: []string{"resource", mcpURI}, aud: []string{mcpURI}, resp: mcpURI},
		{name: "repeated resource parameters are all granted, an array in the response",
			params: []string{"resource", mcpURI, "resource", openURI}, aud: []string{mcpURI, openURI}, resp: []any{mcpURI, openURI}},
		{name: "a resource is compared after scheme and host case normalisation, granted as configured",
			params: []string{"resource", "HTTPS://MCP.EXAMPLE/mcp"}, aud: []string{mcpURI}, resp: mcpURI},
		{name: "a resource named twice is granted once",
			params: []string{"resource", mcpURI, "resource", "https://mcp.example/mcp"}, aud: []string{mcpURI}, resp: mcpURI},
		{name: "path case is significant",
			params: []string{"resource", "https://mcp.example/MCP"}, status: 400, code: "invalid_target"},
		{name: "an unknown resource is invalid_target",
			params: []string{"resource", "https://elsewhere.example/"}, status: 400, code: "invalid_target"},
		{name: "a relative resource is invalid_target",
			params: []string{"resource", "/mcp"}, status: 400, code: "invalid_target"},
		{name: "a resource with a fragment is invalid_target",
			params: []string{"resource", mcpURI + "#x"}, status: 400, code: "invalid_target"},
		{name: "one unknown resource among known ones is invalid_target",
			params: []string{"resource", mcpURI, "resource", "https://elsewhere.example/"}, status: 400, code: "invalid_target"},
		{name: "scope must be within the resource's scopes",
			params: []string{"resource", mcpURI, "scope", "reports:read"}, status: 400, code: "invalid_scope"},
		{name: "scope may be within the union of the resources' scopes",
			params: []string{"resource", mcpURI, "resource", reportsURI, "scope", "tools:call reports:read"},
			aud:    []string{mcpURI, reportsURI}, resp: []any{mcpURI, reportsURI}, scope: "tools:call reports:read"},
		{name: "a resource without scopes leaves the scope to the other bounds",
			params: []string{"resource", openURI, "scope", "anything"}, aud: []string{openURI}, resp: openURI, scope: "anything"},
		{name: "without resource the audience is the client's as before",
			aud: []string{"c:1"}},
		{name: "other parameters still may not repeat",
			params: []string{"resource", mcpURI, "scope", "a", "scope", "b"}, status: 400, code: "invalid_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w, body := b.post(tokenForm(b.assertion(t, "https://idp", nil), tc.params...), basic("c:1", b.secret))
			if tc.status != 0 {
				if w.Code != tc.status || body["error"] != tc.code {
					t.Fatalf("got %d %v, want %d %s", w.Code, body, tc.status, tc.code)
				}
				return
			}
			if w.Code != 200 {
				t.Fatalf("refused: %d %v", w.Code, body)
			}
			if !reflect.DeepEqual(body["resource"], tc.resp) {
				t.Fatalf("response resource %#v, want %#v", body["resource"], tc.resp)
			}
			if got, _ := body["scope"].(string); got != tc.scope {
				t.Fatalf("scope %q, want %q", got, tc.scope)
			}
			rec, err := b.store.Access(t.Context(), grant.HashToken(body["access_token"].(string)))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(rec.Aud, tc.aud) {
				t.Fatalf("aud %v, want %v", rec.Aud, tc.aud)
			}
			wantRes := tc.aud
			if tc.resp == nil {
				wantRes = nil
			}
			if !reflect.DeepEqual(rec.Resource, wantRes) {
				t.Fatalf("record resource %v, want %v", rec.Resource, wantRes)
			}
			rt, err := b.store.Refresh(t.Context(), grant.HashToken(body["refresh_token"].(string)))
			if err != nil || !reflect.DeepEqual(rt.Resource, wantRes) || !reflect.DeepEqual(rt.Aud, tc.aud) {
				t.Fatalf("refresh record %+v, %v: must keep the granted resources", rt, err)
			}
		})
	}
}

func TestRecordsWithoutResourceOrProfileKeepTheirJSON(t *testing.T) {
	b := newServer(t, withResources)
	w, body := b.post(form(b.assertion(t, "https://idp", nil)), basic("c:1", b.secret))
	if w.Code != 200 {
		t.Fatalf("%d %v", w.Code, body)
	}
	rec, _ := b.store.Access(t.Context(), grant.HashToken(body["access_token"].(string)))
	raw, _ := json.Marshal(rec)
	if strings.Contains(string(raw), `"resource"`) || strings.Contains(string(raw), `"profile"`) {
		t.Fatalf("record of a grant without resource: %s", raw)
	}
	if _, ok := body["resource"]; ok {
		t.Fatalf("response of a grant without resource: %v", body)
	}
}

// refreshWith refreshes token as c:1 with extra parameters.
func (b *bench) refreshWith(t *testing.T, token string, params ...string) (int, map[string]any) {
	t.Helper()
	f := url.Values{"grant_type": {grant.GrantTypeRefreshToken}, "refresh_token": {token}}
	for i := 0; i+1 < len(params); i += 2 {
		f.Add(params[i], params[i+1])
	}
	w, body := b.post(f, basic("c:1", b.secret))
	return w.Code, body
}

func (b *bench) audOf(t *testing.T, body map[string]any) []string {
	t.Helper()
	rec, err := b.store.Access(t.Context(), grant.HashToken(body["access_token"].(string)))
	if err != nil {
		t.Fatal(err)
	}
	return rec.Aud
}

func TestRefreshNarrowsResourcesAndNeverDropsOrWidensThem(t *testing.T) {
	b := newServer(t, withResources)
	w, first := b.post(tokenForm(b.assertion(t, "https://idp", nil),
		"resource", mcpURI, "resource", reportsURI, "scope", "tools:read reports:read"), basic("c:1", b.secret))
	if w.Code != http.StatusOK {
		t.Fatalf("grant: %d %v", w.Code, first)
	}
	both := []string{mcpURI, reportsURI}

	// Without resource, a refresh keeps the audience of the grant.
	code, kept := b.refreshWith(t, first["refresh_token"].(string))
	if code != 200 || !reflect.DeepEqual(b.audOf(t, kept), both) || !reflect.DeepEqual(kept["resource"], []any{mcpURI, reportsURI}) {
		t.Fatalf("refresh without resource: %d %v aud %v", code, kept, b.audOf(t, kept))
	}

	// Narrowing to one resource narrows the audience and the scope of
	// this access token only.
	code, narrow := b.refreshWith(t, kept["refresh_token"].(string), "resource", mcpURI)
	if code != 200 || !reflect.DeepEqual(b.audOf(t, narrow), []string{mcpURI}) || narrow["resource"] != mcpURI || narrow["scope"] != "tools:read" {
		t.Fatalf("narrowing: %d %v", code, narrow)
	}
	code, back := b.refreshWith(t, narrow["refresh_token"].(string))
	if code != 200 || !reflect.DeepEqual(b.audOf(t, back), both) || back["scope"] != "tools:read reports:read" {
		t.Fatalf("the chain keeps its first-granted resources: %d %v", code, back)
	}

	rt := back["refresh_token"].(string)
	refusals := []struct {
		name   string
		params []string
		code   string
	}{
		{"a configured resource the chain was not granted is invalid_target", []string{"resource", openURI}, "invalid_target"},
		{"an unknown resource is invalid_target", []string{"resource", "https://elsewhere.example/"}, "invalid_target"},
		{"a scope outside the narrowed resource's scopes is invalid_scope", []string{"resource", mcpURI, "scope", "reports:read"}, "invalid_scope"},
	}
	for _, tc := range refusals {
		t.Run(tc.name, func(t *testing.T) {
			code, body := b.refreshWith(t, rt, tc.params...)
			if code != 400 || body["error"] != tc.code {
				t.Fatalf("got %d %v, want %s", code, body, tc.code)
			}
		})
	}
}

func TestRefreshOfAGrantWithoutResourcesCannotGainOne(t *testing.T) {
	b := newServer(t, withResources)
	w, first := b.post(form(b.assertion(t, "https://idp", nil)), basic("c:1", b.secret))
	if w.Code != 200 {
		t.Fatalf("grant: %d %v", w.Code, first)
	}
	if code, body := b.refreshWith(t, first["refresh_token"].(string), "resource", mcpURI); code != 400 || body["error"] != "invalid_target" {
		t.Fatalf("widening to a resource: %d %v", code, body)
	}
	code, next := b.refreshWith(t, first["refresh_token"].(string))
	if code != 200 || !reflect.DeepEqual(b.audOf(t, next), []string{"c:1"}) {
		t.Fatalf("plain refresh: %d %v", code, next)
	}
}

func TestRecordMembersForResourceAndProfile(t *testing.T) {
	rec := grant.AccessRecord{TokenRecord: grant.TokenRecord{V: 1, Aud: []string{mcpURI}, Resource: []string{mcpURI}, Profile: grant.ProfileIDJAG}}
	raw, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	if want := `"claims":null,"resource":["https://mcp.example/mcp"],"profile":"id-jag"}`; !strings.HasSuffix(string(raw), want) {
		t.Fatalf("record JSON %s, want it to end with %s", raw, want)
	}
}
