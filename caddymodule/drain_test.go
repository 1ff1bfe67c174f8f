package caddymodule

import (
	"context"
	"fmt"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/memstore"
)

// A request a handler holds keeps its store from being idle, whether or
// not a store call is in flight, so that a reload closes the old store
// only after the old config's last request (drain.go).
func TestAHeldRequestKeepsTheStoreFromBeingIdle(t *testing.T) {
	d := newDrainingStore(memstore.New(memstore.Options{}))
	if !d.idleFor(0) {
		t.Fatal("a new store is not idle")
	}
	held := d.hold()
	if d.idleFor(0) {
		t.Fatal("the store is idle while a request holds it")
	}
	held.done()
	if !d.idleFor(0) {
		t.Fatal("the store is not idle once the request is done")
	}
	// A handler whose store is not shared holds nothing.
	var none *drainingStore
	none.hold().done()
}

// Both handlers hold the shared store they were provisioned with: the
// same one, so that a request of either keeps it open through a reload.
func TestHandlersHoldTheirSharedStore(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	h := &Handler{}
	d := caddyfile.NewTestDispenser(fmt.Sprintf("jwt_grant {\n issuer_url http://as.example\n trusted_issuer idp {\n issuer %s\n certificate %s\n }\n client app {\n secret %s\n }\n}",
		testIdP, f.certPath, f.hash))
	if err := h.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	a := &AuthHandler{}
	if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser("jwt_grant_auth")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []caddy.Provisioner{h, a} {
		if err := p.Provision(ctx); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = h.Cleanup() })
	if h.drain == nil || a.drain == nil || h.drain != a.drain {
		t.Fatalf("jwt_grant holds %p, jwt_grant_auth %p; want the same shared store", h.drain, a.drain)
	}
}
