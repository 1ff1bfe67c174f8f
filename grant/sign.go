package grant

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/go-jose/go-jose/v4"
)

// SignJWT signs claims, which must marshal to a JSON object, as a compact
// JWS with key and alg. The protected header carries alg, kid when kid is
// non-empty and typ when typ is non-empty ("JWT" for assertions, "at+jwt"
// for RFC 9068 access tokens). alg must fit the key: RS256/384/512 or
// PS256/384/512 for RSA, the ES* matching an ECDSA key's curve, EdDSA for
// Ed25519. key is *rsa.PrivateKey, *ecdsa.PrivateKey or ed25519.PrivateKey,
// as returned by ParsePrivateKey.
func SignJWT(key crypto.Signer, alg, kid, typ string, claims any) (string, error) {
	if key == nil {
		return "", errors.New("no signing key")
	}
	// go-jose dispatches on the concrete type and knows ed25519 keys only by
	// value.
	if p, ok := key.(*ed25519.PrivateKey); ok && p != nil {
		key = *p
	}
	switch key.(type) {
	case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
	default:
		return "", fmt.Errorf("unsupported signing key type %T", key)
	}
	if _, err := admitPublicKey(key.Public()); err != nil {
		return "", err
	}
	if err := signAlgFits(key.Public(), alg); err != nil {
		return "", err
	}

	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("encoding claims: %w", err)
	}
	if len(payload) == 0 || payload[0] != '{' {
		return "", errors.New("claims must encode to a json object")
	}

	opts := &jose.SignerOptions{}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	if kid != "" {
		opts = opts.WithHeader(jose.HeaderKey("kid"), kid)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: key}, opts)
	if err != nil {
		return "", fmt.Errorf("creating signer: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("signing: %w", err)
	}
	return jws.CompactSerialize()
}

// signAlgFits reports whether alg is a JWS algorithm that key pub can
// produce; a mismatch would otherwise surface only as an opaque signing
// or verification failure.
func signAlgFits(pub crypto.PublicKey, alg string) error {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		switch alg {
		case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
			return nil
		}
		return fmt.Errorf("algorithm %q does not fit an rsa key; want RS256, RS384, RS512, PS256, PS384 or PS512", alg)
	case *ecdsa.PublicKey:
		want, err := ecdsaCurveAlg(k.Curve)
		if err != nil {
			return err
		}
		if alg != want {
			return fmt.Errorf("algorithm %q does not fit an ecdsa %s key; want %s", alg, k.Curve.Params().Name, want)
		}
		return nil
	case ed25519.PublicKey:
		if alg != "EdDSA" {
			return fmt.Errorf("algorithm %q does not fit an ed25519 key; want EdDSA", alg)
		}
		return nil
	default:
		return fmt.Errorf("unsupported key type %T", pub)
	}
}
