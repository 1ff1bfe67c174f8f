package keys

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// pemBegin marks the start of a PEM block; data holding it anywhere is
// treated as PEM rather than DER.
var pemBegin = []byte("-----BEGIN ")

// ParsePublic returns the public keys held in data: one or more PEM
// blocks of type CERTIFICATE, PUBLIC KEY (SPKI) or RSA PUBLIC KEY (PKCS #1),
// or a single DER certificate or DER SPKI public key. Only RSA keys of at
// least MinRSABits bits, ECDSA keys on P-256, P-384 or P-521, and Ed25519
// keys are accepted; anything else, a private key included, is an error.
//
// A certificate serves only as a container for its issuer's key, as in the
// trusted-issuer model this mirrors: its validity dates, chain and usages
// are not checked, so rotating keys means replacing files, not renewing
// certificates. Errors never quote the input.
func ParsePublic(data []byte) ([]crypto.PublicKey, error) {
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
	return Admit(pub)
}

func parseDERPublicKey(der []byte) (crypto.PublicKey, error) {
	if cert, err := x509.ParseCertificate(der); err == nil {
		if cert.PublicKey == nil {
			return nil, fmt.Errorf("der certificate has an unsupported public key algorithm %v", cert.PublicKeyAlgorithm)
		}
		return Admit(cert.PublicKey)
	}
	if pub, err := x509.ParsePKIXPublicKey(der); err == nil {
		return Admit(pub)
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

// LoadFiles reads and parses each file with ParsePublic and returns
// all their keys, without kid, in file order. An error names the file.
func LoadFiles(paths ...string) (Static, error) {
	if len(paths) == 0 {
		return nil, errors.New("no key files given")
	}
	var keys Static
	for _, p := range paths {
		data, err := readKeyFile(p)
		if err != nil {
			return nil, err
		}
		pubs, err := ParsePublic(data)
		if err != nil {
			return nil, fmt.Errorf("key file %s: %w", p, err)
		}
		for _, pub := range pubs {
			keys = append(keys, Key{Public: pub})
		}
	}
	return keys, nil
}

// ParsePrivate returns the private key in PEM data: a PRIVATE KEY
// (PKCS #8), RSA PRIVATE KEY (PKCS #1) or EC PRIVATE KEY (SEC 1) block, of
// the same families ParsePublic accepts. Other blocks, such as the EC
// PARAMETERS block openssl writes before an EC key or a certificate kept
// in the same file, are skipped; exactly one private key must be present.
// Errors never quote the input.
func ParsePrivate(data []byte) (crypto.Signer, error) {
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
	if _, err := Admit(signer.Public()); err != nil {
		return nil, err
	}
	return signer, nil
}

// LoadPrivate reads a PEM private key file and parses it with
// ParsePrivate. Errors name the file, never its content.
func LoadPrivate(path string) (crypto.Signer, error) {
	data, err := readKeyFile(path)
	if err != nil {
		return nil, err
	}
	key, err := ParsePrivate(data)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return key, nil
}

func readKeyFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		// The *PathError already carries the path, which the prefix
		// names; keep only the cause to avoid saying it twice.
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return data, nil
}
