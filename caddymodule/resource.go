package caddymodule

import (
	"errors"
	"fmt"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
)

// ResourceConfig is a protected resource of jwt_grant (RFC 8707, SPEC §7).
type ResourceConfig struct {
	// URI is the resource identifier: an absolute URI without fragment,
	// unique after scheme and host case normalisation. Tokens requested
	// for it have it, as written here, as their audience.
	URI string `json:"uri"`
	// Name is its human-readable name.
	Name string `json:"name,omitempty"`
	// Scopes are the scopes that exist for it: a token for it may have no
	// other. Default any.
	Scopes []string `json:"scopes,omitempty"`

	line int // Caddyfile line of the block, for error messages
}

// parseResource parses `resource <uri> [{ name <text>; scopes <scope>... }]`.
func parseResource(d *caddyfile.Dispenser) (ResourceConfig, error) {
	rc := ResourceConfig{line: d.Line()}
	var err error
	if rc.URI, err = oneArgKeepBlock(d); err != nil {
		return rc, err
	}
	where := subBlock("", "resource", rc.URI)
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if err := once(d, seen, where, "scopes"); err != nil {
			return rc, err
		}
		switch opt {
		case "name":
			rc.Name, err = oneArg(d)
		case "scopes":
			rc.Scopes, err = appendArgs(d, rc.Scopes)
		default:
			return rc, d.Errf("%s: unknown option %q (name or scopes)", where, opt)
		}
		if err != nil {
			return rc, err
		}
	}
	return rc, nil
}

// validateResources rejects a resource that is not an absolute URI
// without fragment, two that are the same resource, and a malformed
// scope.
func validateResources(top block, resources []ResourceConfig) error {
	seen := map[string]string{}
	for _, rc := range resources {
		b := top.in("resource", rc.URI, rc.line)
		key, err := grant.NormalizeResourceURI(rc.URI)
		if err != nil {
			return b.wrap(err)
		}
		if prev, ok := seen[key]; ok {
			return b.errorf("the same resource as %q", prev)
		}
		seen[key] = rc.URI
		for _, s := range rc.Scopes {
			if !validScope(s) {
				return b.errorf("scopes: %q is not a valid scope token (RFC 6749 §3.3)", s)
			}
		}
	}
	return nil
}

// validScope is RFC 6749 §3.3's scope-token, checked through
// VerifierConfig.Check so that the rule lives in one place.
func validScope(s string) bool {
	return grant.VerifierConfig{Scope: []string{s}}.Check() == nil
}

// validateProfile rejects an unknown profile and an ID-JAG issuer that
// would take assertions without client authentication: an ID-JAG is bound
// to the client presenting it.
func validateProfile(ic IssuerConfig) error {
	switch ic.Profile {
	case "":
		return nil
	case grant.ProfileIDJAG:
		if ic.ClientAuth == "optional" {
			return errors.New("profile id-jag requires client authentication: client_auth optional is not allowed")
		}
		return nil
	}
	return fmt.Errorf("profile: unknown profile %q (id-jag)", ic.Profile)
}

// grantResources turns the resource blocks into the grant's resources.
func (h *Handler) grantResources() []grant.Resource {
	out := make([]grant.Resource, len(h.Resources))
	for i, rc := range h.Resources {
		out[i] = grant.Resource{URI: rc.URI, Name: rc.Name, Scopes: rc.Scopes}
	}
	return out
}
