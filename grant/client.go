package grant

// Client authentication (RFC 6749 §2.3, SPEC §3.1): client_secret_basic,
// client_secret_post and private_key_jwt (RFC 7523 §2.2, RFC 7521 §4.2).
// A client assertion is checked by the functions of assertion.go, with
// these differences: the client is both its iss and its sub; its keys are
// the client's; jti is required and replay-checked in the "client"
// namespace; and every failure is the client's, 401 invalid_client.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"go.uber.org/zap"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/clientauth"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/keys"
)

// Client authentication methods, as RFC 8414 metadata names them.
const (
	authNone              = ""
	authClientSecretBasic = "client_secret_basic"
	authClientSecretPost  = "client_secret_post"
	authPrivateKeyJWT     = "private_key_jwt"
)

// credentials are the client authentication a request carries.
type credentials struct {
	method    string
	id        string
	secret    string
	assertion string
}

// clientCredentials finds the one client authentication method of a
// request (RFC 6749 §2.3: a client must not use more than one).
func clientCredentials(r *http.Request, form url.Values) (credentials, *Error) {
	var c credentials
	methods := 0
	if h := r.Header.Get("Authorization"); len(h) > 6 && strings.EqualFold(h[:6], "basic ") {
		id, secret, ok := r.BasicAuth()
		if !ok {
			return c, invalidClient("bad_basic", "malformed Basic credentials")
		}
		// RFC 6749 §2.3.1: both are form-urlencoded before Basic encoding.
		var err1, err2 error
		c.id, err1 = url.QueryUnescape(id)
		c.secret, err2 = url.QueryUnescape(secret)
		if err1 != nil || err2 != nil {
			return c, invalidClient("bad_basic", "malformed Basic credentials")
		}
		c.method = authClientSecretBasic
		methods++
	}
	if _, ok := form["client_secret"]; ok {
		c.method = authClientSecretPost
		c.secret = form.Get("client_secret")
		methods++
	}
	typ, hasType := form["client_assertion_type"]
	_, hasAssertion := form["client_assertion"]
	switch {
	case hasType && typ[0] != ClientAssertionTypeJWTBearer:
		// RFC 7521 §4.2.1: an assertion type the server does not support
		// fails the client's authentication.
		return c, invalidClient("bad_client_assertion_type", "client_assertion_type is not supported")
	case hasType != hasAssertion:
		return c, invalidRequest("incomplete_client_assertion", "client_assertion_type and client_assertion go together")
	case hasAssertion:
		c.method = authPrivateKeyJWT
		c.assertion = form.Get("client_assertion")
		methods++
	}
	if methods > 1 {
		return c, invalidRequest("multiple_client_auth", "more than one client authentication method")
	}
	if id, ok := form["client_id"]; ok {
		switch c.method {
		case authClientSecretBasic:
			if id[0] != c.id {
				return c, invalidRequest("client_id_mismatch", "client_id does not match the authenticated client")
			}
		default:
			c.id = id[0]
		}
	}
	if c.method == authClientSecretPost && c.id == "" {
		return c, invalidClient("missing_client_id", "client_id is required with client_secret")
	}
	return c, nil
}

// authenticateClient authenticates the client of a request that issues
// nothing (introspection, revocation): a client assertion's replay record
// is claimed at once.
func (s *Server) authenticateClient(ctx context.Context, tenant *Tenant, c credentials) (*Client, *Error) {
	if c.method != authPrivateKeyJWT {
		return s.authenticateSecret(ctx, tenant, c)
	}
	client, mark, oerr := s.verifyClientAssertion(ctx, tenant, c)
	if oerr != nil {
		return nil, oerr
	}
	if oerr := s.claimMarks(ctx, []Mark{*mark}); oerr != nil {
		return nil, oerr
	}
	return client, nil
}

// authenticateForGrant authenticates the client of a token request. A
// client assertion's replay record is kept in the request, to be claimed
// with the grant's own writes.
func (s *Server) authenticateForGrant(req *tokenRequest) *Error {
	var oerr *Error
	if req.creds.method != authPrivateKeyJWT {
		req.client, oerr = s.authenticateSecret(req.ctx, req.tenant, req.creds)
		return oerr
	}
	client, mark, oerr := s.verifyClientAssertion(req.ctx, req.tenant, req.creds)
	if oerr != nil {
		return oerr
	}
	req.client, req.clientMarks = client, []Mark{*mark}
	return nil
}

// authenticateSecret is client_secret_basic and client_secret_post. An
// unknown client costs what a wrong secret costs and gets the same answer;
// a comparison that cannot get its turn is 503.
func (s *Server) authenticateSecret(ctx context.Context, tenant *Tenant, c credentials) (*Client, *Error) {
	if c.method == authNone {
		return nil, invalidClient("no_client_auth", "client authentication is required")
	}
	if s.cfg.Secrets == nil {
		// No client has a secret (New checks it), so there is no known
		// client whose cost an unknown one must match.
		return nil, invalidClient("bad_client_credentials", "client authentication failed")
	}
	client := tenant.Clients[c.id]
	var hash *clientauth.Hash // nil: compared against the stand-in
	if client != nil {
		hash = client.SecretHash
	}
	ok, err := s.cfg.Secrets.Verify(ctx, tenant.Domain, c.id, hash, c.secret)
	if errors.Is(err, clientauth.ErrBusy) {
		return nil, unavailable("secret_busy", "client authentication is busy")
	}
	if err != nil {
		s.log.Error("client secret comparison failed", zap.String("client_id", c.id), zap.Error(err))
	}
	if !ok {
		return nil, invalidClient("bad_client_credentials", "client authentication failed")
	}
	return client, nil
}

// verifyClientAssertion runs every check of a client assertion but the
// replay claim, and returns the client and the replay record to claim.
// Every failure before the signature is verified has one description, so
// that an assertion signed by a stranger's key tells nothing about which
// clients exist or how they authenticate.
func (s *Server) verifyClientAssertion(ctx context.Context, tenant *Tenant, c credentials) (*Client, *Mark, *Error) {
	t, oerr := parseJWT(c.assertion, unverifiedClientError)
	if oerr != nil {
		return nil, nil, oerr
	}
	// RFC 7521 §4.2: client_id, when sent, names the same client.
	if t.iss == "" || c.id != "" && c.id != t.iss {
		return nil, nil, unverifiedClientError("client_id_mismatch", "")
	}
	client := tenant.Clients[t.iss]
	if client == nil || client.Keys == nil {
		// A client with a secret authenticates with it, never with a key:
		// accepting both would give it two credentials to lose.
		return nil, nil, unverifiedClientError("unknown_client", "")
	}
	if oerr := checkSignature(ctx, t, client.Keys, keys.DefaultAlgorithms, unverifiedClientError); oerr != nil {
		return nil, nil, oerr
	}
	// From here on the client is known to hold its key: the answers may
	// say what is wrong.
	fail := failFunc(clientAssertionError)
	if sub, _, _ := t.stringClaim("sub"); sub != t.iss {
		return nil, nil, fail("sub_mismatch", "sub must equal its iss")
	}
	// A client assertion is for this server only: no issuer aliases.
	if oerr := checkAudience(t, s.audiences, nil, fail); oerr != nil {
		return nil, nil, oerr
	}
	now, pol := s.now(), &s.cfg.Policy
	exp, oerr := checkExpiry(t, pol, now, fail)
	if oerr != nil {
		return nil, nil, oerr
	}
	if oerr := checkNotBefore(t, pol, now, fail); oerr != nil {
		return nil, nil, oerr
	}
	iat, oerr := checkIssuedAt(t, pol, now, fail)
	if oerr != nil {
		return nil, nil, oerr
	}
	if oerr := checkLifetime(exp, iat, pol, now, fail); oerr != nil {
		return nil, nil, oerr
	}
	jti, oerr := checkJTI(t, true, fail)
	if oerr != nil {
		return nil, nil, oerr
	}
	return client, &Mark{
		Key:   replayMarkKey("client", tenant.Domain, client.ID, jti),
		Until: exp.Add(pol.ClockSkew),
	}, nil
}

// unverifiedClientError is the failure of a client assertion whose
// signature has not been verified: one answer for all of them.
func unverifiedClientError(reason, _ string) *Error {
	return invalidClient("client_"+reason, "client authentication failed")
}

// clientAssertionError is the failure of a check of a client assertion
// whose signature verified.
func clientAssertionError(reason, desc string) *Error {
	return invalidClient("client_"+reason, "client assertion "+desc)
}

// claimMarks claims client assertion replay records on their own, after
// every other check of the request passed. A replay is invalid_client.
func (s *Server) claimMarks(ctx context.Context, marks []Mark) *Error {
	err := s.cfg.Store.ClaimMarks(ctx, marks)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrReplay):
		return clientReplay()
	}
	return s.storeError("claim_marks", err)
}

func clientReplay() *Error {
	return invalidClient("client_replay", "client assertion has already been used")
}

// replayError answers a store's replay for an issuance that claimed the
// client's marks together with the grant's: the store names the mark that
// existed. A replayed client assertion is the client's failure
// (invalid_client), a replayed grant assertion invalid_grant.
func replayError(req *tokenRequest, err error) *Error {
	if isDPoPReplay(req, err) {
		return dpopReplay()
	}
	var re *ReplayError
	if errors.As(err, &re) {
		for _, m := range req.clientMarks {
			if m.Key == re.Key {
				return clientReplay()
			}
		}
	}
	return invalidGrant("replay", "assertion has already been used")
}

// unverifiedIssuer returns the iss of an assertion, read but never
// trusted: parsed when go-jose could parse it, else read from the payload
// segment of a JWS go-jose refused (alg none, HS256, crit...). It only
// chooses between two refusals of a request without client
// authentication (SPEC §3.1: invalid_grant for an issuer with
// client_auth optional, invalid_client for any other), and can never
// make an assertion valid.
func unverifiedIssuer(t *signedJWT, raw string) string {
	if t != nil {
		return t.iss
	}
	if len(raw) > maxAssertionSize {
		return ""
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return ""
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var claims struct {
		Iss string `json:"iss"`
	}
	_ = json.Unmarshal(payload, &claims)
	return claims.Iss
}
