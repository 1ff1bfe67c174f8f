package grant

import (
	"context"
	"errors"
	"slices"
	"strings"
)

// private_key_jwt client authentication (RFC 7523 §2.2, RFC 7521 §4.2,
// SPEC §3.1). A client assertion is checked like a grant assertion, by the
// same functions of assertion.go, with these differences: the client is
// both its iss and its sub; its keys are the client's; jti is required and
// replay-checked in the "client" namespace; and every failure is the
// client's, 401 invalid_client, never invalid_grant.

// authenticateClientAssertion is private_key_jwt for an endpoint that
// issues nothing: the assertion's replay mark is claimed at once.
func (s *Server) authenticateClientAssertion(ctx context.Context, tenant *Tenant, c credentials) (*Client, *Error) {
	client, mark, oerr := s.verifyClientAssertion(ctx, tenant, c)
	if oerr != nil {
		return nil, oerr
	}
	if oerr := s.claimClientMarks(ctx, []Mark{*mark}); oerr != nil {
		return nil, oerr
	}
	return client, nil
}

// authenticateForGrant authenticates the client of a token request. A
// client assertion's replay mark is returned rather than claimed: the
// store claims it with the grant's own marks and records, so that a
// request failing after client authentication leaves the client's jti
// unused.
func (s *Server) authenticateForGrant(ctx context.Context, tenant *Tenant, c credentials) (*Client, []Mark, *Error) {
	if c.method != "private_key_jwt" {
		client, oerr := s.authenticateClient(ctx, tenant, c)
		return client, nil, oerr
	}
	client, mark, oerr := s.verifyClientAssertion(ctx, tenant, c)
	if oerr != nil {
		return nil, nil, oerr
	}
	return client, []Mark{*mark}, nil
}

// verifyClientAssertion runs every check of a client assertion but the
// replay claim, and returns the client and the mark to claim.
func (s *Server) verifyClientAssertion(ctx context.Context, tenant *Tenant, c credentials) (*Client, *Mark, *Error) {
	t, oerr := parseCompactJWS(c.assertion)
	if oerr != nil {
		return nil, nil, clientAssertionError(oerr)
	}
	iss, _, ok := t.stringClaim("iss")
	if !ok || iss == "" {
		return nil, nil, invalidClient("client_missing_iss", "client assertion iss is missing")
	}
	// RFC 7521 §4.2: client_id, when sent, names the same client.
	if c.id != "" && c.id != iss {
		return nil, nil, invalidClient("client_id_mismatch", "client_id does not match the client assertion")
	}
	client := tenant.Clients[iss]
	switch {
	case client == nil:
		return nil, nil, invalidClient("unknown_client", "client authentication failed")
	case client.Keys == nil:
		// A client with a secret authenticates with it, never with a key:
		// accepting both would give it two credentials to lose.
		return nil, nil, invalidClient("client_auth_method", "client may not use private_key_jwt")
	}
	if oerr := checkSignature(ctx, t, client.Keys, DefaultAlgorithms); oerr != nil {
		return nil, nil, clientAssertionError(oerr)
	}
	if sub, _, ok := t.stringClaim("sub"); !ok || sub != iss {
		return nil, nil, invalidClient("client_sub_mismatch", "client assertion sub must equal its iss")
	}
	// A client assertion is for this server only: no issuer aliases.
	if oerr := checkAudience(t, s.audiences, nil); oerr != nil {
		return nil, nil, clientAssertionError(oerr)
	}
	exp, oerr := checkTimes(t, &s.cfg.Policy, s.now())
	if oerr != nil {
		return nil, nil, clientAssertionError(oerr)
	}
	jti, oerr := checkJTI(t, true)
	if oerr != nil {
		return nil, nil, clientAssertionError(oerr)
	}
	return client, &Mark{
		Key:   ReplayMarkKey("client", tenant.Domain, client.ID, jti),
		Until: unixTime(exp).Add(s.cfg.Policy.ClockSkew),
	}, nil
}

// clientAssertionError turns the answer of a shared assertion check into
// the client's failure. An outage of the client's key source stays a 503:
// the client is not at fault.
func clientAssertionError(e *Error) *Error {
	if e.Code == CodeTemporarilyUnavailable {
		return e
	}
	desc := e.Description
	if strings.HasPrefix(desc, "assertion ") {
		desc = "client " + desc
	} else {
		desc = "client assertion: " + desc
	}
	return invalidClient("client_"+e.Reason, desc)
}

// claimClientMarks claims client assertion marks on their own, after
// every other check of the request passed. It answers a replay with
// invalid_client.
func (s *Server) claimClientMarks(ctx context.Context, marks []Mark) *Error {
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

// replayError answers a store's replay for an issuance that claimed
// clientMarks together with the grant's marks. A replayed client assertion
// is the client's failure (invalid_client) and comes first, as client
// authentication does: the issuance lists the client marks first, so the
// mark the store names is a client mark whenever one was held.
func replayError(err error, clientMarks []Mark) *Error {
	var re *ReplayError
	if errors.As(err, &re) && slices.ContainsFunc(clientMarks, func(m Mark) bool { return m.Key == re.Key }) {
		return clientReplay()
	}
	return invalidGrant("replay", "assertion has already been used")
}
