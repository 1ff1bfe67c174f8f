package grant

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"strings"

	"github.com/go-jose/go-jose/v4"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/keys"
)

// MaxAssertionSize bounds a compact JWS (SPEC §3.1 check 1).
const MaxAssertionSize = 16 << 10

// maxUnkeyedCandidates bounds how many keys an assertion without kid is
// tried against, so that a large key set cannot be turned into a CPU sink.
const maxUnkeyedCandidates = 8

// jwsHeader is the protected header of a compact JWS as far as we need it.
// The members that could name a key (jku, x5u, jwk, x5c) are deliberately
// not decoded: they are never used as key sources.
type jwsHeader struct {
	Alg  string          `json:"alg"`
	Kid  string          `json:"kid"`
	Typ  string          `json:"typ"`
	Enc  json.RawMessage `json:"enc"`
	Crit json.RawMessage `json:"crit"`
	Zip  json.RawMessage `json:"zip"`
}

// token is a compact JWS split and decoded, before its signature is
// checked. Claim accessors report type errors so that a string date or an
// object sub is rejected rather than coerced.
type token struct {
	raw    string
	header jwsHeader
	claims map[string]json.RawMessage
}

var errMalformed = errors.New("malformed")

// parseCompactJWS is check 1 of SPEC §3.1: three base64url parts, at most
// MaxAssertionSize, asymmetric alg, no crit, no JWE.
func parseCompactJWS(raw string) (*token, *Error) {
	if len(raw) > MaxAssertionSize {
		return nil, invalidGrant("too_large", "assertion is too large")
	}
	first := strings.IndexByte(raw, '.')
	last := strings.LastIndexByte(raw, '.')
	if first <= 0 || first == last || strings.Count(raw, ".") != 2 || last == len(raw)-1 {
		return nil, invalidGrant("malformed", "assertion is not a compact JWS")
	}
	var t token
	t.raw = raw
	hdr, err := base64.RawURLEncoding.Strict().DecodeString(raw[:first])
	if err != nil || json.Unmarshal(hdr, &t.header) != nil {
		return nil, invalidGrant("malformed", "assertion header is malformed")
	}
	switch {
	case t.header.Enc != nil:
		return nil, invalidGrant("jwe", "encrypted assertions are not accepted")
	case t.header.Crit != nil:
		return nil, invalidGrant("crit", "assertion header has unsupported critical parameters")
	case t.header.Zip != nil:
		return nil, invalidGrant("zip", "compressed assertions are not accepted")
	case !keys.IsAsymmetric(t.header.Alg):
		return nil, invalidGrant("bad_alg", "assertion algorithm is not accepted")
	}
	payload, err := base64.RawURLEncoding.Strict().DecodeString(raw[first+1 : last])
	if err != nil {
		return nil, invalidGrant("malformed", "assertion payload is malformed")
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	if dec.Decode(&t.claims) != nil || t.claims == nil || dec.More() {
		return nil, invalidGrant("malformed", "assertion claims are not a JSON object")
	}
	return &t, nil
}

// verifySignature is check 3 of SPEC §3.1: the signature verifies with a
// key of keys whose type fits alg, and alg is allowed.
func verifySignature(t *token, candidates []keys.Key, allowed []string) bool {
	alg := t.header.Alg
	if !contains(allowed, alg) {
		return false
	}
	jws, err := jose.ParseSigned(t.raw, []jose.SignatureAlgorithm{jose.SignatureAlgorithm(alg)})
	if err != nil {
		return false
	}
	tried := 0
	for _, k := range candidates {
		// An assertion with a kid is tried against keys with that kid and
		// keys with none; one without a kid against every key, bounded.
		if t.header.Kid != "" && k.KID != "" && k.KID != t.header.Kid {
			continue
		}
		if !k.Verifies(alg) {
			continue
		}
		if t.header.Kid == "" {
			if tried == maxUnkeyedCandidates {
				break
			}
			tried++
		}
		if _, err := jws.Verify(k.Public); err == nil {
			return true
		}
	}
	return false
}

// Claim accessors. Each distinguishes "absent" from "present with the
// wrong type" so that the caller can reject the latter.

func (t *token) stringClaim(name string) (value string, present bool, ok bool) {
	raw, present := t.claims[name]
	if !present || isNull(raw) {
		return "", false, true
	}
	if err := json.Unmarshal(raw, &value); err != nil {
		return "", true, false
	}
	return value, true, true
}

func (t *token) numericClaim(name string) (value float64, present bool, ok bool) {
	raw, present := t.claims[name]
	if !present || isNull(raw) {
		return 0, false, true
	}
	// A NumericDate is a JSON number; a quoted date ("1507606100") is
	// rejected, not coerced.
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return 0, true, false
	}
	v, err := strconv.ParseFloat(string(raw), 64)
	if err != nil {
		return 0, true, false
	}
	return v, true, true
}

// audience returns aud as a list whether it was a string or an array.
func (t *token) audience() ([]string, bool) {
	raw, present := t.claims["aud"]
	if !present || isNull(raw) {
		return nil, true
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}, true
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		return many, true
	}
	return nil, false
}

func isNull(raw json.RawMessage) bool { return string(raw) == "null" }

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
