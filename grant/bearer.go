package grant

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// AnyTenant, as VerifierConfig.Tenant, accepts tokens of every tenant, the
// top level included.
const AnyTenant = "*"

// VerifierConfig is what a Verifier is built from.
type VerifierConfig struct {
	// Store holds the token records; the same store as the Server that
	// minted the tokens.
	Store Store
	// Audience, when non-empty, must share at least one value with a
	// token's aud.
	Audience []string
	// Scope lists scopes a token must all have been granted.
	Scope []string
	// Tenant is the only tenant whose tokens are accepted: "" is the top
	// level, AnyTenant accepts every tenant.
	Tenant string
	// Realm of the WWW-Authenticate challenges. Default "jwt_grant".
	Realm string
	// DPoP is DPoPAllowed (""), DPoPRequired or DPoPOff: whether
	// Authenticate accepts DPoP-bound tokens with proofs, and Bearer
	// tokens (SPEC §8).
	DPoP string
	// DPoPAlgorithms, DPoPProofLifetime and ClockSkew check the proofs as
	// the token endpoint does; defaults keys.DefaultAlgorithms,
	// DefaultDPoPProofLifetime and DefaultPolicy's clock skew.
	DPoPAlgorithms    []string
	DPoPProofLifetime time.Duration
	ClockSkew         *time.Duration
	// Resource, when set, is the protected resource this Verifier guards
	// (RFC 8707, SPEC §7): a token's aud must contain it, and its RFC 9728
	// metadata names AuthorizationServers.
	Resource             string
	AuthorizationServers []string

	Logger   *zap.Logger
	Observer Observer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Verifier checks the bearer tokens presented to a protected resource
// (RFC 6750): one store read per request and no cache, so that a revoked
// token fails at once. It is safe for concurrent use.
type Verifier struct {
	store    Store
	audience []string
	scope    []string
	tenant   string
	log      *zap.Logger
	obs      Observer
	now      func() time.Time

	// The answers are fixed for a Verifier, so they are built once: the
	// refusal path allocates no more than the success path.
	missing, unknown, expired, wrongAudience, wrongTenant, noScope, down *Error
	answers                                                              map[*Error]bearerAnswer

	dpop verifierDPoP
	// resource, normalized and the metadata document are set when the
	// Verifier guards a resource (resourcemetadata.go).
	resource, resourceKey, resourcePath string
	resourceDoc                         *ResourceMetadata
	resourceBody                        []byte
}

// bearerAnswer is the response to one kind of refusal.
type bearerAnswer struct {
	challenge  string // WWW-Authenticate, "" for none
	challenge2 string // a second WWW-Authenticate value, "" for none
	retryAfter string // Retry-After, "" for none
	body       []byte
	length     string // Content-Length
}

// Check rejects options that cannot make a well-formed challenge: a realm
// or scope that would need quoting. It does not look at Store, so that
// configuration adapters can run it before anything is opened.
func (cfg VerifierConfig) Check() error {
	if !validQuotedValue(cfg.Realm) {
		return fmt.Errorf("realm %q: must be printable ASCII without quotes or backslashes", cfg.Realm)
	}
	for _, s := range cfg.Scope {
		if !validScopeToken(s) {
			return fmt.Errorf("scope %q: not a valid scope token (RFC 6749 §3.3)", s)
		}
	}
	for _, aud := range cfg.Audience {
		if aud == "" {
			return errors.New("audience: empty value")
		}
	}
	if cfg.Tenant != AnyTenant && strings.Contains(cfg.Tenant, "*") {
		return fmt.Errorf("tenant %q: only a single * (any tenant) is a wildcard", cfg.Tenant)
	}
	if err := cfg.checkDPoP(); err != nil {
		return err
	}
	return cfg.checkResource()
}

// NewVerifier checks cfg and returns a Verifier.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if cfg.Store == nil {
		return nil, errors.New("a store is required")
	}
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	realm := cfg.Realm
	if realm == "" {
		realm = "jwt_grant"
	}
	v := &Verifier{
		store:    cfg.Store,
		audience: cfg.Audience,
		scope:    cfg.Scope,
		tenant:   cfg.Tenant,
		log:      cfg.Logger,
		obs:      cfg.Observer,
		now:      cfg.Now,
	}
	if v.log == nil {
		v.log = zap.NewNop()
	}
	if v.obs == nil {
		v.obs = nopObserver{}
	}
	if v.now == nil {
		v.now = time.Now
	}
	if cfg.Resource != "" {
		v.resource = cfg.Resource
		v.resourceKey, _ = NormalizeResourceURI(cfg.Resource)
	}

	invalid := func(reason, desc string) *Error {
		return newError(CodeInvalidToken, http.StatusUnauthorized, reason, desc)
	}
	// RFC 6750 §3.1: a request without credentials gets a challenge with
	// no error code.
	v.missing = newError("", http.StatusUnauthorized, "missing_token", "a bearer token is required")
	v.unknown = invalid("unknown_token", "the access token is invalid")
	v.expired = invalid("expired", "the access token has expired")
	// The audience and tenant refusals say no more than "invalid": which
	// resource a token is good for is not the caller's business.
	v.wrongAudience = invalid("wrong_audience", "the access token is invalid")
	v.wrongTenant = invalid("wrong_tenant", "the access token is invalid")
	v.noScope = newError(CodeInsufficientScope, http.StatusForbidden, "insufficient_scope", "the access token lacks a required scope")
	v.down = unavailable("store_unavailable", "token store is unavailable")

	base := `Bearer realm="` + realm + `"`
	on401, on403 := cfg.resourceChallenge()
	v.answers = map[*Error]bearerAnswer{
		v.missing:       answer(base+on401, v.missing),
		v.unknown:       answer(base+`, error="invalid_token"`+on401, v.unknown),
		v.expired:       answer(base+`, error="invalid_token"`+on401, v.expired),
		v.wrongAudience: answer(base+`, error="invalid_token"`+on401, v.wrongAudience),
		v.wrongTenant:   answer(base+`, error="invalid_token"`+on401, v.wrongTenant),
		v.noScope:       answer(base+`, error="insufficient_scope", scope="`+joinScope(cfg.Scope)+`"`+on403, v.noScope),
		v.down:          answer("", v.down),
	}
	if err := v.setupDPoP(cfg, base); err != nil {
		return nil, err
	}
	// The metadata names the DPoP members too, so it is built last.
	v.resourceDoc, v.resourceBody, v.resourcePath = cfg.resourceMetadataDoc(&v.dpop)
	return v, nil
}

func answer(challenge string, e *Error) bearerAnswer {
	a := bearerAnswer{challenge: challenge}
	if e.RetryAfter > 0 {
		a.retryAfter = strconv.Itoa(e.RetryAfter)
	}
	// A request without a token gets no error code (RFC 6750 §3.1), in
	// the body as in the challenge.
	a.body, _ = json.Marshal(struct {
		Error       string `json:"error,omitempty"`
		Description string `json:"error_description,omitempty"`
	}{e.Code, e.Description})
	a.length = strconv.Itoa(len(a.body))
	return a
}

// validQuotedValue reports whether s can stand inside a quoted-string of
// a challenge as it is (no escaping needed, nothing to inject).
func validQuotedValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// BearerToken returns the token of an `Authorization: Bearer <token>`
// header (RFC 6750 §2.1; the scheme is case-insensitive), "" when there is
// none. Tokens in the query string or the body (§2.2, §2.3) are ignored on
// purpose: they end up in logs and caches.
func BearerToken(r *http.Request) string {
	return schemeToken(r.Header.Get("Authorization"), "Bearer")
}

// Verify checks a bearer token: it must name a live access token record
// (one store read), not expired by the Verifier's clock, of an accepted
// tenant and audience, granted every required scope. "" is a request
// without a token. The returned *Error is shared and must not be
// modified; WriteError answers it.
func (v *Verifier) Verify(ctx context.Context, token string) (*AccessRecord, *Error) {
	if token == "" {
		return nil, v.missing
	}
	rec, err := v.store.Access(ctx, HashToken(token))
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, v.unknown
	case err != nil:
		v.obs.StoreError("verify")
		if ce := v.log.Check(zap.WarnLevel, "store error"); ce != nil {
			ce.Write(zap.String("op", "verify"), zap.Error(err))
		}
		return nil, v.down
	}
	// The store expires records too, but its clock is not ours, and a
	// record written by hand or by an older version may have no TTL.
	if rec.Exp <= v.now().Unix() {
		return nil, v.expired
	}
	if v.tenant != AnyTenant && rec.Tenant != v.tenant {
		return nil, v.wrongTenant
	}
	if len(v.audience) > 0 && !sharesOne(rec.Aud, v.audience) {
		return nil, v.wrongAudience
	}
	if v.resource != "" && !audienceHasResource(rec.Aud, v.resource, v.resourceKey) {
		return nil, v.wrongAudience
	}
	if !hasScopes(rec.Scope, v.scope) {
		return nil, v.noScope
	}
	return rec, nil
}

// WriteError answers a refusal of Verify: its status, the RFC 6750
// challenge, Retry-After for an outage, and a short JSON body.
func (v *Verifier) WriteError(w http.ResponseWriter, e *Error) {
	a, ok := v.answers[e]
	if !ok {
		// Not one of ours: answer it anyway, without a challenge.
		a = answer("", e)
	}
	// Header values are set afresh, never shared slices: a later handler
	// (Caddy's header replacements) may edit them in place.
	h := w.Header()
	if a.challenge != "" {
		h.Set("WWW-Authenticate", a.challenge)
	}
	if a.challenge2 != "" {
		h.Add("WWW-Authenticate", a.challenge2)
	}
	if a.retryAfter != "" {
		h.Set("Retry-After", a.retryAfter)
	}
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", a.length)
	w.WriteHeader(e.Status)
	_, _ = w.Write(a.body)
}

// sharesOne reports whether a and b have a value in common.
func sharesOne(a, b []string) bool {
	for _, s := range a {
		if slices.Contains(b, s) {
			return true
		}
	}
	return false
}

// hasScopes reports whether the space-separated granted scope contains
// every required scope, without splitting it (no allocation).
func hasScopes(granted string, required []string) bool {
	for _, want := range required {
		found := false
		for rest := granted; rest != "" && !found; {
			var tok string
			tok, rest, _ = strings.Cut(rest, " ")
			found = tok == want
		}
		if !found {
			return false
		}
	}
	return true
}
