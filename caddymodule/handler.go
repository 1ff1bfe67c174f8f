// Package caddymodule is the Caddy shell of caddy-jwt-grant: the jwt_grant
// and jwt_grant_auth handlers, the store guest modules, Caddyfile parsing,
// metrics and the jwt-grant command. The grant itself lives in package
// grant, which knows nothing of Caddy.
package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/clientauth"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/keys"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler is the authorization server of the JWT bearer grant (RFC 7523):
// it answers on its token, introspection, revocation, metadata and JWKS
// paths, and passes every other request to the next handler.
type Handler struct {
	// IssuerURL is this server's issuer identifier (RFC 8414). Required.
	IssuerURL string `json:"issuer_url"`
	// TokenPath is the token endpoint's path (RFC 6749 §3.2). It cannot be
	// off. Default /oauth2/token.
	TokenPath string `json:"token_path,omitempty"`
	// IntrospectionPath is the introspection endpoint's path (RFC 7662);
	// "off" disables it. Default /oauth2/introspect.
	IntrospectionPath string `json:"introspection_path,omitempty"`
	// RevocationPath is the revocation endpoint's path (RFC 7009); "off"
	// disables it. Default /oauth2/revoke.
	RevocationPath string `json:"revocation_path,omitempty"`
	// MetadataPath is the authorization server metadata path (RFC 8414);
	// "off" disables it. Default /.well-known/oauth-authorization-server.
	MetadataPath string `json:"metadata_path,omitempty"`
	// JWKSPath publishes the public key of jwt access tokens; "off"
	// disables it, and opaque tokens have no keys to publish. Default
	// /oauth2/jwks.
	JWKSPath string `json:"jwks_path,omitempty"`

	// StoreRaw is the token store. Default: the process's memory store.
	StoreRaw json.RawMessage `json:"store,omitempty" caddy:"namespace=jwt_grant.stores inline_key=backend"`

	// IATValidation bounds the age of an assertion's iat by IATValidity.
	// Default true.
	IATValidation *bool `json:"iat_validation,omitempty"`
	// IATValidity is the greatest age of an assertion's iat. Default 30m.
	IATValidity caddy.Duration `json:"iat_validity,omitempty"`
	// ClockSkew is the tolerance on exp, nbf and a future iat. Default 60s.
	ClockSkew *caddy.Duration `json:"clock_skew,omitempty"`
	// MaxAssertionLifetime bounds exp - (iat or now). Default 24h.
	MaxAssertionLifetime caddy.Duration `json:"max_assertion_lifetime,omitempty"`
	// RequireJTI rejects assertions without jti; a present jti is
	// replay-checked either way. Default false.
	RequireJTI bool `json:"require_jti,omitempty"`

	// DPoPAlgorithms are the JWS algorithms a DPoP proof (RFC 9449) may
	// use. Default every asymmetric algorithm.
	DPoPAlgorithms []string `json:"dpop_algorithms,omitempty"`
	// DPoPProofLifetime bounds how far a proof's iat may lie from now,
	// plus clock_skew; its jti is single-use that long. Default 60s.
	DPoPProofLifetime caddy.Duration `json:"dpop_proof_lifetime,omitempty"`

	// SecretConcurrency bounds the uncached client secret hash comparisons
	// running at once; a request that waits more than 1s for its turn gets
	// 503. Default: the number of CPUs.
	SecretConcurrency int `json:"secret_concurrency,omitempty"`

	// TokenFormat is "opaque" (default) or "jwt" (RFC 9068).
	TokenFormat string `json:"token_format,omitempty"`
	// SigningKey is the PEM private key file that signs jwt access tokens.
	SigningKey string `json:"signing_key,omitempty"`
	// AccessTokenTTL is the access token lifetime. Default 1h.
	AccessTokenTTL caddy.Duration `json:"access_token_ttl,omitempty"`
	// RefreshTokenTTL is the refresh token lifetime; 0 means refresh
	// tokens are never issued. Default (when absent) 24h.
	RefreshTokenTTL *caddy.Duration `json:"refresh_token_ttl,omitempty"`

	// Issuers are the top level's trusted token issuers.
	Issuers []IssuerConfig `json:"trusted_issuers,omitempty"`
	// Clients are the top level's clients.
	Clients []ClientConfig `json:"clients,omitempty"`
	// Tenants are selected by ?tenantDomain=; each has issuers and clients
	// of its own and inherits none of the top level's.
	Tenants []TenantConfig `json:"tenants,omitempty"`

	// Resources are the protected resources tokens may be requested for
	// with the resource parameter (RFC 8707); every tenant shares them.
	Resources []ResourceConfig `json:"resources,omitempty"`

	// Realm is the realm of WWW-Authenticate challenges. Default jwt_grant.
	Realm string `json:"realm,omitempty"`

	line    int // Caddyfile line of the directive, for error messages
	server  *grant.Server
	store   StoreModule
	drain   *drainingStore // the shared store, held per request (drain.go)
	closers []func()
	logger  *zap.Logger
	paths   map[string]http.HandlerFunc
	// now is the clock: the package clock as it was at Provision, so that
	// a test swapping it later cannot race a running handler, unless a
	// test provisioning the handler by hand set its own.
	now func() time.Time
}

// now is the clock of every handler provisioned in this process. It is a
// variable only so that end-to-end tests, whose Caddy runs in this
// process, can move time past cache ages and refresh intervals instead of
// sleeping through them; nothing else assigns it.
var now = time.Now

// IssuerConfig is a trusted token issuer.
type IssuerConfig struct {
	// Name names the block in logs, metrics and a client's issuers; unique
	// within a tenant.
	Name string `json:"name"`
	// Issuer is the iss value of its assertions; unique within a tenant.
	Issuer string `json:"issuer"`
	KeySourceConfig
	// Aliases are extra aud values accepted for this issuer.
	Aliases []string `json:"aliases,omitempty"`
	// Algorithms are the JWS algorithms its assertions may use. Default
	// every asymmetric algorithm: RS256 RS384 RS512 PS256 PS384 PS512
	// ES256 ES384 ES512 EdDSA.
	Algorithms []string `json:"algorithms,omitempty"`
	// Subjects are the sub values its assertions may carry. Default any.
	Subjects []string `json:"subjects,omitempty"`
	// Scopes obtainable through this issuer; default any the client may have.
	Scopes []string `json:"scopes,omitempty"`
	// Claims are the assertion claims copied into the token record, and
	// so into the {http.auth.user.claim.*} placeholders.
	Claims []string `json:"claims,omitempty"`
	// ClientAuth is "required" (default) or "optional": optional also
	// accepts its assertions from a request with no client
	// authentication, and then issues no refresh token.
	ClientAuth string `json:"client_auth,omitempty"`
	// Profile is the assertion profile of its assertions: "" (plain RFC
	// 7523) or "id-jag" (Identity Assertion JWT Authorization Grants,
	// which then need client authentication).
	Profile string `json:"profile,omitempty"`

	line int // Caddyfile line of the block, for error messages
}

// KeySourceConfig is where a trusted issuer's or a private_key_jwt
// client's public keys come from: a JWKS URL or certificate files.
type KeySourceConfig struct {
	// JWKSURL is the JWKS (RFC 7517) to fetch the keys from; exclusive
	// with Certificates.
	JWKSURL string `json:"jwks_url,omitempty"`
	// JWKSTimeout bounds one JWKS fetch. Default 1s.
	JWKSTimeout caddy.Duration `json:"jwks_timeout,omitempty"`
	// JWKSMinRefresh is the least time between two fetches caused by an
	// unknown kid. Default 10s.
	JWKSMinRefresh caddy.Duration `json:"jwks_min_refresh,omitempty"`
	// Certificates are PEM or DER certificate or public key (SPKI) files;
	// more than one lets an issuer rotate its key. Exclusive with JWKSURL.
	Certificates []string `json:"certificates,omitempty"`
}

// ClientConfig is an OAuth client.
type ClientConfig struct {
	// ID is the client_id; unique within a tenant.
	ID string `json:"client_id"`
	// Secret is a bcrypt or argon2id hash from `caddy hash-password`.
	Secret string `json:"secret,omitempty"`
	// KeySourceConfig, instead of Secret, authenticates the client by
	// private_key_jwt.
	KeySourceConfig
	// GrantTypes are the grants it may use: jwt-bearer, refresh_token.
	// Default both.
	GrantTypes []string `json:"grant_types,omitempty"`
	// Issuers are the names of the trusted issuers whose assertions it may
	// exchange. Default every trusted issuer of its tenant.
	Issuers []string `json:"issuers,omitempty"`
	// Audience is the aud of its tokens. Default its client id.
	Audience []string `json:"audience,omitempty"`
	// Scopes are the scopes it may obtain. Default unrestricted.
	Scopes []string `json:"scopes,omitempty"`
	// AccessTokenTTL overrides the handler's access token lifetime for
	// this client.
	AccessTokenTTL caddy.Duration `json:"access_token_ttl,omitempty"`
	// RefreshTokenTTL overrides the handler's refresh token lifetime for
	// this client; 0 means no refresh tokens for it.
	RefreshTokenTTL *caddy.Duration `json:"refresh_token_ttl,omitempty"`
	// DPoP "required" refuses its token requests without a DPoP proof
	// (dpop_bound_access_tokens). Default: a proof is optional.
	DPoP string `json:"dpop,omitempty"`

	line int // Caddyfile line of the block, for error messages
}

// TenantConfig is a tenant: its own trusted issuers and clients.
type TenantConfig struct {
	// Domain is the tenantDomain query parameter that selects it.
	Domain string `json:"domain"`
	// Issuers are the tenant's trusted token issuers.
	Issuers []IssuerConfig `json:"trusted_issuers,omitempty"`
	// Clients are the tenant's clients.
	Clients []ClientConfig `json:"clients,omitempty"`

	line int // Caddyfile line of the block, for error messages
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.jwt_grant",
		New: func() caddy.Module { return new(Handler) },
	}
}

// Default paths.
const (
	defaultTokenPath         = "/oauth2/token"
	defaultIntrospectionPath = "/oauth2/introspect"
	defaultRevocationPath    = "/oauth2/revoke"
	defaultMetadataPath      = "/.well-known/oauth-authorization-server"
	defaultJWKSPath          = "/oauth2/jwks"
)

// path returns the configured path, its default when unset, "" when off.
func path(v, def string) string {
	switch v {
	case "":
		return def
	case "off":
		return ""
	}
	return v
}

// Provision fills defaults, loads keys and opens the store; Validate,
// which Caddy calls next, rejects what the configuration shows to be
// wrong.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	if h.now == nil {
		h.now = now
	}
	store, err := loadStore(ctx, h, &h.StoreRaw)
	if err != nil {
		return err
	}
	h.store = store
	h.drain, _ = store.Store().(*drainingStore)
	m := metricsFor(ctx)

	pol := grant.DefaultPolicy()
	if h.IATValidation != nil {
		pol.IATValidation = *h.IATValidation
	}
	if h.IATValidity > 0 {
		pol.IATValidity = time.Duration(h.IATValidity)
	}
	if h.ClockSkew != nil {
		pol.ClockSkew = time.Duration(*h.ClockSkew)
	}
	if h.MaxAssertionLifetime > 0 {
		pol.MaxAssertionLifetime = time.Duration(h.MaxAssertionLifetime)
	}
	pol.RequireJTI = h.RequireJTI

	cfg := grant.Config{
		IssuerURL:         h.IssuerURL,
		TokenPath:         path(h.TokenPath, defaultTokenPath),
		IntrospectionPath: path(h.IntrospectionPath, defaultIntrospectionPath),
		RevocationPath:    path(h.RevocationPath, defaultRevocationPath),
		MetadataPath:      path(h.MetadataPath, defaultMetadataPath),
		JWKSPath:          path(h.JWKSPath, defaultJWKSPath),
		Policy:            pol,
		DPoPAlgorithms:    h.DPoPAlgorithms,
		DPoPProofLifetime: time.Duration(h.DPoPProofLifetime),
		AccessTokenTTL:    time.Hour,
		RefreshTokenTTL:   24 * time.Hour,
		Tenants:           map[string]*grant.Tenant{},
		Store:             store.Store(),
		Realm:             h.Realm,
		Logger:            h.logger,
		Observer:          m,
		Now:               h.now,
	}
	if h.AccessTokenTTL > 0 {
		cfg.AccessTokenTTL = time.Duration(h.AccessTokenTTL)
	}
	if h.RefreshTokenTTL != nil {
		cfg.RefreshTokenTTL = time.Duration(*h.RefreshTokenTTL)
	}
	if h.TokenFormat == "jwt" {
		minter, err := grant.LoadJWTMinter(caddy.NewReplacer().ReplaceKnown(h.SigningKey, ""))
		if err != nil {
			return fmt.Errorf("signing_key: %w", err)
		}
		cfg.Minter = minter
	} else {
		// Opaque tokens have no keys to publish.
		cfg.JWKSPath = ""
	}

	tenants := append([]TenantConfig{{Issuers: h.Issuers, Clients: h.Clients}}, h.Tenants...)
	var hashes []*clientauth.Hash
	for _, tc := range tenants {
		t, err := h.buildTenant(ctx, tc, m)
		if err != nil {
			if tc.Domain != "" {
				return fmt.Errorf("tenant %q: %w", tc.Domain, err)
			}
			return err
		}
		cfg.Tenants[tc.Domain] = t
		for _, c := range t.Clients {
			if c.SecretHash != nil {
				hashes = append(hashes, c.SecretHash)
			}
		}
	}
	cfg.Resources = h.grantResources()
	if cfg.Secrets, err = h.provisionSecrets(hashes); err != nil {
		return err
	}
	h.server, err = grant.New(cfg)
	if err != nil {
		return err
	}
	h.paths = h.server.Endpoints()
	return nil
}

func (h *Handler) buildTenant(ctx caddy.Context, tc TenantConfig, m *metrics) (*grant.Tenant, error) {
	t := &grant.Tenant{Domain: tc.Domain, Issuers: map[string]*grant.Issuer{}, Clients: map[string]*grant.Client{}}
	repl := caddy.NewReplacer()
	for _, ic := range tc.Issuers {
		set, err := h.keySet(ic.KeySourceConfig, "trusted_issuer", ic.Name, m)
		if err != nil {
			return nil, fmt.Errorf("trusted_issuer %q: %w", ic.Name, err)
		}
		algs := ic.Algorithms
		if len(algs) == 0 {
			algs = keys.DefaultAlgorithms
		}
		t.Issuers[ic.Issuer] = &grant.Issuer{
			Name: ic.Name, Issuer: ic.Issuer, Aliases: ic.Aliases, Algorithms: algs,
			Subjects: ic.Subjects, Scopes: ic.Scopes, Claims: ic.Claims,
			ClientAuthOptional: ic.ClientAuth == "optional", Keys: set, Profile: ic.Profile,
		}
	}
	for _, cc := range tc.Clients {
		c := &grant.Client{
			ID: cc.ID, GrantTypes: cc.GrantTypes, Issuers: cc.Issuers,
			Audience: cc.Audience, Scopes: cc.Scopes, AccessTTL: time.Duration(cc.AccessTokenTTL),
			DPoPRequired: cc.DPoP == "required",
		}
		if len(c.GrantTypes) == 0 {
			c.GrantTypes = []string{grant.GrantJWTBearer, grant.GrantRefreshToken}
		}
		if cc.RefreshTokenTTL != nil {
			c.RefreshTTL = time.Duration(*cc.RefreshTokenTTL)
			if c.RefreshTTL == 0 {
				c.RefreshTTL = -1
			}
		}
		if cc.Secret != "" {
			hash, err := secretHash(repl.ReplaceKnown(cc.Secret, ""))
			if err != nil {
				return nil, fmt.Errorf("client %q: secret: %w", cc.ID, err)
			}
			c.SecretHash = hash
		} else {
			set, err := h.keySet(cc.KeySourceConfig, "client", cc.ID, m)
			if err != nil {
				return nil, fmt.Errorf("client %q: %w", cc.ID, err)
			}
			c.Keys = set
		}
		t.Clients[cc.ID] = c
	}
	return t, nil
}

// keySet loads certificate files, or starts a JWKS key set whose first
// fetch runs in the background so that a slow issuer cannot hold up
// Caddy's start.
func (h *Handler) keySet(ks KeySourceConfig, kind, name string, m *metrics) (keys.Set, error) {
	repl := caddy.NewReplacer()
	if ks.JWKSURL == "" {
		paths := make([]string, len(ks.Certificates))
		for i, p := range ks.Certificates {
			paths[i] = repl.ReplaceKnown(p, "")
		}
		return keys.LoadFiles(paths...)
	}
	rk := keys.NewRemote(keys.RemoteConfig{
		URL:        repl.ReplaceKnown(ks.JWKSURL, ""),
		Timeout:    time.Duration(ks.JWKSTimeout),
		MinRefresh: time.Duration(ks.JWKSMinRefresh),
		Logger:     h.logger.With(zap.String(kind, name)),
		Observe:    m.jwksObserver(kind, name),
		Now:        h.now,
	})
	rk.Prefetch()
	h.closers = append(h.closers, func() { _ = rk.Close() })
	return rk, nil
}

// ServeHTTP answers on the endpoints' paths and passes anything else on.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if serve, ok := h.paths[r.URL.Path]; ok {
		defer h.drain.hold().done()
		serve(w, withClientURL(r))
		return nil
	}
	return next.ServeHTTP(w, r)
}

// Cleanup stops key fetches and releases the store; it is safe after a
// failed Provision.
func (h *Handler) Cleanup() error {
	for _, c := range h.closers {
		c()
	}
	h.closers = nil
	return nil
}

// loadStore loads the store guest module of a handler (its StoreRaw
// field), the memory store when none is configured. Caddy cleans guest
// modules up with the context, which releases the store.
func loadStore(ctx caddy.Context, handler any, raw *json.RawMessage) (StoreModule, error) {
	if len(*raw) == 0 {
		*raw = json.RawMessage(`{"backend":"memory"}`)
	}
	mod, err := ctx.LoadModule(handler, "StoreRaw")
	if err != nil {
		return nil, fmt.Errorf("loading store: %w", err)
	}
	return mod.(StoreModule), nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
