package grant

// The checks of an Identity Assertion JWT Authorization Grant
// (draft-ietf-oauth-identity-assertion-authz-grant, SPEC §7), one
// function each, run after checks 3 to 10 of §3.1 for an issuer with
// profile id-jag: an ID-JAG is a JWT bearer assertion with a stricter
// shape, bound to one client and, optionally, to resources.

import (
	"encoding/json"
	"errors"
	"strings"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
)

// Assertion profiles of a trusted issuer.
const (
	// ProfileIDJAG is the Caddyfile's name of the ID-JAG profile.
	ProfileIDJAG = "id-jag"
	// GrantProfileIDJAG is its name in authorization server metadata
	// (authorization_grant_profiles_supported).
	GrantProfileIDJAG = "urn:ietf:params:oauth:grant-profile:id-jag"
	// IDJAGType is the typ header of an ID-JAG.
	IDJAGType = "oauth-id-jag+jwt"
)

// checkProfile refuses a profile this server does not know, and an
// ID-JAG issuer that would take assertions without client
// authentication: an ID-JAG is bound to the client that presents it.
func checkProfile(is *Issuer) error {
	switch is.Profile {
	case "":
		return nil
	case ProfileIDJAG:
		if is.ClientAuthOptional {
			return errors.New("profile id-jag requires client authentication (client_auth optional is not allowed)")
		}
		return nil
	}
	return errors.New("unknown profile " + is.Profile + " (id-jag)")
}

// checkIDJAG runs the profile's checks, in SPEC §7's order, on an
// assertion that passed checks 3 to 10, and records in a what the grant
// needs from it: the client it is bound to and its resources. The client
// binding itself is checkIDJAGClient's, at the token endpoint, which
// knows the authenticated client.
func (s *Server) checkIDJAG(t *signedJWT, a *verifiedAssertion) *Error {
	if oerr := checkIDJAGType(t); oerr != nil {
		return oerr
	}
	if oerr := checkIDJAGAudience(t, s.cfg.IssuerURL); oerr != nil {
		return oerr
	}
	clientID, oerr := checkIDJAGRequired(t)
	if oerr != nil {
		return oerr
	}
	if oerr := checkIDJAGIssuer(t, s.cfg.IssuerURL); oerr != nil {
		return oerr
	}
	resources, present, oerr := s.checkIDJAGResource(t)
	if oerr != nil {
		return oerr
	}
	if oerr := checkAuthorizationDetails(t); oerr != nil {
		return oerr
	}
	a.Profile, a.ClientID = ProfileIDJAG, clientID
	a.Resources, a.HasResource = resources, present
	return nil
}

// checkIDJAGType: the typ header is oauth-id-jag+jwt, compared as a media
// type (RFC 7515 §4.1.9: case-insensitive, application/ may be left out),
// so that no other JWT of the same IdP (an ID token, say) passes for a
// grant.
func checkIDJAGType(t *signedJWT) *Error {
	typ, _ := t.header.ExtraHeaders[jose.HeaderType].(string)
	if len(typ) > len("application/") && strings.EqualFold(typ[:len("application/")], "application/") {
		typ = typ[len("application/"):]
	}
	if !strings.EqualFold(typ, IDJAGType) {
		return assertionError("idjag_bad_typ", "typ is not "+IDJAGType)
	}
	return nil
}

// checkIDJAGAudience: aud is exactly issuer_url, as a string or an array
// of that one string. The token endpoint URL and aliases, which check 5
// accepts, are not: the IdP names the authorization server by its issuer
// identifier, and only by it.
func checkIDJAGAudience(t *signedJWT, issuerURL string) *Error {
	var aud josejwt.Audience
	raw, _ := t.claim("aud")
	if len(raw) == 0 || json.Unmarshal(raw, &aud) != nil || len(aud) != 1 || aud[0] != issuerURL {
		return assertionError("idjag_bad_aud", "aud must be exactly this server's issuer")
	}
	return nil
}

// checkIDJAGRequired: client_id (a non-empty string), jti and iat are
// present; check 10 and check 8 have already judged jti and iat when
// present.
func checkIDJAGRequired(t *signedJWT) (string, *Error) {
	clientID, present, ok := t.stringClaim("client_id")
	switch {
	case !ok || !present || clientID == "":
		return "", assertionError("idjag_missing_client_id", "client_id is required")
	case !t.has("jti"):
		return "", assertionError("idjag_missing_jti", "jti is required")
	case !t.has("iat"):
		return "", assertionError("idjag_missing_iat", "iat is required")
	}
	return clientID, nil
}

// checkIDJAGIssuer: an ID-JAG is never issued by this server itself. A
// trusted issuer sharing this server's issuer_url would let a token of
// ours, re-signed, pose as an IdP's grant.
func checkIDJAGIssuer(t *signedJWT, issuerURL string) *Error {
	if t.iss == issuerURL {
		return assertionError("idjag_own_issuer", "is issued by this server")
	}
	return nil
}

// checkIDJAGResource: the resource claim, when present, is a string or an
// array of strings, each naming a configured resource (else
// invalid_target). present tells an absent claim from an empty array.
func (s *Server) checkIDJAGResource(t *signedJWT) (resources []*Resource, present bool, oerr *Error) {
	raw, present := t.claim("resource")
	if !present {
		return nil, false, nil
	}
	// jwt.Audience reads exactly "a string or an array of strings".
	var uris josejwt.Audience
	if json.Unmarshal(raw, &uris) != nil {
		return nil, true, assertionError("idjag_bad_resource", "resource must be a string or an array of strings")
	}
	rs, oerr := s.resources.resolve(uris)
	if oerr != nil {
		return nil, true, invalidTarget("idjag_unknown_resource", "assertion names a resource not known to this server")
	}
	return rs, true, nil
}

// checkAuthorizationDetails: RFC 9396 authorization details are not
// supported, and granting without them would grant more than the IdP
// meant.
func checkAuthorizationDetails(t *signedJWT) *Error {
	if t.has("authorization_details") {
		return assertionError("idjag_authorization_details", "authorization_details is not supported")
	}
	return nil
}

// checkIDJAGClient: the ID-JAG's client_id is the authenticated client.
// A request without client authentication never reaches here for an
// ID-JAG issuer (checkProfile refuses client_auth optional), but is
// answered as one if it did.
func checkIDJAGClient(req *tokenRequest, a *verifiedAssertion) *Error {
	if req.client == nil {
		return invalidClient("no_client_auth", "client authentication is required")
	}
	if a.ClientID != req.client.ID {
		return assertionError("idjag_client_mismatch", "was issued to another client")
	}
	return nil
}

// has reports whether a claim is present (and not null).
func (t *signedJWT) has(name string) bool {
	_, ok := t.claim(name)
	return ok
}

// hasProfile reports whether a trusted issuer of any tenant has profile.
func (s *Server) hasProfile(profile string) bool {
	for _, t := range s.cfg.Tenants {
		for _, is := range t.Issuers {
			if is.Profile == profile {
				return true
			}
		}
	}
	return false
}
