package grant

import (
	"errors"
	"slices"
)

// refresh is the refresh token grant (RFC 6749 §6, SPEC §3.2): same
// client only, scope may narrow from the chain's first-granted scope, and
// every use rotates. Presenting a rotated token revokes the chain.
func (s *Server) refresh(req *tokenRequest) (*tokenResponse, *Error) {
	raw := req.form.Get("refresh_token")
	if raw == "" {
		return nil, invalidRequest("missing_refresh_token", "refresh_token is required")
	}
	if oerr := s.authenticateForGrant(req); oerr != nil {
		return nil, oerr
	}
	client := req.client
	if !slices.Contains(client.GrantTypes, GrantRefreshToken) {
		return nil, unauthorizedClient("grant_type_not_allowed", "client may not use this grant type")
	}
	hash := HashToken(raw)
	rec, err := s.cfg.Store.Refresh(req.ctx, hash)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, invalidGrant("unknown_refresh_token", "refresh token is invalid")
	case err != nil:
		return nil, s.storeError("refresh", err)
	}
	req.subject = rec.Sub
	// A token of another tenant or client is answered as unknown: its
	// existence is not the caller's business.
	if rec.Tenant != req.tenant.Domain || rec.ClientID != client.ID || rec.Exp <= req.now.Unix() {
		return nil, invalidGrant("unknown_refresh_token", "refresh token is invalid")
	}
	if rec.Rotated {
		if err := s.cfg.Store.RevokeChain(req.ctx, rec.Chain); err != nil {
			return nil, s.storeError("revoke_chain", err)
		}
		return nil, invalidGrant("refresh_reuse", "refresh token has already been used; its grant is revoked")
	}
	// The chain lives only as long as the configuration that began it
	// still trusts its assertion's issuer for this client: removing an
	// issuer, or a client's right to it, ends its refresh chains too.
	req.issuer = req.tenant.Issuers[rec.AssertionIss]
	if req.issuer == nil || client.Issuers != nil && !slices.Contains(client.Issuers, req.issuer.Name) {
		return nil, invalidGrant("issuer_no_longer_trusted", "refresh token is no longer valid")
	}
	resources, chainResources, oerr := s.refreshResources(req, rec)
	if oerr != nil {
		return nil, oerr
	}
	scope, oerr := refreshScope(req, splitScope(rec.Scope))
	if oerr != nil {
		return nil, oerr
	}
	if scope, oerr = refreshResourceScope(req, scope, resources); oerr != nil {
		return nil, oerr
	}
	g := &granted{
		sub: rec.Sub, assertionIss: rec.AssertionIss, claims: rec.Claims, scope: scope,
		aud: rec.Aud, chain: rec.Chain, firstScope: rec.Scope, rotate: hash, profile: rec.Profile,
		boundJKT: boundJKT(rec.Cnf),
	}
	g.grantResources(resources, chainResources)
	return s.issue(req, g)
}

// refreshScope is the scope of a refresh: the form's scope within the
// chain's first-granted scope, or that scope itself; both within the
// client's and the issuer's scopes, which may have narrowed since the
// chain began.
func refreshScope(req *tokenRequest, first []string) ([]string, *Error) {
	if v, ok := req.form["scope"]; ok {
		return grantScope(splitScope(v[0]), first, req.client.Scopes, req.issuer.Scopes)
	}
	if req.client.Scopes == nil && req.issuer.Scopes == nil {
		return first, nil
	}
	return grantScope(first, req.client.Scopes, req.issuer.Scopes)
}
