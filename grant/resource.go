package grant

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// Resource is a protected resource this server issues tokens for (RFC
// 8707, SPEC §7): a token requested with its URI has that URI as its
// audience.
type Resource struct {
	// URI is the resource identifier as configured: the token's aud.
	URI string
	// Name is its human-readable name (RFC 9728 resource_name).
	Name string
	// Scopes are the scopes that exist for it; nil means any.
	Scopes []string
}

// NormalizeResourceURI checks that raw is an absolute URI without a
// fragment (RFC 8707 §2) and returns the form resources are compared in:
// scheme and host lowercased (RFC 3986 §6.2.2.1), every other code point
// as written. It is written by hand because net/url re-escapes what it
// serialises, which would make two URIs equal that RFC 8707 tells apart;
// url.Parse still judges whether raw is a URI at all.
func NormalizeResourceURI(raw string) (string, error) {
	if strings.Contains(raw, "#") {
		return "", errors.New("must not have a fragment")
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || strings.ContainsAny(raw, " \t\r\n") {
		return "", errors.New("must be an absolute URI")
	}
	scheme, rest, _ := strings.Cut(raw, ":")
	out := strings.ToLower(scheme) + ":"
	authority, ok := strings.CutPrefix(rest, "//")
	if !ok {
		return out + rest, nil
	}
	end := strings.IndexAny(authority, "/?")
	if end < 0 {
		end = len(authority)
	}
	auth, tail := authority[:end], authority[end:]
	// The userinfo, when present, keeps its case; only the host (and the
	// port, which has none) is lowercased.
	at := strings.LastIndexByte(auth, '@') + 1
	return out + "//" + auth[:at] + strings.ToLower(auth[at:]) + tail, nil
}

// resourceIndex finds configured resources by their normalised URI.
type resourceIndex map[string]*Resource

// newResourceIndex indexes resources, refusing one that is not an
// absolute URI without fragment and two that are the same resource.
func newResourceIndex(resources []Resource) (resourceIndex, error) {
	idx := make(resourceIndex, len(resources))
	for i := range resources {
		r := &resources[i]
		key, err := NormalizeResourceURI(r.URI)
		if err != nil {
			return nil, fmt.Errorf("resource %q: %w", r.URI, err)
		}
		if prev := idx[key]; prev != nil {
			return nil, fmt.Errorf("resource %q: the same resource as %q", r.URI, prev.URI)
		}
		idx[key] = r
	}
	return idx, nil
}

// lookup returns the configured resource raw names, nil when it names
// none or is not an absolute URI without fragment.
func (idx resourceIndex) lookup(raw string) *Resource {
	key, err := NormalizeResourceURI(raw)
	if err != nil {
		return nil
	}
	return idx[key]
}

// resolve turns requested resource URIs into configured resources, each
// once, in the order first named; any URI that is malformed or names no
// configured resource is invalid_target (RFC 8707 §2).
func (idx resourceIndex) resolve(uris []string) ([]*Resource, *Error) {
	var out []*Resource
	for _, u := range uris {
		r := idx.lookup(u)
		if r == nil {
			return nil, invalidTarget("unknown_resource", "requested resource is not known to this server")
		}
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out, nil
}

// resourceURIs returns the configured URIs of rs: a token's audience and
// the response's resource member.
func resourceURIs(rs []*Resource) []string {
	if len(rs) == 0 {
		return nil
	}
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.URI
	}
	return out
}

// resourceScopes is the scope bound of a grant for rs: the union of their
// scopes, nil (no bound) when there are no resources or one of them
// leaves its scopes open.
func resourceScopes(rs []*Resource) []string {
	var union []string
	for _, r := range rs {
		if r.Scopes == nil {
			return nil
		}
		for _, s := range r.Scopes {
			if !slices.Contains(union, s) {
				union = append(union, s)
			}
		}
	}
	if len(rs) > 0 && union == nil {
		union = []string{}
	}
	return union
}

// subsetOf reports whether every resource of rs is in of.
func subsetOf(rs, of []*Resource) bool {
	for _, r := range rs {
		if !slices.Contains(of, r) {
			return false
		}
	}
	return true
}

// responseResource is the token response's resource member: the granted
// URIs, a string when there is one (SPEC §7).
func responseResource(uris []string) any {
	switch len(uris) {
	case 0:
		return nil
	case 1:
		return uris[0]
	}
	return uris
}

// formResources resolves the request's resource parameters (RFC 8707: the
// one parameter that may repeat); none is nil.
func (s *Server) formResources(req *tokenRequest) ([]*Resource, *Error) {
	uris, ok := req.form["resource"]
	if !ok {
		return nil, nil
	}
	return s.resources.resolve(uris)
}

// assertionResources decides the resources of a JWT bearer grant: those
// the form requests or, when it names none, those of an ID-JAG's
// resource claim. An ID-JAG with a resource claim bounds the request:
// a resource outside it is invalid_target.
func (s *Server) assertionResources(req *tokenRequest, a *verifiedAssertion) ([]*Resource, *Error) {
	requested, oerr := s.formResources(req)
	switch {
	case oerr != nil:
		return nil, oerr
	case !a.HasResource:
		return requested, nil
	case requested == nil:
		return a.Resources, nil
	case !subsetOf(requested, a.Resources):
		return nil, invalidTarget("resource_not_in_assertion", "requested resource is not granted by the assertion")
	}
	return requested, nil
}

// refreshResources decides the resources of a refresh: the form's, which
// must be among those the chain was first granted (a refresh narrows,
// never widens), or the chain's own. A chain resource that is no longer
// configured ends the chain, as a removed issuer does.
func (s *Server) refreshResources(req *tokenRequest, rec *RefreshRecord) (granted, chain []*Resource, oerr *Error) {
	chain, oerr = s.resources.resolve(rec.Resource)
	if oerr != nil {
		return nil, nil, invalidGrant("resource_no_longer_configured", "refresh token is no longer valid")
	}
	requested, oerr := s.formResources(req)
	switch {
	case oerr != nil:
		return nil, nil, oerr
	case requested == nil:
		return chain, chain, nil
	case !subsetOf(requested, chain):
		return nil, nil, invalidTarget("resource_not_granted", "requested resource was not granted to this refresh token")
	}
	return requested, chain, nil
}

// refreshResourceScope bounds a refresh's scope by its resources' scopes.
// A requested scope outside them is invalid_scope; the chain's
// first-granted scope, when the form names none, is narrowed to them, so
// that narrowing the resources alone never fails.
func refreshResourceScope(req *tokenRequest, scope []string, resources []*Resource) ([]string, *Error) {
	bound := resourceScopes(resources)
	if bound == nil {
		return scope, nil
	}
	if _, ok := req.form["scope"]; ok {
		return grantScope(scope, bound)
	}
	kept := make([]string, 0, len(scope))
	for _, sc := range scope {
		if slices.Contains(bound, sc) {
			kept = append(kept, sc)
		}
	}
	return kept, nil
}

// grantResources sets the resources of an issuance: its audience and
// resource member are those granted now; its refresh record keeps chain.
func (g *granted) grantResources(granted, chain []*Resource) {
	if len(granted) == 0 {
		return
	}
	g.resource = resourceURIs(granted)
	g.aud = g.resource
	g.chainResource = resourceURIs(chain)
}
