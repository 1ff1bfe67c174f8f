package caddymodule

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
)

func init() {
	caddy.RegisterModule(AuthHandler{})
	httpcaddyfile.RegisterHandlerDirective("jwt_grant_auth", parseAuthCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("jwt_grant_auth", httpcaddyfile.After, "basic_auth")
}

// AuthHandler protects the routes after it: it lets a request through
// only with an `Authorization: Bearer` token minted by jwt_grant and still
// live in the store, and sets the {http.auth.user.*} placeholders from the
// token's record. It is a handler of its own rather than an authentication
// provider because Caddy's authentication handler turns every provider
// failure into 401, and this one must also answer 403 and 503.
//
// It keeps no cache: every request reads the store once, so that a revoked
// token fails at once.
type AuthHandler struct {
	// StoreRaw is the token store: the same store as the jwt_grant that
	// minted the tokens. Default: the process's memory store.
	StoreRaw json.RawMessage `json:"store,omitempty" caddy:"namespace=jwt_grant.stores inline_key=backend"`
	// Audience, when set, requires the token's audience to contain one of
	// these values.
	Audience []string `json:"audience,omitempty"`
	// Scope lists the scopes a token must all have been granted; a token
	// lacking one is answered 403 insufficient_scope.
	Scope []string `json:"scope,omitempty"`
	// Tenant is the only tenant whose tokens are accepted; "*" accepts
	// every tenant, the top level included. Default: only tokens of the
	// top level.
	Tenant string `json:"tenant,omitempty"`
	// Realm is the realm of the WWW-Authenticate challenge (an extension
	// of SPEC §2.2). Default jwt_grant.
	Realm string `json:"realm,omitempty"`
	// DPoP is "allowed" (default: Bearer tokens, and DPoP-bound tokens
	// with their proofs), "required" (only DPoP-bound tokens) or "off"
	// (only Bearer tokens) (RFC 9449, SPEC §8).
	DPoP string `json:"dpop,omitempty"`
	// Resource makes the routes this protected resource (SPEC §7): a
	// token's audience must contain this URI, challenges point to its
	// RFC 9728 metadata, and the metadata is served at the well-known
	// path derived from it, which this handler must therefore see.
	Resource string `json:"resource,omitempty"`
	// AuthorizationServers are the issuer_url of the jwt_grant servers
	// that mint tokens for Resource; required with it.
	AuthorizationServers []string `json:"authorization_servers,omitempty"`

	now      func() time.Time // the clock: the package clock unless a test set its own
	verifier *grant.Verifier
	drain    *drainingStore // the shared store, held per request (drain.go)
	logger   *zap.Logger
	outcomes map[string]prometheus.Counter
	ok       prometheus.Counter
}

// CaddyModule returns the Caddy module information.
func (AuthHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.jwt_grant_auth",
		New: func() caddy.Module { return new(AuthHandler) },
	}
}

// Provision opens the store and builds the verifier; Validate, which
// Caddy calls next, rejects what the configuration shows to be wrong.
func (a *AuthHandler) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	if a.now == nil {
		a.now = now
	}
	store, err := loadStore(ctx, a, &a.StoreRaw)
	if err != nil {
		return err
	}
	a.drain, _ = store.Store().(*drainingStore)
	m := metricsFor(ctx)
	a.verifier, err = grant.NewVerifier(grant.VerifierConfig{
		Store:    store.Store(),
		Audience: a.Audience,
		Scope:    a.Scope,
		Tenant:   a.Tenant,
		Realm:    a.Realm,
		DPoP:     a.DPoP,
		Logger:   a.logger,
		Observer: m,
		Now:      a.now,

		Resource:             a.Resource,
		AuthorizationServers: a.AuthorizationServers,
	})
	if err != nil {
		return err
	}
	// Counters are looked up once: WithLabelValues hashes its labels,
	// which the hot path need not pay.
	a.ok = m.authRequests.WithLabelValues("ok")
	a.outcomes = map[string]prometheus.Counter{}
	for _, reason := range []string{"missing_token", "unknown_token", "expired", "wrong_audience", "wrong_tenant", "insufficient_scope", "store_unavailable",
		"two_credentials", "invalid_dpop_proof", "bound_as_bearer", "dpop_required", "unbound_as_dpop", "dpop_off"} {
		a.outcomes[reason] = m.authRequests.WithLabelValues(reason)
	}
	return nil
}

// Validate rejects what the configuration itself shows to be wrong; the
// Caddyfile adapter runs it too, so that `caddy adapt` fails.
func (a *AuthHandler) Validate() error {
	return grant.VerifierConfig{Audience: a.Audience, Scope: a.Scope, Tenant: a.Tenant, Realm: a.Realm, DPoP: a.DPoP,
		Resource: a.Resource, AuthorizationServers: a.AuthorizationServers}.Check()
}

// ServeHTTP verifies the bearer token and either answers the refusal or
// passes the request on with the placeholders set.
func (a *AuthHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if p := a.verifier.ResourceMetadataPath(); p != "" && r.URL.Path == p {
		a.verifier.ServeResourceMetadata(w, r)
		return nil
	}
	d := a.drain.hold()
	rec, oerr := a.verifier.Authenticate(withClientURL(r))
	d.done()
	if oerr != nil {
		if c := a.outcomes[oerr.Reason]; c != nil {
			c.Inc()
		}
		if ce := a.logger.Check(zap.DebugLevel, "bearer token refused"); ce != nil {
			ce.Write(zap.String("reason", oerr.Reason))
		}
		a.verifier.WriteError(w, oerr)
		return nil
	}
	a.ok.Inc()
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	// One lazy provider instead of a Set per placeholder: the values are
	// computed only if a later handler or the access log asks for them.
	repl.Map(userPlaceholders(rec))
	return next.ServeHTTP(w, r)
}

// userPlaceholders provides {http.auth.user.*} from a token record:
// id (the subject), client_id, scope, tenant and claim.NAME for every
// copied claim, a string claim as its value and any other as its JSON
// (an absent claim is empty).
func userPlaceholders(rec *grant.AccessRecord) caddy.ReplacerFunc {
	return func(key string) (any, bool) {
		name, ok := strings.CutPrefix(key, "http.auth.user.")
		if !ok {
			return nil, false
		}
		switch name {
		case "id":
			return rec.Sub, true
		case "client_id":
			return rec.ClientID, true
		case "scope":
			return rec.Scope, true
		case "tenant":
			return rec.Tenant, true
		case "cnf_jkt":
			if rec.Cnf != nil {
				return rec.Cnf.JKT, true
			}
			return "", true
		}
		claim, ok := strings.CutPrefix(name, "claim.")
		if !ok {
			return nil, false
		}
		raw, ok := rec.Claims[claim]
		if !ok {
			// Known but empty: a token without the claim must not leave
			// the placeholder's text in a response or header.
			return "", true
		}
		if len(raw) > 0 && raw[0] == '"' {
			var s string
			if json.Unmarshal(raw, &s) == nil {
				return s, true
			}
		}
		return string(raw), true
	}
}

func parseAuthCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var a AuthHandler
	err := a.UnmarshalCaddyfile(h.Dispenser)
	return &a, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	jwt_grant_auth [<matcher>] {
//	    store    memory | redis ...
//	    audience <aud>...
//	    scope    <scope>...
//	    tenant   <domain> | *
//	    realm    <realm>
//	    dpop     required | allowed | off
//	    resource <uri>
//	    authorization_server <url>...
//	}
//
// store takes the same forms as in jwt_grant. store, tenant, realm and
// resource may appear once; audience, scope and authorization_server may
// repeat and add to their lists. resource needs authorization_server. A
// bare jwt_grant_auth accepts any live token of the top level from the
// memory store.
func (a *AuthHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	line, file := d.Line(), d.File()
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	for d.NextBlock(0) {
		opt := d.Val()
		if err := once(d, seen, "jwt_grant_auth", "audience", "scope", "authorization_server"); err != nil {
			return err
		}
		var err error
		switch opt {
		case "store":
			a.StoreRaw, err = parseStore(d)
		case "audience":
			a.Audience, err = appendArgs(d, a.Audience)
		case "scope":
			a.Scope, err = appendArgs(d, a.Scope)
		case "tenant":
			a.Tenant, err = oneArg(d)
		case "realm":
			a.Realm, err = oneArg(d)
		case "dpop":
			a.DPoP, err = oneArg(d)
		case "resource":
			a.Resource, err = oneArg(d)
		case "authorization_server":
			a.AuthorizationServers, err = appendArgs(d, a.AuthorizationServers)
		default:
			return d.Errf("jwt_grant_auth: unknown option %q", opt)
		}
		if err != nil {
			return err
		}
	}
	if err := a.Validate(); err != nil {
		return atLine(err, file, line)
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*AuthHandler)(nil)
	_ caddy.Validator             = (*AuthHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*AuthHandler)(nil)
	_ caddyfile.Unmarshaler       = (*AuthHandler)(nil)
)
