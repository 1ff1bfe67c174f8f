package grant

import (
	"context"
	"errors"
	"net/url"
)

// refresh is the refresh token grant (RFC 6749 §6, SPEC §3.2): same
// client only, scope may narrow from the chain's first-granted scope, and
// every use rotates. Presenting a rotated token revokes the chain.
func (s *Server) refresh(ctx context.Context, tenant *Tenant, form url.Values, creds credentials, d *decision) (*tokenResponse, *Error) {
	raw, ok := form["refresh_token"]
	if !ok || raw[0] == "" {
		return nil, invalidRequest("missing_refresh_token", "refresh_token is required")
	}
	client, clientMarks, oerr := s.authenticateForGrant(ctx, tenant, creds)
	if oerr != nil {
		return nil, oerr
	}
	d.client = client.ID
	if !contains(client.GrantTypes, GrantRefreshToken) {
		return nil, unauthorizedClient("grant_type_not_allowed", "client may not use this grant type")
	}
	hash := HashToken(raw[0])
	rec, err := s.cfg.Store.Refresh(ctx, hash)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, invalidGrant("unknown_refresh_token", "refresh token is invalid")
	case err != nil:
		return nil, s.storeError("refresh", err)
	}
	d.subject = rec.Sub
	now := s.now()
	// A token of another tenant or client is answered as unknown: its
	// existence is not the caller's business.
	if rec.Tenant != tenant.Domain || rec.ClientID != client.ID || rec.Exp <= now.Unix() {
		return nil, invalidGrant("unknown_refresh_token", "refresh token is invalid")
	}
	if rec.Rotated {
		if err := s.cfg.Store.RevokeChain(ctx, rec.Chain); err != nil {
			return nil, s.storeError("revoke_chain", err)
		}
		return nil, invalidGrant("refresh_reuse", "refresh token has already been used; its grant is revoked")
	}
	// The chain lives only as long as the configuration that began it
	// still trusts its assertion's issuer for this client: removing an
	// issuer, or a client's right to it, ends its refresh chains too.
	issuer := tenant.Issuers[rec.AssertionIss]
	if issuer == nil || (client.Issuers != nil && !contains(client.Issuers, issuer.Name)) {
		return nil, invalidGrant("issuer_no_longer_trusted", "refresh token is no longer valid")
	}
	d.issuer = issuer.Name
	first := splitScope(rec.Scope)
	scope := first
	if v, ok := form["scope"]; ok {
		if scope, oerr = grantScope(splitScope(v[0]), first, client.Scopes, issuer.Scopes); oerr != nil {
			return nil, oerr
		}
	} else if client.Scopes != nil || issuer.Scopes != nil {
		// The client's or issuer's scopes may have been narrowed since the
		// chain began.
		if scope, oerr = grantScope(first, client.Scopes, issuer.Scopes); oerr != nil {
			return nil, oerr
		}
	}
	g := &grantee{
		tenant: rec.Tenant, sub: rec.Sub, clientID: rec.ClientID, assertionIss: rec.AssertionIss,
		claims: rec.Claims, aud: rec.Aud, chain: rec.Chain, firstScope: rec.Scope, rotate: hash,
		clientMarks: clientMarks,
	}
	return s.issue(ctx, client, g, scope, nil, now)
}
