package keys_test

import (
	"crypto/ed25519"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/keys"
)

func TestOnlyAsymmetricAlgorithmsAreInTheTable(t *testing.T) {
	for _, alg := range keys.DefaultAlgorithms {
		if !keys.IsAsymmetric(alg) {
			t.Errorf("default algorithm %q is not in the table", alg)
		}
	}
	for _, alg := range []string{"", "none", "HS256", "HS384", "HS512", "RSA-OAEP", "A128KW", "Ed25519", "rs256", "eddsa"} {
		if keys.IsAsymmetric(alg) {
			t.Errorf("%q is in the table", alg)
		}
	}
	want := []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
	if !slices.Equal(keys.DefaultAlgorithms, want) {
		t.Errorf("DefaultAlgorithms = %q, want %q", keys.DefaultAlgorithms, want)
	}
}

func TestAlgorithmFitsOnlyItsKeyTypeAndCurve(t *testing.T) {
	fams := kfTestKeys(t)
	fits := map[string][]string{
		"rsa2048": {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"},
		"p256":    {"ES256"},
		"p384":    {"ES384"},
		"p521":    {"ES512"},
		"ed25519": {"EdDSA"},
	}
	for _, fam := range fams {
		for _, alg := range append(slices.Clone(keys.DefaultAlgorithms), "HS256", "none", "Ed25519") {
			want := slices.Contains(fits[fam.name], alg)
			if got := keys.Fits(alg, fam.key.Public()); got != want {
				t.Errorf("Fits(%s, %s) = %v, want %v", alg, fam.name, got, want)
			}
		}
	}
	ed := fams[4].key.Public().(ed25519.PublicKey)
	if !keys.Fits("EdDSA", &ed) {
		t.Error("an ed25519 key by pointer does not fit EdDSA")
	}
	if keys.Fits("RS256", []byte("secret")) || keys.Fits("RS256", nil) {
		t.Error("a symmetric or absent key fits RS256")
	}
}

func TestKeyVerifiesOnlyItsOwnAlgWhenItHasOne(t *testing.T) {
	rsaPub := kfTestKeys(t)[0].key.Public()
	for _, tc := range []struct {
		name string
		key  keys.Key
		alg  string
		want bool
	}{
		{"no alg, fitting type", keys.Key{Public: rsaPub}, "PS384", true},
		{"no alg, other type", keys.Key{Public: rsaPub}, "ES256", false},
		{"own alg", keys.Key{Public: rsaPub, Alg: "RS256"}, "RS256", true},
		{"another alg of the same type", keys.Key{Public: rsaPub, Alg: "RS256"}, "PS256", false},
		{"own alg that does not fit", keys.Key{Public: rsaPub, Alg: "ES256"}, "ES256", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.key.Verifies(tc.alg); got != tc.want {
				t.Errorf("Verifies(%s) = %v, want %v", tc.alg, got, tc.want)
			}
		})
	}
}

func TestSignatureAlgorithmsDropWhatIsNotInTheTable(t *testing.T) {
	got := keys.SignatureAlgorithms([]string{"ES256", "HS256", "none", "EdDSA", "Ed25519"})
	if want := []jose.SignatureAlgorithm{jose.ES256, jose.EdDSA}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestGeneratedKeySignsByDefaultWithItsAlgorithm(t *testing.T) {
	if got, want := keys.KeyAlgorithms(), []string{"RS256", "ES256", "ES384", "ES512", "EdDSA"}; !slices.Equal(got, want) {
		t.Fatalf("KeyAlgorithms = %q, want %q", got, want)
	}
	for _, alg := range keys.KeyAlgorithms() {
		t.Run(alg, func(t *testing.T) {
			key, err := keys.GenerateKey(alg)
			if err != nil {
				t.Fatal(err)
			}
			if got := keys.DefaultAlg(key); got != alg {
				t.Errorf("DefaultAlg = %q, want %q", got, alg)
			}
			if _, err := keys.Admit(key.Public()); err != nil {
				t.Errorf("generated key not admitted: %v", err)
			}
		})
	}
	for _, alg := range []string{"PS256", "RS512", "HS256", "es256", ""} {
		if _, err := keys.GenerateKey(alg); err == nil {
			t.Errorf("GenerateKey(%q) made a key whose default algorithm is another", alg)
		}
	}
}

func TestAdmitNormalisesEd25519Pointers(t *testing.T) {
	ed := kfTestKeys(t)[4].key.Public().(ed25519.PublicKey)
	got, err := keys.Admit(&ed)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := got.(ed25519.PublicKey); !ok {
		t.Errorf("Admit(*ed25519.PublicKey) = %T, want ed25519.PublicKey", got)
	}
	var nilEd *ed25519.PublicKey
	if _, err := keys.Admit(nilEd); err == nil {
		t.Error("nil *ed25519.PublicKey admitted")
	}
}

func TestPublicJWKIsThePublicHalfNamedByThumbprint(t *testing.T) {
	for _, fam := range kfTestKeys(t) {
		t.Run(fam.name, func(t *testing.T) {
			jwk, err := keys.PublicJWK(fam.key)
			if err != nil {
				t.Fatal(err)
			}
			kid, err := keys.Thumbprint(fam.key)
			if err != nil {
				t.Fatal(err)
			}
			if jwk.KeyID != kid || jwk.Algorithm != fam.alg || jwk.Use != "sig" || !jwk.IsPublic() {
				t.Errorf("jwk kid %q alg %q use %q public %v, want %q %q sig true", jwk.KeyID, jwk.Algorithm, jwk.Use, jwk.IsPublic(), kid, fam.alg)
			}
			b, err := json.Marshal(jwk)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(b), `"d"`) {
				t.Error("published jwk carries private material")
			}
		})
	}
	if _, err := keys.PublicJWK(nil); err == nil {
		t.Error("PublicJWK(nil) succeeded")
	}
}
