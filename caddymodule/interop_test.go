package caddymodule

// Assertion-only clients (client_auth optional, SPEC §2.1, §3.1) and
// interoperability with golang.org/x/oauth2/jwt, the Go client of the
// "service account" flow: it signs an assertion with iss = Email, puts the
// scopes in its scope claim, sends only grant_type and assertion, and sets
// iat = now - 10s and exp = iat + 1h, which the default policy accepts.

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/jwt"
)

const (
	serviceAccount = "svc@example.iam" // iss of the client_auth optional issuer
	strictIss      = "https://strict.example"
)

type interopGateway struct {
	base, tokenURL string
	f              *fixture
	keyPEM         []byte // the fixture's key, PKCS #8, as x/oauth2/jwt reads it
}

func startInteropGateway(t *testing.T) *interopGateway {
	t.Helper()
	f := newFixture(t)
	der, err := x509.MarshalPKCS8PrivateKey(f.key)
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	g := &interopGateway{
		base: fmt.Sprintf("http://127.0.0.1:%d", port), f: f,
		keyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
	}
	g.tokenURL = g.base + "/oauth2/token"
	startCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	jwt_grant {
		issuer_url %s
		trusted_issuer service-account {
			issuer %s
			certificate %s
			client_auth optional
			scopes read write
		}
		trusted_issuer strict {
			issuer %s
			certificate %s
		}
		client app {
			secret %s
		}
	}
	handle /api/* {
		jwt_grant_auth {
			scope read
		}
		respond "{http.auth.user.id} via {http.auth.user.client_id}: {http.auth.user.scope}"
	}
}
`, port, g.base, serviceAccount, f.certPath, strictIss, f.certPath, f.hash))
	return g
}

// oauth2Error is the OAuth error code of a failed x/oauth2 token fetch.
// x/oauth2/jwt leaves RetrieveError.ErrorCode empty, so the body is read.
func oauth2Error(t *testing.T, err error) (status int, code string) {
	t.Helper()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		t.Fatalf("error %v is not a RetrieveError", err)
	}
	var body struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(re.Body, &body)
	return re.Response.StatusCode, body.Error
}

func TestInteropGoOAuth2JWTClientGetsATokenAndCallsAProtectedRoute(t *testing.T) {
	g := startInteropGateway(t)
	for _, tc := range []struct {
		name     string
		audience string // "" lets x/oauth2/jwt use the token URL
		kid      string
	}{
		{"aud is the token endpoint URL", "", ""},
		{"aud is issuer_url", g.base, ""},
		{"with a kid the certificate has no opinion of", "", "key-2024"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &jwt.Config{
				Email: serviceAccount, Subject: "alice", PrivateKey: g.keyPEM, PrivateKeyID: tc.kid,
				Scopes: []string{"read", "write"}, TokenURL: g.tokenURL, Audience: tc.audience,
			}
			ctx := context.Background()
			tok, err := cfg.TokenSource(ctx).Token()
			if err != nil {
				t.Fatalf("token: %v", err)
			}
			if tok.AccessToken == "" || tok.RefreshToken != "" || tok.Extra("scope") != "read write" {
				t.Fatalf("token %+v scope %v: want an access token, no refresh token, scope read write", tok, tok.Extra("scope"))
			}
			if d := time.Until(tok.Expiry); d < 59*time.Minute || d > time.Hour {
				t.Errorf("expiry in %v, want about an hour", d)
			}

			resp, err := cfg.Client(ctx).Get(g.base + "/api/hello")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if want := "alice via " + serviceAccount + ": read write"; resp.StatusCode != 200 || string(body) != want {
				t.Fatalf("protected route: %d %q, want 200 %q", resp.StatusCode, body, want)
			}
		})
	}
}

func TestInteropGoOAuth2JWTClientErrors(t *testing.T) {
	g := startInteropGateway(t)
	for _, tc := range []struct {
		name   string
		cfg    jwt.Config
		status int
		code   string
	}{
		{"scope beyond the issuer's", jwt.Config{Email: serviceAccount, Subject: "alice", Scopes: []string{"admin"}}, 400, "invalid_scope"},
		{"issuer requiring client authentication", jwt.Config{Email: strictIss, Subject: "alice"}, 401, "invalid_client"},
		{"no subject", jwt.Config{Email: serviceAccount}, 400, "invalid_grant"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.PrivateKey, cfg.TokenURL = g.keyPEM, g.tokenURL
			_, err := cfg.TokenSource(context.Background()).Token()
			if err == nil {
				t.Fatal("token issued")
			}
			if status, code := oauth2Error(t, err); status != tc.status || code != tc.code {
				t.Fatalf("got %d %s, want %d %s", status, code, tc.status, tc.code)
			}
		})
	}

	// A token without the route's scope is refused there with 403.
	cfg := &jwt.Config{Email: serviceAccount, Subject: "alice", PrivateKey: g.keyPEM, Scopes: []string{"write"}, TokenURL: g.tokenURL}
	resp, err := cfg.Client(context.Background()).Get(g.base + "/api/hello")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "insufficient_scope") {
		t.Fatalf("route requiring read with a write token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
}

func TestAssertionOnlyRequests(t *testing.T) {
	g := startInteropGateway(t)
	now := time.Now()
	once := rand.Text()
	assertion := func(iss string, claims map[string]any) string {
		c := map[string]any{"iss": iss, "sub": "alice", "aud": g.tokenURL}
		for k, v := range claims {
			c[k] = v
		}
		return signAs(t, g.f.key, "", c)
	}
	cases := []struct {
		name           string
		form           url.Values
		client, secret string
		status         int
		code           string
		refresh        bool
		clientID       string
	}{
		{name: "optional issuer without client authentication", form: jwtBearerForm(assertion(serviceAccount, nil)),
			status: 200, clientID: serviceAccount},
		{name: "optional issuer with client authentication", form: jwtBearerForm(assertion(serviceAccount, nil)),
			client: "app", secret: g.f.secret, status: 200, refresh: true, clientID: "app"},
		{name: "optional issuer, expired assertion", form: jwtBearerForm(assertion(serviceAccount, map[string]any{
			"iat": now.Add(-10 * time.Minute).Unix(), "exp": now.Add(-5 * time.Minute).Unix()})),
			status: 400, code: "invalid_grant"},
		{name: "optional issuer, bad signature", form: jwtBearerForm(signAs(t, newECKey(t), "", map[string]any{
			"iss": serviceAccount, "sub": "alice", "aud": g.tokenURL})),
			status: 400, code: "invalid_grant"},
		{name: "optional issuer, replayed jti", form: jwtBearerForm(assertion(serviceAccount, map[string]any{"jti": once})),
			status: 200, clientID: serviceAccount},
		{name: "optional issuer, replayed jti again", form: jwtBearerForm(assertion(serviceAccount, map[string]any{"jti": once})),
			status: 400, code: "invalid_grant"},
		{name: "issuer requiring client authentication", form: jwtBearerForm(assertion(strictIss, nil)),
			status: 401, code: "invalid_client"},
		{name: "client_id without a secret is no authentication", form: jwtBearerForm(assertion(strictIss, nil), "client_id", "app"),
			status: 401, code: "invalid_client"},
		{name: "unknown issuer", form: jwtBearerForm(assertion("https://unknown.example", nil)),
			status: 401, code: "invalid_client"},
		{name: "not a JWS", form: jwtBearerForm("garbage"),
			status: 401, code: "invalid_client"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := postForm(t, g.tokenURL, tc.form, tc.client, tc.secret)
			if tc.status != 200 {
				checkOAuthError(t, r, tc.status, tc.code)
				return
			}
			wantStatus(t, r, 200, tc.name)
			if (r.str("refresh_token") != "") != tc.refresh {
				t.Errorf("refresh token present %v, want %v", r.str("refresh_token") != "", tc.refresh)
			}
			in := postForm(t, g.base+"/oauth2/introspect", url.Values{"token": {r.str("access_token")}}, "app", g.f.secret)
			aud, _ := in.body["aud"].([]any)
			if in.body["client_id"] != tc.clientID || len(aud) != 1 || aud[0] != tc.clientID {
				t.Errorf("client_id %v aud %v, want %s for both", in.body["client_id"], in.body["aud"], tc.clientID)
			}
			if in.body["assertion_iss"] != serviceAccount {
				t.Errorf("assertion_iss %v", in.body["assertion_iss"])
			}
		})
	}
}
