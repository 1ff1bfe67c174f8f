package caddymodule

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

// b64 is base64url without padding, the encoding of every JWS part.
func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// rawJWS signs header and payload exactly as given, byte for byte, with
// RS256 and key. go-jose (keys.Sign) would re-encode the claims, which is
// right for a real issuer and wrong for a test that must send what no
// encoder writes: lone surrogate escapes, duplicate keys, odd numbers.
func rawJWS(t testing.TB, key *rsa.PrivateKey, header, payload string) string {
	t.Helper()
	input := b64([]byte(header)) + "." + b64([]byte(payload))
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + b64(sig)
}

// rawClaims is the JSON of a valid assertion's claims for the fixture's
// issuer and aud, with fresh iat, exp and jti, followed by more members
// given as raw JSON text (",\"k\":v..."), so that a test controls every
// byte of what it adds.
func rawClaims(aud, more string) string {
	now := time.Now().Unix()
	jti, _ := json.Marshal(rand.Text())
	a, _ := json.Marshal(aud)
	return fmt.Sprintf(`{"iss":%q,"sub":"alice","aud":%s,"iat":%d,"exp":%d,"jti":%s%s}`, testIdP, a, now, now+300, jti, more)
}

const rs256Header = `{"alg":"RS256","typ":"JWT"}`
