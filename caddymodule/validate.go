package caddymodule

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/keys"
)

// validate rejects everything the configuration itself shows to be wrong.
// The Caddyfile adapter runs it too, so that `caddy adapt` fails before
// anything is served; what needs files is checked by Provision.
func (h *Handler) validate() error {
	if strings.TrimSpace(h.IssuerURL) == "" {
		return errors.New("issuer_url is required")
	}
	if err := checkURL(h.IssuerURL); err != nil {
		return fmt.Errorf("issuer_url: %w", err)
	}
	for _, p := range []struct{ name, v string }{
		{"token_path", h.TokenPath}, {"introspection_path", h.IntrospectionPath},
		{"revocation_path", h.RevocationPath}, {"metadata_path", h.MetadataPath}, {"jwks_path", h.JWKSPath},
	} {
		if p.v != "" && p.v != "off" && !strings.HasPrefix(p.v, "/") {
			return fmt.Errorf("%s: %q must start with /", p.name, p.v)
		}
	}
	if h.TokenPath == "off" {
		return errors.New("token_path cannot be off")
	}
	switch h.TokenFormat {
	case "", "opaque":
	case "jwt":
		if h.SigningKey == "" {
			return errors.New("token_format jwt requires signing_key")
		}
	default:
		return fmt.Errorf("token_format: unknown format %q (opaque or jwt)", h.TokenFormat)
	}
	if h.SecretConcurrency < 0 {
		return errors.New("secret_concurrency must not be negative")
	}
	if h.AccessTokenTTL < 0 || (h.RefreshTokenTTL != nil && *h.RefreshTokenTTL < 0) {
		return errors.New("token lifetimes must not be negative")
	}
	if err := validateTenant(TenantConfig{Issuers: h.Issuers, Clients: h.Clients}); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, t := range h.Tenants {
		if t.Domain == "" {
			return errors.New("tenant: a domain is required")
		}
		if seen[t.Domain] {
			return fmt.Errorf("tenant %q: duplicate", t.Domain)
		}
		seen[t.Domain] = true
		if err := validateTenant(t); err != nil {
			return fmt.Errorf("tenant %q: %w", t.Domain, err)
		}
	}
	return nil
}

func validateTenant(t TenantConfig) error {
	names := map[string]bool{}
	values := map[string]string{}
	for _, ic := range t.Issuers {
		where := blockName("trusted_issuer", ic.Name, ic.line)
		switch {
		case ic.Name == "":
			return errors.New("trusted_issuer: a name is required")
		case names[ic.Name]:
			return fmt.Errorf("%s: duplicate trusted_issuer name", where)
		case ic.Issuer == "":
			return fmt.Errorf("%s: issuer is required", where)
		case values[ic.Issuer] != "":
			return fmt.Errorf("%s: issuer %q is already the issuer of trusted_issuer %q", where, ic.Issuer, values[ic.Issuer])
		}
		names[ic.Name] = true
		values[ic.Issuer] = ic.Name
		if err := validateKeySource(ic.KeySourceConfig, true); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		for _, alg := range ic.Algorithms {
			if !keys.IsAsymmetric(alg) {
				return fmt.Errorf("%s: unknown or unsupported algorithm %q", where, alg)
			}
		}
		if ic.ClientAuth != "" && ic.ClientAuth != "required" && ic.ClientAuth != "optional" {
			return fmt.Errorf("%s: client_auth must be required or optional, not %q", where, ic.ClientAuth)
		}
	}
	clients := map[string]bool{}
	for _, cc := range t.Clients {
		where := blockName("client", cc.ID, cc.line)
		switch {
		case cc.ID == "":
			return errors.New("client: a client id is required")
		case clients[cc.ID]:
			return fmt.Errorf("%s: duplicate client", where)
		}
		clients[cc.ID] = true
		hasKeys := cc.JWKSURL != "" || len(cc.Certificates) > 0
		switch {
		case cc.Secret == "" && !hasKeys:
			return fmt.Errorf("%s: a secret, certificate or jwks_url is required", where)
		case cc.Secret != "" && hasKeys:
			return fmt.Errorf("%s: secret and a key source are mutually exclusive", where)
		case cc.Secret != "" && !strings.Contains(cc.Secret, "{"):
			if _, err := secretHash(cc.Secret); err != nil {
				return fmt.Errorf("%s: secret must be a bcrypt or argon2id hash from `caddy hash-password`: %w", where, err)
			}
		case hasKeys:
			if err := validateKeySource(cc.KeySourceConfig, false); err != nil {
				return fmt.Errorf("%s: %w", where, err)
			}
		}
		for _, g := range cc.GrantTypes {
			if g != grant.GrantJWTBearer && g != grant.GrantRefreshToken {
				return fmt.Errorf("%s: unknown grant type %q (jwt-bearer or refresh_token)", where, g)
			}
		}
		for _, name := range cc.Issuers {
			if !names[name] {
				return fmt.Errorf("%s: issuers: no trusted_issuer named %q", where, name)
			}
		}
		if cc.AccessTokenTTL < 0 || (cc.RefreshTokenTTL != nil && *cc.RefreshTokenTTL < 0) {
			return fmt.Errorf("%s: token lifetimes must not be negative", where)
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

func blockName(kind, name string, line int) string {
	if line > 0 {
		return fmt.Sprintf("%s %q (Caddyfile line %d)", kind, name, line)
	}
	return fmt.Sprintf("%s %q", kind, name)
}
