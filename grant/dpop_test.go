package grant_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/keys"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/memstore"
)

// Proof keys, made once for the package.
var (
	dpopKey   = sync.OnceValue(func() *ecdsa.PrivateKey { return mustECKey() })
	dpopOther = sync.OnceValue(func() *ecdsa.PrivateKey { return mustECKey() })
)

func mustECKey() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

func jktOf(t testing.TB, k crypto.Signer) string {
	t.Helper()
	jkt, err := keys.Thumbprint(k)
	if err != nil {
		t.Fatal(err)
	}
	return jkt
}

// proof is what a DPoP proof is made of, so that a test can spoil one
// part: header members, claims, the signing key and the algorithm.
type proof struct {
	header map[string]any
	claims map[string]any
	// signer signs; jwkOf is the key put in the jwk header.
	signer, jwkOf *ecdsa.PrivateKey
	// hmacKey, when set, signs HS256 instead; none sends no signature.
	hmacKey []byte
	none    bool
}

func newProof(method, htu string) *proof {
	return &proof{
		header: map[string]any{"typ": "dpop+jwt", "alg": "ES256"},
		claims: map[string]any{"htm": method, "htu": htu, "iat": time.Now().Unix(), "jti": rand.Text()},
		signer: dpopKey(), jwkOf: dpopKey(),
	}
}

func (p *proof) with(claims map[string]any) *proof {
	for k, v := range claims {
		if v == nil {
			delete(p.claims, k)
		} else {
			p.claims[k] = v
		}
	}
	return p
}

// publicJWK is the jwk header of k's public half.
func publicJWK(k *ecdsa.PrivateKey) map[string]any {
	b, _ := json.Marshal(jose.JSONWebKey{Key: k.Public()})
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

// String signs the proof by hand (not through go-jose's signer), so that
// the attacks can put in it what no library would.
func (p *proof) String() string {
	h := map[string]any{}
	for k, v := range p.header {
		h[k] = v
	}
	if _, ok := h["jwk"]; !ok && p.jwkOf != nil {
		h["jwk"] = publicJWK(p.jwkOf)
	}
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	input := enc(h) + "." + enc(p.claims)
	var sig []byte
	switch {
	case p.none:
	case p.hmacKey != nil:
		m := hmac.New(sha256.New, p.hmacKey)
		m.Write([]byte(input))
		sig = m.Sum(nil)
	default:
		sum := sha256.Sum256([]byte(input))
		r, s, err := ecdsa.Sign(rand.Reader, p.signer, sum[:])
		if err != nil {
			panic(err)
		}
		sig = append(r.FillBytes(make([]byte, 32)), s.FillBytes(make([]byte, 32))...)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// countingStore counts the writes that succeeded.
type countingStore struct {
	grant.Store
	writes atomic.Int32
}

func (s *countingStore) Issue(ctx context.Context, is *grant.Issuance) error {
	err := s.Store.Issue(ctx, is)
	if err == nil {
		s.writes.Add(1)
	}
	return err
}

func (s *countingStore) ClaimMarks(ctx context.Context, marks []grant.Mark) error {
	err := s.Store.ClaimMarks(ctx, marks)
	if err == nil {
		s.writes.Add(1)
	}
	return err
}

func (s *countingStore) Rotate(ctx context.Context, old string, next *grant.Issuance) error {
	err := s.Store.Rotate(ctx, old, next)
	if err == nil {
		s.writes.Add(1)
	}
	return err
}

const tokenHTU = "http://example.com/oauth2/token"

// dpopBench is a token endpoint over a counting memory store.
type dpopBench struct {
	*bench
	st *countingStore
}

func newDPoPBench(t *testing.T, mutate func(*grant.Config)) *dpopBench {
	var st *countingStore
	b := newServer(t, func(c *grant.Config) {
		st = &countingStore{Store: c.Store}
		c.Store = st
		c.IntrospectionPath = "/oauth2/introspect"
		if mutate != nil {
			mutate(c)
		}
	})
	return &dpopBench{bench: b, st: st}
}

// token posts a token request with the given DPoP header values.
func (b *dpopBench) token(t *testing.T, form url.Values, proofs ...string) (*httptest.ResponseRecorder, map[string]any) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("c%3A1", url.QueryEscape(b.secret))
	for _, p := range proofs {
		req.Header.Add("DPoP", p)
	}
	w := httptest.NewRecorder()
	b.srv.ServeToken(w, req)
	var body map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &body)
	return w, body
}

func TestDPoPProofBindsTheAccessToken(t *testing.T) {
	b := newDPoPBench(t, nil)
	w, body := b.token(t, form(b.assertion(t, "https://idp", nil)), newProof("POST", tokenHTU).String())
	if w.Code != 200 || body["token_type"] != "DPoP" {
		t.Fatalf("got %d %s", w.Code, w.Body)
	}
	at := body["access_token"].(string)
	rec, err := b.store.Access(t.Context(), grant.HashToken(at))
	if err != nil || rec.Cnf == nil || rec.Cnf.JKT != jktOf(t, dpopKey()) {
		t.Fatalf("record %+v, %v", rec, err)
	}
	// Introspection shows the binding and says DPoP.
	req := httptest.NewRequest(http.MethodPost, "/oauth2/introspect", strings.NewReader("token="+at))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("c%3A1", url.QueryEscape(b.secret))
	iw := httptest.NewRecorder()
	b.srv.ServeIntrospect(iw, req)
	var intro struct {
		TokenType string             `json:"token_type"`
		Cnf       grant.Confirmation `json:"cnf"`
	}
	if err := json.Unmarshal(iw.Body.Bytes(), &intro); err != nil || intro.TokenType != "DPoP" || intro.Cnf.JKT != rec.Cnf.JKT {
		t.Fatalf("introspection %s", iw.Body)
	}
	// Without a proof the token is a plain bearer token, without cnf.
	w, body = b.token(t, form(b.assertion(t, "https://idp", nil)))
	if w.Code != 200 || body["token_type"] != "Bearer" || strings.Contains(w.Body.String(), "cnf") {
		t.Fatalf("got %d %s", w.Code, w.Body)
	}
	rec, _ = b.store.Access(t.Context(), grant.HashToken(body["access_token"].(string)))
	if raw, _ := json.Marshal(rec); strings.Contains(string(raw), `"cnf"`) {
		t.Fatalf("an unbound record has cnf: %s", raw)
	}
}

func TestDPoPProofRulesAtTheTokenEndpoint(t *testing.T) {
	now := time.Now()
	cases := []struct {
		name    string
		proofs  func() []string
		accept  bool
		wantJKT string
	}{
		{"a query string on the request URL is ignored", func() []string {
			return []string{newProof("POST", tokenHTU).String()}
		}, true, ""},
		{"a query and fragment in htu are ignored", func() []string {
			return []string{newProof("POST", tokenHTU+"?a=b#frag").String()}
		}, true, ""},
		{"scheme and host case and the default port are normalised", func() []string {
			return []string{newProof("POST", "HTTP://Example.COM:80/oauth2/token").String()}
		}, true, ""},
		{"a wrong typ", func() []string {
			p := newProof("POST", tokenHTU)
			p.header["typ"] = "JWT"
			return []string{p.String()}
		}, false, ""},
		{"no typ", func() []string {
			p := newProof("POST", tokenHTU)
			delete(p.header, "typ")
			return []string{p.String()}
		}, false, ""},
		{"alg none", func() []string {
			p := newProof("POST", tokenHTU)
			p.header["alg"], p.none = "none", true
			return []string{p.String()}
		}, false, ""},
		{"HS256", func() []string {
			p := newProof("POST", tokenHTU)
			p.header["alg"], p.hmacKey = "HS256", []byte("0123456789abcdef0123456789abcdef")
			return []string{p.String()}
		}, false, ""},
		{"a jwk carrying the private key", func() []string {
			p := newProof("POST", tokenHTU)
			jwk := publicJWK(dpopKey())
			jwk["d"] = base64.RawURLEncoding.EncodeToString(dpopKey().D.FillBytes(make([]byte, 32)))
			p.header["jwk"] = jwk
			return []string{p.String()}
		}, false, ""},
		{"a jwk with a stray private member", func() []string {
			p := newProof("POST", tokenHTU)
			jwk := publicJWK(dpopKey())
			jwk["k"] = "AAAA"
			p.header["jwk"] = jwk
			return []string{p.String()}
		}, false, ""},
		{"no jwk", func() []string {
			p := newProof("POST", tokenHTU)
			p.jwkOf = nil
			return []string{p.String()}
		}, false, ""},
		{"a signature by another key", func() []string {
			p := newProof("POST", tokenHTU)
			p.signer = dpopOther()
			return []string{p.String()}
		}, false, ""},
		{"htm of another method", func() []string { return []string{newProof("GET", tokenHTU).String()} }, false, ""},
		{"htm in lower case", func() []string { return []string{newProof("post", tokenHTU).String()} }, false, ""},
		{"htu of another path", func() []string { return []string{newProof("POST", "http://example.com/oauth2/revoke").String()} }, false, ""},
		{"htu of another host", func() []string { return []string{newProof("POST", "http://evil.example/oauth2/token").String()} }, false, ""},
		{"htu of another scheme", func() []string { return []string{newProof("POST", "https://example.com/oauth2/token").String()} }, false, ""},
		{"htu relative", func() []string { return []string{newProof("POST", "/oauth2/token").String()} }, false, ""},
		{"no htu", func() []string { return []string{newProof("POST", tokenHTU).with(map[string]any{"htu": nil}).String()} }, false, ""},
		{"a stale iat", func() []string {
			return []string{newProof("POST", tokenHTU).with(map[string]any{"iat": now.Add(-3 * time.Minute).Unix()}).String()}
		}, false, ""},
		{"a future iat", func() []string {
			return []string{newProof("POST", tokenHTU).with(map[string]any{"iat": now.Add(3 * time.Minute).Unix()}).String()}
		}, false, ""},
		{"no iat", func() []string { return []string{newProof("POST", tokenHTU).with(map[string]any{"iat": nil}).String()} }, false, ""},
		{"a quoted iat", func() []string {
			return []string{newProof("POST", tokenHTU).with(map[string]any{"iat": "1700000000"}).String()}
		}, false, ""},
		{"a jti of 257 characters", func() []string {
			return []string{newProof("POST", tokenHTU).with(map[string]any{"jti": strings.Repeat("j", 257)}).String()}
		}, false, ""},
		{"no jti", func() []string { return []string{newProof("POST", tokenHTU).with(map[string]any{"jti": nil}).String()} }, false, ""},
		{"two DPoP headers", func() []string {
			return []string{newProof("POST", tokenHTU).String(), newProof("POST", tokenHTU).String()}
		}, false, ""},
		{"not a JWS", func() []string { return []string{"not-a-proof"} }, false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := newDPoPBench(t, nil)
			assertion := b.assertion(t, "https://idp", nil)
			req := httptest.NewRequest(http.MethodPost, "/oauth2/token?x=1", strings.NewReader(form(assertion).Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth("c%3A1", url.QueryEscape(b.secret))
			for _, p := range tc.proofs() {
				req.Header.Add("DPoP", p)
			}
			w := httptest.NewRecorder()
			b.srv.ServeToken(w, req)
			if tc.accept {
				if w.Code != 200 || !strings.Contains(w.Body.String(), `"token_type":"DPoP"`) {
					t.Fatalf("refused: %d %s", w.Code, w.Body)
				}
				return
			}
			if w.Code != 400 || !strings.Contains(w.Body.String(), `"error":"invalid_dpop_proof"`) {
				t.Fatalf("got %d %s, want 400 invalid_dpop_proof", w.Code, w.Body)
			}
			if n := b.st.writes.Load(); n != 0 {
				t.Fatalf("%d writes for a refused proof", n)
			}
			// The grant assertion is unspent: the same request with a
			// good proof succeeds.
			if w, _ := b.token(t, form(assertion), newProof("POST", tokenHTU).String()); w.Code != 200 {
				t.Fatalf("the assertion was spent: %d %s", w.Code, w.Body)
			}
		})
	}
}

func TestDPoPProofIsSingleUseAtTheTokenEndpoint(t *testing.T) {
	b := newDPoPBench(t, nil)
	p := newProof("POST", tokenHTU).String()
	if w, _ := b.token(t, form(b.assertion(t, "https://idp", nil)), p); w.Code != 200 {
		t.Fatalf("first use: %d %s", w.Code, w.Body)
	}
	w, body := b.token(t, form(b.assertion(t, "https://idp", nil)), p)
	if w.Code != 400 || body["error"] != "invalid_dpop_proof" {
		t.Fatalf("replay: %d %s", w.Code, w.Body)
	}
	if n := b.st.writes.Load(); n != 1 {
		t.Fatalf("%d writes, want only the first issuance", n)
	}
}

func TestDPoPRequiredClientNeedsAProof(t *testing.T) {
	b := newDPoPBench(t, func(c *grant.Config) { c.Tenants[""].Clients["c:1"].DPoPRequired = true })
	w, body := b.token(t, form(b.assertion(t, "https://idp", nil)))
	if w.Code != 400 || body["error"] != "invalid_dpop_proof" || b.st.writes.Load() != 0 {
		t.Fatalf("without a proof: %d %s", w.Code, w.Body)
	}
	if w, _ := b.token(t, form(b.assertion(t, "https://idp", nil)), newProof("POST", tokenHTU).String()); w.Code != 200 {
		t.Fatalf("with a proof: %d %s", w.Code, w.Body)
	}
}

func TestDPoPRefreshTokenIsBoundToTheKeyOfItsChain(t *testing.T) {
	b := newDPoPBench(t, nil)
	_, body := b.token(t, form(b.assertion(t, "https://idp", nil)), newProof("POST", tokenHTU).String())
	rt, _ := body["refresh_token"].(string)
	if rt == "" {
		t.Fatalf("no refresh token: %v", body)
	}
	refresh := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}
	other := newProof("POST", tokenHTU)
	other.signer, other.jwkOf = dpopOther(), dpopOther()
	for name, proofs := range map[string][]string{"no proof": nil, "a proof of another key": {other.String()}} {
		before := b.st.writes.Load()
		w, body := b.token(t, refresh, proofs...)
		if w.Code != 400 || body["error"] != "invalid_grant" || b.st.writes.Load() != before {
			t.Fatalf("%s: %d %s", name, w.Code, w.Body)
		}
	}
	w, body := b.token(t, refresh, newProof("POST", tokenHTU).String())
	if w.Code != 200 || body["token_type"] != "DPoP" {
		t.Fatalf("with the chain's key: %d %s", w.Code, w.Body)
	}
	// The rotated refresh token is still bound.
	next := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {body["refresh_token"].(string)}}
	if w, body := b.token(t, next); w.Code != 400 || body["error"] != "invalid_grant" {
		t.Fatalf("the rotated token lost its binding: %d %s", w.Code, w.Body)
	}
}

func TestDPoPUnboundChainStaysUnbound(t *testing.T) {
	b := newDPoPBench(t, nil)
	_, body := b.token(t, form(b.assertion(t, "https://idp", nil)))
	refresh := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {body["refresh_token"].(string)}}
	w, body := b.token(t, refresh, newProof("POST", tokenHTU).String())
	if w.Code != 200 || body["token_type"] != "DPoP" {
		t.Fatalf("refresh with a proof: %d %s", w.Code, w.Body)
	}
	next := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {body["refresh_token"].(string)}}
	if w, body := b.token(t, next); w.Code != 200 || body["token_type"] != "Bearer" {
		t.Fatalf("an unbound chain became bound: %d %s", w.Code, w.Body)
	}
}

func TestDPoPJWTAccessTokenCarriesCnf(t *testing.T) {
	m, err := grant.NewJWTMinter(dpopOther())
	if err != nil {
		t.Fatal(err)
	}
	rec := &grant.AccessRecord{TokenRecord: grant.TokenRecord{Sub: "a", Aud: []string{"x"}, Exp: 2e9, Cnf: &grant.Confirmation{JKT: "thumb"}}}
	tok, err := m.Mint(rec)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[1])
	var claims struct {
		Cnf grant.Confirmation `json:"cnf"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Cnf.JKT != "thumb" {
		t.Fatalf("claims %s", payload)
	}
}

func TestDPoPMetadataListsTheProofAlgorithms(t *testing.T) {
	b := newDPoPBench(t, func(c *grant.Config) { c.DPoPAlgorithms = []string{"ES256", "EdDSA"} })
	got := b.srv.Metadata().DPoPSigningAlgValuesSupported
	if strings.Join(got, " ") != "ES256 EdDSA" {
		t.Fatalf("got %v", got)
	}
	if _, err := grant.New(grant.Config{IssuerURL: issuerURL, Store: memstore.New(memstore.Options{}), AccessTokenTTL: time.Hour,
		DPoPAlgorithms: []string{"HS256"}}); err == nil {
		t.Fatal("HS256 accepted as a proof algorithm")
	}
}

// otherKeyProof is a valid proof signed by, and naming, dpopOther.
func otherKeyProof() *proof {
	p := newProof("POST", tokenHTU)
	p.signer, p.jwkOf = dpopOther(), dpopOther()
	return p
}

// An ID-JAG with cnf.jkt must come with a proof of that key, and the token
// is bound to it (SPEC §7, §8).
func TestIDJAGWithCnfNeedsAProofOfItsKey(t *testing.T) {
	b := newDPoPBench(t, withIDJAG)
	jkt := jktOf(t, dpopKey())
	bound := func() string { return b.idJAG(t, "", map[string]any{"cnf": map[string]any{"jkt": jkt}}) }
	for _, tc := range []struct {
		name   string
		proofs []string
		status int
		err    string
	}{
		{"no proof", nil, 400, "invalid_grant"},
		{"a proof of another key", []string{otherKeyProof().String()}, 400, "invalid_grant"},
		{"a proof of the key", []string{newProof("POST", tokenHTU).String()}, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := b.st.writes.Load()
			w, body := b.token(t, form(bound()), tc.proofs...)
			if w.Code != tc.status || tc.err != "" && body["error"] != tc.err {
				t.Fatalf("got %d %s, want %d %s", w.Code, w.Body, tc.status, tc.err)
			}
			if tc.status != 200 {
				if b.st.writes.Load() != before {
					t.Fatal("a refused request wrote to the store")
				}
				return
			}
			rec, err := b.store.Access(t.Context(), grant.HashToken(body["access_token"].(string)))
			if err != nil || rec.Cnf == nil || rec.Cnf.JKT != jkt || body["token_type"] != "DPoP" {
				t.Fatalf("record %+v, %v, response %v", rec, err, body)
			}
		})
	}
}

func TestDPoPHeaderIsTheCanonicalKey(t *testing.T) {
	if got := http.CanonicalHeaderKey("DPoP"); got != grant.DPoPHeader {
		t.Errorf("DPoPHeader %q; the canonical key of DPoP is %q", grant.DPoPHeader, got)
	}
}
