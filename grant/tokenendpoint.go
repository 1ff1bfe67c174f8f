package grant

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
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
}

// decision is what the grant log line and metrics say of one request.
type decision struct {
	grantType, client, issuer, subject, tenant string
}

// ServeToken is the token endpoint (SPEC §3.1, §3.2).
func (s *Server) ServeToken(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var d decision
	resp, oerr := s.token(r, &d)
	outcome, reason := "issued", "ok"
	if oerr != nil {
		outcome, reason = oerr.Code, oerr.Reason
	}
	s.obs.Grant(d.grantType, outcome, reason, time.Since(start))
	if ce := s.log.Check(zap.InfoLevel, "grant"); ce != nil {
		ce.Write(zap.String("grant_type", d.grantType), zap.String("tenant", d.tenant),
			zap.String("client_id", d.client), zap.String("issuer", d.issuer),
			zap.String("subject", d.subject), zap.String("outcome", outcome), zap.String("reason", reason))
	}
	if oerr != nil {
		if oerr.Status == http.StatusMethodNotAllowed {
			methodNotAllowed(w, "POST")
			return
		}
		writeError(w, oerr, s.cfg.Realm)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) token(r *http.Request, d *decision) (*tokenResponse, *Error) {
	if r.Method != http.MethodPost {
		return nil, newError(CodeInvalidRequest, http.StatusMethodNotAllowed, "bad_method", "method not allowed")
	}
	form, oerr := readForm(r)
	if oerr != nil {
		return nil, oerr
	}
	tenant, oerr := s.tenantOf(r)
	if oerr != nil {
		return nil, oerr
	}
	d.tenant = tenant.Domain
	creds, oerr := clientCredentials(r, form)
	if oerr != nil {
		return nil, oerr
	}
	d.client = creds.id
	gt := form.Get("grant_type")
	d.grantType = gt
	switch gt {
	case "":
		return nil, invalidRequest("missing_grant_type", "grant_type is required")
	case GrantTypeJWTBearer:
		return s.jwtBearer(r.Context(), tenant, form, creds, d)
	case GrantTypeRefreshToken:
		return s.refresh(r.Context(), tenant, form, creds, d)
	}
	d.grantType = "unsupported"
	return nil, newError(CodeUnsupportedGrantType, http.StatusBadRequest, "unsupported_grant_type", "grant_type is not supported")
}

// credentials are the client authentication a request carries.
type credentials struct {
	method    string // "" (none), "client_secret_basic", "client_secret_post", "private_key_jwt"
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
		c.method = "client_secret_basic"
		methods++
	}
	if _, ok := form["client_secret"]; ok {
		c.method = "client_secret_post"
		c.secret = form.Get("client_secret")
		methods++
	}
	_, hasType := form["client_assertion_type"]
	_, hasAssertion := form["client_assertion"]
	if hasType || hasAssertion {
		if form.Get("client_assertion_type") != ClientAssertionTypeJWTBearer || !hasAssertion {
			return c, invalidRequest("bad_client_assertion_type", "client_assertion_type must be "+ClientAssertionTypeJWTBearer)
		}
		c.method = "private_key_jwt"
		c.assertion = form.Get("client_assertion")
		methods++
	}
	if methods > 1 {
		return c, invalidRequest("multiple_client_auth", "more than one client authentication method")
	}
	if id, ok := form["client_id"]; ok {
		switch {
		case c.method == "client_secret_basic" && id[0] != c.id:
			return c, invalidRequest("client_id_mismatch", "client_id does not match the authenticated client")
		case c.method == "client_secret_post" || c.method == "private_key_jwt" || c.method == "":
			c.id = id[0]
		}
	}
	if c.method == "client_secret_post" && c.id == "" {
		return c, invalidClient("missing_client_id", "client_id is required with client_secret")
	}
	return c, nil
}

// authenticateClient checks the credentials against the tenant's clients.
// An unknown client costs what a wrong secret costs.
func (s *Server) authenticateClient(ctx context.Context, tenant *Tenant, c credentials) (*Client, *Error) {
	switch c.method {
	case "":
		return nil, invalidClient("no_client_auth", "client authentication is required")
	case "private_key_jwt":
		return s.authenticateClientAssertion(ctx, tenant, c)
	}
	client := tenant.Clients[c.id]
	hash := fakeSecretHash
	if client != nil && client.SecretHash != nil {
		hash = client.SecretHash
	}
	if !s.secrets.verify(hash, c.secret) || client == nil || client.SecretHash == nil {
		return nil, invalidClient("bad_client_credentials", "client authentication failed")
	}
	return client, nil
}

// jwtBearer is the JWT bearer grant (RFC 7523 §2.1, SPEC §3.1).
func (s *Server) jwtBearer(ctx context.Context, tenant *Tenant, form url.Values, creds credentials, d *decision) (*tokenResponse, *Error) {
	raw, ok := form["assertion"]
	if !ok || raw[0] == "" {
		return nil, invalidRequest("missing_assertion", "assertion is required")
	}
	var client *Client
	if creds.method == "" {
		// Without client authentication only an issuer with
		// client_auth optional can vouch for the request.
		p, oerr := ParseAssertion(raw[0])
		if oerr != nil {
			return nil, invalidClient("no_client_auth", "client authentication is required")
		}
		issuer, oerr := p.LookupIssuer(tenant)
		if oerr != nil || !issuer.ClientAuthOptional {
			return nil, invalidClient("no_client_auth", "client authentication is required")
		}
		d.client = issuer.Issuer
		return s.exchange(ctx, tenant, nil, nil, p, issuer, form, d)
	}
	client, clientMarks, oerr := s.authenticateForGrant(ctx, tenant, creds)
	if oerr != nil {
		return nil, oerr
	}
	d.client = client.ID
	if !contains(client.GrantTypes, GrantJWTBearer) {
		return nil, unauthorizedClient("grant_type_not_allowed", "client may not use this grant type")
	}
	p, oerr := ParseAssertion(raw[0])
	if oerr != nil {
		return nil, oerr
	}
	issuer, oerr := p.LookupIssuer(tenant)
	if oerr != nil {
		return nil, oerr
	}
	if client.Issuers != nil && !contains(client.Issuers, issuer.Name) {
		d.issuer = issuer.Name
		return nil, unauthorizedClient("issuer_not_allowed", "client may not use assertions of this issuer")
	}
	return s.exchange(ctx, tenant, client, clientMarks, p, issuer, form, d)
}

// exchange validates the assertion against its issuer, decides the scope
// and issues the tokens. client is nil for an assertion-only request;
// clientMarks are its client assertion's replay marks.
func (s *Server) exchange(ctx context.Context, tenant *Tenant, client *Client, clientMarks []Mark, p *ParsedAssertion, issuer *Issuer, form url.Values, d *decision) (*tokenResponse, *Error) {
	d.issuer = issuer.Name
	now := s.now()
	a, oerr := p.Validate(ctx, issuer, &s.cfg.Policy, s.audiences, tenant.Domain, now)
	if oerr != nil {
		return nil, oerr
	}
	d.subject = a.Subject

	requested := a.Scope
	if v, ok := form["scope"]; ok {
		requested = splitScope(v[0])
	}
	var clientScopes []string
	if client != nil {
		clientScopes = client.Scopes
	}
	var claimBound []string
	if a.HasScope {
		claimBound = a.Scope
		if claimBound == nil {
			claimBound = []string{}
		}
	}
	scope, oerr := grantScope(requested, clientScopes, issuer.Scopes, claimBound)
	if oerr != nil {
		return nil, oerr
	}

	g := &grantee{
		tenant:       tenant.Domain,
		sub:          a.Subject,
		assertionIss: issuer.Issuer,
		claims:       a.Claims,
		clientID:     issuer.Issuer,
		clientMarks:  clientMarks,
	}
	if client != nil {
		g.clientID = client.ID
	}
	var marks []Mark
	if a.Mark != nil {
		marks = []Mark{*a.Mark}
	}
	return s.issue(ctx, client, g, scope, marks, now)
}

// grantee is who a token is issued to and on whose behalf.
type grantee struct {
	tenant, sub, clientID, assertionIss string
	claims                              map[string]json.RawMessage
	// aud, chain, firstScope and rotate are set by a refresh: the new
	// tokens keep the chain's audience and first-granted scope, and the
	// refresh token rotate is exchanged atomically for them.
	aud               []string
	chain, firstScope string
	rotate            string
	// clientMarks are the replay marks of the request's client assertion,
	// claimed with the grant's marks once every other check passed.
	clientMarks []Mark
}

// ttls returns the access and refresh token lifetimes for client (nil for
// an assertion-only request, which never gets a refresh token).
func (s *Server) ttls(client *Client) (access, refresh time.Duration) {
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
	if !contains(client.GrantTypes, GrantRefreshToken) {
		refresh = 0
	}
	return access, refresh
}

// issue mints the tokens of a grant and stores them with the replay marks
// in one atomic write. Nothing is answered unless the write succeeded.
func (s *Server) issue(ctx context.Context, client *Client, g *grantee, scope []string, marks []Mark, now time.Time) (*tokenResponse, *Error) {
	accessTTL, refreshTTL := s.ttls(client)
	aud := g.aud
	if aud == nil {
		aud = []string{g.clientID}
		if client != nil && len(client.Audience) > 0 {
			aud = client.Audience
		}
	}
	claims := g.claims
	if claims == nil {
		claims = map[string]json.RawMessage{}
	}
	iat := now.Unix()
	base := TokenRecord{
		V: RecordVersion, Sub: g.sub, ClientID: g.clientID, Scope: joinScope(scope), Aud: aud,
		Iss: s.cfg.IssuerURL, AssertionIss: g.assertionIss, Iat: iat, Exp: iat + int64(accessTTL/time.Second),
		Tenant: g.tenant, Claims: claims,
	}
	at := &AccessRecord{TokenRecord: base}
	access, err := s.minter.Mint(at)
	if err != nil {
		s.log.Error("minting an access token failed", zap.Error(err))
		return nil, newError(CodeServerError, http.StatusInternalServerError, "mint", "token could not be issued")
	}
	is := &Issuance{Marks: marks, AccessHash: HashToken(access), Access: at}
	resp := &tokenResponse{AccessToken: access, TokenType: "Bearer", ExpiresIn: at.Exp - iat, Scope: at.Scope}
	if refreshTTL > 0 {
		chain := g.chain
		firstScope := at.Scope
		if chain == "" {
			chain = randomID()
		} else {
			firstScope = g.firstScope
		}
		at.Chain = chain
		resp.RefreshToken = randomToken()
		is.RefreshHash = HashToken(resp.RefreshToken)
		rt := base
		rt.Scope, rt.Exp = firstScope, iat+int64(refreshTTL/time.Second)
		is.Refresh = &RefreshRecord{TokenRecord: rt, Chain: chain}
	}
	if g.rotate != "" {
		// Rotate claims no marks; the refresh token is the grant's own
		// replay guard, and a client assertion's mark is claimed just before.
		if len(g.clientMarks) > 0 {
			if oerr := s.claimClientMarks(ctx, g.clientMarks); oerr != nil {
				return nil, oerr
			}
		}
		err = s.cfg.Store.Rotate(ctx, g.rotate, is)
	} else {
		// Client marks first: a store names the first held mark.
		is.Marks = append(slices.Clip(g.clientMarks), marks...)
		err = s.cfg.Store.Issue(ctx, is)
	}
	switch {
	case err == nil:
		return resp, nil
	case errors.Is(err, ErrReplay):
		return nil, replayError(err, g.clientMarks)
	case errors.Is(err, ErrRefreshReuse):
		return nil, invalidGrant("refresh_reuse", "refresh token has already been used; its grant is revoked")
	case errors.Is(err, ErrNotFound):
		return nil, invalidGrant("unknown_refresh_token", "refresh token is invalid")
	}
	return nil, s.storeError("issue", err)
}
