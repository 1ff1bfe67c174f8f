package grant

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
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

// keyFitsAlg reports whether key can verify alg: RSA for RS*/PS*, the
// matching curve for ES*, Ed25519 for EdDSA; and the key's own alg, if it
// has one, must be alg.
func keyFitsAlg(k Key, alg string) bool {
	if k.Alg != "" && k.Alg != alg {
		return false
	}
	switch pub := k.Public.(type) {
	case *rsa.PublicKey:
		return alg[0] == 'R' || alg[0] == 'P'
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return pub.Curve == elliptic.P256()
		case "ES384":
			return pub.Curve == elliptic.P384()
		case "ES512":
			return pub.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}
