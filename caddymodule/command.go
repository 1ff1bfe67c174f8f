package caddymodule

import (
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/go-jose/go-jose/v4"
	"github.com/spf13/cobra"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/keys"
)

const (
	// keygenCertValidity bounds the self-signed certificate. The verifier
	// ignores certificate dates (the certificate only carries the key), so
	// this never breaks a running set-up; a year signals that the key is
	// meant to be rotated rather than kept forever.
	keygenCertValidity = 365 * 24 * time.Hour
	// keygenCertCN names the certificate's subject and issuer.
	keygenCertCN = "caddy-jwt-grant issuer"
	// defaultAssertionTTL is the assertion lifetime when --ttl is absent.
	defaultAssertionTTL = 5 * time.Minute
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "jwt-grant",
		Usage: "keygen|assertion [flags]",
		Short: "Makes issuer keys and signed assertions for trying jwt_grant",
		Long: `
Tools for trying the jwt_grant handler without a real token issuer.

keygen writes an issuer key pair and the files a trusted_issuer can use
to verify it; assertion signs a JWT assertion (RFC 7523) with that key,
to exchange at the token endpoint with
grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer.

  $ caddy jwt-grant keygen --out keys/issuer
  $ caddy jwt-grant assertion --key keys/issuer.key \
        --iss https://idp.example --sub alice --aud https://gw.example/oauth2/token
`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.AddCommand(keygenCommand(), assertionCommand())
		},
	})
}

func keygenCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "keygen [--alg " + strings.Join(keys.KeyAlgorithms(), "|") + "] [--out PREFIX] [--force]",
		Short: "Writes an issuer key pair, certificate and JWKS",
		Long: `
Generates an issuer signing key and writes three files:

  PREFIX.key        the private key, PKCS #8 PEM, mode 0600; keep it secret
  PREFIX.pem        a self-signed X.509 certificate of the public key
                    (CN "caddy-jwt-grant issuer", valid one year; jwt_grant
                    uses only its key, never its dates), for "certificate"
  PREFIX.jwks.json  {"keys":[...]} with the public JWK (kid = RFC 7638
                    thumbprint, alg, use "sig"), to serve at a "jwks_url"

--alg selects RS256 (RSA 2048, the default), ES256, ES384 or ES512
(ECDSA P-256, P-384 or P-521) or EdDSA (Ed25519). --out defaults to "issuer"; missing parent directories are
created. An existing PREFIX.key is never replaced unless --force is given.
`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			flags := cmd.Flags()
			alg, err := flags.GetString("alg")
			if err != nil {
				return err
			}
			out, err := flags.GetString("out")
			if err != nil {
				return err
			}
			force, err := flags.GetBool("force")
			if err != nil {
				return err
			}
			return keygen(alg, out, force, cmd.OutOrStdout())
		},
	}
	c.Flags().String("alg", "RS256", "Signature algorithm of the key: "+keygenAlgList())
	c.Flags().String("out", "issuer", "Path prefix of the files written")
	c.Flags().Bool("force", false, "Replace an existing PREFIX.key")
	return c
}

func assertionCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "assertion --key FILE --iss ISS --sub SUB --aud AUD [--aud AUD2 ...] [--ttl 5m] [--kid KID] [--jti JTI] [--claim k=v ...] [--scope \"a b\"] [--alg ALG] [--profile id-jag --client-id ID [--resource URI ...]]",
		Short: "Prints a signed JWT assertion",
		Long: `
Signs a JWT assertion for the JWT bearer grant (RFC 7523) and prints it,
followed by a newline, on standard output.

The header has typ "JWT", alg (by default RS256 for an RSA key, ES256,
ES384 or ES512 by curve for an ECDSA key, EdDSA for Ed25519) and kid (by
default the key's RFC 7638 thumbprint, as in the JWKS keygen writes;
--kid "" leaves it out).

The claims are iss, sub, aud (a string for one --aud, an array for
several), iat (now), exp (now + --ttl), jti (--jti, or 128 random bits in
base64url) and scope when --scope is given; dates are Unix seconds. Each
--claim name=value adds a claim: a value that is a JSON number, boolean,
object or array is used as that JSON value, a JSON string ("...") as the
string it encodes, anything else as the literal string. --claim is
applied last, so it can also replace iat, exp or any other claim, to try
how the gateway rejects a bad assertion.

--profile id-jag makes an Identity Assertion JWT Authorization Grant
(ID-JAG, SPEC §7) as an enterprise IdP would: typ "oauth-id-jag+jwt",
client_id (--client-id, required with the profile) and resource (--resource,
a string for one, an array for several). --aud is then the issuer_url of
the gateway that exchanges it. --client-id and --resource may be given
without the profile too.

--key is a PEM private key: PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY.
`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts, err := assertionOptionsFromFlags(cmd)
			if err != nil {
				return err
			}
			token, err := makeAssertion(opts, time.Now())
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), token)
			return err
		},
	}
	f := c.Flags()
	f.String("key", "", "PEM private key file to sign with (required)")
	f.String("iss", "", "Issuer claim (required)")
	f.String("sub", "", "Subject claim (required)")
	f.StringArray("aud", nil, "Audience; repeat for several (required)")
	f.Duration("ttl", defaultAssertionTTL, "Lifetime: exp = iat + ttl")
	f.String("kid", "", "Key ID header (default: the key's RFC 7638 thumbprint; \"\" for none)")
	f.String("jti", "", "JWT ID claim (default: 128 random bits)")
	f.StringArray("claim", nil, "Extra claim name=value; repeat for several")
	f.String("scope", "", "Space-separated scope claim")
	f.String("alg", "", "Signature algorithm (default: from the key type)")
	f.String("profile", "", "Assertion profile: id-jag for an ID-JAG (default: plain RFC 7523)")
	f.String("client-id", "", "client_id claim (required with --profile id-jag)")
	f.StringArray("resource", nil, "resource claim (RFC 8707); repeat for several")
	for _, name := range []string{"key", "iss", "sub", "aud"} {
		if err := c.MarkFlagRequired(name); err != nil {
			panic(err)
		}
	}
	return c
}

func assertionOptionsFromFlags(cmd *cobra.Command) (assertionOptions, error) {
	f := cmd.Flags()
	var (
		o   assertionOptions
		err error
	)
	str := func(name string) string {
		if err != nil {
			return ""
		}
		var v string
		v, err = f.GetString(name)
		return v
	}
	o.KeyFile = str("key")
	o.Issuer = str("iss")
	o.Subject = str("sub")
	o.KID = str("kid")
	o.JTI = str("jti")
	o.Scope = str("scope")
	o.Alg = str("alg")
	o.Profile = str("profile")
	o.ClientID = str("client-id")
	if err != nil {
		return o, err
	}
	if o.Resource, err = f.GetStringArray("resource"); err != nil {
		return o, err
	}
	if o.Audience, err = f.GetStringArray("aud"); err != nil {
		return o, err
	}
	if o.Claims, err = f.GetStringArray("claim"); err != nil {
		return o, err
	}
	if o.TTL, err = f.GetDuration("ttl"); err != nil {
		return o, err
	}
	// An explicitly empty --kid is the only way to ask for no kid, since
	// the default is the thumbprint.
	o.NoKID = f.Changed("kid") && o.KID == ""
	return o, nil
}

// keygen generates an issuer key for alg and writes PREFIX.key, PREFIX.pem
// and PREFIX.jwks.json, reporting the names written to out.
func keygen(alg, prefix string, force bool, out io.Writer) error {
	if prefix == "" {
		return errors.New("--out must not be empty")
	}
	if strings.HasSuffix(prefix, "/") || strings.HasSuffix(prefix, string(filepath.Separator)) {
		return fmt.Errorf("--out %s is a directory; give a file name prefix such as %sissuer", prefix, prefix)
	}
	keyPath, certPath, jwksPath := prefix+".key", prefix+".pem", prefix+".jwks.json"
	if !force {
		if _, err := os.Lstat(keyPath); err == nil {
			return fmt.Errorf("%s already exists; use --force to replace it", keyPath)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}

	alg, key, err := generateIssuerKey(alg)
	if err != nil {
		return err
	}
	jwk, err := keys.PublicJWK(key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encoding private key: %w", err)
	}
	now := time.Now()
	certDER, notAfter, err := selfSignedCertificate(key, now)
	if err != nil {
		return err
	}
	jwks, err := json.MarshalIndent(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk}}, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding jwks: %w", err)
	}

	if dir := filepath.Dir(prefix); dir != "." {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	// The key goes first so that a failed run never leaves a new
	// certificate or JWKS describing a key that was not written.
	if err := writeFileReplacing(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	if err := writeFileReplacing(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER}), 0o644); err != nil {
		return err
	}
	if err := writeFileReplacing(jwksPath, append(jwks, '\n'), 0o644); err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "wrote %s (%s private key, keep it secret)\nwrote %s (self-signed certificate, valid until %s)\nwrote %s (kid %s)\n",
		keyPath, alg, certPath, notAfter.UTC().Format(time.DateOnly), jwksPath, jwk.KeyID)
	return err
}

// generateIssuerKey returns a new key for alg and alg's canonical
// spelling. Only the algorithms a key signs with by default are offered
// (keys.KeyAlgorithms): the assertion command and jwt_grant's signing_key
// pick that algorithm, so the JWKS written must name it.
func generateIssuerKey(alg string) (string, crypto.Signer, error) {
	for _, a := range keys.KeyAlgorithms() {
		if strings.EqualFold(alg, a) {
			k, err := keys.GenerateKey(a)
			return a, k, err
		}
	}
	return "", nil, fmt.Errorf("unsupported --alg %q; want %s", alg, keygenAlgList())
}

// keygenAlgList spells keys.KeyAlgorithms for help and errors.
func keygenAlgList() string {
	algs := keys.KeyAlgorithms()
	return strings.Join(algs[:len(algs)-1], ", ") + " or " + algs[len(algs)-1]
}

func selfSignedCertificate(key crypto.Signer, now time.Time) ([]byte, time.Time, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, time.Time{}, err
	}
	// RFC 5280 wants a positive serial; zero is merely astronomically rare.
	serial.Add(serial, big.NewInt(1))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: keygenCertCN},
		// Backdated so that a peer whose clock runs a little behind, and
		// that does check dates, still accepts it.
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.Add(keygenCertValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("creating certificate: %w", err)
	}
	return der, tmpl.NotAfter, nil
}

// writeFileReplacing writes data to path through a temporary file renamed
// into place, so that a reader never sees a half-written key and a
// replaced file gets perm even when the old one had another mode.
func writeFileReplacing(path string, data []byte, perm os.FileMode) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(perm); err != nil {
		return err
	}
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return nil
}

// assertionOptions are the inputs of `caddy jwt-grant assertion`.
type assertionOptions struct {
	KeyFile  string
	Issuer   string
	Subject  string
	Audience []string
	TTL      time.Duration
	// KID is the kid header; "" means the key's thumbprint unless NoKID.
	KID   string
	NoKID bool
	// JTI is the jti claim; "" means 128 random bits.
	JTI string
	// Claims are name=value pairs, applied after every other claim.
	Claims []string
	Scope  string
	// Alg is the JWS algorithm; "" means keys.DefaultAlg of the key.
	Alg string
	// Profile is "" or grant.ProfileIDJAG, which sets the ID-JAG typ and
	// needs ClientID. ClientID and Resource are the client_id and
	// resource claims when set.
	Profile  string
	ClientID string
	Resource []string
}

// makeAssertion returns the compact JWS that opts describe, issued at now.
func makeAssertion(opts assertionOptions, now time.Time) (string, error) {
	switch {
	case opts.KeyFile == "":
		return "", errors.New("--key is required")
	case opts.Issuer == "":
		return "", errors.New("--iss is required")
	case opts.Subject == "":
		return "", errors.New("--sub is required")
	case len(opts.Audience) == 0:
		return "", errors.New("--aud is required")
	case opts.TTL <= 0:
		return "", fmt.Errorf("--ttl must be positive, got %s", opts.TTL)
	case opts.Profile != "" && opts.Profile != grant.ProfileIDJAG:
		return "", fmt.Errorf("--profile %q: unknown profile (id-jag)", opts.Profile)
	case opts.Profile == grant.ProfileIDJAG && opts.ClientID == "":
		return "", errors.New("--client-id is required with --profile id-jag")
	}
	for _, a := range opts.Audience {
		if a == "" {
			return "", errors.New("--aud must not be empty")
		}
	}
	extra, err := parseClaimFlags(opts.Claims)
	if err != nil {
		return "", err
	}

	data, err := os.ReadFile(opts.KeyFile)
	if err != nil {
		return "", err
	}
	key, err := keys.ParsePrivate(data)
	if err != nil {
		return "", fmt.Errorf("--key %s: %w", opts.KeyFile, err)
	}
	alg := opts.Alg
	if alg == "" {
		alg = keys.DefaultAlg(key)
	}
	kid := opts.KID
	if kid == "" && !opts.NoKID {
		if kid, err = keys.Thumbprint(key); err != nil {
			return "", err
		}
	}
	jti := opts.JTI
	if jti == "" {
		b := make([]byte, 16)
		if _, err := rand.Read(b); err != nil {
			return "", err
		}
		jti = base64.RawURLEncoding.EncodeToString(b)
	}

	claims := map[string]any{
		"iss": opts.Issuer,
		"sub": opts.Subject,
		"iat": now.Unix(),
		"exp": now.Add(opts.TTL).Unix(),
		"jti": jti,
	}
	// RFC 7519 §4.1.3 allows a single audience as a plain string, which is
	// also what most issuers send.
	if len(opts.Audience) == 1 {
		claims["aud"] = opts.Audience[0]
	} else {
		claims["aud"] = opts.Audience
	}
	if opts.Scope != "" {
		claims["scope"] = opts.Scope
	}
	if opts.ClientID != "" {
		claims["client_id"] = opts.ClientID
	}
	switch len(opts.Resource) {
	case 0:
	case 1:
		claims["resource"] = opts.Resource[0]
	default:
		claims["resource"] = opts.Resource
	}
	for k, v := range extra {
		claims[k] = v
	}
	typ := "JWT"
	if opts.Profile == grant.ProfileIDJAG {
		typ = grant.IDJAGType
	}
	return keys.Sign(key, alg, kid, typ, claims)
}

// parseClaimFlags turns --claim name=value pairs into claim values.
func parseClaimFlags(pairs []string) (map[string]any, error) {
	claims := make(map[string]any, len(pairs))
	for _, p := range pairs {
		name, value, ok := strings.Cut(p, "=")
		if !ok || name == "" {
			return nil, fmt.Errorf("--claim %q: want name=value", p)
		}
		if _, dup := claims[name]; dup {
			return nil, fmt.Errorf("--claim %s given twice", name)
		}
		claims[name] = claimValue(value)
	}
	return claims, nil
}

// claimValue types a --claim value: JSON numbers, booleans, objects and
// arrays keep their JSON type, a JSON string is unquoted (the way to pass
// "42" as a string), and anything else, null included, is the literal
// string. Numbers stay json.Number so that large integers keep every digit.
func claimValue(v string) any {
	if v == "" {
		return ""
	}
	switch c := v[0]; {
	case c == '{', c == '[', c == '"', c == 't', c == 'f', c == '-', c >= '0' && c <= '9':
	default:
		return v
	}
	if !json.Valid([]byte(v)) {
		return v
	}
	dec := json.NewDecoder(strings.NewReader(v))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err != nil {
		return v
	}
	return x
}
