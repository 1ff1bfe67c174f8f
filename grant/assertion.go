package grant

// The assertion checks of SPEC §3.1, in order, one function each.
// validateAssertion calls checks 3 to 10 for a grant assertion; the token
// endpoint calls checks 1 and 2 itself, because it needs the issuer before
// it knows whether client authentication was optional. A client assertion
// (private_key_jwt, clientassertion.go) goes through the same functions
// with its own error constructor.

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/keys"
)

// maxAssertionSize bounds a compact JWS (check 1).
const maxAssertionSize = 16 << 10

// maxCandidateKeys bounds how many keys one assertion is tried against
// (check 3), so that neither a large key set nor a kid can turn signature
// verification into a CPU sink.
const maxCandidateKeys = 8

// signatureAlgorithms is the allow-list handed to go-jose's parser: every
// asymmetric algorithm. An issuer's own narrower list is check 3.
var signatureAlgorithms = keys.SignatureAlgorithms(keys.DefaultAlgorithms)

// verifiedAssertion is a grant assertion that passed checks 1 to 9. Check 10's
// replay record is claimed by the store together with the token records,
// so that a request failing later leaves the jti unused.
type verifiedAssertion struct {
	Issuer  *Issuer
	Subject string
	// Scope is the assertion's scope claim split into tokens; HasScope
	// tells an absent claim from an empty one.
	Scope    []string
	HasScope bool
	// Claims are the issuer's configured claims copied from the assertion.
	Claims map[string]json.RawMessage
	// Mark is the replay record to claim; nil when the assertion has no
	// jti, else &mark1[0], the storage marks() returns.
	Mark  *Mark
	mark1 [1]Mark
	// Profile is the issuer's profile when the assertion passed its
	// checks (ProfileIDJAG), "" otherwise. ClientID is an ID-JAG's
	// client_id; Resources its resource claim, resolved, and HasResource
	// whether it had one.
	Profile     string
	ClientID    string
	Resources   []*Resource
	HasResource bool
}

// marks returns the assertion's replay records to claim, none without a
// jti: Mark as a slice of one, in the assertion's own storage.
func (a *verifiedAssertion) marks() []Mark {
	if a.Mark == nil {
		return nil
	}
	return a.mark1[:]
}

// signedJWT is a compact JWS parsed once, by go-jose: the protected header
// as go-jose read it and the claims decoded from the same parse's payload.
// Nothing in it is trusted before checkSignature.
type signedJWT struct {
	jws    *jose.JSONWebSignature
	header jose.Header
	claims map[string]json.RawMessage
	// iss is the unverified iss claim, "" when absent or not a string.
	iss string
	// str and date are what stringClaim and dateClaim decode into:
	// fields of a token already on the heap, where a variable per claim
	// would be one allocation more per decode.
	str  string
	date josejwt.NumericDate
}

// failFunc builds the answer to a failed check: invalidGrant for a grant
// assertion, the client's own constructor for a client assertion.
type failFunc func(reason, desc string) *Error

// parseJWT is check 1: a compact JWS of at most maxAssertionSize, signed
// with an asymmetric algorithm (go-jose's allow-list refuses none, HS*
// and anything unknown), without crit, b64, enc or zip header members,
// whose payload is exactly one JSON object.
func parseJWT(raw string, fail failFunc) (*signedJWT, *Error) {
	if len(raw) > maxAssertionSize {
		return nil, fail("too_large", "is too large")
	}
	if !canonicalCompact(raw) {
		return nil, fail("malformed", "is not a compact JWS")
	}
	jws, err := jose.ParseSignedCompact(raw, signatureAlgorithms)
	if err != nil {
		if _, ok := errors.AsType[*jose.ErrUnexpectedSignatureAlgorithm](err); ok {
			return nil, fail("bad_alg", "algorithm is not accepted")
		}
		return nil, fail("malformed", "is not a compact JWS")
	}
	h := jws.Signatures[0].Protected
	// go-jose keeps header members it has no field for in ExtraHeaders;
	// each of these would change what the signature means.
	switch extra := h.ExtraHeaders; {
	case extra["enc"] != nil:
		return nil, fail("jwe", "must not be encrypted")
	case extra["crit"] != nil:
		return nil, fail("crit", "header has unsupported critical parameters")
	case extra["b64"] != nil:
		return nil, fail("b64", "header must not carry b64")
	case extra["zip"] != nil:
		return nil, fail("zip", "must not be compressed")
	}
	t := &signedJWT{jws: jws, header: h}
	// json.Unmarshal refuses anything after the top-level value; a
	// payload that is not an object leaves the map nil or fails.
	if json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &t.claims) != nil || t.claims == nil {
		return nil, fail("malformed", "claims are not a JSON object")
	}
	t.iss, _, _ = t.stringClaim("iss")
	return t, nil
}

// canonicalCompact reports whether raw holds only base64url characters
// and dots, with no segment that decodes leniently. go-jose decodes with
// base64.RawURLEncoding, which skips CR and LF and ignores non-zero
// trailing bits, so that many strings would carry the same signature; a
// JWS has one spelling here. Checked by hand because no decoder in the
// standard library or go-jose offers a strict mode that go-jose's parser
// would use.
func canonicalCompact(raw string) bool {
	segStart := 0
	for i := 0; i <= len(raw); i++ {
		if i < len(raw) && raw[i] != '.' {
			if base64URLValue[raw[i]] < 0 {
				return false
			}
			continue
		}
		seg := raw[segStart:i]
		segStart = i + 1
		if len(seg) == 0 {
			continue // an empty segment is go-jose's to refuse
		}
		last := base64URLValue[seg[len(seg)-1]]
		switch len(seg) % 4 {
		case 1:
			return false
		case 2:
			if last&0x0f != 0 {
				return false
			}
		case 3:
			if last&0x03 != 0 {
				return false
			}
		}
	}
	return true
}

// base64URLValue maps a byte to its base64url value, -1 outside the
// alphabet.
var base64URLValue = func() (t [256]int8) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := range t {
		t[i] = -1
	}
	for i := range len(alphabet) {
		t[alphabet[i]] = int8(i)
	}
	return t
}()

// checkIssuer is check 2: iss names a trusted issuer of the tenant. A
// client's issuers restriction is the token endpoint's to check: it is
// unauthorized_client, not invalid_grant.
func checkIssuer(t *signedJWT, tenant *Tenant) (*Issuer, *Error) {
	if is := tenant.Issuers[t.iss]; is != nil && t.iss != "" {
		return is, nil
	}
	return nil, invalidGrant("unknown_issuer", "assertion issuer is not trusted")
}

// validateAssertion runs checks 3 to 10 of a grant assertion against its
// issuer, in order.
func (s *Server) validateAssertion(ctx context.Context, t *signedJWT, issuer *Issuer, now time.Time) (*verifiedAssertion, *Error) {
	pol, fail := &s.cfg.Policy, failFunc(assertionError)
	if oerr := checkSignature(ctx, t, issuer.Keys, issuer.Algorithms, fail); oerr != nil {
		return nil, oerr
	}
	sub, oerr := checkSubject(t, issuer.Subjects, fail)
	if oerr != nil {
		return nil, oerr
	}
	if oerr := checkAudience(t, s.audiences, issuer.Aliases, fail); oerr != nil {
		return nil, oerr
	}
	exp, oerr := checkExpiry(t, pol, now, fail)
	if oerr != nil {
		return nil, oerr
	}
	if oerr := checkNotBefore(t, pol, now, fail); oerr != nil {
		return nil, oerr
	}
	iat, oerr := checkIssuedAt(t, pol, now, fail)
	if oerr != nil {
		return nil, oerr
	}
	if oerr := checkLifetime(exp, iat, pol, now, fail); oerr != nil {
		return nil, oerr
	}
	jti, oerr := checkJTI(t, pol.RequireJTI, fail)
	if oerr != nil {
		return nil, oerr
	}
	a := &verifiedAssertion{Issuer: issuer, Subject: sub, Claims: t.copyClaims(issuer.Claims)}
	if scope, present, ok := t.stringClaim("scope"); !ok {
		return nil, invalidGrant("bad_scope_claim", "assertion scope claim must be a string")
	} else if present {
		a.HasScope = true
		a.Scope = splitScope(scope)
	}
	if issuer.Profile == ProfileIDJAG {
		if oerr := s.checkIDJAG(t, a); oerr != nil {
			return nil, oerr
		}
	}
	if jti != "" {
		a.mark1[0] = Mark{Key: replayMarkKey("grant", "", issuer.Issuer, jti), Until: exp.Add(pol.ClockSkew)}
		a.Mark = &a.mark1[0]
	}
	return a, nil
}

// checkSignature is check 3: alg is one of allowed, and the signature
// verifies with one of at most maxCandidateKeys keys of the set that fit
// alg. A key with a kid is a candidate only for an assertion with the same
// kid; a key without one for any assertion. Header members that name keys
// (jku, x5u, jwk, x5c) are never consulted.
func checkSignature(ctx context.Context, t *signedJWT, ks keys.Set, allowed []string, fail failFunc) *Error {
	alg, kid := t.header.Algorithm, t.header.KeyID
	if !slices.Contains(allowed, alg) {
		return fail("alg_not_allowed", "algorithm is not accepted for this issuer")
	}
	candidates, err := ks.Keys(ctx, kid)
	if err != nil {
		if errors.Is(err, keys.ErrUnavailable) {
			return unavailable("issuer_keys_unavailable", "issuer keys cannot be obtained")
		}
		return fail("no_key", "has no key that verifies it")
	}
	tried := 0
	for _, k := range candidates {
		if kid != "" && k.KID != "" && k.KID != kid || !k.Verifies(alg) {
			continue
		}
		if tried == maxCandidateKeys {
			break
		}
		tried++
		if _, err := t.jws.Verify(k.Public); err == nil {
			return nil
		}
	}
	return fail("bad_signature", "signature is invalid")
}

// checkSubject is check 4: sub is a non-empty string, one of subjects
// when set.
func checkSubject(t *signedJWT, subjects []string, fail failFunc) (string, *Error) {
	sub, _, ok := t.stringClaim("sub")
	if !ok || sub == "" {
		return "", fail("missing_sub", "sub is missing")
	}
	if len(subjects) > 0 && !slices.Contains(subjects, sub) {
		return "", fail("sub_not_allowed", "subject is not allowed")
	}
	return sub, nil
}

// checkAudience is check 5: aud, a string or an array of strings, names
// this server (issuer_url or the token endpoint URL) or one of aliases.
func checkAudience(t *signedJWT, audiences, aliases []string, fail failFunc) *Error {
	names := func(a string) bool {
		return a != "" && (slices.Contains(audiences, a) || slices.Contains(aliases, a))
	}
	raw, ok := t.claim("aud")
	if !ok {
		return fail("missing_aud", "aud is missing")
	}
	// A single audience, the usual form, is decoded as the string it is:
	// josejwt.Audience would decode it into an interface{} and wrap it in
	// a slice, and the string it finds is the same.
	if len(raw) > 0 && raw[0] == '"' {
		if a, _, ok := t.stringClaim("aud"); ok && names(a) {
			return nil
		}
		return fail("bad_aud", "audience does not name this server")
	}
	var aud josejwt.Audience
	if json.Unmarshal(raw, &aud) != nil {
		return fail("bad_aud", "audience does not name this server")
	}
	if len(aud) == 0 {
		return fail("missing_aud", "aud is missing")
	}
	if slices.ContainsFunc(aud, names) {
		return nil
	}
	return fail("bad_aud", "audience does not name this server")
}

// checkExpiry is check 6: exp is present, a number, and
// now - clock_skew < exp.
func checkExpiry(t *signedJWT, pol *Policy, now time.Time, fail failFunc) (time.Time, *Error) {
	exp, present, ok := t.dateClaim("exp")
	switch {
	case !ok:
		return time.Time{}, fail("bad_exp", "exp must be a number")
	case !present:
		return time.Time{}, fail("missing_exp", "exp is missing")
	case !now.Add(-pol.ClockSkew).Before(exp):
		return time.Time{}, fail("expired", "has expired")
	}
	return exp, nil
}

// checkNotBefore is check 7: nbf, if present, is a number and
// nbf <= now + clock_skew.
func checkNotBefore(t *signedJWT, pol *Policy, now time.Time, fail failFunc) *Error {
	nbf, present, ok := t.dateClaim("nbf")
	switch {
	case !ok:
		return fail("bad_nbf", "nbf must be a number")
	case present && nbf.After(now.Add(pol.ClockSkew)):
		return fail("not_yet_valid", "is not yet valid")
	}
	return nil
}

// checkIssuedAt is check 8: iat, if present, is a number, not in the
// future beyond clock_skew and, with iat_validation on, not older than
// iat_validity. It returns iat, zero when absent.
func checkIssuedAt(t *signedJWT, pol *Policy, now time.Time, fail failFunc) (time.Time, *Error) {
	iat, present, ok := t.dateClaim("iat")
	switch {
	case !ok:
		return time.Time{}, fail("bad_iat", "iat must be a number")
	case !present:
		return time.Time{}, nil
	case iat.After(now.Add(pol.ClockSkew)):
		return time.Time{}, fail("iat_in_future", "iat is in the future")
	case pol.IATValidation && now.Sub(iat) > pol.IATValidity:
		return time.Time{}, fail("iat_too_old", "iat is too old")
	}
	return iat, nil
}

// checkLifetime is check 9: exp - (iat or now) <= max_assertion_lifetime.
func checkLifetime(exp, iat time.Time, pol *Policy, now time.Time, fail failFunc) *Error {
	start := now
	if !iat.IsZero() {
		start = iat
	}
	if exp.Sub(start) > pol.MaxAssertionLifetime {
		return fail("lifetime_too_long", "lifetime exceeds the allowed maximum")
	}
	return nil
}

// checkJTI is check 10 up to the store: jti, when present, is a non-empty
// string, and it is present when required. Its replay record is claimed
// by the store's set-if-absent once every other check passed.
func checkJTI(t *signedJWT, required bool, fail failFunc) (string, *Error) {
	jti, present, ok := t.stringClaim("jti")
	switch {
	case !ok || present && jti == "":
		return "", fail("bad_jti", "jti must be a non-empty string")
	case required && !present:
		return "", fail("missing_jti", "jti is required")
	}
	return jti, nil
}

// assertionError is the failure of a grant assertion check.
func assertionError(reason, desc string) *Error {
	return invalidGrant(reason, "assertion "+desc)
}

// claim returns a claim's raw JSON; a JSON null counts as absent.
func (t *signedJWT) claim(name string) (json.RawMessage, bool) {
	raw, ok := t.claims[name]
	if !ok || string(raw) == "null" {
		return nil, false
	}
	return raw, true
}

// stringClaim tells an absent claim (present false) from one that is not
// a string (ok false), so that the latter is refused, not coerced.
func (t *signedJWT) stringClaim(name string) (value string, present, ok bool) {
	raw, present := t.claim(name)
	if !present {
		return "", false, true
	}
	t.str = ""
	ok = json.Unmarshal(raw, &t.str) == nil
	return t.str, true, ok
}

// dateClaim reads a NumericDate with go-jose's semantics: a JSON number
// (a quoted date is refused), whole seconds (a fraction is dropped, which
// moves a date by less than a second, well inside clock_skew), and nothing
// so large that it would overflow.
func (t *signedJWT) dateClaim(name string) (value time.Time, present, ok bool) {
	raw, present := t.claim(name)
	if !present {
		return time.Time{}, false, true
	}
	t.date = 0
	if json.Unmarshal(raw, &t.date) != nil {
		return time.Time{}, true, false
	}
	return t.date.Time(), true, true
}

// copyClaims returns the named claims that the assertion carries.
func (t *signedJWT) copyClaims(names []string) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(names))
	for _, name := range names {
		if v, ok := t.claim(name); ok {
			out[name] = v
		}
	}
	return out
}

// replayMarkKey is the store key of a replay record: a hash over the
// namespace ("grant" for grant assertions, "client" for client
// assertions), the tenant, the issuer and the jti, each length-prefixed,
// so that neither a separator in a name nor a long jti can make two marks
// collide or grow a key without bound. Grant marks are made with tenant
// "": every tenant that trusts the same iss shares its replay records
// (SPEC §3.1 check 10), while a client id names a different client in
// each tenant.
func replayMarkKey(namespace, tenant, issuer, jti string) string {
	return sha256Hex(func(b []byte) []byte {
		for _, part := range [...]string{namespace, tenant, issuer, jti} {
			b = binary.LittleEndian.AppendUint64(b, uint64(len(part)))
			b = append(b, part...)
		}
		return b
	})
}
