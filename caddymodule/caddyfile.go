package caddymodule

import (
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

// UnmarshalCaddyfile parses the jwt_grant directive (syntax in README.md).
// Everything the Caddyfile shows to be wrong fails here, at adapt time.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	line := d.Line()
	if d.NextArg() {
		return d.ArgErr()
	}
	for d.NextBlock(0) {
		opt := d.Val()
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
			ic, err = parseIssuer(d)
			h.Issuers = append(h.Issuers, ic)
		case "client":
			var cc ClientConfig
			cc, err = parseClient(d)
			h.Clients = append(h.Clients, cc)
		case "tenant":
			var tc TenantConfig
			tc, err = parseTenant(d)
			h.Tenants = append(h.Tenants, tc)
		default:
			return d.Errf("jwt_grant: unknown option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	if err := h.validate(); err != nil {
		return d.Errf("jwt_grant (Caddyfile line %d): %v", line, err)
	}
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
	var tc TenantConfig
	var err error
	if tc.Domain, err = oneArgKeepBlock(d); err != nil {
		return tc, err
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "trusted_issuer":
			ic, err := parseIssuer(d)
			if err != nil {
				return tc, err
			}
			tc.Issuers = append(tc.Issuers, ic)
		case "client":
			cc, err := parseClient(d)
			if err != nil {
				return tc, err
			}
			tc.Clients = append(tc.Clients, cc)
		default:
			return tc, d.Errf("tenant %q: unknown option %q (trusted_issuer or client)", tc.Domain, d.Val())
		}
	}
	return tc, nil
}

func parseIssuer(d *caddyfile.Dispenser) (IssuerConfig, error) {
	ic := IssuerConfig{line: d.Line()}
	var err error
	if ic.Name, err = oneArgKeepBlock(d); err != nil {
		return ic, err
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		switch opt {
		case "issuer":
			ic.Issuer, err = oneArg(d)
		case "alias":
			ic.Aliases, err = appendArgs(d, ic.Aliases)
		case "algorithms":
			ic.Algorithms, err = appendArgs(d, ic.Algorithms)
			for _, alg := range ic.Algorithms {
				if err == nil && !keys.IsAsymmetric(alg) {
					err = d.Errf("trusted_issuer %q: unknown or unsupported algorithm %q", ic.Name, alg)
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
				err = d.Errf("trusted_issuer %q: client_auth must be required or optional", ic.Name)
			}
		default:
			var known bool
			if known, err = parseKeySource(d, &ic.KeySourceConfig); !known {
				return ic, d.Errf("trusted_issuer %q: unknown option %q", ic.Name, opt)
			}
		}
		if err != nil {
			return ic, err
		}
	}
	return ic, nil
}

func parseClient(d *caddyfile.Dispenser) (ClientConfig, error) {
	cc := ClientConfig{line: d.Line()}
	var err error
	if cc.ID, err = oneArgKeepBlock(d); err != nil {
		return cc, err
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
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
		default:
			var known bool
			if known, err = parseKeySource(d, &cc.KeySourceConfig); !known {
				return cc, d.Errf("client %q: unknown option %q", cc.ID, opt)
			}
		}
		if err != nil {
			return cc, err
		}
	}
	return cc, nil
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
