// Package keys knows the JWS algorithms and the keys behind them: which
// algorithm fits which key, which public keys are admitted, key files,
// JWKS fetching and caching, key sets, signing and thumbprints. Assertion
// verification, JWKS admission, token signing and `caddy jwt-grant keygen`
// all ask it, so that they can never disagree.
package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"slices"
	"strings"

	"github.com/go-jose/go-jose/v4"
)

// keyType is the family of keys an algorithm signs with.
type keyType int

const (
	rsaKey keyType = iota
	ecdsaKey
	ed25519Key
)

// algorithm is one row of the table: a JWS algorithm and the key it
// needs.
type algorithm struct {
	name string
	kty  keyType
	// curve is the one curve an ES* algorithm is defined for (RFC 7518
	// §3.4); nil otherwise.
	curve elliptic.Curve
	// keyDefault marks the algorithm DefaultAlg gives its key type and
	// curve: a key generated for it signs with it by default.
	keyDefault bool
}

// table is the single source of which algorithm fits which key. Only
// asymmetric algorithms are in it: none and HS* can never verify an
// assertion from a third party.
var table = []algorithm{
	{name: "RS256", kty: rsaKey, keyDefault: true},
	{name: "RS384", kty: rsaKey},
	{name: "RS512", kty: rsaKey},
	{name: "PS256", kty: rsaKey},
	{name: "PS384", kty: rsaKey},
	{name: "PS512", kty: rsaKey},
	{name: "ES256", kty: ecdsaKey, curve: elliptic.P256(), keyDefault: true},
	{name: "ES384", kty: ecdsaKey, curve: elliptic.P384(), keyDefault: true},
	{name: "ES512", kty: ecdsaKey, curve: elliptic.P521(), keyDefault: true},
	{name: "EdDSA", kty: ed25519Key, keyDefault: true},
}

// aliases are other names of an algorithm in the table. RFC 9864 names
// the Ed25519 instance of EdDSA "Ed25519"; a JWKS key carrying it is an
// EdDSA key, not one that can never verify anything.
var aliases = map[string]string{"Ed25519": "EdDSA"}

// MinRSABits is the smallest RSA modulus accepted for a verification or
// signing key (RFC 7518 §3.3 requires 2048 bits for RS*/PS*).
const MinRSABits = 2048

// DefaultAlgorithms are the algorithms a trusted issuer or a client
// assertion is accepted with unless configured otherwise: the whole table,
// never none or HS*.
var DefaultAlgorithms = names(func(algorithm) bool { return true })

func names(keep func(algorithm) bool) []string {
	var out []string
	for _, a := range table {
		if keep(a) {
			out = append(out, a.name)
		}
	}
	return out
}

func lookup(alg string) (algorithm, bool) {
	i := slices.IndexFunc(table, func(a algorithm) bool { return a.name == alg })
	if i < 0 {
		return algorithm{}, false
	}
	return table[i], true
}

// IsAsymmetric reports whether alg is an algorithm of the table, spelled
// exactly as RFC 7518 does.
func IsAsymmetric(alg string) bool {
	_, ok := lookup(alg)
	return ok
}

// Fits reports whether pub is of the key type, and for ES* on the curve,
// that alg signs with. It says nothing of the key's size: Admit does.
func Fits(alg string, pub crypto.PublicKey) bool {
	a, ok := lookup(alg)
	if !ok {
		return false
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return a.kty == rsaKey
	case *ecdsa.PublicKey:
		return a.kty == ecdsaKey && k.Curve == a.curve
	case ed25519.PublicKey, *ed25519.PublicKey:
		return a.kty == ed25519Key
	}
	return false
}

// DefaultAlg returns the algorithm to sign with, or to expect, for a key:
// RS256 for RSA, ES256/ES384/ES512 by ECDSA curve, EdDSA for Ed25519, and
// "" for anything else. A private key (crypto.Signer) is taken for its
// public half.
func DefaultAlg(pub crypto.PublicKey) string {
	if s, ok := pub.(crypto.Signer); ok {
		pub = s.Public()
	}
	for _, a := range table {
		if a.keyDefault && Fits(a.name, pub) {
			return a.name
		}
	}
	return ""
}

// SignatureAlgorithms converts algs for jose.ParseSignedCompact, dropping
// any that is not in the table so that a configuration mistake can never
// admit none or HS*.
func SignatureAlgorithms(algs []string) []jose.SignatureAlgorithm {
	out := make([]jose.SignatureAlgorithm, 0, len(algs))
	for _, alg := range algs {
		if IsAsymmetric(alg) {
			out = append(out, jose.SignatureAlgorithm(alg))
		}
	}
	return out
}

// KeyAlgorithms are the algorithms DefaultAlg gives some key type: one
// per key type and curve. Only for these is a generated key certain to be
// signed with the algorithm it was published with.
func KeyAlgorithms() []string {
	return names(func(a algorithm) bool { return a.keyDefault })
}

// GenerateKey returns a new key for alg, one of KeyAlgorithms. RSA keys
// have MinRSABits: enough for RFC 7518 and fast to generate.
func GenerateKey(alg string) (crypto.Signer, error) {
	a, ok := lookup(alg)
	if !ok || !a.keyDefault {
		return nil, fmt.Errorf("no key type for algorithm %q; want %s", alg, strings.Join(KeyAlgorithms(), ", "))
	}
	switch a.kty {
	case rsaKey:
		return rsa.GenerateKey(rand.Reader, MinRSABits)
	case ecdsaKey:
		return ecdsa.GenerateKey(a.curve, rand.Reader)
	default:
		_, k, err := ed25519.GenerateKey(rand.Reader)
		return k, err
	}
}

// canonical returns the table's name for alg, resolving aliases.
func canonical(alg string) string {
	if name, ok := aliases[alg]; ok {
		return name
	}
	return alg
}
