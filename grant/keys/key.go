package keys

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"

	"github.com/go-jose/go-jose/v4"
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

// Verifies reports whether k may verify a JWS signed with alg: the key's
// own alg, if it has one, must be alg, and its type must fit alg.
func (k Key) Verifies(alg string) bool {
	return (k.Alg == "" || k.Alg == alg) && Fits(alg, k.Public)
}

// Set yields an issuer's or a client's verification keys.
type Set interface {
	// Keys returns the keys that may verify a JWS whose header has kid
	// ("" when it has none). It may fetch, bounded by the set's own
	// timeout. When no keys can be obtained and none are cached it returns
	// an error wrapping ErrUnavailable.
	Keys(ctx context.Context, kid string) ([]Key, error)
}

// ErrUnavailable is wrapped by a Set that could not obtain keys and has
// none cached: the request is answered 503, not rejected as forged.
var ErrUnavailable = errors.New("issuer keys unavailable")

// Static is a Set of keys loaded once, from certificate or public key
// files.
type Static []Key

// Keys returns every key: keys from files carry no kid, so each is tried
// whatever the JWS's kid.
func (s Static) Keys(context.Context, string) ([]Key, error) { return s, nil }

// Admit is the one rule for which public keys are accepted, from files,
// from a JWKS or as the public half of a signing key: RSA of at least
// MinRSABits, ECDSA on P-256, P-384 or P-521, Ed25519. It returns the key
// normalised to the types Key.Public documents.
func Admit(pub crypto.PublicKey) (crypto.PublicKey, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k == nil || k.N == nil {
			return nil, errors.New("rsa key has no modulus")
		}
		if bits := k.N.BitLen(); bits < MinRSABits {
			return nil, fmt.Errorf("rsa key of %d bits is too small; at least %d bits are required", bits, MinRSABits)
		}
		return k, nil
	case *ecdsa.PublicKey:
		if k == nil || k.Curve == nil {
			return nil, errors.New("ecdsa key has no curve")
		}
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return k, nil
		}
		return nil, fmt.Errorf("unsupported ecdsa curve %s; want P-256, P-384 or P-521", k.Curve.Params().Name)
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return nil, errors.New("ed25519 key has the wrong length")
		}
		return k, nil
	case *ed25519.PublicKey:
		if k == nil {
			return nil, errors.New("nil ed25519 key")
		}
		return Admit(*k)
	case nil:
		return nil, errors.New("no public key")
	default:
		return nil, fmt.Errorf("unsupported key type %T; want RSA, ECDSA P-256/P-384/P-521 or Ed25519", pub)
	}
}

// Thumbprint returns the base64url (unpadded) RFC 7638 SHA-256 JWK
// thumbprint of a key. It depends only on the key, so it is a kid that
// stays the same wherever and whenever the key is published. A private key
// (crypto.Signer) yields the thumbprint of its public half.
func Thumbprint(pub crypto.PublicKey) (string, error) {
	if s, ok := pub.(crypto.Signer); ok {
		pub = s.Public()
	}
	pub, err := Admit(pub)
	if err != nil {
		return "", err
	}
	jwk := jose.JSONWebKey{Key: pub}
	sum, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", fmt.Errorf("jwk thumbprint: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(sum), nil
}
