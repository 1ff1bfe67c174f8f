package grant

import (
	"context"
	"crypto"
)

// Key is a public verification key of a trusted issuer or of a
// private_key_jwt client.
type Key struct {
	// KID is the key's "kid" from a JWKS; "" for keys from certificate
	// files and JWKS keys without one. A key with a KID is tried only for
	// a JWS whose header carries the same kid.
	KID string
	// Public is *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey.
	Public crypto.PublicKey
	// Alg is the key's own "alg" from a JWKS, "" if it has none. When set,
	// the key verifies only that algorithm.
	Alg string
}

// KeySet yields an issuer's verification keys.
type KeySet interface {
	// Keys returns the keys that may verify a JWS whose header has kid
	// ("" when it has none). It may fetch, bounded by the set's own
	// timeout. When no keys can be obtained and none are cached it returns
	// an error wrapping ErrKeysUnavailable.
	Keys(ctx context.Context, kid string) ([]Key, error)
}

// StaticKeys is a KeySet of keys loaded once, from certificate or public
// key files.
type StaticKeys []Key

// Keys returns every key: keys from files carry no kid, so each is tried
// whatever the JWS's kid.
func (s StaticKeys) Keys(context.Context, string) ([]Key, error) { return s, nil }
