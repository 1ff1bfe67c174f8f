package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// dpopClient is a DPoP client (RFC 9449): an ES256 key and the proofs it
// signs. Proofs are single-use and carry iat, so a scenario's proofs are
// signed just before that scenario starts, still outside its clock.
type dpopClient struct {
	signer jose.Signer
}

func newDPoPClient() (*dpopClient, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
		(&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
	if err != nil {
		return nil, err
	}
	return &dpopClient{signer: signer}, nil
}

// proof signs one proof for method and htu; token, when set, is bound by
// its ath.
func (c *dpopClient) proof(method, htu, token string) (string, error) {
	claims := map[string]any{"htm": method, "htu": htu, "iat": time.Now().Unix(), "jti": rand.Text()}
	if token != "" {
		sum := sha256.Sum256([]byte(token))
		claims["ath"] = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	return jwt.Signed(c.signer).Claims(claims).Serialize()
}

// proofs signs n proofs for GET htu bound to token.
func (c *dpopClient) proofs(n int, htu, token string) ([]string, error) {
	out := make([]string, n)
	for i := range out {
		p, err := c.proof(http.MethodGet, htu, token)
		if err != nil {
			return nil, err
		}
		out[i] = p
	}
	return out, nil
}

// exchangeDPoP exchanges an assertion with a proof, for a DPoP-bound token.
func (c *dpopClient) exchange(base, basic, body string) (string, error) {
	proof, err := c.proof(http.MethodPost, base+"/oauth2/token", "")
	if err != nil {
		return "", err
	}
	req, _ := http.NewRequest(http.MethodPost, base+"/oauth2/token", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", basic)
	req.Header.Set("DPoP", proof)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"token_type":"DPoP"`) {
		return "", fmt.Errorf("token endpoint answered %d: %s", resp.StatusCode, b)
	}
	const field = `"access_token":"`
	i := strings.Index(string(b), field)
	if i < 0 {
		return "", fmt.Errorf("no access_token in the answer")
	}
	tok, _, _ := strings.Cut(string(b)[i+len(field):], `"`)
	return tok, nil
}
