package caddymodule

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// adaptGrant adapts a site whose jwt_grant block is body.
func adaptGrant(body string) ([]byte, error) {
	return adaptCaddyfile(globalOptions + "http://127.0.0.1:9 {\n\tjwt_grant {\n" + body + "\n\t}\n}\n")
}

func TestConfigErrorsFailAtAdapt(t *testing.T) {
	f := newFixture(t)
	issuer := func(name, iss, extra string) string {
		return fmt.Sprintf("trusted_issuer %s {\n issuer %s\n certificate %s\n %s\n}\n", name, iss, f.certPath, extra)
	}
	const url = "issuer_url https://as.example\n"
	cases := []struct {
		name, body, want string
	}{
		{"missing issuer_url", issuer("a", "x", ""), "issuer_url is required"},
		{"malformed issuer_url", "issuer_url not-a-url\n", "issuer_url"},
		{"issuer without a key source", url + "trusted_issuer a {\n issuer x\n}", "key source"},
		{"issuer with two key sources", url + issuer("a", "x", "jwks_url https://idp/jwks"), "exactly one key source"},
		{"issuer without issuer value", url + "trusted_issuer a {\n certificate " + f.certPath + "\n}", "issuer is required"},
		{"unknown algorithm", url + issuer("a", "x", "algorithms RS256 HS256"), `"HS256"`},
		{"alg none", url + issuer("a", "x", "algorithms none"), `"none"`},
		{"token_format jwt without signing_key", url + "token_format jwt\n", "signing_key"},
		{"unknown token_format", url + "token_format paseto\n", "token_format"},
		{"duplicate trusted_issuer name", url + issuer("a", "x", "") + issuer("a", "y", ""), "duplicate trusted_issuer"},
		{"duplicate issuer value", url + issuer("a", "x", "") + issuer("b", "x", ""), `already the issuer of trusted_issuer "a"`},
		{"duplicate client", url + "client c {\n secret " + f.hash + "\n}\nclient c {\n secret " + f.hash + "\n}", "duplicate client"},
		{"unknown issuer in a client's issuers", url + issuer("a", "x", "") + "client c {\n secret " + f.hash + "\n issuers nope\n}", `no trusted_issuer named "nope"`},
		{"client secret that is not a hash", url + "client c {\n secret plaintext\n}", "bcrypt or argon2id"},
		{"client without credentials", url + "client c {\n}", "secret"},
		{"unknown grant type", url + "client c {\n secret " + f.hash + "\n grant_types password\n}", `"password"`},
		{"malformed duration", url + "iat_validity soon\n", "iat_validity"},
		{"malformed jwks_url", url + "trusted_issuer a {\n issuer x\n jwks_url ftp:/nope\n}", "jwks_url"},
		{"unknown option", url + "frobnicate on\n", "frobnicate"},
		{"bad client_auth", url + issuer("a", "x", "client_auth sometimes"), "client_auth"},
		{"duplicate tenant", url + "tenant t {\n}\ntenant t {\n}", "duplicate"},
		{"duplicate issuer value within a tenant", url + "tenant t {\n" + issuer("a", "x", "") + issuer("b", "x", "") + "}", `tenant "t"`},
		{"unknown store", url + "store etcd\n", "etcd"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := adaptGrant(tc.body)
			if err == nil {
				t.Fatal("adapted without error")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not name %q", err, tc.want)
			}
		})
	}
}

func TestConfigErrorNamesTheCaddyfileLine(t *testing.T) {
	f := newFixture(t)
	body := "issuer_url https://as.example\ntrusted_issuer a {\n issuer x\n certificate " + f.certPath + "\n}\ntrusted_issuer a {\n issuer y\n certificate " + f.certPath + "\n}"
	_, err := adaptGrant(body)
	// The second block is the body's line 6, after the global options, the
	// site line and the jwt_grant line.
	want := fmt.Sprintf("line %d", strings.Count(globalOptions, "\n")+2+6)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v does not name %s", err, want)
	}
}

func TestFileErrorsFailAtProvision(t *testing.T) {
	f := newFixture(t)
	garbage := filepath.Join(t.TempDir(), "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, body, want string }{
		{"unreadable certificate", "trusted_issuer a {\n issuer x\n certificate /nonexistent/issuer.pem\n}", "/nonexistent/issuer.pem"},
		{"unparsable certificate", "trusted_issuer a {\n issuer x\n certificate " + garbage + "\n}", "garbage.pem"},
		{"unreadable signing key", "token_format jwt\nsigning_key /nonexistent/signing.key", "signing_key"},
		{"unparsable signing key", "token_format jwt\nsigning_key " + garbage, "signing_key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := adaptGrant("issuer_url https://as.example\n" + tc.body)
			if err != nil {
				t.Fatalf("adapt should pass (files are checked later): %v", err)
			}
			err = caddyValidate(cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("validate error %v does not name %q", err, tc.want)
			}
		})
	}
	_ = f
}

// caddyValidate provisions a config without serving it, as `caddy
// validate` does.
func caddyValidate(cfg []byte) error {
	var c caddy.Config
	if err := json.Unmarshal(cfg, &c); err != nil {
		return err
	}
	return caddy.Validate(&c)
}
