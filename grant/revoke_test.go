package grant_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
)

func TestRevokingAnAccessTokenDeletesItAlone(t *testing.T) {
	e := newLCEnv(t, nil, nil)
	tok := e.mint(t, "", "app", "")
	at, rt := tok.body["access_token"].(string), tok.body["refresh_token"].(string)
	r := e.revoke(t, "", "app", at)
	if r.code != 200 || r.header.Get("Cache-Control") != "no-store" || r.header.Get("Content-Type") == "" {
		t.Fatalf("revocation: %v %v", r, r.header)
	}
	if _, err := e.store.Access(t.Context(), grant.HashToken(at)); err == nil {
		t.Fatal("the revoked access token is still stored")
	}
	wantInactive(t, e.introspect(t, "", "app", at))
	// RFC 7009 lets the server revoke the refresh token too; SPEC says an
	// access token's revocation deletes that token only.
	if r := e.refresh(t, "", "app", rt); r.code != 200 {
		t.Fatalf("the refresh token died with its access token: %v", r)
	}
}

func TestRevokingARefreshTokenRevokesItsWholeChain(t *testing.T) {
	e := newLCEnv(t, nil, nil)
	first := e.mint(t, "", "app", "")
	second := e.refresh(t, "", "app", first.body["refresh_token"].(string))
	if second.code != 200 {
		t.Fatalf("refresh: %v", second)
	}
	other := e.mint(t, "", "app", "") // another grant, another chain
	if r := e.revoke(t, "", "app", second.body["refresh_token"].(string)); r.code != 200 {
		t.Fatalf("revocation: %v", r)
	}
	for name, tok := range map[string]string{
		"the first access token": first.body["access_token"].(string),
		"the new access token":   second.body["access_token"].(string),
		"the new refresh token":  second.body["refresh_token"].(string),
	} {
		if r := e.introspect(t, "", "app", tok); r.body["active"] != false {
			t.Errorf("%s of the revoked chain is still active: %v", name, r)
		}
	}
	if r := e.refresh(t, "", "app", second.body["refresh_token"].(string)); r.code != 400 || r.body["error"] != "invalid_grant" {
		t.Errorf("refresh with the revoked token: %v", r)
	}
	if r := e.introspect(t, "", "app", other.body["access_token"].(string)); r.body["active"] != true {
		t.Errorf("another chain's token was revoked too: %v", r)
	}
}

func TestRevokingARotatedRefreshTokenRevokesTheChain(t *testing.T) {
	e := newLCEnv(t, nil, nil)
	first := e.mint(t, "", "app", "")
	second := e.refresh(t, "", "app", first.body["refresh_token"].(string))
	if r := e.revoke(t, "", "app", first.body["refresh_token"].(string)); r.code != 200 {
		t.Fatalf("revocation: %v", r)
	}
	wantInactive(t, e.introspect(t, "", "app", second.body["refresh_token"].(string)))
	wantInactive(t, e.introspect(t, "", "app", second.body["access_token"].(string)))
}

func TestRevocationOfAnotherClientsTokenIsRefusedAndRevokesNothing(t *testing.T) {
	e := newLCEnv(t, nil, nil)
	tok := e.mint(t, "", "app", "")
	for _, kind := range []string{"access_token", "refresh_token"} {
		r := e.revoke(t, "", "rs", tok.body[kind].(string))
		if r.code != http.StatusBadRequest || r.body["error"] != "unauthorized_client" {
			t.Errorf("%s of another client: %v", kind, r)
		}
		if r := e.introspect(t, "", "app", tok.body[kind].(string)); r.body["active"] != true {
			t.Errorf("%s of another client was revoked: %v", kind, r)
		}
	}
}

func TestRevocationOfAnUnknownOrForeignTenantTokenIsAnswered200(t *testing.T) {
	e := newLCEnv(t, nil, nil)
	acme := e.mint(t, "acme", "app", "")
	cases := []struct{ name, token string }{
		{"an unknown token", "never-issued"},
		{"another tenant's access token", acme.body["access_token"].(string)},
		{"another tenant's refresh token", acme.body["refresh_token"].(string)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if r := e.revoke(t, "", "app", tc.token); r.code != 200 {
				t.Fatalf("%v", r)
			}
		})
	}
	// The top level's "app" is not acme's "app": nothing was revoked.
	for _, kind := range []string{"access_token", "refresh_token"} {
		if r := e.introspect(t, "acme", "app", acme.body[kind].(string)); r.body["active"] != true {
			t.Errorf("acme's %s was revoked from the top level: %v", kind, r)
		}
	}
}

func TestRevocationAfterExpiryIsAnswered200(t *testing.T) {
	e := newLCEnv(t, nil, nil)
	tok := e.mint(t, "", "app", "")
	e.advance(2 * time.Hour)
	if r := e.revoke(t, "", "app", tok.body["access_token"].(string)); r.code != 200 {
		t.Fatalf("%v", r)
	}
}
