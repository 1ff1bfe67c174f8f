package grant

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"time"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/keys"
)

// Assertion is a JWT bearer grant assertion that passed checks 1 to 9 of
// SPEC §3.1. Check 10, the replay mark, is claimed by the store together
// with the token record, so that a request that fails later writes nothing.
type Assertion struct {
	Issuer  *Issuer
	Subject string
	// Scope is the assertion's scope claim split into tokens; HasScope
	// tells an absent claim from an empty one.
	Scope    []string
	HasScope bool
	// Claims are the issuer's configured claims copied from the assertion.
	Claims map[string]json.RawMessage
	// Mark is the replay record to claim, nil when the assertion has no jti.
	Mark *Mark
}

// ParsedAssertion is an assertion after check 1 and before check 2: its
// issuer is known but nothing is verified yet. The token endpoint needs the
// issuer before it can decide whether client authentication is optional.
type ParsedAssertion struct {
	tok *token
	// Iss is the unverified iss claim ("" when absent or not a string).
	Iss string
}

// ParseAssertion is check 1 of SPEC §3.1.
func ParseAssertion(raw string) (*ParsedAssertion, *Error) {
	t, oerr := parseCompactJWS(raw)
	if oerr != nil {
		return nil, oerr
	}
	iss, _, _ := t.stringClaim("iss")
	return &ParsedAssertion{tok: t, Iss: iss}, nil
}

// LookupIssuer is check 2 of SPEC §3.1, for the tenant's trusted issuers.
// A client's issuers restriction is checked by the caller, which knows the
// client.
func (p *ParsedAssertion) LookupIssuer(t *Tenant) (*Issuer, *Error) {
	if iss, ok := t.Issuers[p.Iss]; ok && p.Iss != "" {
		return iss, nil
	}
	return nil, invalidGrant("unknown_issuer", "assertion issuer is not trusted")
}

// Validate runs checks 3 to 10 of SPEC §3.1, in order, against issuer.
// audiences are the aud values this server accepts besides the issuer's
// aliases (issuer_url and the token endpoint URL).
func (p *ParsedAssertion) Validate(ctx context.Context, issuer *Issuer, pol *Policy, audiences []string, tenant string, now time.Time) (*Assertion, *Error) {
	t := p.tok
	if oerr := checkSignature(ctx, t, issuer.Keys, issuer.Algorithms); oerr != nil {
		return nil, oerr
	}
	sub, oerr := checkSubject(t, issuer.Subjects)
	if oerr != nil {
		return nil, oerr
	}
	if oerr := checkAudience(t, audiences, issuer.Aliases); oerr != nil {
		return nil, oerr
	}
	exp, oerr := checkTimes(t, pol, now)
	if oerr != nil {
		return nil, oerr
	}
	jti, oerr := checkJTI(t, pol.RequireJTI)
	if oerr != nil {
		return nil, oerr
	}
	a := &Assertion{Issuer: issuer, Subject: sub, Claims: copyClaims(t, issuer.Claims)}
	if scope, present, ok := t.stringClaim("scope"); !ok {
		return nil, invalidGrant("bad_scope_claim", "assertion scope claim must be a string")
	} else if present {
		a.HasScope = true
		a.Scope = splitScope(scope)
	}
	if jti != "" {
		a.Mark = &Mark{
			Key:   ReplayMarkKey("grant", tenant, issuer.Issuer, jti),
			Until: unixTime(exp).Add(pol.ClockSkew),
		}
	}
	return a, nil
}

// checkSignature is check 3.
func checkSignature(ctx context.Context, t *token, ks keys.Set, allowed []string) *Error {
	if !contains(allowed, t.header.Alg) {
		return invalidGrant("alg_not_allowed", "assertion algorithm is not accepted for this issuer")
	}
	candidates, err := ks.Keys(ctx, t.header.Kid)
	if err != nil {
		if errors.Is(err, keys.ErrUnavailable) {
			return unavailable("issuer_keys_unavailable", "issuer keys cannot be obtained")
		}
		return invalidGrant("no_key", "no key of the issuer verifies the assertion")
	}
	if !verifySignature(t, candidates, allowed) {
		return invalidGrant("bad_signature", "assertion signature is invalid")
	}
	return nil
}

// checkSubject is check 4.
func checkSubject(t *token, subjects []string) (string, *Error) {
	sub, _, ok := t.stringClaim("sub")
	if !ok || sub == "" {
		return "", invalidGrant("missing_sub", "assertion sub is missing")
	}
	if len(subjects) > 0 && !contains(subjects, sub) {
		return "", invalidGrant("sub_not_allowed", "assertion subject is not allowed")
	}
	return sub, nil
}

// checkAudience is check 5: aud names this server or one of the issuer's
// aliases.
func checkAudience(t *token, audiences, aliases []string) *Error {
	aud, ok := t.audience()
	if !ok || len(aud) == 0 {
		return invalidGrant("missing_aud", "assertion aud is missing")
	}
	for _, a := range aud {
		if a != "" && (contains(audiences, a) || contains(aliases, a)) {
			return nil
		}
	}
	return invalidGrant("bad_aud", "assertion audience does not name this server")
}

// checkTimes is checks 6 to 9: exp, nbf, iat and the lifetime bound.
func checkTimes(t *token, pol *Policy, now time.Time) (exp float64, oerr *Error) {
	n := float64(now.UnixNano()) / 1e9
	skew := pol.ClockSkew.Seconds()

	exp, present, ok := t.numericClaim("exp")
	if !ok {
		return 0, invalidGrant("bad_exp", "assertion exp must be a number")
	}
	if !present {
		return 0, invalidGrant("missing_exp", "assertion exp is missing")
	}
	if !(n-skew < exp) {
		return 0, invalidGrant("expired", "assertion has expired")
	}

	nbf, present, ok := t.numericClaim("nbf")
	if !ok {
		return 0, invalidGrant("bad_nbf", "assertion nbf must be a number")
	}
	if present && !(nbf <= n+skew) {
		return 0, invalidGrant("not_yet_valid", "assertion is not yet valid")
	}

	iat, hasIAT, ok := t.numericClaim("iat")
	if !ok {
		return 0, invalidGrant("bad_iat", "assertion iat must be a number")
	}
	if hasIAT {
		if iat > n+skew {
			return 0, invalidGrant("iat_in_future", "assertion iat is in the future")
		}
		if pol.IATValidation && n-iat > pol.IATValidity.Seconds() {
			return 0, invalidGrant("iat_too_old", "assertion iat is too old")
		}
	}

	start := n
	if hasIAT {
		start = iat
	}
	if exp-start > pol.MaxAssertionLifetime.Seconds() {
		return 0, invalidGrant("lifetime_too_long", "assertion lifetime exceeds the allowed maximum")
	}
	return exp, nil
}

// checkJTI is the presence part of check 10; the replay part is the
// store's set-if-absent of the mark.
func checkJTI(t *token, required bool) (string, *Error) {
	jti, present, ok := t.stringClaim("jti")
	if !ok || (present && jti == "") {
		return "", invalidGrant("bad_jti", "assertion jti must be a non-empty string")
	}
	if required && !present {
		return "", invalidGrant("missing_jti", "assertion jti is required")
	}
	return jti, nil
}

func copyClaims(t *token, names []string) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(names))
	for _, name := range names {
		if v, ok := t.claims[name]; ok && !isNull(v) {
			out[name] = v
		}
	}
	return out
}

// ReplayMarkKey is the store key of a replay record: a hash over the
// namespace ("grant" for grant assertions, "client" for client
// assertions), the tenant, the issuer and the jti, so that neither a
// separator in a name nor a long jti can make two marks collide or grow a
// key without bound.
func ReplayMarkKey(namespace, tenant, issuer, jti string) string {
	h := sha256.New()
	for _, part := range [...]string{namespace, tenant, issuer, jti} {
		var n [8]byte
		l := len(part)
		for i := range n {
			n[i] = byte(l >> (8 * i))
		}
		h.Write(n[:])
		h.Write([]byte(part))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// unixTime converts a NumericDate, clamping values far outside time.Time's
// range.
func unixTime(v float64) time.Time {
	const limit = 1 << 40
	v = math.Max(-limit, math.Min(limit, v))
	sec, frac := math.Modf(v)
	return time.Unix(int64(sec), int64(frac*1e9))
}
