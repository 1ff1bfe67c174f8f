package grant

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/keys"
)

// fuzzKeys are the issuer's keys while fuzzing: a P-256 and an Ed25519
// key, no RSA key, because every fuzz worker process makes its own and
// RSA key generation under the fuzzer's instrumentation takes a minute.
type fuzzKeySet struct {
	p256 *ecdsa.PrivateKey
	ed   ed25519.PrivateKey
}

var fuzzKeys = sync.OnceValue(func() fuzzKeySet {
	p256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	return fuzzKeySet{p256, ed}
})

// fuzzIssuer trusts both fuzzKeys, without kids, so that an assertion of
// either family reaches a signature check whatever its kid.
func fuzzIssuer() *Issuer {
	k := fuzzKeys()
	return testIssuer(keys.Key{Public: k.p256.Public()}, keys.Key{Public: k.ed.Public()})
}

// fuzzPolicy requires jti, so that check 10 has a branch to take.
func fuzzPolicy() Policy {
	pol := DefaultPolicy()
	pol.RequireJTI = true
	return pol
}

// FuzzAssertion drives checks 1 to 10 with two inputs: raw, a string
// taken as the assertion as it is (mutations of a signed seed break its
// signature, so this explores check 1 and the refusal paths), and header
// and payload, which are signed here with the trusted P-256 key (so that
// mutations of the claims and header reach checks 2 to 10 with a good
// signature).
func FuzzAssertion(f *testing.F) {
	claims, _ := json.Marshal(baseClaims())
	f.Add(sign(f, fuzzKeys().ed, "EdDSA", "", baseClaims()), []byte(`{}`), claims)
	f.Add(sign(f, fuzzKeys().p256, "ES256", "k1", baseClaims()), []byte(`{"kid":"k1","typ":"JWT"}`), claims)
	f.Add("eyJhbGciOiJub25lIn0.e30.", []byte(`{"crit":["exp"],"exp":1}`), []byte(`{"iss":"idp","sub":1}`))
	f.Add("a.b.c", []byte(`{"b64":false}`), []byte(`{"iss":"idp","aud":["x","https://as.example"],"exp":"1"}`))
	f.Add("", []byte(`{"jwk":{"kty":"oct","k":"AA"}}`), []byte(`{"iss":"idp"}}`))
	f.Add(strings.Repeat("A", maxAssertionSize+1), []byte(`null`), []byte(`[]`))

	is, pol := fuzzIssuer(), fuzzPolicy()
	f.Fuzz(func(t *testing.T, raw string, header, payload []byte) {
		checkAssertionProperties(t, is, pol, raw)
		if signed, ok := fuzzSign(header, payload); ok {
			checkAssertionProperties(t, is, pol, signed)
		}
	})
}

// fuzzSign signs payload as it is with the trusted P-256 key, with the
// members of header, when it is a JSON object, as extra protected header
// members. ok is false when go-jose refuses to sign.
func fuzzSign(header, payload []byte) (string, bool) {
	var extra map[string]any
	if json.Unmarshal(header, &extra) != nil {
		extra = nil
	}
	opts := &jose.SignerOptions{}
	for k, v := range extra {
		if k == "alg" {
			continue // go-jose sets it from the key
		}
		opts.WithHeader(jose.HeaderKey(k), v)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: fuzzKeys().p256}, opts)
	if err != nil {
		return "", false
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", false
	}
	s, err := jws.CompactSerialize()
	return s, err == nil
}

// checkAssertionProperties runs checks 1 to 10 on raw and fails t when
// a property every answer must have does not hold.
func checkAssertionProperties(t *testing.T, is *Issuer, pol Policy, raw string) {
	t.Helper()
	p, oerr := parseJWT(raw, assertionError)
	if oerr != nil {
		wantAssertionRefusal(t, raw, oerr)
		return
	}
	checkParsedClaims(t, raw, p)
	issuer, oerr := checkIssuer(p, &Tenant{Issuers: map[string]*Issuer{is.Issuer: is}})
	if oerr != nil {
		wantAssertionRefusal(t, raw, oerr)
		if p.iss == is.Issuer {
			t.Fatalf("iss %q is trusted but check 2 refused it: %v", p.iss, oerr)
		}
		return
	}
	s := &Server{cfg: Config{Policy: pol}, audiences: testAudiences}
	a, oerr := s.validateAssertion(context.Background(), p, issuer, testNow)
	if oerr != nil {
		wantAssertionRefusal(t, raw, oerr)
		return
	}
	checkAccepted(t, raw, p, a, pol)
}

// checkParsedClaims: a parsed assertion's claims are exactly what its
// payload segment decodes to, and its header is one go-jose accepts for
// an asymmetric algorithm with none of the members check 1 refuses.
func checkParsedClaims(t *testing.T, raw string, p *signedJWT) {
	t.Helper()
	segs := strings.Split(raw, ".")
	if len(segs) != 3 {
		t.Fatalf("parsed an assertion of %d segments", len(segs))
	}
	payload, err := base64.RawURLEncoding.Strict().DecodeString(segs[1])
	if err != nil {
		t.Fatalf("parsed an assertion whose payload is not strict base64url: %v", err)
	}
	var want map[string]json.RawMessage
	if err := json.Unmarshal(payload, &want); err != nil || want == nil {
		t.Fatalf("parsed an assertion whose payload is not a JSON object: %v", err)
	}
	if !reflect.DeepEqual(p.claims, want) {
		t.Fatalf("claims %v do not round-trip the payload %v", p.claims, want)
	}
	var iss string
	if raw, ok := want["iss"]; ok && json.Unmarshal(raw, &iss) == nil && iss != p.iss {
		t.Fatalf("iss %q, payload says %q", p.iss, iss)
	}
	for _, m := range []string{"crit", "b64", "enc", "zip"} {
		if _, ok := p.header.ExtraHeaders[jose.HeaderKey(m)]; ok {
			t.Fatalf("parsed an assertion with a %s header member", m)
		}
	}
	switch alg := p.header.Algorithm; {
	case alg == "" || strings.EqualFold(alg, "none") || strings.HasPrefix(strings.ToUpper(alg), "HS"):
		t.Fatalf("parsed an assertion with alg %q", alg)
	}
}

// checkAccepted: an accepted assertion is signed by a configured key and
// every claim the checks read says what the checks allowed.
func checkAccepted(t *testing.T, raw string, p *signedJWT, a *verifiedAssertion, pol Policy) {
	t.Helper()
	jws, err := jose.ParseSignedCompact(raw, signatureAlgorithms)
	if err != nil {
		t.Fatalf("accepted an assertion go-jose cannot parse: %v", err)
	}
	k := fuzzKeys()
	_, errEC := jws.Verify(k.p256.Public())
	_, errEd := jws.Verify(k.ed.Public())
	if errEC != nil && errEd != nil {
		t.Fatalf("accepted an assertion no configured key signed: %v, %v", errEC, errEd)
	}
	// Decoded apart from parseJWT: a map, because a struct would match
	// member names case-insensitively.
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(raw, ".")[1])
	var m map[string]json.RawMessage
	if err := json.Unmarshal(payload, &m); err != nil {
		t.Fatalf("accepted claims that do not decode: %v", err)
	}
	var (
		sub, jti string
		expF     float64
		aud      josejwt.Audience
	)
	_ = json.Unmarshal(m["sub"], &sub)
	_ = json.Unmarshal(m["jti"], &jti)
	_ = json.Unmarshal(m["exp"], &expF)
	_ = json.Unmarshal(m["aud"], &aud)
	exp := time.Unix(int64(expF), 0)
	switch {
	case a.Subject == "" || a.Subject != sub:
		t.Fatalf("accepted subject %q, claim %q", a.Subject, sub)
	case !testNow.Add(-pol.ClockSkew).Before(exp):
		t.Fatalf("accepted exp %v at %v", exp, testNow)
	case exp.Sub(testNow) > pol.MaxAssertionLifetime+pol.ClockSkew:
		t.Fatalf("accepted exp %v, beyond the lifetime bound", exp)
	case jti == "" || a.Mark == nil:
		t.Fatalf("accepted without a jti although it is required (jti %q)", jti)
	case a.Mark.Key != replayMarkKey("grant", "", a.Issuer.Issuer, jti):
		t.Fatalf("replay mark is not the jti's")
	case a.Mark.Until.Before(exp):
		t.Fatalf("replay mark expires at %v, before exp %v", a.Mark.Until, exp)
	case !slices.ContainsFunc(aud, func(s string) bool { return slices.Contains(testAudiences, s) }):
		t.Fatalf("accepted aud %v", aud)
	}
	if _, ok := p.claims["exp"]; !ok {
		t.Fatal("accepted without exp")
	}
}

// wantAssertionRefusal: a refused grant assertion is 400 invalid_grant
// with a reason and a description that shows none of the input.
func wantAssertionRefusal(t *testing.T, raw string, e *Error) {
	t.Helper()
	if e.Code != CodeInvalidGrant || e.Status != http.StatusBadRequest || e.Reason == "" ||
		!strings.HasPrefix(e.Description, "assertion ") {
		t.Fatalf("refusal %+v is not a 400 invalid_grant with a reason", e)
	}
	wantNoEcho(t, e.Description, raw)
}

// wantNoEcho fails t when desc contains input or a piece of it: a
// '.'-separated segment, or a string decoded from one. A piece is judged
// only when it is longer than any word of a fixed description and holds
// no blank, so that a fixed description can never match it.
func wantNoEcho(t *testing.T, desc, input string) {
	t.Helper()
	const minEcho = 12 // longer than any word of a fixed description
	pieces := []string{input}
	for _, seg := range strings.Split(input, ".") {
		pieces = append(pieces, seg)
		if b, err := base64.RawURLEncoding.DecodeString(seg); err == nil {
			pieces = append(pieces, string(b))
			var m map[string]any
			if json.Unmarshal(b, &m) == nil {
				for _, v := range m {
					if s, ok := v.(string); ok {
						pieces = append(pieces, s)
					}
				}
			}
		}
	}
	for _, p := range pieces {
		if len(p) >= minEcho && !strings.Contains(p, " ") && strings.Contains(desc, p) {
			t.Fatalf("description %q echoes the input %q", desc, p)
		}
	}
}
