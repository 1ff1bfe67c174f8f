package keys_test

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/keys"
)

// kfFamily is one supported key family with a key generated for the test.
type kfFamily struct {
	name string
	key  crypto.Signer
	alg  string
}

var (
	kfOnce     sync.Once
	kfFamilies []kfFamily
	kfSmallRSA *rsa.PrivateKey
)

// kfTestKeys generates, once per test binary, one key per supported family
// plus an RSA key below the minimum size.
func kfTestKeys(t *testing.T) []kfFamily {
	t.Helper()
	kfOnce.Do(func() {
		must := func(k crypto.Signer, err error) crypto.Signer {
			if err != nil {
				panic(err)
			}
			return k
		}
		_, edKey, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
		kfFamilies = []kfFamily{
			{"rsa2048", must(rsa.GenerateKey(rand.Reader, 2048)), "RS256"},
			{"p256", must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader)), "ES256"},
			{"p384", must(ecdsa.GenerateKey(elliptic.P384(), rand.Reader)), "ES384"},
			{"p521", must(ecdsa.GenerateKey(elliptic.P521(), rand.Reader)), "ES512"},
			{"ed25519", edKey, "EdDSA"},
		}
		small, err := rsa.GenerateKey(rand.Reader, 1024)
		if err != nil {
			panic(err)
		}
		kfSmallRSA = small
	})
	return kfFamilies
}

func kfSelfSigned(t *testing.T, key crypto.Signer, cn string) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatalf("create certificate: %v", err)
	}
	return der
}

// kfExpiredCert is a certificate whose validity ended long ago.
func kfExpiredCert(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "expired"},
		NotBefore:    time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:     time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatalf("create certificate: %v", err)
	}
	return der
}

func kfSPKI(t *testing.T, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatalf("marshal spki: %v", err)
	}
	return der
}

func kfPKCS8(t *testing.T, key crypto.Signer) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatalf("marshal pkcs8: %v", err)
	}
	return der
}

func kfPEM(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func kfSamePublic(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

// kfAssertNoKeyMaterial fails when err quotes any part of the input: a
// PEM body line or a run of the DER in hex or base64.
func kfAssertNoKeyMaterial(t *testing.T, err error, input []byte) {
	t.Helper()
	msg := err.Error()
	for line := range strings.SplitSeq(string(input), "\n") {
		line = strings.TrimSpace(line)
		if len(line) >= 16 && !strings.HasPrefix(line, "-----") && strings.Contains(msg, line[:16]) {
			t.Errorf("error %q quotes the input", msg)
		}
	}
	if len(input) >= 32 {
		chunk := input[len(input)/2 : len(input)/2+12]
		for _, enc := range []string{hex.EncodeToString(chunk), base64.StdEncoding.EncodeToString(chunk), string(chunk)} {
			if strings.Contains(msg, enc) {
				t.Errorf("error %q quotes the input", msg)
			}
		}
	}
}

func TestParsePublicAcceptsEveryFormOfEverySupportedFamily(t *testing.T) {
	for _, fam := range kfTestKeys(t) {
		cert := kfSelfSigned(t, fam.key, fam.name)
		spki := kfSPKI(t, fam.key.Public())
		forms := []struct {
			name string
			data []byte
		}{
			{"pem certificate", kfPEM("CERTIFICATE", cert)},
			{"pem public key", kfPEM("PUBLIC KEY", spki)},
			{"der certificate", cert},
			{"der spki", spki},
			{"pem certificate with surrounding text", append(append([]byte("subject=CN = x\nissuer=CN = x\n"), kfPEM("CERTIFICATE", cert)...), "trailing note\n"...)},
			{"pem certificate with crlf line ends", []byte(strings.ReplaceAll(string(kfPEM("CERTIFICATE", cert)), "\n", "\r\n"))},
			{"expired pem certificate", kfPEM("CERTIFICATE", kfExpiredCert(t, fam.key))},
		}
		if rk, ok := fam.key.Public().(*rsa.PublicKey); ok {
			forms = append(forms, struct {
				name string
				data []byte
			}{"pem rsa public key", kfPEM("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(rk))})
		}
		for _, f := range forms {
			t.Run(fam.name+"/"+f.name, func(t *testing.T) {
				keys, err := keys.ParsePublic(f.data)
				if err != nil {
					t.Fatalf("ParsePublic: %v", err)
				}
				if len(keys) != 1 {
					t.Fatalf("got %d keys, want 1", len(keys))
				}
				if !kfSamePublic(keys[0], fam.key.Public()) {
					t.Fatalf("got key %T that differs from the generated one", keys[0])
				}
			})
		}
	}
}

func TestParsePublicReturnsEveryBlockOfAMultiBlockFileInOrder(t *testing.T) {
	fams := kfTestKeys(t)
	var data []byte
	for i, fam := range fams {
		// Alternate the block types to prove that mixing is allowed.
		if i%2 == 0 {
			data = append(data, kfPEM("CERTIFICATE", kfSelfSigned(t, fam.key, fam.name))...)
		} else {
			data = append(data, kfPEM("PUBLIC KEY", kfSPKI(t, fam.key.Public()))...)
		}
	}
	keys, err := keys.ParsePublic(data)
	if err != nil {
		t.Fatalf("ParsePublic: %v", err)
	}
	if len(keys) != len(fams) {
		t.Fatalf("got %d keys, want %d", len(keys), len(fams))
	}
	for i, fam := range fams {
		if !kfSamePublic(keys[i], fam.key.Public()) {
			t.Errorf("key %d is not the %s key", i, fam.name)
		}
	}
}

func TestParsePublicRejectsRSABelow2048Bits(t *testing.T) {
	kfTestKeys(t)
	cert := kfSelfSigned(t, kfSmallRSA, "small")
	spki := kfSPKI(t, kfSmallRSA.Public())
	for _, tc := range []struct {
		name string
		data []byte
	}{
		{"pem certificate", kfPEM("CERTIFICATE", cert)},
		{"pem public key", kfPEM("PUBLIC KEY", spki)},
		{"pem rsa public key", kfPEM("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&kfSmallRSA.PublicKey))},
		{"der certificate", cert},
		{"der spki", spki},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := keys.ParsePublic(tc.data)
			if err == nil {
				t.Fatal("1024-bit rsa key accepted")
			}
			if !strings.Contains(err.Error(), "1024 bits is too small") || !strings.Contains(err.Error(), "2048") {
				t.Errorf("error %q does not explain the size rule", err)
			}
			kfAssertNoKeyMaterial(t, err, tc.data)
		})
	}
}

func TestParsePublicRejectsPrivateKeysSayingSo(t *testing.T) {
	fams := kfTestKeys(t)
	rsaKey := fams[0].key.(*rsa.PrivateKey)
	ecKey := fams[1].key.(*ecdsa.PrivateKey)
	ecDER, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		data []byte
	}{
		{"pem rsa private key", kfPEM("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey))},
		{"pem ec private key", kfPEM("EC PRIVATE KEY", ecDER)},
		{"pem encrypted private key", kfPEM("ENCRYPTED PRIVATE KEY", []byte("opaque"))},
		{"pem openssh private key", kfPEM("OPENSSH PRIVATE KEY", []byte("opaque"))},
		{"der pkcs1 rsa private key", x509.MarshalPKCS1PrivateKey(rsaKey)},
		{"der ec private key", ecDER},
		{"openssl ecparam output", append(kfPEM("EC PARAMETERS", []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}), kfPEM("EC PRIVATE KEY", ecDER)...)},
		{"certificate followed by its private key", append(kfPEM("CERTIFICATE", kfSelfSigned(t, ecKey, "x")), kfPEM("EC PRIVATE KEY", ecDER)...)},
	}
	for _, fam := range fams {
		pk := kfPKCS8(t, fam.key)
		cases = append(cases,
			struct {
				name string
				data []byte
			}{"pem pkcs8 " + fam.name, kfPEM("PRIVATE KEY", pk)},
			struct {
				name string
				data []byte
			}{"der pkcs8 " + fam.name, pk})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := keys.ParsePublic(tc.data)
			if err == nil {
				t.Fatalf("private key accepted as public: %d keys", len(keys))
			}
			if !strings.Contains(err.Error(), "private key") {
				t.Errorf("error %q does not say a private key was given", err)
			}
			kfAssertNoKeyMaterial(t, err, tc.data)
		})
	}
}

func TestParsePublicRejectsUnsupportedKeysAndGarbage(t *testing.T) {
	fams := kfTestKeys(t)
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	good := kfPEM("CERTIFICATE", kfSelfSigned(t, fams[1].key, "good"))
	goodBody := strings.Split(string(good), "\n")
	truncated := strings.Join(goodBody[:len(goodBody)-2], "\n") + "\n" // END line dropped
	badBase64 := "-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n"
	random := make([]byte, 300)
	if _, err := rand.Read(random); err != nil {
		t.Fatal(err)
	}
	// Random data that happens to open with "{" (after whitespace) is
	// reported as json instead; the first byte rules that out.
	random[0] = 0x30
	for _, tc := range []struct {
		name, want string
		data       []byte
	}{
		{"empty", "no key data", nil},
		{"whitespace", "no key data", []byte(" \n\t\n")},
		{"text", "neither pem nor", []byte("hello, this is not a key")},
		{"random bytes", "neither pem nor", random},
		{"jwks json", "json", []byte(`{"keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}`)},
		{"p-224 ecdsa spki", "unsupported ecdsa curve P-224", kfPEM("PUBLIC KEY", kfSPKI(t, p224.Public()))},
		{"p-224 ecdsa certificate", "unsupported ecdsa curve P-224", kfSelfSigned(t, p224, "p224")},
		{"x25519 spki", "unsupported key type", kfSPKI(t, x25519.PublicKey())},
		{"unsupported pem type", "unsupported pem block type", kfPEM("X509 CRL", []byte("opaque"))},
		{"pem certificate with a corrupt body", "pem block 1 (CERTIFICATE)", kfPEM("CERTIFICATE", []byte("not der"))},
		{"pkcs1 body under a spki label", "pem block 1 (PUBLIC KEY)", kfPEM("PUBLIC KEY", x509.MarshalPKCS1PublicKey(&fams[0].key.(*rsa.PrivateKey).PublicKey))},
		{"truncated pem", "malformed pem", []byte(truncated)},
		{"bad base64 after a good block", "malformed pem", append(append([]byte{}, good...), badBase64...)},
		{"der certificate with trailing bytes", "neither pem nor", append(kfSelfSigned(t, fams[1].key, "x"), 0, 1, 2)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := keys.ParsePublic(tc.data)
			if err == nil {
				t.Fatalf("accepted, got %d keys", len(keys))
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			kfAssertNoKeyMaterial(t, err, tc.data)
		})
	}
}

func TestLoadFilesReturnsKeysOfAllFilesWithoutKID(t *testing.T) {
	fams := kfTestKeys(t)
	dir := t.TempDir()
	a := filepath.Join(dir, "a.pem")
	b := filepath.Join(dir, "b.der")
	chain := append(kfPEM("CERTIFICATE", kfSelfSigned(t, fams[0].key, "a0")), kfPEM("CERTIFICATE", kfSelfSigned(t, fams[1].key, "a1"))...)
	if err := os.WriteFile(a, chain, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b, kfSPKI(t, fams[4].key.Public()), 0o644); err != nil {
		t.Fatal(err)
	}
	keys, err := keys.LoadFiles(a, b)
	if err != nil {
		t.Fatalf("LoadFiles: %v", err)
	}
	want := []crypto.PublicKey{fams[0].key.Public(), fams[1].key.Public(), fams[4].key.Public()}
	if len(keys) != len(want) {
		t.Fatalf("got %d keys, want %d", len(keys), len(want))
	}
	for i, k := range keys {
		if k.KID != "" || k.Alg != "" {
			t.Errorf("key %d has kid %q alg %q, want none", i, k.KID, k.Alg)
		}
		if !kfSamePublic(k.Public, want[i]) {
			t.Errorf("key %d differs from the file's key", i)
		}
	}
	got, err := keys.Keys(t.Context(), "any-kid")
	if err != nil || len(got) != len(want) {
		t.Errorf("Keys(any-kid) = %d keys, %v; want all %d", len(got), err, len(want))
	}
}

func TestLoadFilesErrorsNameTheFile(t *testing.T) {
	fams := kfTestKeys(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "good.pem")
	if err := os.WriteFile(good, kfPEM("PUBLIC KEY", kfSPKI(t, fams[1].key.Public())), 0o644); err != nil {
		t.Fatal(err)
	}
	private := filepath.Join(dir, "oops-private.pem")
	privData := kfPEM("PRIVATE KEY", kfPKCS8(t, fams[1].key))
	if err := os.WriteFile(private, privData, 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	for _, tc := range []struct {
		name  string
		paths []string
		want  []string
	}{
		{"missing file", []string{good, missing}, []string{missing, "no such file"}},
		{"private key file", []string{good, private}, []string{private, "private key"}},
		{"no files", nil, []string{"no key files"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := keys.LoadFiles(tc.paths...)
			if err == nil {
				t.Fatalf("got %d keys, want an error", len(keys))
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if n := strings.Count(err.Error(), filepath.Base(missing)); n > 1 {
				t.Errorf("error %q names the file %d times", err, n)
			}
			kfAssertNoKeyMaterial(t, err, privData)
		})
	}
}

func TestParsePrivateAcceptsEveryPEMFormOfEverySupportedFamily(t *testing.T) {
	for _, fam := range kfTestKeys(t) {
		forms := []struct {
			name string
			data []byte
		}{
			{"pkcs8", kfPEM("PRIVATE KEY", kfPKCS8(t, fam.key))},
			{"pkcs8 after its certificate", append(kfPEM("CERTIFICATE", kfSelfSigned(t, fam.key, "x")), kfPEM("PRIVATE KEY", kfPKCS8(t, fam.key))...)},
		}
		switch k := fam.key.(type) {
		case *rsa.PrivateKey:
			forms = append(forms, struct {
				name string
				data []byte
			}{"pkcs1", kfPEM("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(k))})
		case *ecdsa.PrivateKey:
			der, err := x509.MarshalECPrivateKey(k)
			if err != nil {
				t.Fatal(err)
			}
			// openssl ecparam -genkey writes the curve in its own block first.
			params := kfPEM("EC PARAMETERS", []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07})
			forms = append(forms,
				struct {
					name string
					data []byte
				}{"sec1", kfPEM("EC PRIVATE KEY", der)},
				struct {
					name string
					data []byte
				}{"sec1 after ec parameters", append(params, kfPEM("EC PRIVATE KEY", der)...)})
		}
		for _, f := range forms {
			t.Run(fam.name+"/"+f.name, func(t *testing.T) {
				key, err := keys.ParsePrivate(f.data)
				if err != nil {
					t.Fatalf("ParsePrivate: %v", err)
				}
				if !kfSamePublic(key.Public(), fam.key.Public()) {
					t.Fatal("parsed key differs from the generated one")
				}
			})
		}
	}
}

func TestParsePrivateRejectsWhatCannotSign(t *testing.T) {
	fams := kfTestKeys(t)
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p224DER, err := x509.MarshalECPrivateKey(p224)
	if err != nil {
		t.Fatal(err)
	}
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	x25519DER, err := x509.MarshalPKCS8PrivateKey(x25519)
	if err != nil {
		t.Fatal(err)
	}
	p256 := kfPEM("PRIVATE KEY", kfPKCS8(t, fams[1].key))
	for _, tc := range []struct {
		name, want string
		data       []byte
	}{
		{"empty", "no pem private key", nil},
		{"der pkcs8", "no pem private key", kfPKCS8(t, fams[1].key)},
		{"public key only", "no pem private key", kfPEM("PUBLIC KEY", kfSPKI(t, fams[1].key.Public()))},
		{"certificate only", "no pem private key", kfPEM("CERTIFICATE", kfSelfSigned(t, fams[1].key, "x"))},
		{"two private keys", "more than one private key", append(append([]byte{}, p256...), kfPEM("PRIVATE KEY", kfPKCS8(t, fams[2].key))...)},
		{"encrypted", "encrypted private keys are not supported", kfPEM("ENCRYPTED PRIVATE KEY", []byte("opaque"))},
		{"openssh", "unsupported private key format", kfPEM("OPENSSH PRIVATE KEY", []byte("opaque"))},
		{"small rsa", "1024 bits is too small", kfPEM("PRIVATE KEY", kfPKCS8(t, kfSmallRSA))},
		{"p-224", "unsupported ecdsa curve P-224", kfPEM("EC PRIVATE KEY", p224DER)},
		{"x25519", "unsupported", kfPEM("PRIVATE KEY", x25519DER)},
		{"corrupt body", "pem block 1 (PRIVATE KEY)", kfPEM("PRIVATE KEY", []byte("not der"))},
		{"pkcs1 body under an ec label", "pem block 1 (EC PRIVATE KEY)", kfPEM("EC PRIVATE KEY", x509.MarshalPKCS1PrivateKey(fams[0].key.(*rsa.PrivateKey)))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, err := keys.ParsePrivate(tc.data)
			if err == nil {
				t.Fatalf("accepted a %T", key)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			kfAssertNoKeyMaterial(t, err, tc.data)
		})
	}
}

func TestDefaultAlgFollowsKeyTypeAndCurve(t *testing.T) {
	fams := kfTestKeys(t)
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range fams {
		t.Run(fam.name, func(t *testing.T) {
			if got := keys.DefaultAlg(fam.key.Public()); got != fam.alg {
				t.Errorf("public key: got %q, want %q", got, fam.alg)
			}
			if got := keys.DefaultAlg(fam.key); got != fam.alg {
				t.Errorf("private key: got %q, want %q", got, fam.alg)
			}
		})
	}
	for _, tc := range []struct {
		name string
		pub  crypto.PublicKey
	}{
		{"p-224", p224.Public()},
		{"symmetric", []byte("secret")},
		{"nil", nil},
	} {
		t.Run("unsupported "+tc.name, func(t *testing.T) {
			if got := keys.DefaultAlg(tc.pub); got != "" {
				t.Errorf("got %q, want none", got)
			}
		})
	}
}

func kfB64Int(t *testing.T, s string) *big.Int {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return new(big.Int).SetBytes(b)
}

func TestThumbprintMatchesPublishedRFCVectors(t *testing.T) {
	// RFC 7638 §3.1 (RSA) and RFC 8037 §A.3 (Ed25519).
	rsaKey := &rsa.PublicKey{
		N: kfB64Int(t, "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw"),
		E: 65537,
	}
	edX, err := base64.RawURLEncoding.DecodeString("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		pub  crypto.PublicKey
		want string
	}{
		{"rfc7638 rsa", rsaKey, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"},
		{"rfc8037 ed25519", ed25519.PublicKey(edX), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := keys.Thumbprint(tc.pub)
			if err != nil {
				t.Fatalf("Thumbprint: %v", err)
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func TestThumbprintIsStablePerKeyAndDistinctAcrossKeys(t *testing.T) {
	fams := kfTestKeys(t)
	seen := map[string]string{}
	for _, fam := range fams {
		t.Run(fam.name, func(t *testing.T) {
			pub, err := keys.Thumbprint(fam.key.Public())
			if err != nil {
				t.Fatalf("Thumbprint: %v", err)
			}
			priv, err := keys.Thumbprint(fam.key)
			if err != nil {
				t.Fatalf("Thumbprint(private): %v", err)
			}
			if pub != priv {
				t.Errorf("private key thumbprint %q differs from public %q", priv, pub)
			}
			if len(pub) != 43 || strings.ContainsAny(pub, "+/=") {
				t.Errorf("thumbprint %q is not unpadded base64url of 32 bytes", pub)
			}
			if other, dup := seen[pub]; dup {
				t.Errorf("thumbprint shared with %s", other)
			}
			seen[pub] = fam.name
		})
	}
	kfTestKeys(t)
	if _, err := keys.Thumbprint(&kfSmallRSA.PublicKey); err == nil {
		t.Error("thumbprint of a key the verifier rejects was computed")
	}
}
