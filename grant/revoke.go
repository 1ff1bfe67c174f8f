package grant

import (
	"net/http"

	"go.uber.org/zap"
)

// ServeRevoke is the revocation endpoint (RFC 7009, SPEC §3.4). The caller
// authenticates as at the token endpoint and may revoke only its own
// tokens. Revoking an access token deletes it; revoking a refresh token
// (live or already rotated) deletes every token of its chain. Unknown,
// expired and other tenants' tokens are answered 200 like revoked ones
// (RFC 7009 §2.2), so that revocation tells nothing of other tenants.
func (s *Server) ServeRevoke(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, "POST")
		return
	}
	if oerr := s.revoke(r); oerr != nil {
		writeError(w, oerr, s.cfg.Realm)
		return
	}
	writeJSON(w, http.StatusOK, struct{}{})
}

func (s *Server) revoke(r *http.Request) *Error {
	tenant, client, token, oerr := s.clientRequest(r)
	if oerr != nil {
		return oerr
	}
	ctx := r.Context()
	found, oerr := s.findToken(ctx, tenant, token, r.PostForm.Get("token_type_hint"), "revoke")
	if oerr != nil {
		return oerr
	}
	kind, owner := "none", ""
	switch {
	case found.access != nil:
		kind, owner = "access_token", found.access.ClientID
	case found.refresh != nil:
		kind, owner = "refresh_token", found.refresh.ClientID
	}
	outcome := "revoked"
	defer func() {
		if ce := s.log.Check(zap.InfoLevel, "revocation"); ce != nil {
			ce.Write(zap.String("tenant", tenant.Domain), zap.String("client_id", client.ID),
				zap.String("token_type", kind), zap.String("outcome", outcome))
		}
	}()
	switch {
	case kind == "none":
		outcome = "unknown_token"
		return nil
	case owner != client.ID:
		outcome = "other_client"
		return unauthorizedClient("other_client", "the token was issued to another client")
	case found.access != nil:
		if err := s.cfg.Store.RevokeAccess(ctx, HashToken(token)); err != nil {
			outcome = "store_unavailable"
			return s.storeError("revoke", err)
		}
	default:
		if err := s.cfg.Store.RevokeChain(ctx, found.refresh.Chain); err != nil {
			outcome = "store_unavailable"
			return s.storeError("revoke", err)
		}
	}
	return nil
}
