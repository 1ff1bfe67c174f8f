package caddymodule

import (
	"cmp"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/keys"
)

// configError is a configuration error at one place: the path of blocks
// that holds the offending value, said once, and the Caddyfile line of that
// block when the adapter knows it. Keeping the line apart from the message
// lets the adapter print exactly one line, however deep the block.
type configError struct {
	path string // `tenant "t": trusted_issuer "a"`; empty at the top level
	line int    // 0 when unknown (a JSON config)
	err  error
}

func (e *configError) Error() string {
	if e.path == "" {
		return e.err.Error()
	}
	return e.path + ": " + e.err.Error()
}

func (e *configError) Unwrap() error { return e.err }

// block is where a check runs: the path of blocks that leads to it and the
// Caddyfile line of the innermost one.
type block struct {
	path string
	line int
}

// in descends into a named sub-block.
func (b block) in(kind, name string, line int) block {
	return block{path: subBlock(b.path, kind, name), line: cmp.Or(line, b.line)}
}

func (b block) errorf(format string, args ...any) error {
	return &configError{path: b.path, line: b.line, err: fmt.Errorf(format, args...)}
}

func (b block) wrap(err error) error {
	return &configError{path: b.path, line: b.line, err: err}
}

// Validate rejects everything the configuration itself shows to be wrong.
// The Caddyfile adapter runs it too, so that `caddy adapt` fails before
// anything is served; what needs files fails in Provision.
func (h *Handler) Validate() error {
	top := block{line: h.line}
	if strings.TrimSpace(h.IssuerURL) == "" {
		return top.errorf("issuer_url is required")
	}
	if err := checkURL(h.IssuerURL); err != nil {
		return top.errorf("issuer_url: %w", err)
	}
	for _, p := range []struct{ name, v string }{
		{"token_path", h.TokenPath}, {"introspection_path", h.IntrospectionPath},
		{"revocation_path", h.RevocationPath}, {"metadata_path", h.MetadataPath}, {"jwks_path", h.JWKSPath},
	} {
		if p.v != "" && p.v != "off" && !strings.HasPrefix(p.v, "/") {
			return top.errorf("%s: %q must start with /", p.name, p.v)
		}
	}
	if h.TokenPath == "off" {
		return top.errorf("token_path cannot be off")
	}
	switch h.TokenFormat {
	case "", "opaque":
	case "jwt":
		if h.SigningKey == "" {
			return top.errorf("token_format jwt requires signing_key")
		}
	default:
		return top.errorf("token_format: unknown format %q (opaque or jwt)", h.TokenFormat)
	}
	if h.SecretConcurrency < 0 {
		return errors.New("secret_concurrency must not be negative")
	}
	if h.AccessTokenTTL < 0 || (h.RefreshTokenTTL != nil && *h.RefreshTokenTTL < 0) {
		return top.errorf("token lifetimes must not be negative")
	}
	if err := validateTenant(top, TenantConfig{Issuers: h.Issuers, Clients: h.Clients}); err != nil {
		return err
	}
	if err := h.validateDPoP(top); err != nil {
		return err
	}
	if err := validateResources(top, h.Resources); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, t := range h.Tenants {
		if t.Domain == "" {
			return block{line: cmp.Or(t.line, h.line)}.errorf("tenant: a domain is required")
		}
		b := top.in("tenant", t.Domain, t.line)
		if seen[t.Domain] {
			return b.errorf("duplicate tenant")
		}
		seen[t.Domain] = true
		if err := validateTenant(b, t); err != nil {
			return err
		}
	}
	return nil
}

func validateTenant(tenant block, t TenantConfig) error {
	names := map[string]bool{}
	values := map[string]string{}
	for _, ic := range t.Issuers {
		if ic.Name == "" {
			return block{path: tenant.path, line: cmp.Or(ic.line, tenant.line)}.errorf("trusted_issuer: a name is required")
		}
		b := tenant.in("trusted_issuer", ic.Name, ic.line)
		switch {
		case names[ic.Name]:
			return b.errorf("duplicate trusted_issuer name")
		case ic.Issuer == "":
			return b.errorf("issuer is required")
		case values[ic.Issuer] != "":
			return b.errorf("issuer %q is already the issuer of trusted_issuer %q", ic.Issuer, values[ic.Issuer])
		}
		names[ic.Name] = true
		values[ic.Issuer] = ic.Name
		if err := validateKeySource(ic.KeySourceConfig, true); err != nil {
			return b.wrap(err)
		}
		for _, alg := range ic.Algorithms {
			if !keys.IsAsymmetric(alg) {
				return b.errorf("unknown or unsupported algorithm %q", alg)
			}
		}
		if ic.ClientAuth != "" && ic.ClientAuth != "required" && ic.ClientAuth != "optional" {
			return b.errorf("client_auth must be required or optional, not %q", ic.ClientAuth)
		}
		if err := validateProfile(ic); err != nil {
			return b.wrap(err)
		}
	}
	clients := map[string]bool{}
	for _, cc := range t.Clients {
		if cc.ID == "" {
			return block{path: tenant.path, line: cmp.Or(cc.line, tenant.line)}.errorf("client: a client id is required")
		}
		b := tenant.in("client", cc.ID, cc.line)
		if clients[cc.ID] {
			return b.errorf("duplicate client")
		}
		clients[cc.ID] = true
		hasKeys := cc.JWKSURL != "" || len(cc.Certificates) > 0
		switch {
		case cc.Secret == "" && !hasKeys:
			return b.errorf("a secret, certificate or jwks_url is required")
		case cc.Secret != "" && hasKeys:
			return b.errorf("secret and a key source are mutually exclusive")
		case cc.Secret != "" && !strings.Contains(cc.Secret, "{"):
			if _, err := secretHash(cc.Secret); err != nil {
				return b.errorf("secret must be a bcrypt or argon2id hash from `caddy hash-password`: %w", err)
			}
		case hasKeys:
			if err := validateKeySource(cc.KeySourceConfig, false); err != nil {
				return b.wrap(err)
			}
		}
		for _, g := range cc.GrantTypes {
			if g != grant.GrantJWTBearer && g != grant.GrantRefreshToken {
				return b.errorf("unknown grant type %q (jwt-bearer or refresh_token)", g)
			}
		}
		for _, name := range cc.Issuers {
			if !names[name] {
				return b.errorf("issuers: no trusted_issuer named %q", name)
			}
		}
		if cc.AccessTokenTTL < 0 || (cc.RefreshTokenTTL != nil && *cc.RefreshTokenTTL < 0) {
			return b.errorf("token lifetimes must not be negative")
		}
	}
	return nil
}

func validateKeySource(ks KeySourceConfig, issuer bool) error {
	switch {
	case ks.JWKSURL == "" && len(ks.Certificates) == 0:
		if issuer {
			return errors.New("a key source is required: jwks_url or certificate")
		}
		return errors.New("a key source is required")
	case ks.JWKSURL != "" && len(ks.Certificates) > 0:
		return errors.New("exactly one key source: jwks_url or certificate, not both")
	case ks.JWKSURL != "" && !strings.Contains(ks.JWKSURL, "{"):
		if err := checkURL(ks.JWKSURL); err != nil {
			return fmt.Errorf("jwks_url: %w", err)
		}
	}
	if ks.JWKSTimeout < 0 || ks.JWKSMinRefresh < 0 {
		return errors.New("jwks durations must not be negative")
	}
	return nil
}

// checkURL accepts absolute http(s) URLs.
func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", raw)
	}
	return nil
}

// Interface guards
var _ caddy.Validator = (*Handler)(nil)
