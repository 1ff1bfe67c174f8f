package keys

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// privateMembers are the JWK members that carry secret key material
// (RFC 7518 §6.2.2, §6.3.2, §6.4.1; RFC 8037 §2 "d"; "priv" of draft
// key types).
var privateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k", "priv"}

// FuzzJWKS parses arbitrary JWKS documents as a fetched body is parsed:
// the result is exactly the keys parseJWK admits one by one, each of them
// a public key of a supported family that fits its own alg, and no key
// whose JWK carries private or symmetric key material is ever admitted.
func FuzzJWKS(f *testing.F) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	rsaKey := jwksRSAKey()
	mk := func(key any, kid, alg, use string) string {
		b, err := jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: alg, Use: use}.MarshalJSON()
		if err != nil {
			f.Fatal(err)
		}
		return string(b)
	}
	doc := func(keys ...string) []byte { return []byte(`{"keys":[` + strings.Join(keys, ",") + `]}`) }
	f.Add(doc(mk(rsaKey.Public(), "r1", "RS256", "sig"), mk(ec.Public(), "e1", "ES256", ""), mk(ed.Public(), "", "EdDSA", "")))
	f.Add(doc(mk(rsaKey, "private", "RS256", "sig"), mk(ec, "", "", ""), mk(ed, "", "", "")))
	f.Add(doc(mk([]byte("0123456789abcdef0123456789abcdef"), "hmac", "HS256", "sig")))
	f.Add(doc(mk(jwksRSA1K().Public(), "small", "", ""), mk(ec.Public(), "wrong-alg", "RS256", ""), mk(ec.Public(), "enc", "", "enc")))
	f.Add(doc(mk(ed.Public(), "", "Ed25519", ""), `{"kty":"OKP","crv":"X25519","x":"AAAA"}`, `null`, `1`, `{}`))
	f.Add([]byte(`{"keys":{}}`))
	f.Add([]byte(`{"KEYS":[],"keys":null}`))

	r := NewRemote(RemoteConfig{URL: "https://idp.example/jwks"})
	f.Fuzz(func(t *testing.T, body []byte) {
		got, err := r.parse(body)
		var doc struct {
			Keys []json.RawMessage `json:"keys"`
		}
		if json.Unmarshal(body, &doc) != nil {
			if err == nil {
				t.Fatal("parsed a body that is not a JWKS document")
			}
			return
		}
		var want []Key
		for _, raw := range doc.Keys {
			k, skip, _ := parseJWK(raw)
			if carriesSecret(raw) && skip == "" {
				t.Fatalf("admitted a key with private or symmetric material: %s", raw)
			}
			if skip == "" {
				checkAdmittedKey(t, k, raw)
				want = append(want, k)
			}
		}
		switch {
		case len(want) == 0 && err == nil:
			t.Fatal("a document without usable keys parsed")
		case len(want) > 0 && (err != nil || !reflect.DeepEqual(got, want)):
			t.Fatalf("parse gave %v, %v; its keys one by one give %v", got, err, want)
		}
	})
}

// carriesSecret reports whether a JWK has a member of secret material or
// is of the symmetric key type, under any spelling a JSON decoder that
// folds case would read.
func carriesSecret(raw json.RawMessage) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return false
	}
	for name, v := range m {
		lower := strings.ToLower(name)
		for _, p := range privateMembers {
			if lower == p {
				return true
			}
		}
		if lower == "kty" && strings.EqualFold(strings.Trim(string(v), `"`), "oct") {
			return true
		}
	}
	return false
}

// checkAdmittedKey: an admitted key is the public key of a family Admit
// allows, and fits its own alg when it has one.
func checkAdmittedKey(t *testing.T, k Key, raw json.RawMessage) {
	t.Helper()
	switch pub := k.Public.(type) {
	case *rsa.PublicKey:
		if pub.N.BitLen() < MinRSABits {
			t.Fatalf("admitted an RSA key of %d bits: %s", pub.N.BitLen(), raw)
		}
	case *ecdsa.PublicKey:
		if c := pub.Curve; c != elliptic.P256() && c != elliptic.P384() && c != elliptic.P521() {
			t.Fatalf("admitted an EC key on %s: %s", c.Params().Name, raw)
		}
	case ed25519.PublicKey:
		if len(pub) != ed25519.PublicKeySize {
			t.Fatalf("admitted an Ed25519 key of %d bytes", len(pub))
		}
	default:
		t.Fatalf("admitted a %T: %s", k.Public, raw)
	}
	if k.Alg != "" && !Fits(k.Alg, k.Public) {
		t.Fatalf("admitted a key with alg %q that does not fit it: %s", k.Alg, raw)
	}
}
