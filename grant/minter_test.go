package grant

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/keys"
)

// jmRecord is a complete access token record as issue() hands it to a
// Minter.
func jmRecord() *AccessRecord {
	return &AccessRecord{
		TokenRecord: TokenRecord{
			V:            RecordVersion,
			Sub:          "alice",
			ClientID:     "app",
			Scope:        "read write",
			Aud:          []string{"api"},
			Iss:          testIssuerURL,
			AssertionIss: "idp",
			Iat:          testNow.Unix(),
			Exp:          testNow.Unix() + 3600,
			Tenant:       "acme.example",
			Claims:       map[string]json.RawMessage{"email": json.RawMessage(`"alice@example.com"`)},
		},
	}
}

// jmVerify verifies token with the minter's published keys, as a resource
// server would, and returns its header and claims.
func jmVerify(t *testing.T, pub []jose.JSONWebKey, token string) (jose.Header, map[string]any) {
	t.Helper()
	algs := []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.ES384, jose.ES512, jose.EdDSA}
	jws, err := jose.ParseSigned(token, algs)
	if err != nil {
		t.Fatalf("parsing token: %v", err)
	}
	hdr := jws.Signatures[0].Header
	set := jose.JSONWebKeySet{Keys: pub}
	keys := set.Key(hdr.KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %q names %d published keys, want 1", hdr.KeyID, len(keys))
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		t.Fatalf("token does not verify with the published key: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	return hdr, claims
}

func TestJWTMinterSignsWithTheDefaultAlgorithmOfItsKey(t *testing.T) {
	p521, err := ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		key  crypto.Signer
		alg  string
	}{
		{"rsa", testKeys().rsa, "RS256"},
		{"p256", testKeys().p256, "ES256"},
		{"p384", testKeys().p384, "ES384"},
		{"p521", p521, "ES512"},
		{"ed25519", testKeys().ed, "EdDSA"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := NewJWTMinter(tc.key)
			if err != nil {
				t.Fatal(err)
			}
			tok, err := m.Mint(jmRecord())
			if err != nil {
				t.Fatal(err)
			}
			hdr, _ := jmVerify(t, m.PublicJWKs(), tok)
			kid, _ := keys.Thumbprint(tc.key)
			if hdr.Algorithm != tc.alg || m.Algorithm() != tc.alg {
				t.Errorf("alg = %q (minter %q), want %q", hdr.Algorithm, m.Algorithm(), tc.alg)
			}
			if hdr.KeyID != kid || m.KeyID() != kid {
				t.Errorf("kid = %q, want the key's thumbprint %q", hdr.KeyID, kid)
			}
			if typ := hdr.ExtraHeaders[jose.HeaderType]; typ != accessTokenJWTType {
				t.Errorf("typ = %v, want %q", typ, accessTokenJWTType)
			}
			pub := m.PublicJWKs()
			if len(pub) != 1 || pub[0].Use != "sig" || pub[0].Algorithm != tc.alg || pub[0].KeyID != kid || !pub[0].IsPublic() {
				t.Errorf("published key = %+v, want one public sig key with kid and alg", pub)
			}
		})
	}
}

func TestJWTMinterClaimsAreExactlyTheRecordsRegisteredAndCopiedClaims(t *testing.T) {
	m, err := NewJWTMinter(testKeys().p256)
	if err != nil {
		t.Fatal(err)
	}
	rec := jmRecord()
	tok, err := m.Mint(rec)
	if err != nil {
		t.Fatal(err)
	}
	if rec.JTI == "" {
		t.Fatal("Mint did not set the record's JTI")
	}
	_, got := jmVerify(t, m.PublicJWKs(), tok)
	want := map[string]any{
		"iss": testIssuerURL, "sub": "alice", "aud": "api", "client_id": "app",
		"scope": "read write", "iat": float64(rec.Iat), "exp": float64(rec.Exp),
		"jti": rec.JTI, "tenant": "acme.example", "email": "alice@example.com",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("claims =\n%v\nwant\n%v", got, want)
	}
}

func TestJWTMinterRules(t *testing.T) {
	m, err := NewJWTMinter(testKeys().rsa)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*AccessRecord)
		check  func(t *testing.T, claims map[string]any)
	}{
		{"empty scope is omitted", func(r *AccessRecord) { r.Scope = "" }, func(t *testing.T, c map[string]any) {
			if _, ok := c["scope"]; ok {
				t.Errorf("scope = %v, want absent", c["scope"])
			}
		}},
		{"top-level tenant is omitted", func(r *AccessRecord) { r.Tenant = "" }, func(t *testing.T, c map[string]any) {
			if _, ok := c["tenant"]; ok {
				t.Errorf("tenant = %v, want absent", c["tenant"])
			}
		}},
		{"several audiences are an array", func(r *AccessRecord) { r.Aud = []string{"a", "b"} }, func(t *testing.T, c map[string]any) {
			if !reflect.DeepEqual(c["aud"], []any{"a", "b"}) {
				t.Errorf("aud = %v, want [a b]", c["aud"])
			}
		}},
		{"copied claims never override registered ones", func(r *AccessRecord) {
			for _, name := range []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "client_id", "scope", "cnf"} {
				r.Claims[name] = json.RawMessage(`"forged"`)
			}
		}, func(t *testing.T, c map[string]any) {
			for name, v := range c {
				if v == "forged" {
					t.Errorf("copied claim %q replaced the token's own", name)
				}
			}
			for _, name := range []string{"nbf", "cnf"} {
				if _, ok := c[name]; ok {
					t.Errorf("copied claim %q is in the token", name)
				}
			}
		}},
		{"a copied tenant claim does not pose as the top level's tenant", func(r *AccessRecord) {
			r.Tenant = ""
			r.Claims["tenant"] = json.RawMessage(`"other.example"`)
		}, func(t *testing.T, c map[string]any) {
			if _, ok := c["tenant"]; ok {
				t.Errorf("tenant = %v, want absent", c["tenant"])
			}
		}},
		{"copied claims keep their JSON type", func(r *AccessRecord) {
			r.Claims["groups"] = json.RawMessage(`["a",{"b":1}]`)
		}, func(t *testing.T, c map[string]any) {
			if !reflect.DeepEqual(c["groups"], []any{"a", map[string]any{"b": float64(1)}}) {
				t.Errorf("groups = %#v", c["groups"])
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := jmRecord()
			tc.mutate(rec)
			tok, err := m.Mint(rec)
			if err != nil {
				t.Fatal(err)
			}
			_, claims := jmVerify(t, m.PublicJWKs(), tok)
			tc.check(t, claims)
		})
	}
}

func TestJWTMinterJTIIsFreshForEveryToken(t *testing.T) {
	m, err := NewJWTMinter(testKeys().ed)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for range 50 {
		rec := jmRecord()
		if _, err := m.Mint(rec); err != nil {
			t.Fatal(err)
		}
		if seen[rec.JTI] || len(rec.JTI) < 22 {
			t.Fatalf("jti %q repeated or shorter than 128 bits", rec.JTI)
		}
		seen[rec.JTI] = true
	}
}

func TestJWTMintersWithTheSameKeyMakeInterchangeableTokens(t *testing.T) {
	a, err := NewJWTMinter(testKeys().rsa)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewJWTMinter(testKeys().rsa)
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewJWTMinter(testKeys().rsa2)
	if err != nil {
		t.Fatal(err)
	}
	if a.KeyID() != b.KeyID() || a.KeyID() == other.KeyID() {
		t.Fatalf("kids %q, %q (same key), %q (other key): want equal for the same key only", a.KeyID(), b.KeyID(), other.KeyID())
	}
	tok, err := b.Mint(jmRecord())
	if err != nil {
		t.Fatal(err)
	}
	jmVerify(t, a.PublicJWKs(), tok)
}

func TestLoadJWTMinterErrorsNameTheFileNeverTheKey(t *testing.T) {
	dir := t.TempDir()
	der, err := x509.MarshalPKCS8PrivateKey(testKeys().p256)
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(testKeys().p256.Public())
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.key", keyPEM)
	if m, err := LoadJWTMinter(good); err != nil || m.Algorithm() != "ES256" {
		t.Fatalf("LoadJWTMinter(good) = %v, %v", m, err)
	}
	truncated := keyPEM[:len(keyPEM)/2]
	for _, tc := range []struct{ name, path string }{
		{"missing file", filepath.Join(dir, "missing.key")},
		{"not pem", write("garbage.key", []byte("not a key"))},
		{"truncated pem", write("truncated.key", truncated)},
		{"public key only", write("public.pem", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: spki}))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadJWTMinter(tc.path)
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.path) {
				t.Errorf("error %q does not name the file", msg)
			}
			b64 := base64.StdEncoding.EncodeToString(der)
			for _, leak := range []string{b64[20:60], string(truncated[40:80])} {
				if strings.Contains(msg, leak) {
					t.Errorf("error %q quotes key material", msg)
				}
			}
		})
	}
}

// Random tokens and ids are the base64url of 32 and 16 random bytes, in
// full: no padding, no trailing bytes left unwritten.
func TestRandomTokenAndIDEncodeAllTheirBytes(t *testing.T) {
	for _, tc := range []struct {
		f    func() string
		size int
	}{{randomToken, 32}, {randomID, 16}} {
		s := tc.f()
		b, err := base64.RawURLEncoding.Strict().DecodeString(s)
		if err != nil || len(b) != tc.size || len(s) != base64.RawURLEncoding.EncodedLen(tc.size) {
			t.Fatalf("%q: %d bytes, %v", s, len(b), err)
		}
		if s == tc.f() {
			t.Fatal("the same value twice")
		}
	}
}
