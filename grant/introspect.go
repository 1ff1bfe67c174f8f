package grant

import (
	"context"
	"errors"
	"net/http"

	"go.uber.org/zap"
)

// Introspection responses (RFC 7662 §2.2): "active" and, for a live
// token, every member of its record (SPEC §4) with its token_type. An
// inactive token is {"active": false} and nothing else.
type (
	activeAccess struct {
		Active bool `json:"active"`
		*AccessRecord
		TokenType string `json:"token_type"`
	}
	activeRefresh struct {
		Active bool `json:"active"`
		*RefreshRecord
		TokenType string `json:"token_type"`
	}
	inactive struct {
		Active bool `json:"active"`
	}
)

// ServeIntrospect is the introspection endpoint (RFC 7662, SPEC §3.3).
// The caller authenticates as at the token endpoint. Any authenticated
// client of a tenant may introspect any token of that tenant: a resource
// server registered as a client must be able to check the tokens of the
// clients calling it. Tokens of another tenant are inactive.
func (s *Server) ServeIntrospect(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, "POST")
		return
	}
	resp, oerr := s.introspect(r)
	if oerr != nil {
		writeError(w, oerr, s.cfg.Realm)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) introspect(r *http.Request) (any, *Error) {
	tenant, client, token, oerr := s.clientRequest(r)
	if oerr != nil {
		return nil, oerr
	}
	found, oerr := s.findToken(r.Context(), tenant, token, r.PostForm.Get("token_type_hint"), "introspect")
	if oerr != nil {
		return nil, oerr
	}
	var resp any = inactive{}
	switch {
	case found.access != nil:
		resp = activeAccess{true, found.access, tokenType(found.access.Cnf)}
	case found.refresh != nil && !found.refresh.Rotated:
		resp = activeRefresh{true, found.refresh, "refresh_token"}
	}
	if ce := s.log.Check(zap.DebugLevel, "introspection"); ce != nil {
		_, active := resp.(inactive)
		ce.Write(zap.String("tenant", tenant.Domain), zap.String("client_id", client.ID), zap.Bool("active", !active))
	}
	return resp, nil
}

// clientRequest reads what introspection and revocation requests share:
// the form (kept in r.PostForm), the tenant, the authenticated client and
// the token parameter.
func (s *Server) clientRequest(r *http.Request) (*Tenant, *Client, string, *Error) {
	form, oerr := readForm(r)
	if oerr != nil {
		return nil, nil, "", oerr
	}
	r.PostForm = form
	tenant, oerr := s.tenantOf(r)
	if oerr != nil {
		return nil, nil, "", oerr
	}
	creds, oerr := clientCredentials(r, form)
	if oerr != nil {
		return nil, nil, "", oerr
	}
	client, oerr := s.authenticateClient(r.Context(), tenant, creds)
	if oerr != nil {
		return nil, nil, "", oerr
	}
	token := form.Get("token")
	if token == "" {
		return nil, nil, "", invalidRequest("missing_token", "token is required")
	}
	return tenant, client, token, nil
}

// foundToken is the record of a token presented to introspection or
// revocation: at most one of the two is set.
type foundToken struct {
	access  *AccessRecord
	refresh *RefreshRecord
}

// findToken looks a token up as an access token and as a refresh token,
// in the order token_type_hint suggests (RFC 7009 §2.1: the hint only
// speeds the search up). A record that has expired by our clock or belongs
// to another tenant is not found. A rotated refresh token is found, with
// Rotated set.
func (s *Server) findToken(ctx context.Context, tenant *Tenant, token, hint, op string) (foundToken, *Error) {
	hash := HashToken(token)
	now := s.now().Unix()
	live := func(rec *TokenRecord) bool { return rec.Exp > now && rec.Tenant == tenant.Domain }
	var found foundToken
	access := func() error {
		rec, err := s.cfg.Store.Access(ctx, hash)
		if err == nil && live(&rec.TokenRecord) {
			found.access = rec
		}
		return err
	}
	refresh := func() error {
		rec, err := s.cfg.Store.Refresh(ctx, hash)
		if err == nil && live(&rec.TokenRecord) {
			found.refresh = rec
		}
		return err
	}
	lookups := [2]func() error{access, refresh}
	if hint == "refresh_token" {
		lookups[0], lookups[1] = refresh, access
	}
	for _, lookup := range lookups {
		if err := lookup(); err != nil && !errors.Is(err, ErrNotFound) {
			return found, s.storeError(op, err)
		}
		if found.access != nil || found.refresh != nil {
			break
		}
	}
	return found, nil
}
