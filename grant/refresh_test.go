package grant_test

import (
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
)

func TestRefreshScopeNarrowsOnlyTheAccessTokenOfThatRefresh(t *testing.T) {
	e := newLCEnv(t, nil, nil)
	tok := e.mint(t, "", "app", "read write")
	narrowed := e.refresh(t, "", "app", tok.body["refresh_token"].(string), "read")
	if narrowed.code != 200 || narrowed.body["scope"] != "read" {
		t.Fatalf("narrowing: %v", narrowed)
	}
	if r := e.introspect(t, "", "app", narrowed.body["access_token"].(string)); r.body["scope"] != "read" {
		t.Fatalf("the narrowed access token: %v", r)
	}
	// The chain keeps its first-granted scope: the next refresh without
	// scope gets it all back, and may ask for it explicitly.
	if r := e.introspect(t, "", "app", narrowed.body["refresh_token"].(string)); r.body["scope"] != "read write" {
		t.Fatalf("the new refresh token's scope: %v", r)
	}
	full := e.refresh(t, "", "app", narrowed.body["refresh_token"].(string))
	if full.code != 200 || full.body["scope"] != "read write" {
		t.Fatalf("omitted scope after narrowing: %v", full)
	}
	again := e.refresh(t, "", "app", full.body["refresh_token"].(string), "write read")
	if again.code != 200 {
		t.Fatalf("asking for the first-granted scope again: %v", again)
	}
	if r := e.refresh(t, "", "app", again.body["refresh_token"].(string), "read admin"); r.code != 400 || r.body["error"] != "invalid_scope" {
		t.Fatalf("widening: %v", r)
	}
}

func TestRefreshKeepsTheGrantsSubjectAudienceAndClaims(t *testing.T) {
	e := newLCEnv(t, nil, nil)
	tok := e.mint(t, "acme", "app", "read")
	next := e.refresh(t, "acme", "app", tok.body["refresh_token"].(string))
	a := e.introspect(t, "acme", "app", tok.body["access_token"].(string))
	b := e.introspect(t, "acme", "app", next.body["access_token"].(string))
	for _, k := range []string{"sub", "client_id", "aud", "tenant", "assertion_iss", "claims", "scope"} {
		if ja, jb := a.body[k], b.body[k]; !equalJSON(ja, jb) {
			t.Errorf("%s: first %v, after refresh %v", k, ja, jb)
		}
	}
	if next.body["refresh_token"] == tok.body["refresh_token"] || next.body["access_token"] == tok.body["access_token"] {
		t.Fatal("refresh returned the same tokens")
	}
}

func equalJSON(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return a != nil && b != nil && string(ja) == string(jb)
}

func TestRefreshIsRefusedOutsideItsClientTenantAndLifetime(t *testing.T) {
	cases := []struct {
		name           string
		tenant, client string
		mutate         func(*grant.Config) // a second server over the same store
		advance        time.Duration
		status         int
		code           string
		stillUsable    bool // the owner can still refresh afterwards
	}{
		{name: "another client gets invalid_grant and revokes nothing", client: "rs", status: 400, code: "invalid_grant", stillUsable: true},
		{name: "another tenant gets invalid_grant", tenant: "acme", client: "app", status: 400, code: "invalid_grant", stillUsable: true},
		{name: "an expired refresh token is invalid_grant", client: "app", advance: 25 * time.Hour, status: 400, code: "invalid_grant"},
		{name: "a client no longer allowed to refresh is unauthorized_client", client: "app", status: 400, code: "unauthorized_client",
			mutate: func(c *grant.Config) { c.Tenants[""].Clients["app"].GrantTypes = []string{grant.GrantJWTBearer} }},
		{name: "an issuer no longer trusted ends its chains", client: "app", status: 400, code: "invalid_grant",
			mutate: func(c *grant.Config) { c.Tenants[""].Issuers = nil }},
		{name: "a client no longer allowed the issuer loses its chains", client: "app", status: 400, code: "invalid_grant",
			mutate: func(c *grant.Config) { c.Tenants[""].Clients["app"].Issuers = []string{"other"} }},
		{name: "a client whose scopes were narrowed cannot keep them by refreshing", client: "app", status: 400, code: "invalid_scope",
			mutate: func(c *grant.Config) { c.Tenants[""].Clients["app"].Scopes = []string{"read"} }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newLCEnv(t, nil, nil)
			tok := e.mint(t, "", "app", "read write")
			at := e
			if tc.mutate != nil {
				at = newLCEnv(t, e.store, tc.mutate)
			}
			at.advance(tc.advance)
			r := at.refresh(t, tc.tenant, tc.client, tok.body["refresh_token"].(string))
			if r.code != tc.status || r.body["error"] != tc.code {
				t.Fatalf("got %v, want %d %s", r, tc.status, tc.code)
			}
			if tc.stillUsable {
				if r := e.refresh(t, "", "app", tok.body["refresh_token"].(string)); r.code != 200 {
					t.Fatalf("the owner's refresh token was harmed: %v", r)
				}
			}
		})
	}
}

func TestRefreshReuseRevokesTheChain(t *testing.T) {
	e := newLCEnv(t, nil, nil)
	tok := e.mint(t, "", "app", "")
	old := tok.body["refresh_token"].(string)
	next := e.refresh(t, "", "app", old)
	if next.code != 200 {
		t.Fatal(next)
	}
	if r := e.refresh(t, "", "app", old); r.code != 400 || r.body["error"] != "invalid_grant" {
		t.Fatalf("reuse: %v", r)
	}
	for name, tok := range map[string]string{
		"the original access token": tok.body["access_token"].(string),
		"the new access token":      next.body["access_token"].(string),
		"the new refresh token":     next.body["refresh_token"].(string),
	} {
		if r := e.introspect(t, "", "app", tok); r.body["active"] != false {
			t.Errorf("%s survived reuse: %v", name, r)
		}
	}
}

// A race of refreshes with one token is reuse for all but one of them:
// exactly one gets tokens, and since the others presented a rotated token
// the chain is revoked, the winner's new tokens included.
func TestConcurrentRefreshesWithOneTokenLetExactlyOneWin(t *testing.T) {
	e := newLCEnv(t, nil, nil)
	tok := e.mint(t, "", "app", "")
	const n = 20
	var wg sync.WaitGroup
	results := make([]lcResp, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i] = e.refresh(t, "", "app", tok.body["refresh_token"].(string))
		}()
	}
	close(start)
	wg.Wait()
	wins := 0
	for _, r := range results {
		switch {
		case r.code == http.StatusOK:
			wins++
		case r.code != 400 || r.body["error"] != "invalid_grant":
			t.Errorf("a losing refresh: %v", r)
		}
	}
	if wins != 1 {
		t.Fatalf("%d of %d concurrent refreshes won", wins, n)
	}
}
