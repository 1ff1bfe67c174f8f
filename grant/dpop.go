package grant

// DPoP (RFC 9449, SPEC §8): proofs of possession of a client key, checked
// at the token endpoint, which binds the tokens to the key, and in
// jwt_grant_auth, which then asks for a proof on every request. A proof is
// parsed once, by go-jose, through check 1 of the assertion checks
// (parseJWT); the rest of its rules are the functions below, in order.

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/keys"
)

// DPoP names and limits.
const (
	// TokenTypeDPoP is the token_type of a DPoP-bound access token (RFC
	// 9449 §5), in the token response and in introspection.
	TokenTypeDPoP = "DPoP"
	// CodeInvalidDPoPProof is the error of a missing or failed proof (RFC
	// 9449 §5, §7.1).
	CodeInvalidDPoPProof = "invalid_dpop_proof"
	// DPoPProofType is the typ header every proof carries (RFC 9449 §4.2).
	DPoPProofType = "dpop+jwt"
	// DefaultDPoPProofLifetime is how far a proof's iat may lie from now
	// (plus clock_skew) when nothing else is configured.
	DefaultDPoPProofLifetime = 60 * time.Second
	// maxDPoPJTI bounds a proof's jti in characters: a jti is a key of the
	// replay record, and a client has no reason to send more.
	maxDPoPJTI = 256
)

// Confirmation is the "cnf" member of a token record (RFC 7800 §3.1): the
// key the token is bound to, as its RFC 7638 SHA-256 thumbprint (RFC 9449
// §6.1).
type Confirmation struct {
	JKT string `json:"jkt"`
}

// tokenType is the token_type of an access token bound as cnf says.
func tokenType(cnf *Confirmation) string {
	if cnf != nil {
		return TokenTypeDPoP
	}
	return "Bearer"
}

// dpopChecker checks proofs against one configuration: the accepted
// algorithms, the proof lifetime and the clock skew.
type dpopChecker struct {
	algs     []string
	lifetime time.Duration
	skew     time.Duration
}

// newDPoPChecker returns the checker for algs (default
// keys.DefaultAlgorithms) and lifetime (default DefaultDPoPProofLifetime).
// An algorithm outside the asymmetric table is an error: none and HS* can
// never prove possession of a public key.
func newDPoPChecker(algs []string, lifetime, skew time.Duration) (*dpopChecker, error) {
	if len(algs) == 0 {
		algs = keys.DefaultAlgorithms
	}
	for _, alg := range algs {
		if !keys.IsAsymmetric(alg) {
			return nil, fmt.Errorf("dpop_algorithms: unknown or unsupported algorithm %q", alg)
		}
	}
	if lifetime <= 0 {
		lifetime = DefaultDPoPProofLifetime
	}
	return &dpopChecker{algs: slices.Clone(algs), lifetime: lifetime, skew: skew}, nil
}

// dpopProof is a proof that passed every check: the thumbprint of its key
// and its replay record, to be claimed together with whatever the request
// writes.
type dpopProof struct {
	jkt  string
	mark Mark
}

// dpopFailure is a failed proof check: a stable reason for logs and a
// short description that never echoes the proof.
type dpopFailure struct {
	reason, desc string
}

func (f *dpopFailure) Error() string { return f.reason + ": DPoP proof " + f.desc }

func dpopFail(reason, desc string) (*dpopProof, *dpopFailure) {
	return nil, &dpopFailure{reason: reason, desc: desc}
}

// check runs every rule of a proof in order (RFC 9449 §4.3): exactly one
// header value; check 1 of the assertion checks (a compact JWS signed with
// an asymmetric algorithm, no crit, b64, enc or zip, a JSON object as
// payload); typ dpop+jwt; alg accepted; a public jwk that fits alg and
// verifies the signature; htm, htu, iat, jti; and, when accessToken is
// set (a resource request), ath. Nothing is written: the replay record is
// returned for the caller to claim.
func (c *dpopChecker) check(values []string, method string, u *url.URL, accessToken string, now time.Time) (*dpopProof, *dpopFailure) {
	switch {
	case len(values) == 0:
		return dpopFail("missing", "is required")
	case len(values) > 1:
		return dpopFail("repeated", "header must appear once")
	}
	raw := values[0]
	var first *dpopFailure
	t, oerr := parseJWT(raw, func(reason, desc string) *Error {
		first = &dpopFailure{reason: reason, desc: desc}
		return invalidRequest(reason, desc)
	})
	if oerr != nil {
		return nil, first
	}
	h := t.header
	if typ, _ := h.ExtraHeaders["typ"].(string); !strings.EqualFold(typ, DPoPProofType) {
		return dpopFail("bad_typ", "typ must be "+DPoPProofType)
	}
	if !slices.Contains(c.algs, h.Algorithm) {
		return dpopFail("bad_alg", "algorithm is not accepted")
	}
	jkt, f := c.checkKey(t, raw)
	if f != nil {
		return nil, f
	}
	if htm, _, _ := t.stringClaim("htm"); htm != method {
		return dpopFail("bad_htm", "htm does not match the request method")
	}
	want, _ := normalizeHTU(u)
	htu, _, _ := t.stringClaim("htu")
	if got, ok := parseHTU(htu); !ok || got != want || want == "" {
		return dpopFail("bad_htu", "htu does not match the request URL")
	}
	iat, present, ok := t.dateClaim("iat")
	switch {
	case !ok || !present:
		return dpopFail("bad_iat", "iat must be a number")
	case iat.After(now.Add(c.skew)):
		return dpopFail("iat_in_future", "iat is in the future")
	case now.Sub(iat) > c.lifetime+c.skew:
		return dpopFail("iat_too_old", "is too old")
	}
	jti, _, ok := t.stringClaim("jti")
	switch {
	case !ok || jti == "":
		return dpopFail("bad_jti", "jti must be a non-empty string")
	case utf8.RuneCountInString(jti) > maxDPoPJTI:
		return dpopFail("jti_too_long", "jti is too long")
	}
	if accessToken != "" {
		if ath, _, _ := t.stringClaim("ath"); ath != AccessTokenHash(accessToken) {
			return dpopFail("bad_ath", "ath does not match the access token")
		}
	}
	// Kept until the last moment the proof could still be accepted, so
	// that it is single-use for as long as it is valid at all.
	return &dpopProof{jkt: jkt, mark: Mark{Key: replayMarkKey("dpop", "", want, jti), Until: iat.Add(c.lifetime + c.skew)}}, nil
}

// privateJWKMembers are the JWK members of private and symmetric keys
// (RFC 7518 §6.2.2, §6.3.2, §6.4.1). go-jose already refuses an embedded
// private key; the header is read again for them so that the refusal is
// this package's rule, not a side effect of a library's parser.
var privateJWKMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// checkKey requires a public jwk header whose type fits alg, admitted by
// keys.Admit, that verifies the proof's signature, and returns its
// thumbprint.
func (c *dpopChecker) checkKey(t *signedJWT, raw string) (string, *dpopFailure) {
	jwk := t.header.JSONWebKey
	if jwk == nil {
		return "", &dpopFailure{"missing_jwk", "has no jwk header"}
	}
	if hasPrivateJWKMembers(raw) || !jwk.IsPublic() {
		return "", &dpopFailure{"private_jwk", "jwk must be a public key"}
	}
	pub, err := keys.Admit(jwk.Key)
	if err != nil || !keys.Fits(t.header.Algorithm, pub) {
		return "", &dpopFailure{"bad_jwk", "jwk does not fit the algorithm"}
	}
	if _, err := t.jws.Verify(pub); err != nil {
		return "", &dpopFailure{"bad_signature", "signature is invalid"}
	}
	jkt, err := keys.Thumbprint(pub)
	if err != nil {
		return "", &dpopFailure{"bad_jwk", "jwk does not fit the algorithm"}
	}
	return jkt, nil
}

// hasPrivateJWKMembers reports whether the protected header's jwk has a
// member of a private or symmetric key. raw already passed parseJWT, so
// its first segment is canonical base64url of a JSON object.
func hasPrivateJWKMembers(raw string) bool {
	seg, _, _ := strings.Cut(raw, ".")
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return true
	}
	var h struct {
		JWK map[string]json.RawMessage `json:"jwk"`
	}
	if json.Unmarshal(b, &h) != nil {
		return true
	}
	for _, m := range privateJWKMembers {
		if _, ok := h.JWK[m]; ok {
			return true
		}
	}
	return false
}

// AccessTokenHash is a proof's ath for an access token (RFC 9449 §4.2):
// base64url(SHA-256(token)).
func AccessTokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// normalizeHTU is the form in which a request URL and a proof's htu are
// compared (RFC 9449 §4.3 item 9, RFC 3986 §6.2.2 and §6.2.3): scheme and
// host in lower case, the scheme's default port dropped, an empty path as
// "/", no user info, query or fragment. Only http and https URLs with a
// host have one; "" otherwise. Hand-written because net/url parses but
// does not normalise, and no library in the module does.
func normalizeHTU(u *url.URL) (string, bool) {
	if u == nil || u.Host == "" || u.Opaque != "" {
		return "", false
	}
	scheme := strings.ToLower(u.Scheme)
	host := strings.ToLower(u.Host)
	switch scheme {
	case "https":
		host = strings.TrimSuffix(host, ":443")
	case "http":
		host = strings.TrimSuffix(host, ":80")
	default:
		return "", false
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	return scheme + "://" + host + path, true
}

// parseHTU parses and normalises a proof's htu.
func parseHTU(s string) (string, bool) {
	u, err := url.Parse(s)
	if err != nil {
		return "", false
	}
	return normalizeHTU(u)
}

// requestURLKey is the context key of the URL the client addressed.
type requestURLKey struct{}

// WithRequestURL returns ctx carrying u, the URL of the request as the
// client addressed it: scheme, host and path before any rewrite by the
// server in front (a path prefix stripped by a route, say). A proof's htu
// is compared with it. The Caddy shell sets it from Caddy's original
// request; without it RequestURL falls back to the request itself.
func WithRequestURL(ctx context.Context, u *url.URL) context.Context {
	return context.WithValue(ctx, requestURLKey{}, u)
}

// RequestURL is the URL the client addressed: the one WithRequestURL put
// in the request's context, else the request's own scheme (TLS or not),
// Host and path. Forwarded headers are never read here: whether to
// believe them is the server's decision (trusted proxies), not the
// core's.
func RequestURL(r *http.Request) *url.URL {
	if u, ok := r.Context().Value(requestURLKey{}).(*url.URL); ok && u != nil {
		return u
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return &url.URL{Scheme: scheme, Host: r.Host, Path: r.URL.Path, RawPath: r.URL.RawPath}
}

// dpopError is the token endpoint's answer to a failed proof: 400
// invalid_dpop_proof (RFC 9449 §5).
func dpopError(f *dpopFailure) *Error {
	return newError(CodeInvalidDPoPProof, http.StatusBadRequest, "dpop_"+f.reason, "DPoP proof "+f.desc)
}

// DPoPHeader is the DPoP header's name as a key of http.Header, the
// canonical form of "DPoP". Reading r.Header[DPoPHeader] costs nothing;
// r.Header.Values("DPoP") would canonicalise, and allocate, on every
// request, as "DPoP" is not in canonical form.
const DPoPHeader = "Dpop"

// tokenProof checks the DPoP header of a token request, if it has one:
// nil, nil without a header (whether one is required is decided once the
// client is known, by checkDPoPBinding).
func (s *Server) tokenProof(r *http.Request, now time.Time) (*dpopProof, *Error) {
	values := r.Header[DPoPHeader]
	if len(values) == 0 {
		return nil, nil
	}
	p, f := s.dpop.check(values, r.Method, RequestURL(r), "", now)
	if f != nil {
		return nil, dpopError(f)
	}
	return p, nil
}

// checkDPoPBinding decides the key the tokens of a grant are bound to, and
// refuses what SPEC §8 refuses: a refresh of a bound chain without a
// proof of its key (invalid_grant), and a dpop required client without a
// proof. It returns the access token's and the refresh token's binding.
func checkDPoPBinding(req *tokenRequest, g *granted) (access, refresh *Confirmation, oerr *Error) {
	if g.rotate != "" && g.boundJKT != "" && (req.dpop == nil || req.dpop.jkt != g.boundJKT) {
		return nil, nil, invalidGrant("dpop_key_mismatch", "refresh token is bound to another key")
	}
	if req.dpop == nil {
		if req.client != nil && req.client.DPoPRequired {
			return nil, nil, dpopError(&dpopFailure{"required", "is required for this client"})
		}
		return nil, nil, nil
	}
	access = &Confirmation{JKT: req.dpop.jkt}
	switch {
	case g.rotate == "":
		// A new chain is bound to the key that began it.
		refresh = access
	case g.boundJKT != "":
		refresh = access
	}
	// A chain that began unbound stays unbound: binding it now would let
	// whoever holds a copied refresh token lock out the client.
	return access, refresh, nil
}

// checkConfirmation is SPEC §7/§8's rule for an ID-JAG with a cnf claim:
// the token request must carry a proof of that key (else invalid_grant),
// and the tokens are then bound to it (which issue does for every proof).
// An assertion without cnf.jkt passes. exchange calls it for the
// assertions of issuers with profile id-jag.
func checkConfirmation(t *signedJWT, proof *dpopProof) *Error {
	raw, ok := t.claim("cnf")
	if !ok {
		return nil
	}
	var cnf struct {
		JKT *string `json:"jkt"`
	}
	if json.Unmarshal(raw, &cnf) != nil {
		return invalidGrant("bad_cnf", "assertion cnf claim is malformed")
	}
	switch {
	case cnf.JKT == nil:
		return nil
	case proof == nil:
		return invalidGrant("cnf_without_proof", "assertion is bound to a key: a DPoP proof is required")
	case *cnf.JKT != proof.jkt:
		return invalidGrant("cnf_key_mismatch", "DPoP proof key does not match the assertion's cnf")
	}
	return nil
}

// isDPoPReplay reports whether err is the replay of req's proof.
func isDPoPReplay(req *tokenRequest, err error) bool {
	var re *ReplayError
	return req.dpop != nil && errors.As(err, &re) && re.Key == req.dpop.mark.Key
}

func dpopReplay() *Error {
	return dpopError(&dpopFailure{"replay", "has already been used"})
}

// appendDPoPMark appends a proof's replay record to marks, last: a store
// names the first held mark, and a replayed client or grant assertion is
// the more telling answer.
func appendDPoPMark(marks []Mark, p *dpopProof) []Mark {
	if p == nil {
		return marks
	}
	return append(slices.Clip(marks), p.mark)
}

// claimRequestMarks claims the marks of a refresh (the client assertion's
// and the proof's) before its rotation, telling a replayed proof from a
// replayed client assertion.
func (s *Server) claimRequestMarks(req *tokenRequest, marks []Mark) *Error {
	err := s.cfg.Store.ClaimMarks(req.ctx, marks)
	switch {
	case err == nil:
		return nil
	case isDPoPReplay(req, err):
		return dpopReplay()
	case errors.Is(err, ErrReplay):
		return clientReplay()
	}
	return s.storeError("claim_marks", err)
}

// boundJKT is the thumbprint cnf binds to, "" for an unbound record.
func boundJKT(cnf *Confirmation) string {
	if cnf == nil {
		return ""
	}
	return cnf.JKT
}
