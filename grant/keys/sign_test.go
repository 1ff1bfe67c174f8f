package keys_test

import (
	"crypto"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"io"
	"reflect"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/keys"
)

// sgHeader decodes the protected header of a compact JWS.
func sgHeader(t *testing.T, compact string) map[string]any {
	t.Helper()
	parts := strings.Split(compact, ".")
	if len(parts) != 3 {
		t.Fatalf("compact jws has %d parts, want 3", len(parts))
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		t.Fatalf("header encoding: %v", err)
	}
	var h map[string]any
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatalf("header json: %v", err)
	}
	return h
}

func TestSignVerifiesWithThePublicKeyForEveryFittingAlgorithm(t *testing.T) {
	fams := kfTestKeys(t)
	claims := map[string]any{"iss": "https://idp.example", "sub": "alice", "aud": []any{"a", "b"}, "exp": float64(2000000000)}
	type tc struct {
		name, alg string
		key       crypto.Signer
	}
	cases := []tc{}
	for _, fam := range fams {
		cases = append(cases, tc{fam.name + "/" + fam.alg, fam.alg, fam.key})
	}
	for _, alg := range []string{"RS384", "RS512", "PS256", "PS384", "PS512"} {
		cases = append(cases, tc{"rsa2048/" + alg, alg, fams[0].key})
	}
	edPtr := fams[4].key.(ed25519.PrivateKey)
	cases = append(cases, tc{"ed25519 by pointer/EdDSA", "EdDSA", &edPtr})

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			compact, err := keys.Sign(c.key, c.alg, "kid-1", "JWT", claims)
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			jws, err := jose.ParseSigned(compact, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(c.alg)})
			if err != nil {
				t.Fatalf("ParseSigned: %v", err)
			}
			payload, err := jws.Verify(c.key.Public())
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			var got map[string]any
			if err := json.Unmarshal(payload, &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, claims) {
				t.Errorf("payload %v, want %v", got, claims)
			}
			want := map[string]any{"alg": c.alg, "kid": "kid-1", "typ": "JWT"}
			if h := sgHeader(t, compact); !reflect.DeepEqual(h, want) {
				t.Errorf("header %v, want exactly %v", h, want)
			}
		})
	}
}

func TestSignOmitsEmptyKIDAndTyp(t *testing.T) {
	fams := kfTestKeys(t)
	for _, tc := range []struct {
		name, kid, typ string
		want           map[string]any
	}{
		{"neither", "", "", map[string]any{"alg": "ES256"}},
		{"typ only", "", "at+jwt", map[string]any{"alg": "ES256", "typ": "at+jwt"}},
		{"kid only", "k", "", map[string]any{"alg": "ES256", "kid": "k"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			compact, err := keys.Sign(fams[1].key, "ES256", tc.kid, tc.typ, map[string]string{"sub": "x"})
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			if h := sgHeader(t, compact); !reflect.DeepEqual(h, tc.want) {
				t.Errorf("header %v, want exactly %v", h, tc.want)
			}
		})
	}
}

// sgForeignSigner is a crypto.Signer of a type go-jose cannot use.
type sgForeignSigner struct{ inner crypto.Signer }

func (s sgForeignSigner) Public() crypto.PublicKey { return s.inner.Public() }
func (s sgForeignSigner) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	return s.inner.Sign(r, d, o)
}

func TestSignRejectsAlgorithmsThatDoNotFitTheKey(t *testing.T) {
	fams := kfTestKeys(t)
	rsaKey, p256, p384, p521, ed := fams[0].key, fams[1].key, fams[2].key, fams[3].key, fams[4].key
	for _, tc := range []struct {
		name, alg string
		key       crypto.Signer
	}{
		{"es256 with rsa", "ES256", rsaKey},
		{"eddsa with rsa", "EdDSA", rsaKey},
		{"hs256 with rsa", "HS256", rsaKey},
		{"none with rsa", "none", rsaKey},
		{"empty alg", "", rsaKey},
		{"rs256 with p-256", "RS256", p256},
		{"es384 with p-256", "ES384", p256},
		{"es256 with p-384", "ES256", p384},
		{"es384 with p-521", "ES384", p521},
		{"es256 with ed25519", "ES256", ed},
		{"lowercase eddsa", "eddsa", ed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			compact, err := keys.Sign(tc.key, tc.alg, "", "JWT", map[string]any{"sub": "x"})
			if err == nil {
				t.Fatalf("signed %q", compact)
			}
			if !strings.Contains(err.Error(), "does not fit") {
				t.Errorf("error %q does not say the algorithm does not fit", err)
			}
		})
	}
}

func TestSignRejectsBadKeysAndNonObjectClaims(t *testing.T) {
	fams := kfTestKeys(t)
	for _, tc := range []struct {
		name, alg, want string
		key             crypto.Signer
		claims          any
	}{
		{"nil key", "RS256", "no signing key", nil, map[string]any{}},
		{"small rsa key", "RS256", "too small", kfSmallRSA, map[string]any{}},
		{"foreign signer type", "ES256", "unsupported signing key type", sgForeignSigner{fams[1].key}, map[string]any{}},
		{"array claims", "ES256", "json object", fams[1].key, []string{"a"}},
		{"string claims", "ES256", "json object", fams[1].key, "sub"},
		{"nil claims", "ES256", "json object", fams[1].key, nil},
		{"unencodable claims", "ES256", "encoding claims", fams[1].key, map[string]any{"c": make(chan int)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			compact, err := keys.Sign(tc.key, tc.alg, "", "", tc.claims)
			if err == nil {
				t.Fatalf("signed %q", compact)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestSignKeepsClaimValuesExactly(t *testing.T) {
	// go-jose encodes with its own json package; encoding/json values must
	// still come out as the JSON they stand for, and large integers whole.
	fams := kfTestKeys(t)
	claims := map[string]any{
		"raw":  json.RawMessage(`{"groups":["a","b"]}`),
		"big":  json.Number("9007199254740993"),
		"time": 1800000000,
	}
	compact, err := keys.Sign(fams[1].key, "ES256", "", "", claims)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.Split(compact, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"big":9007199254740993,"raw":{"groups":["a","b"]},"time":1800000000}`; string(payload) != want {
		t.Errorf("payload %s, want %s", payload, want)
	}
}
