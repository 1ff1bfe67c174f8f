package grant_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/memstore"
)

// fuzzBearerTokens are the tokens FuzzBearer's store holds: only the
// first may pass, the others fail on scope and tenant.
var fuzzBearerTokens = []string{"tok-live", "tok-no-scope", "tok-other-tenant"}

// FuzzBearer sends an arbitrary Authorization header to jwt_grant_auth's
// core: BearerToken extracts the token and Verify checks it against a
// memory store. Only the one live token with the required scope is ever
// accepted, every refusal is one of RFC 6750's answers, and no answer
// shows the token.
func FuzzBearer(f *testing.F) {
	for _, tok := range fuzzBearerTokens {
		f.Add("Bearer " + tok)
	}
	for _, h := range []string{"", "bearer tok-live ", "BEARER\ttok-live", "Bearer", "Bearertok-live",
		"Basic dG9rLWxpdmU=", "Bearer tok-live, Bearer x", "Bearer  \t ", "Bearer tok-live\x00"} {
		f.Add(h)
	}

	now := time.Now()
	st := memstore.New(memstore.Options{})
	f.Cleanup(func() { _ = st.Close() })
	for i, tok := range fuzzBearerTokens {
		rec := &grant.AccessRecord{TokenRecord: grant.TokenRecord{
			V: 1, Sub: "alice", ClientID: "app", Scope: "read write", Aud: []string{"api"},
			Iss: issuerURL, Iat: now.Unix(), Exp: now.Add(time.Hour).Unix(),
		}}
		switch i {
		case 1:
			rec.Scope = "write"
		case 2:
			rec.Tenant = "acme"
		}
		if err := st.Issue(f.Context(), &grant.Issuance{AccessHash: grant.HashToken(tok), Access: rec}); err != nil {
			f.Fatal(err)
		}
	}
	v, err := grant.NewVerifier(grant.VerifierConfig{
		Store: st, Audience: []string{"api"}, Scope: []string{"read"}, Now: func() time.Time { return now },
	})
	if err != nil {
		f.Fatal(err)
	}

	// The answers to the refusals a known input gets: every answer to a
	// fuzzed input must be one of them, byte for byte, so that none can
	// carry anything of the input.
	answers := map[string]*httptest.ResponseRecorder{}
	for _, tok := range []string{"", "never-issued", fuzzBearerTokens[1], fuzzBearerTokens[2]} {
		_, oerr := v.Verify(f.Context(), tok)
		w := httptest.NewRecorder()
		v.WriteError(w, oerr)
		answers[oerr.Reason] = w
	}

	f.Fuzz(func(t *testing.T, authorization string) {
		r := httptest.NewRequest(http.MethodGet, "/api", nil)
		if authorization != "" {
			r.Header.Set("Authorization", authorization)
		}
		token := grant.BearerToken(r)
		checkBearerToken(t, authorization, token)
		rec, oerr := v.Verify(t.Context(), token)
		if oerr == nil {
			if token != fuzzBearerTokens[0] || rec == nil || rec.Sub != "alice" {
				t.Fatalf("accepted %q", token)
			}
			return
		}
		if rec != nil {
			t.Fatal("a refusal returned a record")
		}
		w := httptest.NewRecorder()
		v.WriteError(w, oerr)
		checkBearerRefusal(t, token, oerr, w)
		if want, ok := answers[oerr.Reason]; !ok || w.Body.String() != want.Body.String() ||
			!reflect.DeepEqual(w.Header(), want.Header()) {
			t.Fatalf("refusal %q answered %v %s, not as for a known input", oerr.Reason, w.Header(), w.Body)
		}
	})
}

// checkBearerToken: a token comes only from a Bearer header, as it is
// there but for the blanks around it.
func checkBearerToken(t *testing.T, header, token string) {
	t.Helper()
	if token == "" {
		return
	}
	if len(header) < 7 || !strings.EqualFold(header[:6], "bearer") {
		t.Fatalf("token %q from a header that is not Bearer", token)
	}
	if token != strings.Trim(token, " \t") || !strings.Contains(header[7:], token) {
		t.Fatalf("token %q is not the header's credentials", token)
	}
}

// checkBearerRefusal: a refusal is 401 or 403 with a Bearer challenge
// (the store is up), and its body is RFC 6750's.
func checkBearerRefusal(t *testing.T, token string, e *grant.Error, w *httptest.ResponseRecorder) {
	t.Helper()
	wantCode := map[int][]string{401: {"", grant.CodeInvalidToken}, 403: {grant.CodeInsufficientScope}}
	if codes, ok := wantCode[e.Status]; !ok || !slices.Contains(codes, e.Code) || w.Code != e.Status {
		t.Fatalf("refusal %+v answered %d", e, w.Code)
	}
	if token == "" && e.Code != "" {
		t.Fatalf("a request without a token got error %q", e.Code)
	}
	challenge := w.Header().Get("WWW-Authenticate")
	if !strings.HasPrefix(challenge, `Bearer realm="jwt_grant"`) || e.Code != "" && !strings.Contains(challenge, `error="`+e.Code+`"`) {
		t.Fatalf("challenge %q for %q", challenge, e.Code)
	}
	var body map[string]string
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body["error"] != e.Code {
		t.Fatalf("body %s for %q: %v", w.Body, e.Code, err)
	}
}
