package grant

import (
	"crypto"
	"crypto/rand"
	"encoding/base64"
	"fmt"

	"github.com/go-jose/go-jose/v4"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/keys"
)

// Minter makes access tokens. The store key of a token is always
// HashToken(token), whatever its format.
type Minter interface {
	// Mint returns the access token for rec, which is already complete
	// but for JTI, which a self-contained format may set.
	Mint(rec *AccessRecord) (string, error)
}

// opaqueMinter makes opaque access tokens: 256 bits from the CSPRNG,
// base64url-encoded. They mean nothing without the store.
type opaqueMinter struct{}

// Mint returns a fresh random token.
func (opaqueMinter) Mint(*AccessRecord) (string, error) { return randomToken(), nil }

// randomToken returns 256 bits from crypto/rand, base64url-encoded (43
// characters). crypto/rand.Read never fails on supported platforms.
func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	var out [43]byte // base64.RawURLEncoding.EncodedLen(32)
	base64.RawURLEncoding.Encode(out[:], b[:])
	return string(out[:])
}

// randomID returns 128 bits from crypto/rand, base64url-encoded: ids that
// must not collide but are not secrets (refresh chains, JWT jti).
func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	var out [22]byte // base64.RawURLEncoding.EncodedLen(16)
	base64.RawURLEncoding.Encode(out[:], b[:])
	return string(out[:])
}

// accessTokenJWTType is the typ header of a JWT access token (RFC 9068
// §2.1); a resource server checks it so that no other JWT signed with the
// same key (an ID token, say) passes for an access token.
const accessTokenJWTType = "at+jwt"

// reservedTokenClaims are the claim names a copied assertion claim may
// not take in a JWT access token: the registered claims of RFC 7519 §4.1,
// the ones RFC 9068 gives a meaning here, and cnf, which would bind the
// token to a key this server never checked (RFC 7800).
var reservedTokenClaims = map[string]bool{
	"iss": true, "sub": true, "aud": true, "exp": true, "nbf": true, "iat": true, "jti": true,
	"client_id": true, "scope": true, "tenant": true, "cnf": true,
}

// KeyPublisher is a Minter whose tokens verify with public keys that the
// JWKS endpoint publishes.
type KeyPublisher interface {
	// PublicJWKs returns the public keys, each with kid, alg and use.
	PublicJWKs() []jose.JSONWebKey
}

// JWTMinter makes self-contained access tokens (RFC 9068): JWTs signed by
// the signing_key whose claims repeat the token record. They are still
// stored under HashToken(token), so revocation and jwt_grant_auth work as
// for opaque tokens; a service that verifies them offline sees a revoked
// token as valid until it expires.
type JWTMinter struct {
	key crypto.Signer
	alg string
	// kid is the key's RFC 7638 thumbprint: every gateway that signs with
	// the same key names it the same, so their tokens are interchangeable.
	kid string
	jwk jose.JSONWebKey
}

// NewJWTMinter returns a minter signing with key by its default
// algorithm (see keys.DefaultAlg).
func NewJWTMinter(key crypto.Signer) (*JWTMinter, error) {
	jwk, err := keys.PublicJWK(key)
	if err != nil {
		return nil, err
	}
	return &JWTMinter{key: key, alg: jwk.Algorithm, kid: jwk.KeyID, jwk: jwk}, nil
}

// LoadJWTMinter reads a PEM private key file (see keys.ParsePrivate) and
// returns a minter signing with it. Errors name the file, never its
// content.
func LoadJWTMinter(path string) (*JWTMinter, error) {
	key, err := keys.LoadPrivate(path)
	if err != nil {
		return nil, err
	}
	m, err := NewJWTMinter(key)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return m, nil
}

// KeyID is the kid of the tokens' header and of the published key.
func (m *JWTMinter) KeyID() string { return m.kid }

// Algorithm is the JWS algorithm the tokens are signed with.
func (m *JWTMinter) Algorithm() string { return m.alg }

// PublicJWKs implements KeyPublisher.
func (m *JWTMinter) PublicJWKs() []jose.JSONWebKey { return []jose.JSONWebKey{m.jwk} }

// Mint implements Minter: it sets rec.JTI to a fresh random id and signs
// the record's claims with typ at+jwt.
func (m *JWTMinter) Mint(rec *AccessRecord) (string, error) {
	rec.JTI = randomID()
	claims := make(map[string]any, 10+len(rec.Claims))
	for name, v := range rec.Claims {
		if !reservedTokenClaims[name] {
			claims[name] = v
		}
	}
	claims["iss"] = rec.Iss
	claims["sub"] = rec.Sub
	claims["client_id"] = rec.ClientID
	claims["iat"] = rec.Iat
	claims["exp"] = rec.Exp
	claims["jti"] = rec.JTI
	// A single audience is a string, as most resource servers compare it;
	// RFC 7519 §4.1.3 allows both forms.
	if len(rec.Aud) == 1 {
		claims["aud"] = rec.Aud[0]
	} else {
		claims["aud"] = rec.Aud
	}
	if rec.Scope != "" {
		claims["scope"] = rec.Scope
	}
	if rec.Tenant != "" {
		claims["tenant"] = rec.Tenant
	}
	if rec.Cnf != nil {
		claims["cnf"] = rec.Cnf
	}
	return keys.Sign(m.key, m.alg, m.kid, accessTokenJWTType, claims)
}

// Interface guards
var (
	_ Minter       = (*JWTMinter)(nil)
	_ KeyPublisher = (*JWTMinter)(nil)
)
