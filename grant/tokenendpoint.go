package grant

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"time"

	"go.uber.org/zap"
)

// tokenResponse is the successful token response (RFC 6749 §5.1).
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
	// Resource is the granted resources' URIs (RFC 8707 §2.2): a string
	// when there is one, an array otherwise, absent when none.
	Resource any `json:"resource,omitempty"`
}

// tokenRequest is one token endpoint request on its way down: what the
// edge read from the HTTP request, and what each step found out. The
// grant's log line and metrics are written from it once, when the answer
// is known.
type tokenRequest struct {
	ctx       context.Context
	now       time.Time
	grantType string
	form      url.Values
	tenant    *Tenant
	creds     credentials

	// client is the authenticated client; nil for a request without
	// client authentication (an issuer with client_auth optional).
	client *Client
	// clientMarks are the client assertion's replay records: claimed
	// together with the grant's writes, so that a request failing after
	// client authentication leaves the client's jti unused.
	clientMarks []Mark
	issuer      *Issuer
	subject     string
	// dpop is the request's checked DPoP proof, nil without one.
	dpop *dpopProof
}

// clientID is the client the request is for, as far as it is known.
func (req *tokenRequest) clientID() string {
	switch {
	case req.client != nil:
		return req.client.ID
	case req.creds.method == "" && req.issuer != nil:
		return req.issuer.Issuer
	}
	return req.creds.id
}

// ServeToken is the token endpoint (SPEC §3.1, §3.2).
func (s *Server) ServeToken(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	req := &tokenRequest{ctx: r.Context()}
	resp, oerr := s.token(r, req)
	s.logGrant(req, oerr, time.Since(start))
	switch {
	case oerr == nil:
		writeJSON(w, http.StatusOK, resp)
	case oerr.Status == http.StatusMethodNotAllowed:
		methodNotAllowed(w, "POST")
	default:
		writeError(w, oerr, s.cfg.Realm)
	}
}

// logGrant writes the one log line and the metrics of a token request.
func (s *Server) logGrant(req *tokenRequest, oerr *Error, d time.Duration) {
	outcome, reason := "issued", "ok"
	if oerr != nil {
		outcome, reason = oerr.Code, oerr.Reason
	}
	s.obs.Grant(req.grantType, outcome, reason, d)
	if ce := s.log.Check(zap.InfoLevel, "grant"); ce != nil {
		var tenant, issuer string
		if req.tenant != nil {
			tenant = req.tenant.Domain
		}
		if req.issuer != nil {
			issuer = req.issuer.Name
		}
		ce.Write(zap.String("grant_type", req.grantType), zap.String("tenant", tenant),
			zap.String("client_id", req.clientID()), zap.String("issuer", issuer),
			zap.String("subject", req.subject), zap.String("outcome", outcome), zap.String("reason", reason))
	}
}

// token reads the request at the edge and hands it to its grant.
func (s *Server) token(r *http.Request, req *tokenRequest) (*tokenResponse, *Error) {
	if r.Method != http.MethodPost {
		return nil, newError(CodeInvalidRequest, http.StatusMethodNotAllowed, "bad_method", "method not allowed")
	}
	var oerr *Error
	if req.form, oerr = readForm(r); oerr != nil {
		return nil, oerr
	}
	if req.tenant, oerr = s.tenantOf(r); oerr != nil {
		return nil, oerr
	}
	if req.creds, oerr = clientCredentials(r, req.form); oerr != nil {
		return nil, oerr
	}
	req.now = s.now()
	req.grantType = req.form.Get("grant_type")
	if req.dpop, oerr = s.tokenProof(r, req.now); oerr != nil {
		return nil, oerr
	}
	switch req.grantType {
	case "":
		return nil, invalidRequest("missing_grant_type", "grant_type is required")
	case GrantTypeJWTBearer:
		return s.jwtBearer(req)
	case GrantTypeRefreshToken:
		return s.refresh(req)
	}
	req.grantType = "unsupported"
	return nil, newError(CodeUnsupportedGrantType, http.StatusBadRequest, "unsupported_grant_type", "grant_type is not supported")
}

// jwtBearer is the JWT bearer grant (RFC 7523 §2.1, SPEC §3.1): client
// authentication, checks 1 and 2, the client's right to the grant and the
// issuer, then the exchange.
func (s *Server) jwtBearer(req *tokenRequest) (*tokenResponse, *Error) {
	raw := req.form.Get("assertion")
	if raw == "" {
		return nil, invalidRequest("missing_assertion", "assertion is required")
	}
	if req.creds.method == "" {
		return s.jwtBearerWithoutClient(req, raw)
	}
	if oerr := s.authenticateForGrant(req); oerr != nil {
		return nil, oerr
	}
	if !slices.Contains(req.client.GrantTypes, GrantJWTBearer) {
		return nil, unauthorizedClient("grant_type_not_allowed", "client may not use this grant type")
	}
	t, oerr := parseJWT(raw, assertionError)
	if oerr != nil {
		return nil, oerr
	}
	if req.issuer, oerr = checkIssuer(t, req.tenant); oerr != nil {
		return nil, oerr
	}
	if req.client.Issuers != nil && !slices.Contains(req.client.Issuers, req.issuer.Name) {
		return nil, unauthorizedClient("issuer_not_allowed", "client may not use assertions of this issuer")
	}
	return s.exchange(req, t)
}

// jwtBearerWithoutClient is a request without client authentication:
// only an issuer with client_auth optional can vouch for it, and then the
// assertion alone is judged (every failure is invalid_grant, check 1's
// included). Anything else is the missing client authentication.
func (s *Server) jwtBearerWithoutClient(req *tokenRequest, raw string) (*tokenResponse, *Error) {
	t, parseErr := parseJWT(raw, assertionError)
	iss := unverifiedIssuer(t, raw)
	issuer := req.tenant.Issuers[iss]
	if iss == "" || issuer == nil || !issuer.ClientAuthOptional {
		return nil, invalidClient("no_client_auth", "client authentication is required")
	}
	req.issuer = issuer
	if parseErr != nil {
		return nil, parseErr
	}
	return s.exchange(req, t)
}

// exchange runs checks 3 to 10 against the request's issuer, decides the
// scope and issues the tokens.
func (s *Server) exchange(req *tokenRequest, t *signedJWT) (*tokenResponse, *Error) {
	a, oerr := s.validateAssertion(req.ctx, t, req.issuer, req.now)
	if oerr != nil {
		return nil, oerr
	}
	req.subject = a.Subject
	if a.Profile == ProfileIDJAG {
		if oerr := checkIDJAGClient(req, a); oerr != nil {
			return nil, oerr
		}
		if oerr := checkConfirmation(t, req.dpop); oerr != nil {
			return nil, oerr
		}
	}
	resources, oerr := s.assertionResources(req, a)
	if oerr != nil {
		return nil, oerr
	}
	scope, oerr := assertionScope(req, a)
	if oerr != nil {
		return nil, oerr
	}
	if scope, oerr = grantScope(scope, resourceScopes(resources)); oerr != nil {
		return nil, oerr
	}
	g := &granted{sub: a.Subject, assertionIss: req.issuer.Issuer, claims: a.Claims, scope: scope, profile: a.Profile,
		marks: a.marks()}
	g.grantResources(resources, resources)
	return s.issue(req, g)
}

// assertionScope decides the scope of a JWT bearer grant (SPEC §3.1
// Scopes): the form's scope, else the assertion's scope claim, within the
// client's, the issuer's and the claim's own bounds.
func assertionScope(req *tokenRequest, a *verifiedAssertion) ([]string, *Error) {
	requested := a.Scope
	if v, ok := req.form["scope"]; ok {
		requested = splitScope(v[0])
	}
	var clientScopes, claimBound []string
	if req.client != nil {
		clientScopes = req.client.Scopes
	}
	if a.HasScope {
		claimBound = a.Scope
		if claimBound == nil {
			claimBound = []string{}
		}
	}
	return grantScope(requested, clientScopes, req.issuer.Scopes, claimBound)
}

// granted is what a grant decided: who the tokens are for and what they
// may do, before they are minted.
type granted struct {
	sub, assertionIss string
	claims            map[string]json.RawMessage
	scope             []string
	// marks are the grant assertion's replay records.
	marks []Mark
	// aud, chain, firstScope and rotate are set by a refresh: the new
	// tokens keep the chain's audience and first-granted scope, and the
	// refresh token rotate is exchanged atomically for them.
	aud               []string
	chain, firstScope string
	rotate            string
	// boundJKT is the key a refreshed chain is bound to, "" if none.
	boundJKT string
	// resource are the URIs of the resources this issuance is for (its
	// audience), chainResource those the chain was first granted, which
	// its refresh record keeps; profile is the assertion profile.
	resource, chainResource []string
	profile                 string
}

// lifetimes returns the access and refresh token lifetimes for client
// (nil for a request without client authentication, which never gets a
// refresh token).
func (s *Server) lifetimes(client *Client) (access, refresh time.Duration) {
	access, refresh = s.cfg.AccessTokenTTL, s.cfg.RefreshTokenTTL
	if client == nil {
		return access, 0
	}
	if client.AccessTTL > 0 {
		access = client.AccessTTL
	}
	if client.RefreshTTL != 0 {
		refresh = max(client.RefreshTTL, 0)
	}
	if !slices.Contains(client.GrantTypes, GrantRefreshToken) {
		refresh = 0
	}
	return access, refresh
}

// issue mints the tokens of a grant and stores them with the replay marks
// in one atomic write. Nothing is answered unless the write succeeded.
func (s *Server) issue(req *tokenRequest, g *granted) (*tokenResponse, *Error) {
	accessCnf, refreshCnf, oerr := checkDPoPBinding(req, g)
	if oerr != nil {
		return nil, oerr
	}
	accessTTL, refreshTTL := s.lifetimes(req.client)
	if g.profile == ProfileIDJAG {
		// SPEC §7: an ID-JAG exchange gets no refresh token; the client
		// goes back to its IdP for a new grant.
		refreshTTL = 0
	}
	// What every issuance allocates, allocated together.
	out := &struct {
		at   AccessRecord
		is   Issuance
		resp tokenResponse
		aud  [1]string
	}{}
	clientID := req.clientID()
	aud := g.aud
	if aud == nil {
		out.aud[0] = clientID
		aud = out.aud[:]
		if req.client != nil && len(req.client.Audience) > 0 {
			aud = req.client.Audience
		}
	}
	claims := g.claims
	if claims == nil {
		claims = map[string]json.RawMessage{}
	}
	iat := req.now.Unix()
	base := TokenRecord{
		V: RecordVersion, Sub: g.sub, ClientID: clientID, Scope: joinScope(g.scope), Aud: aud,
		Iss: s.cfg.IssuerURL, AssertionIss: g.assertionIss, Iat: iat, Exp: iat + int64(accessTTL/time.Second),
		Tenant: req.tenant.Domain, Claims: claims, Cnf: accessCnf, Resource: g.resource, Profile: g.profile,
	}
	at := &out.at
	at.TokenRecord = base
	access, err := s.minter.Mint(at)
	if err != nil {
		s.log.Error("minting an access token failed", zap.Error(err))
		return nil, newError(CodeServerError, http.StatusInternalServerError, "mint", "token could not be issued")
	}
	is := &out.is
	*is = Issuance{AccessHash: HashToken(access), Access: at}
	resp := &out.resp
	*resp = tokenResponse{AccessToken: access, TokenType: tokenType(accessCnf), ExpiresIn: at.Exp - iat, Scope: at.Scope,
		Resource: responseResource(g.resource)}
	if refreshTTL > 0 {
		chain, firstScope := g.chain, g.firstScope
		if chain == "" {
			chain, firstScope = randomID(), at.Scope
		}
		at.Chain = chain
		resp.RefreshToken = randomToken()
		is.RefreshHash = HashToken(resp.RefreshToken)
		rt := base
		rt.Scope, rt.Exp, rt.Cnf = firstScope, iat+int64(refreshTTL/time.Second), refreshCnf
		if len(g.chainResource) > 0 {
			rt.Resource, rt.Aud = g.chainResource, g.chainResource
		}
		is.Refresh = &RefreshRecord{TokenRecord: rt, Chain: chain}
	}
	if g.rotate != "" {
		// A rotation claims no grant marks: the refresh token is its own
		// replay guard. A client assertion's mark and a DPoP proof's are
		// claimed just before.
		if marks := appendDPoPMark(req.clientMarks, req.dpop); len(marks) > 0 {
			if oerr := s.claimRequestMarks(req, marks); oerr != nil {
				return nil, oerr
			}
		}
		err = s.cfg.Store.Rotate(req.ctx, g.rotate, is)
	} else {
		// Client marks first: a store names the first mark it finds held,
		// and a replayed client assertion is the client's failure.
		is.Marks = g.marks
		if len(req.clientMarks) > 0 {
			is.Marks = append(slices.Clip(req.clientMarks), g.marks...)
		}
		is.Marks = appendDPoPMark(is.Marks, req.dpop)
		err = s.cfg.Store.Issue(req.ctx, is)
	}
	switch {
	case err == nil:
		return resp, nil
	case errors.Is(err, ErrReplay):
		return nil, replayError(req, err)
	case errors.Is(err, ErrRefreshReuse):
		return nil, invalidGrant("refresh_reuse", "refresh token has already been used; its grant is revoked")
	case errors.Is(err, ErrNotFound):
		return nil, invalidGrant("unknown_refresh_token", "refresh token is invalid")
	}
	return nil, s.storeError("issue", err)
}
