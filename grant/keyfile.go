package grant

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/go-jose/go-jose/v4"
)

// MinRSABits is the smallest RSA modulus accepted for a verification or
// signing key (RFC 7518 §3.3 requires 2048 bits for RS*/PS*).
const MinRSABits = 2048

// pemBegin marks the start of a PEM block; data holding it anywhere is
// treated as PEM rather than DER.
var pemBegin = []byte("-----BEGIN ")

// ParsePublicKeys returns the public keys held in data: one or more PEM
// blocks of type CERTIFICATE, PUBLIC KEY (SPKI) or RSA PUBLIC KEY (PKCS #1),
// or a single DER certificate or DER SPKI public key. Only RSA keys of at
// least MinRSABits bits, ECDSA keys on P-256, P-384 or P-521, and Ed25519
// keys are accepted; anything else, a private key included, is an error.
//
// A certificate serves only as a container for its issuer's key, as in the
// trusted-issuer model this mirrors: its validity dates, chain and usages
// are not checked, so rotating keys means replacing files, not renewing
// certificates. Errors never quote the input.
func ParsePublicKeys(data []byte) ([]crypto.PublicKey, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("no key data")
	}
	if bytes.Contains(data, pemBegin) {
		return parsePEMPublicKeys(data)
	}
	pub, err := parseDERPublicKey(data)
	if err != nil {
		return nil, err
	}
	return []crypto.PublicKey{pub}, nil
}

func parsePEMPublicKeys(data []byte) ([]crypto.PublicKey, error) {
	var blocks []*pem.Block
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		blocks = append(blocks, block)
	}
	// pem.Decode silently skips a block it cannot decode (a missing END
	// line, bad base64), which would quietly drop a key from a rotation
	// set; every BEGIN line must have produced a block.
	if begins := bytes.Count(data, pemBegin); begins != len(blocks) {
		return nil, fmt.Errorf("malformed pem data: %d BEGIN lines but %d decodable blocks", begins, len(blocks))
	}
	// A private key anywhere in the file is the mistake to report, even
	// when another block (openssl's EC PARAMETERS) comes first.
	for i, block := range blocks {
		if isPrivateKeyPEMType(block.Type) {
			return nil, fmt.Errorf("pem block %d (%s): this is a private key; give the certificate or public key instead, and keep the private key secret", i+1, block.Type)
		}
	}
	keys := make([]crypto.PublicKey, 0, len(blocks))
	for i, block := range blocks {
		pub, err := parsePEMPublicBlock(block)
		if err != nil {
			return nil, fmt.Errorf("pem block %d (%s): %w", i+1, block.Type, err)
		}
		keys = append(keys, pub)
	}
	return keys, nil
}

func parsePEMPublicBlock(block *pem.Block) (crypto.PublicKey, error) {
	var (
		pub crypto.PublicKey
		err error
	)
	switch block.Type {
	case "CERTIFICATE":
		pub, err = certificatePublicKey(block.Bytes)
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	default:
		return nil, errors.New("unsupported pem block type; want CERTIFICATE, PUBLIC KEY or RSA PUBLIC KEY")
	}
	if err != nil {
		return nil, err
	}
	return admitPublicKey(pub)
}

func parseDERPublicKey(der []byte) (crypto.PublicKey, error) {
	if cert, err := x509.ParseCertificate(der); err == nil {
		if cert.PublicKey == nil {
			return nil, fmt.Errorf("der certificate has an unsupported public key algorithm %v", cert.PublicKeyAlgorithm)
		}
		return admitPublicKey(cert.PublicKey)
	}
	if pub, err := x509.ParsePKIXPublicKey(der); err == nil {
		return admitPublicKey(pub)
	}
	if isPrivateKeyDER(der) {
		return nil, errors.New("data is a der private key; give the certificate or public key instead, and keep the private key secret")
	}
	if trimmed := bytes.TrimSpace(der); len(trimmed) > 0 && trimmed[0] == '{' {
		return nil, errors.New("data looks like json, not a certificate or public key (a jwks belongs in jwks_url)")
	}
	return nil, errors.New("data is neither pem nor a der certificate or spki public key")
}

func certificatePublicKey(der []byte) (crypto.PublicKey, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	if cert.PublicKey == nil {
		return nil, fmt.Errorf("certificate has an unsupported public key algorithm %v", cert.PublicKeyAlgorithm)
	}
	return cert.PublicKey, nil
}

func isPrivateKeyPEMType(t string) bool {
	return strings.HasSuffix(t, "PRIVATE KEY")
}

func isPrivateKeyDER(der []byte) bool {
	if _, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		return true
	}
	if _, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return true
	}
	_, err := x509.ParseECPrivateKey(der)
	return err == nil
}

// admitPublicKey admits the key families the verifier supports and
// normalises them to the types Key.Public documents.
func admitPublicKey(pub crypto.PublicKey) (crypto.PublicKey, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < MinRSABits {
			return nil, fmt.Errorf("rsa key of %d bits is too small; at least %d bits are required", bits, MinRSABits)
		}
		return k, nil
	case *ecdsa.PublicKey:
		if _, err := ecdsaCurveAlg(k.Curve); err != nil {
			return nil, err
		}
		return k, nil
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return nil, errors.New("ed25519 key has the wrong length")
		}
		return k, nil
	case *ed25519.PublicKey:
		if k == nil {
			return nil, errors.New("nil ed25519 key")
		}
		return admitPublicKey(*k)
	case nil:
		return nil, errors.New("no public key")
	default:
		return nil, fmt.Errorf("unsupported key type %T; want RSA, ECDSA P-256/P-384/P-521 or Ed25519", pub)
	}
}

func ecdsaCurveAlg(c elliptic.Curve) (string, error) {
	if c == nil {
		return "", errors.New("ecdsa key has no curve")
	}
	switch c {
	case elliptic.P256():
		return "ES256", nil
	case elliptic.P384():
		return "ES384", nil
	case elliptic.P521():
		return "ES512", nil
	default:
		return "", fmt.Errorf("unsupported ecdsa curve %s; want P-256, P-384 or P-521", c.Params().Name)
	}
}

// LoadKeyFiles reads and parses each file with ParsePublicKeys and returns
// all their keys, without kid, in file order. An error names the file.
func LoadKeyFiles(paths ...string) (StaticKeys, error) {
	if len(paths) == 0 {
		return nil, errors.New("no key files given")
	}
	var keys StaticKeys
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			// The *PathError already carries the path, which the prefix
			// names; keep only the cause to avoid saying it twice.
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return nil, fmt.Errorf("key file %s: %w", p, err)
		}
		pubs, err := ParsePublicKeys(data)
		if err != nil {
			return nil, fmt.Errorf("key file %s: %w", p, err)
		}
		for _, pub := range pubs {
			keys = append(keys, Key{Public: pub})
		}
	}
	return keys, nil
}

// ParsePrivateKey returns the private key in PEM data: a PRIVATE KEY
// (PKCS #8), RSA PRIVATE KEY (PKCS #1) or EC PRIVATE KEY (SEC 1) block, of
// the same families ParsePublicKeys accepts. Other blocks, such as the EC
// PARAMETERS block openssl writes before an EC key or a certificate kept
// in the same file, are skipped; exactly one private key must be present.
// Errors never quote the input.
func ParsePrivateKey(data []byte) (crypto.Signer, error) {
	var (
		found crypto.Signer
		rest  = data
	)
	for n := 1; ; n++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if !isPrivateKeyPEMType(block.Type) {
			continue
		}
		if found != nil {
			return nil, errors.New("more than one private key in pem data")
		}
		key, err := parsePrivateBlock(block)
		if err != nil {
			return nil, fmt.Errorf("pem block %d (%s): %w", n, block.Type, err)
		}
		found = key
	}
	if found == nil {
		return nil, errors.New("no pem private key found; want PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY")
	}
	return found, nil
}

func parsePrivateBlock(block *pem.Block) (crypto.Signer, error) {
	var (
		key any
		err error
	)
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "ENCRYPTED PRIVATE KEY":
		return nil, errors.New("encrypted private keys are not supported; decrypt it first")
	default:
		return nil, errors.New("unsupported private key format; want PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY")
	}
	if err != nil {
		return nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported private key type %T", key)
	}
	if _, err := admitPublicKey(signer.Public()); err != nil {
		return nil, err
	}
	return signer, nil
}

// DefaultAlgorithm returns the JWS algorithm to sign with, or to expect,
// for a key: RS256 for RSA, ES256/ES384/ES512 by ECDSA curve, EdDSA for
// Ed25519, and "" for anything else. A private key (crypto.Signer) is
// accepted for its public half.
func DefaultAlgorithm(pub crypto.PublicKey) string {
	if s, ok := pub.(crypto.Signer); ok {
		pub = s.Public()
	}
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return "RS256"
	case *ecdsa.PublicKey:
		alg, _ := ecdsaCurveAlg(k.Curve)
		return alg
	case ed25519.PublicKey, *ed25519.PublicKey:
		return "EdDSA"
	default:
		return ""
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
	pub, err := admitPublicKey(pub)
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
