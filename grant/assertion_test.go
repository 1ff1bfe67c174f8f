package grant

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/keys"
)

var (
	testNow       = time.Unix(1_800_000_000, 0)
	testIssuerURL = "https://as.example"
	testAudiences = []string{testIssuerURL, testIssuerURL + "/oauth2/token"}
)

// testKeys are generated once per test binary, on first use: RSA key
// generation dominates test time.
var testKeys = sync.OnceValue(func() *testKeySet {
	k := &testKeySet{}
	k.rsa, _ = rsa.GenerateKey(rand.Reader, 2048)
	k.rsa2, _ = rsa.GenerateKey(rand.Reader, 2048)
	k.p256, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k.p384, _ = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, k.ed, _ = ed25519.GenerateKey(rand.Reader)
	return k
})

type testKeySet struct {
	rsa, rsa2 *rsa.PrivateKey
	p256      *ecdsa.PrivateKey
	p384      *ecdsa.PrivateKey
	ed        ed25519.PrivateKey
}

func baseClaims() map[string]any {
	return map[string]any{
		"iss": "idp",
		"sub": "alice",
		"aud": testIssuerURL + "/oauth2/token",
		"exp": testNow.Add(5 * time.Minute).Unix(),
		"iat": testNow.Unix(),
		"jti": "j-1",
	}
}

func sign(t testing.TB, key crypto.Signer, alg, kid string, claims map[string]any) string {
	t.Helper()
	s, err := keys.Sign(key, alg, kid, "JWT", claims)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testIssuer(ks ...keys.Key) *Issuer {
	if ks == nil {
		ks = []keys.Key{{Public: testKeys().rsa.Public()}}
	}
	return &Issuer{Name: "idp-name", Issuer: "idp", Algorithms: keys.DefaultAlgorithms, Keys: keys.Static(ks), Claims: []string{"email"}}
}

func runChecks(t testing.TB, is *Issuer, pol Policy, raw string) (*verifiedAssertion, *Error) {
	t.Helper()
	p, oerr := parseJWT(raw, assertionError)
	if oerr != nil {
		return nil, oerr
	}
	issuer, oerr := checkIssuer(p, &Tenant{Issuers: map[string]*Issuer{is.Issuer: is}})
	if oerr != nil {
		return nil, oerr
	}
	s := &Server{cfg: Config{Policy: pol}, audiences: testAudiences}
	return s.validateAssertion(context.Background(), p, issuer, testNow)
}

// rawJWS assembles a compact JWS from a header and claims with an
// arbitrary signature, for inputs no honest signer makes.
func rawJWS(header, claims any, sig []byte) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding.EncodeToString
	return enc(h) + "." + enc(c) + "." + enc(sig)
}

func TestAssertionRules(t *testing.T) {
	with := func(k string, v any) func(map[string]any) {
		return func(c map[string]any) {
			if v == nil {
				delete(c, k)
			} else {
				c[k] = v
			}
		}
	}
	sec := func(d time.Duration) int64 { return testNow.Add(d).Unix() }
	cases := []struct {
		name   string
		mutate func(map[string]any)
		policy func(*Policy)
		reason string // "" means accepted
	}{
		{name: "valid assertion is accepted"},
		{name: "aud may be an array", mutate: with("aud", []string{"other", testIssuerURL})},
		{name: "aud may be the issuer_url", mutate: with("aud", testIssuerURL)},
		{name: "aud not naming this server is rejected", mutate: with("aud", "https://elsewhere/token"), reason: "bad_aud"},
		{name: "missing aud is rejected", mutate: with("aud", nil), reason: "missing_aud"},
		{name: "empty aud array is rejected", mutate: with("aud", []string{}), reason: "missing_aud"},
		{name: "missing sub is rejected", mutate: with("sub", nil), reason: "missing_sub"},
		{name: "empty sub is rejected", mutate: with("sub", ""), reason: "missing_sub"},
		{name: "non-string sub is rejected", mutate: with("sub", 42), reason: "missing_sub"},
		{name: "missing exp is rejected", mutate: with("exp", nil), reason: "missing_exp"},
		{name: "string exp is rejected", mutate: with("exp", "1800000300"), reason: "bad_exp"},
		{name: "expired beyond skew is rejected", mutate: with("exp", sec(-61*time.Second)), reason: "expired"},
		{name: "expired within skew is accepted", mutate: with("exp", sec(-30*time.Second))},
		{name: "exp exactly now minus skew is rejected", mutate: with("exp", sec(-60*time.Second)), reason: "expired"},
		{name: "nbf in the future beyond skew is rejected", mutate: with("nbf", sec(2*time.Minute)), reason: "not_yet_valid"},
		{name: "nbf within skew is accepted", mutate: with("nbf", sec(30*time.Second))},
		{name: "string nbf is rejected", mutate: with("nbf", "1800000000"), reason: "bad_nbf"},
		{name: "iat in the future beyond skew is rejected", mutate: with("iat", sec(2*time.Minute)), reason: "iat_in_future"},
		{name: "iat older than iat_validity is rejected", mutate: with("iat", sec(-31*time.Minute)), reason: "iat_too_old"},
		{name: "iat older than iat_validity is accepted with iat_validation off", mutate: with("iat", sec(-31*time.Minute)),
			policy: func(p *Policy) { p.IATValidation = false }},
		{name: "iat_validity is configurable", mutate: with("iat", sec(-2*time.Minute)),
			policy: func(p *Policy) { p.IATValidity = time.Minute }, reason: "iat_too_old"},
		{name: "string iat is rejected", mutate: with("iat", "1800000000"), reason: "bad_iat"},
		{name: "missing iat is accepted", mutate: with("iat", nil)},
		{name: "lifetime over the maximum is rejected", mutate: with("exp", sec(25*time.Hour)), reason: "lifetime_too_long"},
		{name: "lifetime is measured from now without iat", mutate: func(c map[string]any) { delete(c, "iat"); c["exp"] = sec(2 * time.Hour) },
			policy: func(p *Policy) { p.MaxAssertionLifetime = time.Hour }, reason: "lifetime_too_long"},
		{name: "missing jti is accepted by default", mutate: with("jti", nil)},
		{name: "missing jti is rejected with require_jti", mutate: with("jti", nil), policy: func(p *Policy) { p.RequireJTI = true }, reason: "missing_jti"},
		{name: "non-string jti is rejected", mutate: with("jti", 7), reason: "bad_jti"},
		{name: "non-string scope claim is rejected", mutate: with("scope", []string{"a"}), reason: "bad_scope_claim"},
		{name: "unknown iss is rejected", mutate: with("iss", "someone-else"), reason: "unknown_issuer"},
		{name: "missing iss is rejected", mutate: with("iss", nil), reason: "unknown_issuer"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := baseClaims()
			if tc.mutate != nil {
				tc.mutate(c)
			}
			pol := DefaultPolicy()
			if tc.policy != nil {
				tc.policy(&pol)
			}
			a, oerr := runChecks(t, testIssuer(), pol, sign(t, testKeys().rsa, "RS256", "", c))
			if tc.reason == "" {
				if oerr != nil {
					t.Fatalf("rejected: %v (%s)", oerr, oerr.Reason)
				}
				if a.Subject != c["sub"] {
					t.Fatalf("subject %q", a.Subject)
				}
				return
			}
			if oerr == nil {
				t.Fatalf("accepted, want %s", tc.reason)
			}
			if oerr.Reason != tc.reason || oerr.Code != CodeInvalidGrant {
				t.Fatalf("got %s/%s, want invalid_grant/%s", oerr.Code, oerr.Reason, tc.reason)
			}
		})
	}
}

func TestAssertionKeyFamilies(t *testing.T) {
	cases := []struct {
		alg string
		key crypto.Signer
	}{
		{"RS256", testKeys().rsa}, {"RS384", testKeys().rsa}, {"RS512", testKeys().rsa},
		{"PS256", testKeys().rsa}, {"PS384", testKeys().rsa}, {"PS512", testKeys().rsa},
		{"ES256", testKeys().p256}, {"ES384", testKeys().p384}, {"EdDSA", testKeys().ed},
	}
	for _, tc := range cases {
		t.Run(tc.alg+" verifies with its key", func(t *testing.T) {
			is := testIssuer(keys.Key{Public: tc.key.Public()})
			if _, oerr := runChecks(t, is, DefaultPolicy(), sign(t, tc.key, tc.alg, "", baseClaims())); oerr != nil {
				t.Fatalf("rejected: %v", oerr)
			}
		})
		t.Run(tc.alg+" fails with another issuer's key", func(t *testing.T) {
			is := testIssuer(keys.Key{Public: testKeys().rsa2.Public()})
			_, oerr := runChecks(t, is, DefaultPolicy(), sign(t, tc.key, tc.alg, "", baseClaims()))
			if oerr == nil || oerr.Reason != "bad_signature" {
				t.Fatalf("got %v, want bad_signature", oerr)
			}
		})
	}
}

func TestAssertionAttacks(t *testing.T) {
	pub := testKeys().rsa.Public()
	der, _ := x509.MarshalPKIXPublicKey(pub)
	hmacSig := func(header map[string]any) string {
		raw := rawJWS(header, baseClaims(), nil)
		input := raw[:strings.LastIndexByte(raw, '.')]
		m := hmac.New(sha256.New, der)
		m.Write([]byte(input))
		return input + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}
	good := sign(t, testKeys().rsa, "RS256", "", baseClaims())
	parts := strings.Split(good, ".")
	tamperedClaims := baseClaims()
	tamperedClaims["sub"] = "admin"
	tc, _ := json.Marshal(tamperedClaims)
	attackerJWK := map[string]any{"kty": "RSA", "n": base64.RawURLEncoding.EncodeToString(testKeys().rsa2.N.Bytes()), "e": "AQAB"}
	signedWithHeader := func(extra map[string]any) string {
		// Signed by the attacker's key with headers naming that key.
		s, err := signWithExtraHeaders(testKeys().rsa2, extra, baseClaims())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	cases := []struct {
		name, raw, reason string
		issuer            *Issuer
	}{
		{name: "alg none is rejected", raw: rawJWS(map[string]any{"alg": "none"}, baseClaims(), nil), reason: "bad_alg"},
		{name: "alg none with a signature is rejected", raw: rawJWS(map[string]any{"alg": "none"}, baseClaims(), []byte("x")), reason: "bad_alg"},
		{name: "HS256 with the public key as secret is rejected", raw: hmacSig(map[string]any{"alg": "HS256"}), reason: "bad_alg"},
		{name: "JWE is rejected", raw: "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d", reason: "malformed"},
		{name: "enc header is rejected", raw: rawJWS(map[string]any{"alg": "RS256", "enc": "A256GCM"}, baseClaims(), []byte("x")), reason: "jwe"},
		{name: "crit header is rejected", raw: signedWithHeaderOK(t, map[string]any{"crit": []string{"exp"}, "exp": 1}), reason: "crit"},
		{name: "embedded jwk is not a key source", raw: signedWithHeader(map[string]any{"jwk": attackerJWK}), reason: "bad_signature"},
		{name: "jku is not a key source", raw: signedWithHeader(map[string]any{"jku": "https://attacker/jwks"}), reason: "bad_signature"},
		{name: "x5u is not a key source", raw: signedWithHeader(map[string]any{"x5u": "https://attacker/cert"}), reason: "bad_signature"},
		{name: "x5c is not a key source", raw: signedWithHeader(map[string]any{"x5c": []string{"MIIB"}}), reason: "malformed"},
		{name: "b64 header is rejected", raw: signedWithHeaderOK(t, map[string]any{"b64": true}), reason: "b64"},
		{name: "b64 false without crit is rejected", raw: rawJWS(map[string]any{"alg": "RS256", "b64": false}, baseClaims(), []byte("x")), reason: "b64"},
		{name: "bytes after the claims object are rejected", raw: signRawPayload(t, claimsJSON(t)+"}GARBAGE"), reason: "malformed"},
		{name: "a second JSON value after the claims is rejected", raw: signRawPayload(t, claimsJSON(t)+" {}"), reason: "malformed"},
		{name: "null claims are rejected", raw: signRawPayload(t, "null"), reason: "malformed"},
		{name: "a line break inside a segment is rejected", raw: parts[0] + "." + parts[1] + "." + parts[2][:10] + "\n" + parts[2][10:], reason: "malformed"},
		{name: "non-zero trailing bits are rejected", raw: parts[0] + "." + parts[1] + "." + flipTrailingBits(parts[2]), reason: "malformed"},
		{name: "tampered payload is rejected", raw: parts[0] + "." + base64.RawURLEncoding.EncodeToString(tc) + "." + parts[2], reason: "bad_signature"},
		{name: "tampered signature is rejected", raw: parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString([]byte("garbage-signature")), reason: "bad_signature"},
		{name: "oversized assertion is rejected", raw: strings.Repeat("a", maxAssertionSize+1), reason: "too_large"},
		{name: "two parts are rejected", raw: parts[0] + "." + parts[1], reason: "malformed"},
		{name: "padded base64 is rejected", raw: parts[0] + "=." + parts[1] + "." + parts[2], reason: "malformed"},
		{name: "claims that are not an object are rejected", raw: rawJWS(map[string]any{"alg": "RS256"}, []int{1}, []byte("x")), reason: "malformed"},
		{name: "alg outside the issuer's list is rejected", raw: good, reason: "alg_not_allowed",
			issuer: &Issuer{Name: "n", Issuer: "idp", Algorithms: []string{"ES256"}, Keys: keys.Static{{Public: pub}}}},
		{name: "RSA key cannot verify ES256", raw: sign(t, testKeys().p256, "ES256", "", baseClaims()), reason: "bad_signature"},
		{name: "unknown kid finds no keyed key", raw: sign(t, testKeys().rsa, "RS256", "new-kid", baseClaims()), reason: "bad_signature",
			issuer: testIssuer(keys.Key{KID: "old-kid", Public: pub})},
		{name: "key alg must match", raw: sign(t, testKeys().rsa, "PS256", "", baseClaims()), reason: "bad_signature",
			issuer: testIssuer(keys.Key{Public: pub, Alg: "RS256"})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			is := tc.issuer
			if is == nil {
				is = testIssuer()
			}
			_, oerr := runChecks(t, is, DefaultPolicy(), tc.raw)
			if oerr == nil {
				t.Fatal("accepted")
			}
			if oerr.Code != CodeInvalidGrant || oerr.Reason != tc.reason {
				t.Fatalf("got %s/%s, want invalid_grant/%s", oerr.Code, oerr.Reason, tc.reason)
			}
			if strings.Contains(oerr.Description, tc.raw[:min(len(tc.raw), 20)]) {
				t.Fatal("description echoes the assertion")
			}
		})
	}
}

func TestAssertionKidSelection(t *testing.T) {
	pub := testKeys().rsa.Public()
	cases := []struct {
		name   string
		keys   []keys.Key
		kid    string
		accept bool
	}{
		{"keyed key is used for its kid", []keys.Key{{KID: "k1", Public: pub}}, "k1", true},
		{"keyed key is skipped for another kid", []keys.Key{{KID: "k1", Public: pub}}, "k2", false},
		{"unkeyed key is tried whatever the kid", []keys.Key{{Public: pub}}, "anything", true},
		{"assertion without kid tries keyed keys", []keys.Key{{KID: "k1", Public: testKeys().rsa2.Public()}, {KID: "k2", Public: pub}}, "", true},
		{"assertion without kid tries at most eight keys", append(repeatKey(keys.Key{Public: testKeys().rsa2.Public()}, 8), keys.Key{Public: pub}), "", false},
		{"assertion with a kid tries at most eight keys", append(repeatKey(keys.Key{Public: testKeys().rsa2.Public()}, 8), keys.Key{Public: pub}), "any-kid", false},
		{"the eighth candidate is still tried", append(repeatKey(keys.Key{Public: testKeys().rsa2.Public()}, 7), keys.Key{Public: pub}), "any-kid", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, oerr := runChecks(t, testIssuer(tc.keys...), DefaultPolicy(), sign(t, testKeys().rsa, "RS256", tc.kid, baseClaims()))
			if (oerr == nil) != tc.accept {
				t.Fatalf("accept=%v, got %v", tc.accept, oerr)
			}
		})
	}
}

func repeatKey(k keys.Key, n int) []keys.Key {
	out := make([]keys.Key, n)
	for i := range out {
		out[i] = k
	}
	return out
}

func TestAssertionSubjectsAliasesClaims(t *testing.T) {
	is := testIssuer()
	is.Subjects = []string{"bob"}
	if _, oerr := runChecks(t, is, DefaultPolicy(), sign(t, testKeys().rsa, "RS256", "", baseClaims())); oerr == nil || oerr.Reason != "sub_not_allowed" {
		t.Fatalf("subject outside subjects: got %v", oerr)
	}
	is = testIssuer()
	is.Aliases = []string{"urn:alias"}
	c := baseClaims()
	c["aud"] = "urn:alias"
	c["email"] = "a@example.com"
	c["secret_stuff"] = "x"
	a, oerr := runChecks(t, is, DefaultPolicy(), sign(t, testKeys().rsa, "RS256", "", c))
	if oerr != nil {
		t.Fatalf("alias audience rejected: %v", oerr)
	}
	if string(a.Claims["email"]) != `"a@example.com"` || len(a.Claims) != 1 {
		t.Fatalf("copied claims %v, want only email", a.Claims)
	}
	if a.Mark == nil || !a.Mark.Until.Equal(time.Unix(c["exp"].(int64), 0).Add(time.Minute)) {
		t.Fatalf("replay mark %+v, want one kept until exp+skew", a.Mark)
	}
}

func TestReplayMarkKeySeparatesNamespacesAndTenants(t *testing.T) {
	keys := map[string]bool{}
	for _, k := range []string{
		replayMarkKey("grant", "", "idp", "j"),
		replayMarkKey("client", "", "idp", "j"),
		replayMarkKey("grant", "t1", "idp", "j"),
		replayMarkKey("grant", "", "idp:j", ""),
		replayMarkKey("grant", "", "idp", "j2"),
	} {
		if keys[k] {
			t.Fatalf("collision on %s", k)
		}
		keys[k] = true
	}
}

// Store keys are persisted: the replay mark key and the token hash keep
// their spelling (known answers: SHA-256 of the length-prefixed parts,
// and of the token), including an input longer than the pooled scratch
// space.
func TestStoreKeysKnownAnswers(t *testing.T) {
	for _, tc := range []struct{ got, want string }{
		{replayMarkKey("grant", "", "https://idp", "jti-1"), "ad2a2b4f652faf32f3fdb4099157a06bd53c98fe67a556a81daf160264a9ac1c"},
		{replayMarkKey("client", "t", "c:1", strings.Repeat("x", 300)), "a81d8f0bd1299c4e5125c7019770484f5903b2c182c61d79202832f852dc83f2"},
		{HashToken("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %s, want %s", tc.got, tc.want)
		}
	}
	long := strings.Repeat("t", 2*maxPooledHashInput)
	for range 2 {
		if got, want := HashToken(long), sha256.Sum256([]byte(long)); got != hex.EncodeToString(want[:]) {
			t.Errorf("hash of a long token: %s", got)
		}
	}
}

// checkAudience answers as josejwt.Audience's reading of aud would,
// whichever form aud takes: its single-string shortcut included.
func TestCheckAudienceAgreesWithJoseAudience(t *testing.T) {
	aliases := []string{"urn:alias", "caf\u00e9"}
	reference := func(raw json.RawMessage, present bool) string {
		var aud josejwt.Audience
		if present && json.Unmarshal(raw, &aud) != nil {
			return "bad_aud"
		}
		if len(aud) == 0 {
			return "missing_aud"
		}
		for _, a := range aud {
			if a != "" && (slices.Contains(testAudiences, a) || slices.Contains(aliases, a)) {
				return ""
			}
		}
		return "bad_aud"
	}
	for _, raw := range []string{
		`"https://as.example"`, `"https:\/\/as.example\/oauth2\/token"`, `"\u0068ttps://as.example"`,
		`"urn:alias"`, `"caf\\u00e9"`, `"café"`, `"elsewhere"`, `""`, `"\u0000"`, "\"https://as.example\xff\"",
		`["https://as.example"]`, `["x","urn:alias"]`, `[]`, `[""]`, `["urn:alias",null]`, `["urn:alias",1]`,
		`[["urn:alias"]]`, `1`, `true`, `{}`, `{"a":"urn:alias"}`, `null`, "",
	} {
		claims := map[string]json.RawMessage{}
		if raw != "" {
			claims["aud"] = json.RawMessage(raw)
		}
		tok := &signedJWT{claims: claims}
		_, present := tok.claim("aud")
		got := ""
		if oerr := checkAudience(tok, testAudiences, aliases, assertionError); oerr != nil {
			got = oerr.Reason
		}
		if want := reference(claims["aud"], present); got != want {
			t.Errorf("aud %s: %q, want %q", raw, got, want)
		}
	}
}

// signWithExtraHeaders signs claims with key (RS256) and extra protected
// header members, such as ones an attacker adds to name his own key.
func signWithExtraHeaders(key *rsa.PrivateKey, extra map[string]any, claims map[string]any) (string, error) {
	opts := &jose.SignerOptions{}
	for k, v := range extra {
		opts.WithHeader(jose.HeaderKey(k), v)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, opts)
	if err != nil {
		return "", err
	}
	payload, _ := json.Marshal(claims)
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

// signedWithHeaderOK is signWithExtraHeaders with the trusted key: the
// signature is good, so only the header can make it fail.
func signedWithHeaderOK(t testing.TB, extra map[string]any) string {
	s, err := signWithExtraHeaders(testKeys().rsa, extra, baseClaims())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// claimsJSON is baseClaims as JSON.
func claimsJSON(t testing.TB) string {
	c, err := json.Marshal(baseClaims())
	if err != nil {
		t.Fatal(err)
	}
	return string(c)
}

// signRawPayload signs payload bytes as they are with the trusted key
// (RS256), for payloads no honest signer makes.
func signRawPayload(t testing.TB, payload string) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: testKeys().rsa}, nil)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign([]byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// flipTrailingBits respells a base64url segment with non-zero unused
// bits in its last character: a lenient decoder reads the same bytes.
func flipTrailingBits(seg string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, seg[len(seg)-1])
	return seg[:len(seg)-1] + string(alphabet[last|1])
}
