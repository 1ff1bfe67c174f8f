package keys

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/go-jose/go-jose/v4"
	josejson "github.com/go-jose/go-jose/v4/json"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Sign signs claims, which must marshal to a JSON object, as a compact JWS
// with key and alg. The protected header carries alg, kid when kid is
// non-empty and typ when typ is non-empty ("JWT" for assertions, "at+jwt"
// for RFC 9068 access tokens). alg must fit the key (see Fits); key is
// *rsa.PrivateKey, *ecdsa.PrivateKey or ed25519.PrivateKey, as returned by
// ParsePrivate.
func Sign(key crypto.Signer, alg, kid, typ string, claims any) (string, error) {
	key, err := signingKey(key)
	if err != nil {
		return "", err
	}
	if !Fits(alg, key.Public()) {
		return "", fmt.Errorf("algorithm %q does not fit the %s key; want %s", alg, keyName(key.Public()), DefaultAlg(key))
	}
	obj, err := claimsObject(claims)
	if err != nil {
		return "", err
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
	compact, err := jwt.Signed(signer).Claims(obj).Serialize()
	if err != nil {
		return "", fmt.Errorf("signing: %w", err)
	}
	return compact, nil
}

// signingKey admits key for signing, as a type go-jose signs with.
func signingKey(key crypto.Signer) (crypto.Signer, error) {
	if key == nil {
		return nil, errors.New("no signing key")
	}
	// go-jose dispatches on the concrete type and knows ed25519 keys only
	// by value.
	if p, ok := key.(*ed25519.PrivateKey); ok && p != nil {
		key = *p
	}
	switch key.(type) {
	case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
	default:
		return nil, fmt.Errorf("unsupported signing key type %T", key)
	}
	if _, err := Admit(key.Public()); err != nil {
		return nil, err
	}
	return key, nil
}

// claimsObject turns claims into the map go-jose's jwt builder takes: it
// refuses other maps (map[string]string), and it encodes with its own json
// package, which would write an encoding/json RawMessage as base64 and a
// json.Number as a string. So claims are encoded with encoding/json, as
// callers expect, and decoded the way go-jose's own normalisation does,
// which keeps every digit of a number.
func claimsObject(claims any) (map[string]any, error) {
	raw, err := json.Marshal(claims)
	if err != nil {
		return nil, fmt.Errorf("encoding claims: %w", err)
	}
	if len(raw) == 0 || raw[0] != '{' {
		return nil, errors.New("claims must encode to a json object")
	}
	dec := josejson.NewDecoder(bytes.NewReader(raw))
	dec.SetNumberType(josejson.UnmarshalJSONNumber)
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil {
		return nil, fmt.Errorf("encoding claims: %w", err)
	}
	return obj, nil
}

func keyName(pub crypto.PublicKey) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return "rsa"
	case *ecdsa.PublicKey:
		return "ecdsa " + k.Curve.Params().Name
	default:
		return "ed25519"
	}
}

// PublicJWK returns the public half of key as the JWK that verifies its
// signatures: kid is the RFC 7638 thumbprint, so that every server signing
// with the same key names it the same; alg is DefaultAlg; use is sig.
func PublicJWK(key crypto.Signer) (jose.JSONWebKey, error) {
	key, err := signingKey(key)
	if err != nil {
		return jose.JSONWebKey{}, err
	}
	pub, err := Admit(key.Public())
	if err != nil {
		return jose.JSONWebKey{}, err
	}
	kid, err := Thumbprint(pub)
	if err != nil {
		return jose.JSONWebKey{}, err
	}
	return jose.JSONWebKey{Key: pub, KeyID: kid, Algorithm: DefaultAlg(pub), Use: "sig"}, nil
}
