package caddymodule

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/go-jose/go-jose/v4"
	"github.com/spf13/cobra"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/keys"
)

// cmdIssuer is a key pair written by keygen, shared by the assertion tests.
type cmdIssuer struct {
	keyFile string
	public  crypto.PublicKey
	kid     string
}

// cmdTestIssuers runs keygen for each alg into a directory of the test and
// returns the resulting issuers by alg.
func cmdTestIssuers(t *testing.T, algs ...string) map[string]cmdIssuer {
	t.Helper()
	dir := t.TempDir()
	issuers := map[string]cmdIssuer{}
	for _, alg := range algs {
		prefix := filepath.Join(dir, alg)
		if err := keygen(alg, prefix, false, &bytes.Buffer{}); err != nil {
			t.Fatalf("keygen %s: %v", alg, err)
		}
		data, err := os.ReadFile(prefix + ".pem")
		if err != nil {
			t.Fatal(err)
		}
		pubs, err := keys.ParsePublic(data)
		if err != nil {
			t.Fatalf("ParsePublic: %v", err)
		}
		kid, err := keys.Thumbprint(pubs[0])
		if err != nil {
			t.Fatal(err)
		}
		issuers[alg] = cmdIssuer{keyFile: prefix + ".key", public: pubs[0], kid: kid}
	}
	return issuers
}

func cmdSamePublic(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

func cmdFileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

func TestKeygenWritesKeyCertificateAndJWKSThatAgree(t *testing.T) {
	for _, tc := range []struct{ alg, want string }{
		{"RS256", "RS256"},
		{"ES256", "ES256"},
		{"EdDSA", "EdDSA"},
		{"eddsa", "EdDSA"},
	} {
		t.Run(tc.alg, func(t *testing.T) {
			// Nested directories prove that missing parents are created.
			prefix := filepath.Join(t.TempDir(), "a", "b", "issuer")
			var out bytes.Buffer
			if err := keygen(tc.alg, prefix, false, &out); err != nil {
				t.Fatalf("keygen: %v", err)
			}

			keyPEM, err := os.ReadFile(prefix + ".key")
			if err != nil {
				t.Fatal(err)
			}
			if block, _ := pem.Decode(keyPEM); block == nil || block.Type != "PRIVATE KEY" {
				t.Fatal("key file is not a PKCS #8 PEM block")
			}
			key, err := keys.ParsePrivate(keyPEM)
			if err != nil {
				t.Fatalf("ParsePrivate: %v", err)
			}
			if got := keys.DefaultAlg(key.Public()); got != tc.want {
				t.Errorf("key algorithm %s, want %s", got, tc.want)
			}

			certPEM, err := os.ReadFile(prefix + ".pem")
			if err != nil {
				t.Fatal(err)
			}
			pubs, err := keys.ParsePublic(certPEM)
			if err != nil {
				t.Fatalf("ParsePublic(.pem): %v", err)
			}
			if len(pubs) != 1 || !cmdSamePublic(pubs[0], key.Public()) {
				t.Fatal("certificate does not hold the written key's public half")
			}
			block, _ := pem.Decode(certPEM)
			cert, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			if cert.Subject.CommonName != keygenCertCN || cert.Issuer.CommonName != keygenCertCN {
				t.Errorf("certificate subject %q issuer %q", cert.Subject.CommonName, cert.Issuer.CommonName)
			}
			if err := cert.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature); err != nil {
				t.Errorf("certificate is not self-signed: %v", err)
			}
			if cert.IsCA {
				t.Error("certificate is a CA")
			}
			now := time.Now()
			if now.Before(cert.NotBefore) || cert.NotAfter.Sub(now) < keygenCertValidity-time.Hour || cert.NotAfter.Sub(now) > keygenCertValidity+time.Hour {
				t.Errorf("certificate valid %s to %s, want now to now+%s", cert.NotBefore, cert.NotAfter, keygenCertValidity)
			}

			jwksData, err := os.ReadFile(prefix + ".jwks.json")
			if err != nil {
				t.Fatal(err)
			}
			var set jose.JSONWebKeySet
			if err := json.Unmarshal(jwksData, &set); err != nil {
				t.Fatalf("jwks: %v", err)
			}
			if len(set.Keys) != 1 {
				t.Fatalf("jwks has %d keys, want 1", len(set.Keys))
			}
			jwk := set.Keys[0]
			kid, err := keys.Thumbprint(pubs[0])
			if err != nil {
				t.Fatal(err)
			}
			if jwk.KeyID != kid || jwk.Algorithm != tc.want || jwk.Use != "sig" {
				t.Errorf("jwk kid %q alg %q use %q, want %q %q sig", jwk.KeyID, jwk.Algorithm, jwk.Use, kid, tc.want)
			}
			if !jwk.IsPublic() || !cmdSamePublic(jwk.Key, pubs[0]) {
				t.Error("jwk is not the certificate's public key")
			}
			var raw map[string]any
			if err := json.Unmarshal(jwksData, &raw); err != nil {
				t.Fatal(err)
			}
			if k := raw["keys"].([]any)[0].(map[string]any); k["d"] != nil || k["p"] != nil {
				t.Error("jwks carries private key members")
			}

			if runtime.GOOS != "windows" {
				if m := cmdFileMode(t, prefix+".key"); m != 0o600 {
					t.Errorf("key file mode %o, want 600", m)
				}
				if m := cmdFileMode(t, prefix+".pem"); m != 0o644 {
					t.Errorf("certificate mode %o, want 644", m)
				}
			}

			printed := out.String()
			for _, name := range []string{prefix + ".key", prefix + ".pem", prefix + ".jwks.json", kid} {
				if !strings.Contains(printed, name) {
					t.Errorf("output %q does not name %s", printed, name)
				}
			}
			keyBody := strings.Split(string(keyPEM), "\n")[1]
			if strings.Contains(printed, "PRIVATE KEY") || strings.Contains(printed, keyBody) {
				t.Errorf("output prints the private key")
			}
			entries, err := os.ReadDir(filepath.Dir(prefix))
			if err != nil {
				t.Fatal(err)
			}
			if len(entries) != 3 {
				t.Errorf("directory holds %d entries, want the 3 files (no temporaries)", len(entries))
			}
		})
	}
}

func TestKeygenRefusesToOverwriteAKeyWithoutForce(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "issuer")
	if err := keygen("ES256", prefix, false, &bytes.Buffer{}); err != nil {
		t.Fatalf("first keygen: %v", err)
	}
	before, err := os.ReadFile(prefix + ".key")
	if err != nil {
		t.Fatal(err)
	}

	err = keygen("ES256", prefix, false, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "--force") || !strings.Contains(err.Error(), prefix+".key") {
		t.Fatalf("second keygen: got %v, want a refusal naming the file and --force", err)
	}
	after, err := os.ReadFile(prefix + ".key")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("refused keygen changed the key")
	}

	// A key loosened by hand must come back to 0600 when replaced.
	if err := os.Chmod(prefix+".key", 0o644); err != nil {
		t.Fatal(err)
	}
	if err := keygen("ES256", prefix, true, &bytes.Buffer{}); err != nil {
		t.Fatalf("keygen --force: %v", err)
	}
	replaced, err := os.ReadFile(prefix + ".key")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(before, replaced) {
		t.Error("keygen --force kept the old key")
	}
	if runtime.GOOS != "windows" {
		if m := cmdFileMode(t, prefix+".key"); m != 0o600 {
			t.Errorf("replaced key mode %o, want 600", m)
		}
	}
	key, err := keys.ParsePrivate(replaced)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := os.ReadFile(prefix + ".pem")
	if err != nil {
		t.Fatal(err)
	}
	pubs, err := keys.ParsePublic(certPEM)
	if err != nil || !cmdSamePublic(pubs[0], key.Public()) {
		t.Errorf("certificate does not follow the replaced key (%v)", err)
	}
}

func TestKeygenRejectsUnsupportedAlgorithmsAndDirectoryPrefixes(t *testing.T) {
	for _, tc := range []struct {
		name, alg, prefix, want string
	}{
		{"rs512", "RS512", "issuer", "unsupported --alg"},
		{"hs256", "HS256", "issuer", "unsupported --alg"},
		{"empty alg", "", "issuer", "unsupported --alg"},
		{"empty prefix", "ES256", "", "--out"},
		{"directory prefix", "ES256", "keys/", "is a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			prefix := tc.prefix
			if prefix != "" {
				prefix = filepath.Join(dir, prefix)
				if strings.HasSuffix(tc.prefix, "/") {
					prefix += string(filepath.Separator)
				}
			}
			err := keygen(tc.alg, prefix, false, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("failed keygen left %d entries", len(entries))
			}
		})
	}
}

// cmdDecode verifies compact with pub and alg and returns its header and
// claims.
func cmdDecode(t *testing.T, compact, alg string, pub crypto.PublicKey) (header, claims map[string]any) {
	t.Helper()
	jws, err := jose.ParseSigned(compact, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
	if err != nil {
		t.Fatalf("ParseSigned: %v", err)
	}
	payload, err := jws.Verify(pub)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	rawHeader, err := base64.RawURLEncoding.DecodeString(strings.SplitN(compact, ".", 2)[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(rawHeader, &header); err != nil {
		t.Fatal(err)
	}
	return header, claims
}

func TestMakeAssertionVerifiesAndCarriesExactlyTheRequestedClaims(t *testing.T) {
	issuers := cmdTestIssuers(t, "RS256", "ES256", "EdDSA")
	now := time.Unix(1_800_000_000, 0)
	iat, exp5m := float64(now.Unix()), float64(now.Add(5*time.Minute).Unix())
	for _, tc := range []struct {
		name       string
		issuer     string
		opts       assertionOptions
		wantAlg    string
		wantKID    string // "thumbprint" for the key's thumbprint, "" for none
		wantClaims map[string]any
	}{
		{
			name: "one audience is a string", issuer: "RS256",
			opts:    assertionOptions{Issuer: "https://idp.example", Subject: "alice", Audience: []string{"https://gw.example/oauth2/token"}, TTL: 5 * time.Minute, JTI: "j1"},
			wantAlg: "RS256", wantKID: "thumbprint",
			wantClaims: map[string]any{"iss": "https://idp.example", "sub": "alice", "aud": "https://gw.example/oauth2/token", "iat": iat, "exp": exp5m, "jti": "j1"},
		},
		{
			name: "several audiences are an array", issuer: "ES256",
			opts:    assertionOptions{Issuer: "i", Subject: "s", Audience: []string{"a1", "a2"}, TTL: time.Hour, JTI: "j2"},
			wantAlg: "ES256", wantKID: "thumbprint",
			wantClaims: map[string]any{"iss": "i", "sub": "s", "aud": []any{"a1", "a2"}, "iat": iat, "exp": float64(now.Add(time.Hour).Unix()), "jti": "j2"},
		},
		{
			name: "scope kid and extra claims", issuer: "EdDSA",
			opts:    assertionOptions{Issuer: "i", Subject: "s", Audience: []string{"a"}, TTL: 5 * time.Minute, JTI: "j3", KID: "my-kid", Scope: "read write", Claims: []string{"tenant=acme", "level=3"}},
			wantAlg: "EdDSA", wantKID: "my-kid",
			wantClaims: map[string]any{"iss": "i", "sub": "s", "aud": "a", "iat": iat, "exp": exp5m, "jti": "j3", "scope": "read write", "tenant": "acme", "level": float64(3)},
		},
		{
			name: "no kid when asked", issuer: "ES256",
			opts:    assertionOptions{Issuer: "i", Subject: "s", Audience: []string{"a"}, TTL: 5 * time.Minute, JTI: "j4", NoKID: true},
			wantAlg: "ES256", wantKID: "",
			wantClaims: map[string]any{"iss": "i", "sub": "s", "aud": "a", "iat": iat, "exp": exp5m, "jti": "j4"},
		},
		{
			name: "explicit alg overrides the default", issuer: "RS256",
			opts:    assertionOptions{Issuer: "i", Subject: "s", Audience: []string{"a"}, TTL: 5 * time.Minute, JTI: "j5", Alg: "PS384"},
			wantAlg: "PS384", wantKID: "thumbprint",
			wantClaims: map[string]any{"iss": "i", "sub": "s", "aud": "a", "iat": iat, "exp": exp5m, "jti": "j5"},
		},
		{
			name: "claim flag overrides computed claims", issuer: "ES256",
			opts:    assertionOptions{Issuer: "i", Subject: "s", Audience: []string{"a"}, TTL: 5 * time.Minute, JTI: "j6", Claims: []string{"exp=1", "iat=2"}},
			wantAlg: "ES256", wantKID: "thumbprint",
			wantClaims: map[string]any{"iss": "i", "sub": "s", "aud": "a", "iat": float64(2), "exp": float64(1), "jti": "j6"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			iss := issuers[tc.issuer]
			tc.opts.KeyFile = iss.keyFile
			compact, err := makeAssertion(tc.opts, now)
			if err != nil {
				t.Fatalf("makeAssertion: %v", err)
			}
			header, claims := cmdDecode(t, compact, tc.wantAlg, iss.public)
			wantHeader := map[string]any{"alg": tc.wantAlg, "typ": "JWT"}
			switch tc.wantKID {
			case "thumbprint":
				wantHeader["kid"] = iss.kid
			case "":
			default:
				wantHeader["kid"] = tc.wantKID
			}
			if !reflect.DeepEqual(header, wantHeader) {
				t.Errorf("header %v, want %v", header, wantHeader)
			}
			if !reflect.DeepEqual(claims, tc.wantClaims) {
				t.Errorf("claims %v, want exactly %v", claims, tc.wantClaims)
			}
		})
	}
}

func TestMakeAssertionDefaultJTIIsFresh128BitBase64URL(t *testing.T) {
	iss := cmdTestIssuers(t, "ES256")["ES256"]
	opts := assertionOptions{KeyFile: iss.keyFile, Issuer: "i", Subject: "s", Audience: []string{"a"}, TTL: time.Minute}
	seen := map[string]bool{}
	for range 3 {
		compact, err := makeAssertion(opts, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		_, claims := cmdDecode(t, compact, "ES256", iss.public)
		jti, _ := claims["jti"].(string)
		raw, err := base64.RawURLEncoding.DecodeString(jti)
		if err != nil || len(raw) != 16 {
			t.Fatalf("jti %q is not 16 bytes of base64url (%v)", jti, err)
		}
		if seen[jti] {
			t.Fatalf("jti %q repeated", jti)
		}
		seen[jti] = true
	}
}

func TestClaimFlagKeepsJSONTypesAndDefaultsToString(t *testing.T) {
	iss := cmdTestIssuers(t, "ES256")["ES256"]
	for _, tc := range []struct {
		name, flag, wantJSON string
	}{
		{"integer", "v=5", `5`},
		{"negative float", "v=-1.5", `-1.5`},
		{"large integer keeps every digit", "v=12345678901234567890", `12345678901234567890`},
		{"true", "v=true", `true`},
		{"false", "v=false", `false`},
		{"object", `v={"a":1,"b":["x"]}`, `{"a":1,"b":["x"]}`},
		{"array", `v=[1,"x",null]`, `[1,"x",null]`},
		{"json string is unquoted", `v="42"`, `"42"`},
		{"plain text", "v=hello world", `"hello world"`},
		{"null is text", "v=null", `"null"`},
		{"empty", "v=", `""`},
		{"equals sign in value", "v=a=b", `"a=b"`},
		{"leading space is text", "v= 5", `" 5"`},
		{"number with junk is text", "v=5x", `"5x"`},
		{"truncated object is text", `v={"a":`, `"{\"a\":"`},
		{"word starting like true is text", "v=tomato", `"tomato"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			compact, err := makeAssertion(assertionOptions{
				KeyFile: iss.keyFile, Issuer: "i", Subject: "s", Audience: []string{"a"},
				TTL: time.Minute, Claims: []string{tc.flag},
			}, time.Now())
			if err != nil {
				t.Fatalf("makeAssertion: %v", err)
			}
			jws, err := jose.ParseSigned(compact, []jose.SignatureAlgorithm{jose.ES256})
			if err != nil {
				t.Fatal(err)
			}
			payload, err := jws.Verify(iss.public)
			if err != nil {
				t.Fatal(err)
			}
			var claims map[string]json.RawMessage
			if err := json.Unmarshal(payload, &claims); err != nil {
				t.Fatal(err)
			}
			if got := string(claims["v"]); got != tc.wantJSON {
				t.Errorf("claim v encoded as %s, want %s", got, tc.wantJSON)
			}
		})
	}
}

func TestMakeAssertionRejectsIncompleteOrInconsistentOptions(t *testing.T) {
	issuers := cmdTestIssuers(t, "ES256")
	dir := t.TempDir()
	certFile := strings.TrimSuffix(issuers["ES256"].keyFile, ".key") + ".pem"
	valid := func() assertionOptions {
		return assertionOptions{KeyFile: issuers["ES256"].keyFile, Issuer: "i", Subject: "s", Audience: []string{"a"}, TTL: time.Minute}
	}
	for _, tc := range []struct {
		name   string
		mutate func(*assertionOptions)
		want   string
	}{
		{"no key", func(o *assertionOptions) { o.KeyFile = "" }, "--key is required"},
		{"no iss", func(o *assertionOptions) { o.Issuer = "" }, "--iss is required"},
		{"no sub", func(o *assertionOptions) { o.Subject = "" }, "--sub is required"},
		{"no aud", func(o *assertionOptions) { o.Audience = nil }, "--aud is required"},
		{"empty aud", func(o *assertionOptions) { o.Audience = []string{"a", ""} }, "--aud must not be empty"},
		{"zero ttl", func(o *assertionOptions) { o.TTL = 0 }, "--ttl must be positive"},
		{"negative ttl", func(o *assertionOptions) { o.TTL = -time.Minute }, "--ttl must be positive"},
		{"claim without equals", func(o *assertionOptions) { o.Claims = []string{"novalue"} }, "want name=value"},
		{"claim without name", func(o *assertionOptions) { o.Claims = []string{"=v"} }, "want name=value"},
		{"claim twice", func(o *assertionOptions) { o.Claims = []string{"x=1", "x=2"} }, "given twice"},
		{"alg that does not fit the key", func(o *assertionOptions) { o.Alg = "ES384" }, "does not fit"},
		{"certificate given as key", func(o *assertionOptions) { o.KeyFile = certFile }, "no pem private key"},
		{"missing key file", func(o *assertionOptions) { o.KeyFile = filepath.Join(dir, "nope.key") }, "nope.key"},
		{"unknown profile", func(o *assertionOptions) { o.Profile = "saml" }, "unknown profile"},
		{"id-jag without client id", func(o *assertionOptions) { o.Profile = "id-jag" }, "--client-id is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := valid()
			tc.mutate(&o)
			compact, err := makeAssertion(o, time.Now())
			if err == nil {
				t.Fatalf("made %q", compact)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

// cmdRun runs `caddy jwt-grant args...` through the registered cobra
// wiring and returns its standard output.
func cmdRun(t *testing.T, args ...string) (string, error) {
	t.Helper()
	def, ok := caddycmd.Commands()["jwt-grant"]
	if !ok {
		t.Fatal("jwt-grant command is not registered")
	}
	root := &cobra.Command{Use: def.Name, Short: def.Short, SilenceUsage: true, SilenceErrors: true}
	def.CobraFunc(root)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&bytes.Buffer{})
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestJWTGrantCommandWiresFlagsToKeygenAndAssertion(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "keys", "demo")
	printed, err := cmdRun(t, "keygen", "--alg", "ES256", "--out", prefix)
	if err != nil {
		t.Fatalf("keygen: %v", err)
	}
	if !strings.Contains(printed, prefix+".jwks.json") {
		t.Errorf("keygen output %q does not name the jwks file", printed)
	}
	if _, err := cmdRun(t, "keygen", "--alg", "ES256", "--out", prefix); err == nil {
		t.Error("keygen replaced a key without --force")
	}
	if _, err := cmdRun(t, "keygen", "--alg", "ES256", "--out", prefix, "--force"); err != nil {
		t.Errorf("keygen --force: %v", err)
	}
	certPEM, err := os.ReadFile(prefix + ".pem")
	if err != nil {
		t.Fatal(err)
	}
	pubs, err := keys.ParsePublic(certPEM)
	if err != nil {
		t.Fatal(err)
	}

	out, err := cmdRun(t, "assertion", "--key", prefix+".key", "--iss", "i", "--sub", "s",
		"--aud", "a1", "--aud", "a2,still-a2", "--ttl", "90s", "--jti", "j", "--kid=",
		"--claim", "n=7", "--claim", "list=[1,2]", "--scope", "a b")
	if err != nil {
		t.Fatalf("assertion: %v", err)
	}
	if !strings.HasSuffix(out, "\n") || strings.Count(out, "\n") != 1 {
		t.Fatalf("output %q is not one line", out)
	}
	header, claims := cmdDecode(t, strings.TrimSuffix(out, "\n"), "ES256", pubs[0])
	if want := map[string]any{"alg": "ES256", "typ": "JWT"}; !reflect.DeepEqual(header, want) {
		t.Errorf("header %v, want %v (--kid= leaves kid out)", header, want)
	}
	iat, _ := claims["iat"].(float64)
	delete(claims, "iat")
	want := map[string]any{"iss": "i", "sub": "s", "aud": []any{"a1", "a2,still-a2"}, "exp": iat + 90, "jti": "j", "n": float64(7), "list": []any{float64(1), float64(2)}, "scope": "a b"}
	if !reflect.DeepEqual(claims, want) {
		t.Errorf("claims %v, want %v", claims, want)
	}
	if d := time.Since(time.Unix(int64(iat), 0)); d < -time.Second || d > time.Minute {
		t.Errorf("iat is %s away from now", d)
	}

	if _, err := cmdRun(t, "assertion", "--key", prefix+".key", "--iss", "i", "--sub", "s"); err == nil || !strings.Contains(err.Error(), "aud") {
		t.Errorf("assertion without --aud: got %v, want a required-flag error", err)
	}
	if _, err := cmdRun(t, "assertion", "stray", "--key", prefix+".key", "--iss", "i", "--sub", "s", "--aud", "a"); err == nil {
		t.Error("assertion accepted a stray argument")
	}
}

func TestAssertionCommandMintsIDJAGs(t *testing.T) {
	prefix := filepath.Join(t.TempDir(), "idp")
	if _, err := cmdRun(t, "keygen", "--alg", "ES256", "--out", prefix); err != nil {
		t.Fatalf("keygen: %v", err)
	}
	certPEM, err := os.ReadFile(prefix + ".pem")
	if err != nil {
		t.Fatal(err)
	}
	pubs, err := keys.ParsePublic(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		args     []string
		typ      string
		resource any
	}{
		{"one resource is a string", []string{"--profile", "id-jag", "--client-id", "agent", "--resource", "https://mcp.example/mcp"},
			grant.IDJAGType, "https://mcp.example/mcp"},
		{"several resources are an array", []string{"--profile", "id-jag", "--client-id", "agent", "--resource", "https://a.example/", "--resource", "https://b.example/"},
			grant.IDJAGType, []any{"https://a.example/", "https://b.example/"}},
		{"without resource there is no resource claim", []string{"--profile", "id-jag", "--client-id", "agent"}, grant.IDJAGType, nil},
		{"client id without the profile keeps typ JWT", []string{"--client-id", "agent"}, "JWT", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := cmdRun(t, append([]string{"assertion", "--key", prefix + ".key", "--iss", "https://idp.example",
				"--sub", "alice", "--aud", "https://as.example"}, tc.args...)...)
			if err != nil {
				t.Fatalf("assertion: %v", err)
			}
			header, claims := cmdDecode(t, strings.TrimSpace(out), "ES256", pubs[0])
			if header["typ"] != tc.typ || claims["client_id"] != "agent" || !reflect.DeepEqual(claims["resource"], tc.resource) {
				t.Fatalf("header %v claims %v", header, claims)
			}
		})
	}
}
