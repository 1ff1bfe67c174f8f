package grant

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"go.uber.org/zap"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/keys"
)

// The DPoP modes of a Verifier (jwt_grant_auth's dpop option, SPEC §8).
const (
	// DPoPAllowed accepts Bearer tokens and DPoP-bound tokens with proofs;
	// a bound token still needs its proof. The default.
	DPoPAllowed = "allowed"
	// DPoPRequired accepts only DPoP-bound tokens with proofs.
	DPoPRequired = "required"
	// DPoPOff accepts only Bearer tokens; a bound token can then never
	// pass.
	DPoPOff = "off"
)

// verifierDPoP is what a Verifier needs for the DPoP scheme (RFC 9449
// §7): the mode, the proof checker and the fixed answers of its refusals.
type verifierDPoP struct {
	mode    string
	checker *dpopChecker
	// challenge is the bare DPoP challenge, naming the accepted algorithms.
	challenge string
	// viaDPoP are the token refusals of Verify as answered to a request
	// that used the DPoP scheme: the same status and code, with a DPoP
	// challenge (RFC 9449 §7.1).
	viaDPoP map[*Error]*Error

	badProof, boundAsBearer, bearerRefused, unboundAsDPoP, schemeOff, twoCredentials *Error
}

// checkDPoP rejects a DPoP mode or algorithm that does not exist.
func (cfg VerifierConfig) checkDPoP() error {
	switch cfg.DPoP {
	case "", DPoPAllowed, DPoPRequired, DPoPOff:
	default:
		return fmt.Errorf("dpop %q: must be required, allowed or off", cfg.DPoP)
	}
	for _, alg := range cfg.DPoPAlgorithms {
		if !keys.IsAsymmetric(alg) {
			return fmt.Errorf("dpop_algorithms: unknown or unsupported algorithm %q", alg)
		}
	}
	return nil
}

// setupDPoP builds the DPoP answers next to the Bearer ones; bearer is
// the bare Bearer challenge.
func (v *Verifier) setupDPoP(cfg VerifierConfig, bearer string) error {
	skew := DefaultPolicy().ClockSkew
	if cfg.ClockSkew != nil {
		skew = *cfg.ClockSkew
	}
	checker, err := newDPoPChecker(cfg.DPoPAlgorithms, cfg.DPoPProofLifetime, skew)
	if err != nil {
		return err
	}
	d := &v.dpop
	d.mode = cmp.Or(cfg.DPoP, DPoPAllowed)
	d.checker = checker
	d.challenge = `DPoP algs="` + strings.Join(checker.algs, " ") + `"`
	// A protected resource's challenges point to its metadata (SPEC §7),
	// whichever scheme they name.
	on401, on403 := cfg.resourceChallenge()
	invalidBearer := bearer + `, error="invalid_token"` + on401
	invalidDPoP := d.challenge + `, error="invalid_token"` + on401
	invalid := func(reason, desc string) *Error {
		return newError(CodeInvalidToken, http.StatusUnauthorized, reason, desc)
	}
	add := func(e *Error, challenge string) *Error {
		v.answers[e] = answer(challenge, e)
		return e
	}
	d.badProof = add(newError(CodeInvalidDPoPProof, http.StatusUnauthorized, "invalid_dpop_proof", "the DPoP proof is invalid"),
		d.challenge+`, error="invalid_dpop_proof"`+on401)
	// A bound token presented as Bearer is refused whatever the mode: the
	// binding is the token's, not the route's (RFC 9449 §7.2).
	d.boundAsBearer = add(invalid("bound_as_bearer", "the access token is invalid"), invalidBearer)
	d.bearerRefused = add(invalid("dpop_required", "a DPoP-bound access token is required"), invalidDPoP)
	d.unboundAsDPoP = add(invalid("unbound_as_dpop", "the access token is invalid"), invalidDPoP)
	d.schemeOff = add(invalid("dpop_off", "the DPoP scheme is not accepted"), invalidBearer)
	d.twoCredentials = add(newError(CodeInvalidRequest, http.StatusBadRequest, "two_credentials", "more than one credential is present"),
		bearer+`, error="invalid_request"`)
	d.viaDPoP = map[*Error]*Error{}
	for _, e := range []*Error{v.unknown, v.expired, v.wrongAudience, v.wrongTenant} {
		c := *e
		d.viaDPoP[e] = add(&c, invalidDPoP)
	}
	c := *v.noScope
	d.viaDPoP[v.noScope] = add(&c, d.challenge+`, error="insufficient_scope", scope="`+joinScope(cfg.Scope)+`"`+on403)

	// A request without credentials learns every scheme it may use (RFC
	// 9110 §11.6.1 allows one challenge per header value).
	missing := v.answers[v.missing]
	switch d.mode {
	case DPoPAllowed:
		missing.challenge2 = d.challenge + on401
	case DPoPRequired:
		missing.challenge = d.challenge + on401
	}
	v.answers[v.missing] = missing
	return nil
}

// Authenticate checks the credentials of a request to a protected
// resource: `Authorization: Bearer <token>`, or `Authorization: DPoP
// <token>` with one DPoP proof of the key the token is bound to (RFC 9449
// §7), as the Verifier's DPoP mode allows. The proof's htu is compared
// with RequestURL(r). A proof's replay record is claimed last, once
// everything else passed. The returned *Error is shared; WriteError
// answers it.
func (v *Verifier) Authenticate(r *http.Request) (*AccessRecord, *Error) {
	authz := r.Header.Values("Authorization")
	if len(authz) > 1 {
		// Two credentials, of one scheme or two: no upstream may ever
		// see one that was not verified.
		return nil, v.dpop.twoCredentials
	}
	var h string
	if len(authz) == 1 {
		h = authz[0]
	}
	if token := schemeToken(h, "DPoP"); token != "" {
		return v.authenticateDPoP(r, token)
	}
	token := schemeToken(h, "Bearer")
	if token == "" {
		return nil, v.missing
	}
	if v.dpop.mode == DPoPRequired {
		return nil, v.dpop.bearerRefused
	}
	rec, oerr := v.Verify(r.Context(), token)
	if oerr != nil {
		return nil, oerr
	}
	if rec.Cnf != nil {
		return nil, v.dpop.boundAsBearer
	}
	return rec, nil
}

// authenticateDPoP checks a DPoP-scheme request: the proof, the token,
// the binding between them, then the proof's replay record.
func (v *Verifier) authenticateDPoP(r *http.Request, token string) (*AccessRecord, *Error) {
	d := &v.dpop
	if d.mode == DPoPOff {
		return nil, d.schemeOff
	}
	proof, f := d.checker.check(r.Header[DPoPHeader], r.Method, RequestURL(r), token, v.now())
	if f != nil {
		v.proofRefused(f.reason)
		return nil, d.badProof
	}
	rec, oerr := v.Verify(r.Context(), token)
	if oerr != nil {
		if e, ok := d.viaDPoP[oerr]; ok {
			return nil, e
		}
		return nil, oerr
	}
	switch {
	case rec.Cnf == nil:
		return nil, d.unboundAsDPoP
	case rec.Cnf.JKT != proof.jkt:
		v.proofRefused("key_mismatch")
		return nil, d.badProof
	}
	return rec, v.claimProof(r.Context(), proof)
}

// claimProof writes the proof's replay record: a replay is a failed
// proof, an outage 503.
func (v *Verifier) claimProof(ctx context.Context, proof *dpopProof) *Error {
	err := v.store.ClaimMarks(ctx, []Mark{proof.mark})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrReplay):
		v.proofRefused("replay")
		return v.dpop.badProof
	}
	v.obs.StoreError("claim_proof")
	if ce := v.log.Check(zap.WarnLevel, "store error"); ce != nil {
		ce.Write(zap.String("op", "claim_proof"), zap.Error(err))
	}
	return v.down
}

// proofRefused logs why a proof failed; the answer says only that it did.
func (v *Verifier) proofRefused(reason string) {
	if ce := v.log.Check(zap.DebugLevel, "dpop proof refused"); ce != nil {
		ce.Write(zap.String("reason", reason))
	}
}

// schemeToken returns the credentials of an Authorization header value of
// the given scheme (case-insensitive), "" for another scheme or none.
func schemeToken(h, scheme string) string {
	n := len(scheme)
	if len(h) <= n || !strings.EqualFold(h[:n], scheme) || (h[n] != ' ' && h[n] != '\t') {
		return ""
	}
	return strings.Trim(h[n+1:], " \t")
}
