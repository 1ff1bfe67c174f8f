package caddymodule

import (
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/keys"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("jwt_grant", parseHandlerCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("jwt_grant", httpcaddyfile.Before, "basic_auth")
}

func parseHandlerCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var handler Handler
	err := handler.UnmarshalCaddyfile(h.Dispenser)
	return &handler, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	jwt_grant [<matcher>] {
//	    issuer_url          <url>
//	    token_path          <path>
//	    introspection_path  <path> | off
//	    revocation_path     <path> | off
//	    metadata_path       <path> | off
//	    jwks_path           <path> | off
//	    realm               <realm>
//
//	    store memory [{
//	        max_entries <n>
//	    }]
//	    store redis <redis-url>
//	    store redis {
//	        url           <redis-url>
//	        address       <host:port>...
//	        sentinel      <master-name>
//	        username      <name>
//	        password      <secret>
//	        db            <n>
//	        tls           [insecure_skip_verify]
//	        key_prefix    <prefix>
//	        dial_timeout  <duration>
//	        read_timeout  <duration>
//	        write_timeout <duration>
//	        pool_size     <n>
//	    }
//
//	    iat_validation         on | off
//	    iat_validity           <duration>
//	    clock_skew             <duration>
//	    max_assertion_lifetime <duration>
//	    require_jti            on | off
//	    dpop_algorithms        <alg>...
//	    dpop_proof_lifetime    <duration>
//
//	    secret_concurrency <n>
//
//	    token_format      opaque | jwt
//	    signing_key       <pem-file>
//	    access_token_ttl  <duration>
//	    refresh_token_ttl <duration> | off
//
//	    trusted_issuer <name> {
//	        issuer           <iss>
//	        jwks_url         <url>
//	        jwks_timeout     <duration>
//	        jwks_min_refresh <duration>
//	        certificate      <file>
//	        alias            <aud>...
//	        algorithms       <alg>...
//	        subjects         <sub>...
//	        scopes           <scope>...
//	        claims           <claim>...
//	        client_auth      required | optional
//	        profile          id-jag
//	    }
//
//	    client <client_id> {
//	        secret            <hash>
//	        jwks_url          <url>
//	        jwks_timeout      <duration>
//	        jwks_min_refresh  <duration>
//	        certificate       <file>
//	        grant_types       jwt-bearer | refresh_token ...
//	        issuers           <trusted_issuer name>...
//	        audience          <aud>...
//	        scopes            <scope>...
//	        access_token_ttl  <duration>
//	        refresh_token_ttl <duration> | off
//	        dpop              required
//	    }
//
//	    tenant <domain> {
//	        trusted_issuer <name> { ... }
//	        client <client_id> { ... }
//	    }
//
//	    resource <uri> {
//	        name   <text>
//	        scopes <scope>...
//	    }
//	}
//
// An option that takes one value may appear once in its block, so that a
// forgotten earlier line cannot silently lose to a later one; an option
// that takes a list (and certificate, and the trusted_issuer, client,
// tenant and resource blocks) may repeat and adds to what came before. Everything the
// Caddyfile shows to be wrong fails here, at adapt time, with the path of
// blocks and the one line it is on; what needs files fails at Provision.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	h.line = d.Line()
	file := d.File()
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		opt := d.Val()
		if err := once(d, seen, "jwt_grant", "trusted_issuer", "client", "tenant", "dpop_algorithms", "resource"); err != nil {
			return err
		}
		var err error
		switch opt {
		case "issuer_url":
			h.IssuerURL, err = oneArg(d)
		case "token_path":
			h.TokenPath, err = oneArg(d)
		case "introspection_path":
			h.IntrospectionPath, err = oneArg(d)
		case "revocation_path":
			h.RevocationPath, err = oneArg(d)
		case "metadata_path":
			h.MetadataPath, err = oneArg(d)
		case "jwks_path":
			h.JWKSPath, err = oneArg(d)
		case "realm":
			h.Realm, err = oneArg(d)
		case "store":
			h.StoreRaw, err = parseStore(d)
		case "iat_validation":
			var on bool
			on, err = onOff(d)
			h.IATValidation = &on
		case "iat_validity":
			h.IATValidity, err = durationArg(d)
		case "clock_skew":
			var v caddy.Duration
			v, err = durationArg(d)
			h.ClockSkew = &v
		case "max_assertion_lifetime":
			h.MaxAssertionLifetime, err = durationArg(d)
		case "require_jti":
			h.RequireJTI, err = onOff(d)
		case "dpop_algorithms":
			h.DPoPAlgorithms, err = appendArgs(d, h.DPoPAlgorithms)
			for _, alg := range h.DPoPAlgorithms {
				if err == nil && !keys.IsAsymmetric(alg) {
					err = d.Errf("jwt_grant: dpop_algorithms: unknown or unsupported algorithm %q", alg)
				}
			}
		case "dpop_proof_lifetime":
			h.DPoPProofLifetime, err = durationArg(d)
		case "secret_concurrency":
			h.SecretConcurrency, err = positiveInt(d)
		case "token_format":
			h.TokenFormat, err = oneArg(d)
		case "signing_key":
			h.SigningKey, err = oneArg(d)
		case "access_token_ttl":
			h.AccessTokenTTL, err = durationArg(d)
		case "refresh_token_ttl":
			h.RefreshTokenTTL, err = durationOrOff(d)
		case "trusted_issuer":
			var ic IssuerConfig
			ic, err = parseIssuer(d, "")
			h.Issuers = append(h.Issuers, ic)
		case "client":
			var cc ClientConfig
			cc, err = parseClient(d, "")
			h.Clients = append(h.Clients, cc)
		case "tenant":
			var tc TenantConfig
			tc, err = parseTenant(d)
			h.Tenants = append(h.Tenants, tc)
		case "resource":
			var rc ResourceConfig
			rc, err = parseResource(d)
			h.Resources = append(h.Resources, rc)
		default:
			return d.Errf("jwt_grant: unknown option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	if err := h.Validate(); err != nil {
		return atLine(err, file, h.line)
	}
	return nil
}

// atLine gives an error of Validate the one Caddyfile line it belongs to,
// in the form of the Dispenser's own errors: the line of the offending
// block when Validate knows it, else the directive's.
func atLine(err error, file string, directiveLine int) error {
	line := directiveLine
	var ce *configError
	if errors.As(err, &ce) && ce.line > 0 {
		line = ce.line
	}
	return fmt.Errorf("%w, at %s:%d", err, file, line)
}

// once rejects a second occurrence of a single-value option in one block
// (seen holds the options met so far); the repeatable options are exempt.
func once(d *caddyfile.Dispenser, seen map[string]bool, where string, repeatable ...string) error {
	opt := d.Val()
	if slices.Contains(repeatable, opt) {
		return nil
	}
	if seen[opt] {
		return d.Errf("%s: %s is already set in this block", where, opt)
	}
	seen[opt] = true
	return nil
}

// parseStore parses `store <backend> [args] [{ … }]` into the guest
// module's JSON.
func parseStore(d *caddyfile.Dispenser) ([]byte, error) {
	if !d.NextArg() {
		return nil, d.ArgErr()
	}
	backend := d.Val()
	unm, err := caddyfile.UnmarshalModule(d, "jwt_grant.stores."+backend)
	if err != nil {
		return nil, err
	}
	return caddyconfig.JSONModuleObject(unm, "backend", backend, nil), nil
}

func parseTenant(d *caddyfile.Dispenser) (TenantConfig, error) {
	tc := TenantConfig{line: d.Line()}
	var err error
	if tc.Domain, err = oneArgKeepBlock(d); err != nil {
		return tc, err
	}
	where := fmt.Sprintf("tenant %q", tc.Domain)
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "trusted_issuer":
			ic, err := parseIssuer(d, where)
			if err != nil {
				return tc, err
			}
			tc.Issuers = append(tc.Issuers, ic)
		case "client":
			cc, err := parseClient(d, where)
			if err != nil {
				return tc, err
			}
			tc.Clients = append(tc.Clients, cc)
		default:
			return tc, d.Errf("%s: unknown option %q (trusted_issuer or client)", where, d.Val())
		}
	}
	return tc, nil
}

// parseIssuer parses a trusted_issuer block; parent is the path of the
// block that holds it ("" at the top level), for error messages.
func parseIssuer(d *caddyfile.Dispenser, parent string) (IssuerConfig, error) {
	ic := IssuerConfig{line: d.Line()}
	var err error
	if ic.Name, err = oneArgKeepBlock(d); err != nil {
		return ic, err
	}
	where := subBlock(parent, "trusted_issuer", ic.Name)
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if err := once(d, seen, where, "certificate", "alias", "algorithms", "subjects", "scopes", "claims"); err != nil {
			return ic, err
		}
		switch opt {
		case "issuer":
			ic.Issuer, err = oneArg(d)
		case "alias":
			ic.Aliases, err = appendArgs(d, ic.Aliases)
		case "algorithms":
			ic.Algorithms, err = appendArgs(d, ic.Algorithms)
			for _, alg := range ic.Algorithms {
				if err == nil && !keys.IsAsymmetric(alg) {
					err = d.Errf("%s: unknown or unsupported algorithm %q", where, alg)
				}
			}
		case "subjects":
			ic.Subjects, err = appendArgs(d, ic.Subjects)
		case "scopes":
			ic.Scopes, err = appendArgs(d, ic.Scopes)
		case "claims":
			ic.Claims, err = appendArgs(d, ic.Claims)
		case "client_auth":
			ic.ClientAuth, err = oneArg(d)
			if err == nil && ic.ClientAuth != "required" && ic.ClientAuth != "optional" {
				err = d.Errf("%s: client_auth must be required or optional, not %q", where, ic.ClientAuth)
			}
		case "profile":
			ic.Profile, err = oneArg(d)
		default:
			var known bool
			if known, err = parseKeySource(d, &ic.KeySourceConfig); !known {
				return ic, d.Errf("%s: unknown option %q", where, opt)
			}
		}
		if err != nil {
			return ic, err
		}
	}
	return ic, nil
}

// parseClient parses a client block; parent is the path of the block that
// holds it ("" at the top level), for error messages.
func parseClient(d *caddyfile.Dispenser, parent string) (ClientConfig, error) {
	cc := ClientConfig{line: d.Line()}
	var err error
	if cc.ID, err = oneArgKeepBlock(d); err != nil {
		return cc, err
	}
	where := subBlock(parent, "client", cc.ID)
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if err := once(d, seen, where, "certificate", "grant_types", "issuers", "audience", "scopes"); err != nil {
			return cc, err
		}
		switch opt {
		case "secret":
			cc.Secret, err = oneArg(d)
		case "grant_types":
			cc.GrantTypes, err = appendArgs(d, cc.GrantTypes)
		case "issuers":
			cc.Issuers, err = appendArgs(d, cc.Issuers)
		case "audience":
			cc.Audience, err = appendArgs(d, cc.Audience)
		case "scopes":
			cc.Scopes, err = appendArgs(d, cc.Scopes)
		case "access_token_ttl":
			cc.AccessTokenTTL, err = durationArg(d)
		case "refresh_token_ttl":
			cc.RefreshTokenTTL, err = durationOrOff(d)
		case "dpop":
			cc.DPoP, err = oneArg(d)
			if err == nil && cc.DPoP != "required" {
				err = d.Errf("%s: dpop must be required, not %q", where, cc.DPoP)
			}
		default:
			var known bool
			if known, err = parseKeySource(d, &cc.KeySourceConfig); !known {
				return cc, d.Errf("%s: unknown option %q", where, opt)
			}
		}
		if err != nil {
			return cc, err
		}
	}
	return cc, nil
}

// subBlock is the path of a named block inside parent.
func subBlock(parent, kind, name string) string {
	if parent == "" {
		return fmt.Sprintf("%s %q", kind, name)
	}
	return fmt.Sprintf("%s: %s %q", parent, kind, name)
}

// parseKeySource parses the key source options shared by trusted_issuer
// and client; known is false for any other option.
func parseKeySource(d *caddyfile.Dispenser, ks *KeySourceConfig) (known bool, err error) {
	switch d.Val() {
	case "jwks_url":
		ks.JWKSURL, err = oneArg(d)
	case "jwks_timeout":
		ks.JWKSTimeout, err = durationArg(d)
	case "jwks_min_refresh":
		ks.JWKSMinRefresh, err = durationArg(d)
	case "certificate":
		ks.Certificates, err = appendArgs(d, ks.Certificates)
	default:
		return false, nil
	}
	return true, err
}

// oneArgKeepBlock reads the single argument of a block-opening option
// (a name) without consuming the block.
func oneArgKeepBlock(d *caddyfile.Dispenser) (string, error) {
	kind := d.Val()
	if !d.NextArg() {
		return "", d.Errf("%s: a name is required", kind)
	}
	v := d.Val()
	if d.NextArg() {
		return "", d.ArgErr()
	}
	return v, nil
}

func appendArgs(d *caddyfile.Dispenser, to []string) ([]string, error) {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return to, d.ArgErr()
	}
	return append(to, args...), nil
}

func onOff(d *caddyfile.Dispenser) (bool, error) {
	name := d.Val()
	v, err := oneArg(d)
	if err != nil {
		return false, err
	}
	switch v {
	case "on":
		return true, nil
	case "off":
		return false, nil
	}
	return false, d.Errf("%s: must be on or off, not %q", name, v)
}

func durationOrOff(d *caddyfile.Dispenser) (*caddy.Duration, error) {
	if d.CountRemainingArgs() == 1 {
		if d.NextArg(); d.Val() == "off" {
			zero := caddy.Duration(0)
			return &zero, nil
		}
		d.Prev()
	}
	v, err := durationArg(d)
	return &v, err
}

func positiveInt(d *caddyfile.Dispenser) (int, error) {
	name := d.Val()
	v, err := oneArg(d)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, d.Errf("%s: must be a positive integer, not %q", name, v)
	}
	return n, nil
}

// Interface guards
var _ caddyfile.Unmarshaler = (*Handler)(nil)
