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
		{"repeated issuer_url", url + url, "jwt_grant: issuer_url is already set"},
		{"repeated token_format", url + "token_format jwt\ntoken_format opaque\n", "jwt_grant: token_format is already set"},
		{"repeated store", url + "store memory\nstore memory\n", "jwt_grant: store is already set"},
		{"repeated issuer in a trusted_issuer", url + issuer("a", "x", "issuer y"), `trusted_issuer "a": issuer is already set`},
		{"repeated client_auth in a trusted_issuer", url + issuer("a", "x", "client_auth optional\nclient_auth required"), `trusted_issuer "a": client_auth is already set`},
		{"repeated jwks_url in a trusted_issuer", url + "trusted_issuer a {\n issuer x\n jwks_url https://idp/a\n jwks_url https://idp/b\n}", `trusted_issuer "a": jwks_url is already set`},
		{"repeated secret in a client", url + "client c {\n secret " + f.hash + "\n secret " + f.hash + "\n}", `client "c": secret is already set`},
		{"repeated refresh_token_ttl in a client in a tenant", url + "tenant t {\nclient c {\n secret " + f.hash + "\n refresh_token_ttl off\n refresh_token_ttl 1h\n}\n}", `tenant "t": client "c": refresh_token_ttl is already set`},
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

// A configuration error names its path of blocks once and carries exactly
// one Caddyfile line: that of the offending block or value.
func TestConfigErrorNamesTheCaddyfileLine(t *testing.T) {
	f := newFixture(t)
	issuer := func(name, iss string) string {
		return "trusted_issuer " + name + " {\n issuer " + iss + "\n certificate " + f.certPath + "\n}\n"
	}
	const url = "issuer_url https://as.example\n"
	cases := []struct {
		name, body string
		line       int // within body, counted from 1
		path       string
	}{
		{"duplicate trusted_issuer at the top level", url + issuer("a", "x") + issuer("a", "y"), 6, `trusted_issuer "a": `},
		{"duplicate issuer value in a tenant", url + "tenant t {\n" + issuer("a", "x") + issuer("b", "x") + "}", 7, `tenant "t": trusted_issuer "b": `},
		{"client error in a tenant", url + "tenant t {\nclient c {\n secret plain\n}\n}", 3, `tenant "t": client "c": `},
		{"top-level error", url + "token_format jwt", 0, "token_format jwt requires signing_key"},
		{"repeated option", url + "trusted_issuer a {\n issuer x\n certificate " + f.certPath + "\n issuer y\n}", 5, `trusted_issuer "a": issuer is already set`},
	}
	// Lines before the body: the global options, the site line and the
	// jwt_grant line.
	offset := strings.Count(globalOptions, "\n") + 2
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := adaptGrant(tc.body)
			if err == nil {
				t.Fatal("adapted without error")
			}
			msg := err.Error()
			// Line 0 is the jwt_grant directive's own line.
			want := fmt.Sprintf("Caddyfile:%d", offset+tc.line)
			if !strings.Contains(msg, want) {
				t.Errorf("error %q does not name %s", msg, want)
			}
			if n := strings.Count(msg, "Caddyfile:") + strings.Count(msg, "line "); n != 1 {
				t.Errorf("error %q carries %d Caddyfile lines, want 1", msg, n)
			}
			if strings.Count(msg, tc.path) != 1 {
				t.Errorf("error %q does not name %q exactly once", msg, tc.path)
			}
		})
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
