package caddymodule

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/keys"
)

// dpopClientKey is the client's proof key, made once for the package.
var dpopClientKey = sync.OnceValue(mustECKey)

// makeProof signs a DPoP proof as a client does, with go-jose's signer
// (the jwk header embedded by the library, not by hand); token, when set,
// gives ath.
func makeProof(t testing.TB, method, htu, token string) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: dpopClientKey()},
		(&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]any{"htm": method, "htu": htu, "iat": time.Now().Unix(), "jti": rand.Text()}
	if token != "" {
		sum := sha256.Sum256([]byte(token))
		claims["ath"] = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	s, err := josejwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A gateway serving jwt_grant under /auth (handle_path strips it) and an
// API under /api (uri strip_prefix): the client addresses, and signs, the
// URLs with their prefixes.
func TestDPoPThroughCaddyBehindPathPrefixes(t *testing.T) {
	f := newFixture(t)
	site := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
	startCaddy(t, strings.NewReplacer("{SITE}", site, "{IDP}", testIdP, "{CERT}", f.certPath, "{HASH}", f.hash).Replace(`{SITE} {
	handle_path /auth/* {
		jwt_grant {
			issuer_url {SITE}/auth
			trusted_issuer idp {
				issuer {IDP}
				certificate {CERT}
			}
			client app {
				secret {HASH}
				dpop required
			}
		}
	}
	handle /api/* {
		uri strip_prefix /api
		jwt_grant_auth
		respond "path={path} jkt={http.auth.user.cnf_jkt}"
	}
	handle /strict/* {
		jwt_grant_auth {
			dpop required
		}
		respond "strict"
	}
}
`))
	tokenURL := site + "/auth/oauth2/token"
	token := func(proofHTU string) response {
		req, _ := http.NewRequest(http.MethodPost, tokenURL, strings.NewReader(jwtBearerForm(
			f.assertion(t, map[string]any{"iss": testIdP, "sub": "alice", "aud": site + "/auth"})).Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("app", url.QueryEscape(f.secret))
		if proofHTU != "" {
			req.Header.Set("DPoP", makeProof(t, "POST", proofHTU, ""))
		}
		return do(t, req)
	}
	if r := token(""); r.status != 400 || r.str("error") != "invalid_dpop_proof" {
		t.Fatalf("dpop required client without a proof: %s", r)
	}
	if r := token(site + "/oauth2/token"); r.status != 400 || r.str("error") != "invalid_dpop_proof" {
		t.Fatalf("a proof for the stripped path: %s", r)
	}
	r := token(tokenURL)
	if r.status != 200 || r.str("token_type") != "DPoP" {
		t.Fatalf("token: %s", r)
	}
	at := r.str("access_token")
	// The metadata, under the prefix too, lists the proof algorithms.
	if m := get(t, site+"/auth/.well-known/oauth-authorization-server", ""); !strings.Contains(m.raw, `"dpop_signing_alg_values_supported"`) {
		t.Fatalf("metadata: %s", m)
	}

	api := func(url, authorization, proofHTU string) response {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Header.Set("Authorization", authorization)
		if proofHTU != "" {
			req.Header.Set("DPoP", makeProof(t, "GET", proofHTU, at))
		}
		return do(t, req)
	}
	jkt, _ := keys.Thumbprint(dpopClientKey())
	if r := api(site+"/api/orders?page=2", "DPoP "+at, site+"/api/orders"); r.status != 200 || r.raw != "path=/orders jkt="+jkt {
		t.Fatalf("bound token with its proof: %s", r)
	}
	const badProof = `DPoP algs="RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA", error="invalid_dpop_proof"`
	if r := api(site+"/api/orders", "DPoP "+at, site+"/orders"); r.status != 401 || r.header.Get("WWW-Authenticate") != badProof {
		t.Fatalf("a proof for the rewritten path: %s %q", r, r.header.Get("WWW-Authenticate"))
	}
	if r := api(site+"/api/orders", "Bearer "+at, ""); r.status != 401 || r.header.Get("WWW-Authenticate") != challengeInvalid {
		t.Fatalf("a bound token as Bearer: %s %q", r, r.header.Get("WWW-Authenticate"))
	}
	r = api(site+"/strict/x", "", "")
	if got := r.header.Values("WWW-Authenticate"); r.status != 401 || len(got) != 1 || !strings.HasPrefix(got[0], "DPoP algs=") {
		t.Fatalf("dpop required without credentials: %s %q", r, got)
	}
	r = api(site+"/api/x", "", "")
	if got := r.header.Values("WWW-Authenticate"); r.status != 401 || len(got) != 2 || got[0] != challengeMissing || !strings.HasPrefix(got[1], "DPoP algs=") {
		t.Fatalf("no credentials: %s %q", r, got)
	}
}

// startCaddyWithGlobals is startCaddy with extra global options (inside
// the harness's own global block).
func startCaddyWithGlobals(t testing.TB, globals, caddyfile string) {
	t.Helper()
	if !strings.Contains(globalOptions, "\tskip_install_trust\n") {
		t.Fatal("the harness's global options changed shape")
	}
	startCaddyfile(t, strings.Replace(globalOptions, "\tskip_install_trust\n", "\tskip_install_trust\n"+globals, 1)+caddyfile)
}

// A gateway behind another proxy, which rewrites Host: the client
// addresses (and signs) the edge's URL, and the gateway rebuilds it from
// X-Forwarded-Host and X-Forwarded-Proto only when the edge is one of its
// trusted_proxies; from anyone else those headers are ignored.
func TestDPoPBehindAnotherProxy(t *testing.T) {
	for _, tc := range []struct {
		name    string
		globals string
		trusted bool
	}{
		{"a trusted proxy's forwarded headers are believed", "\tservers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}\n", true},
		{"an untrusted proxy's forwarded headers are ignored", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			edge := fmt.Sprintf("127.0.0.1:%d", freePort(t))
			gw := fmt.Sprintf("127.0.0.1:%d", freePort(t))
			startCaddyWithGlobals(t, tc.globals, strings.NewReplacer("{EDGE}", edge, "{GW}", gw, "{IDP}", testIdP,
				"{CERT}", f.certPath, "{HASH}", f.hash).Replace(`http://{EDGE} {
	reverse_proxy {GW} {
		header_up Host {upstream_hostport}
	}
}
http://{GW} {
	jwt_grant {
		issuer_url http://{EDGE}
		trusted_issuer idp {
			issuer {IDP}
			certificate {CERT}
		}
		client app {
			secret {HASH}
		}
	}
	handle /api/* {
		jwt_grant_auth
		respond "host={host} jkt={http.auth.user.cnf_jkt}"
	}
}
`))
			tokenURL := "http://" + edge + "/oauth2/token"
			req, _ := http.NewRequest(http.MethodPost, tokenURL, strings.NewReader(jwtBearerForm(
				f.assertion(t, map[string]any{"iss": testIdP, "sub": "alice", "aud": "http://" + edge})).Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth("app", url.QueryEscape(f.secret))
			req.Header.Set("DPoP", makeProof(t, "POST", tokenURL, ""))
			r := do(t, req)
			if !tc.trusted {
				// The gateway sees its own host, not the one the proof names.
				if r.status != 400 || r.str("error") != "invalid_dpop_proof" {
					t.Fatalf("a proof for the edge's URL through an untrusted proxy: %s", r)
				}
				return
			}
			if r.status != 200 || r.str("token_type") != "DPoP" {
				t.Fatalf("token through the trusted edge: %s", r)
			}
			at := r.str("access_token")
			api := "http://" + edge + "/api/orders"
			req, _ = http.NewRequest(http.MethodGet, api, nil)
			req.Header.Set("Authorization", "DPoP "+at)
			req.Header.Set("DPoP", makeProof(t, "GET", api, at))
			if r := do(t, req); r.status != 200 || r.raw != "host="+strings.Split(gw, ":")[0]+" jkt="+jktOf(t) {
				t.Fatalf("a resource through the trusted edge: %s", r)
			}
		})
	}
}

func jktOf(t testing.TB) string {
	t.Helper()
	jkt, err := keys.Thumbprint(dpopClientKey())
	if err != nil {
		t.Fatal(err)
	}
	return jkt
}
