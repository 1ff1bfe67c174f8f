package grant

import (
	"time"

	"go.uber.org/zap"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/clientauth"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/keys"
)

// Policy is the assertion policy of SPEC §2.1 (defaults in DefaultPolicy).
type Policy struct {
	// IATValidation bounds the age of an assertion's iat by IATValidity.
	IATValidation bool
	IATValidity   time.Duration
	// ClockSkew is the tolerance applied to exp, nbf and a future iat.
	ClockSkew time.Duration
	// MaxAssertionLifetime bounds exp - (iat or now).
	MaxAssertionLifetime time.Duration
	// RequireJTI rejects assertions without jti. A present jti is always
	// replay-checked.
	RequireJTI bool
}

// DefaultPolicy is the policy SPEC §2.1 shows as defaults.
func DefaultPolicy() Policy {
	return Policy{
		IATValidation:        true,
		IATValidity:          30 * time.Minute,
		ClockSkew:            60 * time.Second,
		MaxAssertionLifetime: 24 * time.Hour,
	}
}

// Grant type names as the Caddyfile's grant_types spells them, and their
// wire forms.
const (
	GrantJWTBearer    = "jwt-bearer"
	GrantRefreshToken = "refresh_token"

	GrantTypeJWTBearer    = "urn:ietf:params:oauth:grant-type:jwt-bearer"
	GrantTypeRefreshToken = "refresh_token"

	ClientAssertionTypeJWTBearer = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

// Issuer is a trusted token issuer: whose assertions may be exchanged.
type Issuer struct {
	// Name is the trusted_issuer block's name, used in logs and in a
	// client's issuers list.
	Name string
	// Issuer is the iss value its assertions carry.
	Issuer string
	// Aliases are extra aud values accepted for this issuer.
	Aliases []string
	// Algorithms the issuer's signatures may use.
	Algorithms []string
	// Subjects, when non-empty, are the only sub values accepted.
	Subjects []string
	// Scopes, when non-nil, bound the scopes obtainable through this issuer.
	Scopes []string
	// Claims are copied from the assertion into the token record.
	Claims []string
	// ClientAuthOptional accepts requests without client authentication
	// for this issuer's assertions.
	ClientAuthOptional bool
	// Profile is the assertion profile its assertions follow: "" for
	// plain RFC 7523, ProfileIDJAG for Identity Assertion JWT
	// Authorization Grants (SPEC §7).
	Profile string
	// Keys yields the issuer's verification keys.
	Keys keys.Set
}

// Client is a registered OAuth client.
type Client struct {
	ID string
	// SecretHash is the client secret's hash and the comparer that checks
	// it (client_secret_basic/post).
	SecretHash *clientauth.Hash
	// Keys, instead of SecretHash, authenticates the client by
	// private_key_jwt.
	Keys keys.Set
	// GrantTypes the client may use (GrantJWTBearer, GrantRefreshToken).
	GrantTypes []string
	// Issuers, when non-nil, are the names of the trusted issuers whose
	// assertions the client may exchange.
	Issuers []string
	// Audience of the tokens it gets; its ID when empty.
	Audience []string
	// Scopes, when non-nil, bound the scopes it may obtain.
	Scopes []string
	// AccessTTL and RefreshTTL override the server's when non-zero; a
	// negative RefreshTTL means no refresh tokens.
	AccessTTL  time.Duration
	RefreshTTL time.Duration
	// DPoPRequired refuses its token requests without a DPoP proof
	// (dpop_bound_access_tokens, RFC 9449 §5.2).
	DPoPRequired bool
}

// Tenant is a set of trusted issuers and clients, selected at the token
// endpoint by ?tenantDomain=. The top level is the tenant "".
type Tenant struct {
	Domain string
	// Issuers by their iss value.
	Issuers map[string]*Issuer
	// Clients by client id.
	Clients map[string]*Client
}

// Observer receives the events that become metrics. Every method must be
// cheap and safe for concurrent use.
type Observer interface {
	// Grant is called once per token endpoint request with its outcome
	// ("issued" or the OAuth error code), a reason label and its latency.
	Grant(grantType, outcome, reason string, d time.Duration)
	// StoreError is called on every store failure.
	StoreError(op string)
}

type nopObserver struct{}

func (nopObserver) Grant(string, string, string, time.Duration) {}
func (nopObserver) StoreError(string)                           {}

// Config is what a Server is built from.
type Config struct {
	// IssuerURL is this server's issuer identifier (RFC 8414).
	IssuerURL string
	// TokenPath, IntrospectionPath, RevocationPath, MetadataPath and
	// JWKSPath are the endpoints' paths; "" disables an optional one.
	TokenPath         string
	IntrospectionPath string
	RevocationPath    string
	MetadataPath      string
	JWKSPath          string

	Policy Policy

	// DPoPAlgorithms are the algorithms a DPoP proof may use; default
	// keys.DefaultAlgorithms.
	DPoPAlgorithms []string
	// DPoPProofLifetime bounds how far a proof's iat may lie from now,
	// plus the policy's clock skew; default DefaultDPoPProofLifetime.
	DPoPProofLifetime time.Duration

	AccessTokenTTL time.Duration
	// RefreshTokenTTL of zero means refresh tokens are never issued.
	RefreshTokenTTL time.Duration

	// Tenants by domain; "" is the top level.
	Tenants map[string]*Tenant

	// Resources are the protected resources tokens may be requested for
	// (RFC 8707, SPEC §7); shared by every tenant.
	Resources []Resource

	Store Store
	// Secrets verifies client secrets; required when a client has one. One
	// may be shared by several servers and outlive a configuration, so that
	// a reload keeps verified secrets verified.
	Secrets *clientauth.Secrets
	// Minter makes access tokens; nil means opaque tokens.
	Minter Minter

	// Realm of WWW-Authenticate challenges.
	Realm string

	Logger   *zap.Logger
	Observer Observer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}
