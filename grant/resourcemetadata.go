package grant

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// ResourceMetadataWellKnown is the well-known path segment of RFC 9728
// §3.
const ResourceMetadataWellKnown = "/.well-known/oauth-protected-resource"

// ResourceMetadata is a protected resource's metadata document (RFC 9728
// §2), served by jwt_grant_auth with a resource. Members other features
// add (DPoP's, SPEC §8) go here too, each omitted when it does not apply.
type ResourceMetadata struct {
	// Resource is the resource identifier, as configured.
	Resource string `json:"resource"`
	// AuthorizationServers are the issuer identifiers of the jwt_grant
	// servers that mint its tokens.
	AuthorizationServers []string `json:"authorization_servers"`
	// ScopesSupported are the scopes the route requires.
	ScopesSupported []string `json:"scopes_supported,omitempty"`
	// BearerMethodsSupported is ["header"]: tokens in the query or body
	// are never read.
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
	// DPoPSigningAlgValuesSupported are the accepted DPoP proof
	// algorithms, absent with dpop off (RFC 9449 §5.1, SPEC §8).
	DPoPSigningAlgValuesSupported []string `json:"dpop_signing_alg_values_supported,omitempty"`
	// DPoPBoundAccessTokensRequired is true with dpop required.
	DPoPBoundAccessTokensRequired bool `json:"dpop_bound_access_tokens_required,omitempty"`
}

// ResourceMetadataURL derives where a resource's metadata is served (RFC
// 9728 §3.1): the well-known path inserted between the host and the
// resource's path, a path of "/" counting as none. It returns the
// absolute URL, for challenges, and the path, for routing (unescaped, as
// a request's URL.Path is).
func ResourceMetadataURL(resource string) (metadataURL, path string, err error) {
	u, err := url.Parse(resource)
	switch {
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Opaque != "":
		return "", "", fmt.Errorf("%q is not an absolute http(s) URL", resource)
	case u.User != nil:
		return "", "", fmt.Errorf("%q: must not have user information", resource)
	case u.RawQuery != "" || u.ForceQuery || strings.Contains(resource, "#"):
		return "", "", fmt.Errorf("%q: must have neither query nor fragment", resource)
	}
	escaped, plain := u.EscapedPath(), u.Path
	if escaped == "/" {
		escaped, plain = "", ""
	}
	return u.Scheme + "://" + u.Host + ResourceMetadataWellKnown + escaped, ResourceMetadataWellKnown + plain, nil
}

// checkResource checks a Verifier's resource options: a resource needs
// the authorization servers that mint its tokens, and they need it.
func (cfg VerifierConfig) checkResource() error {
	if cfg.Resource == "" {
		if len(cfg.AuthorizationServers) > 0 {
			return errors.New("authorization_server requires resource")
		}
		return nil
	}
	metaURL, _, err := ResourceMetadataURL(cfg.Resource)
	if err != nil {
		return fmt.Errorf("resource: %w", err)
	}
	if !validQuotedValue(metaURL) {
		return fmt.Errorf("resource %q: its metadata URL cannot stand in a challenge", cfg.Resource)
	}
	if len(cfg.AuthorizationServers) == 0 {
		return errors.New("resource requires at least one authorization_server")
	}
	for _, as := range cfg.AuthorizationServers {
		u, err := url.Parse(as)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Fragment != "" || u.RawQuery != "" {
			return fmt.Errorf("authorization_server %q: not an issuer identifier (an http(s) URL without query or fragment)", as)
		}
	}
	return nil
}

// resourceChallenge returns what a resource adds to the Bearer
// challenges (RFC 9728 §5.1, SPEC §7): resource_metadata in every
// challenge and, in a 401's, the scopes the route requires, so that a
// client knows what to ask for before its first token.
func (cfg VerifierConfig) resourceChallenge() (on401, on403 string) {
	if cfg.Resource == "" {
		return "", ""
	}
	metaURL, _, _ := ResourceMetadataURL(cfg.Resource)
	on403 = `, resource_metadata="` + metaURL + `"`
	on401 = on403
	if len(cfg.Scope) > 0 {
		on401 = `, scope="` + joinScope(cfg.Scope) + `"` + on403
	}
	return on401, on403
}

// resourceMetadataDoc encodes the metadata document of cfg's resource,
// nil without one.
func (cfg VerifierConfig) resourceMetadataDoc(dpop *verifierDPoP) (doc *ResourceMetadata, body []byte, path string) {
	if cfg.Resource == "" {
		return nil, nil, ""
	}
	_, path, _ = ResourceMetadataURL(cfg.Resource)
	doc = &ResourceMetadata{
		Resource:               cfg.Resource,
		AuthorizationServers:   cfg.AuthorizationServers,
		ScopesSupported:        cfg.Scope,
		BearerMethodsSupported: []string{"header"},
	}
	if dpop.mode != DPoPOff {
		doc.DPoPSigningAlgValuesSupported = dpop.checker.algs
		doc.DPoPBoundAccessTokensRequired = dpop.mode == DPoPRequired
	}
	// Strings and string slices always encode.
	body, _ = json.Marshal(doc)
	return doc, body, path
}

// ResourceMetadata returns the resource's metadata document, nil when
// the Verifier has no resource. The caller must not modify it.
func (v *Verifier) ResourceMetadata() *ResourceMetadata { return v.resourceDoc }

// ResourceMetadataPath is the request path the metadata document is
// served at, "" when the Verifier has no resource.
func (v *Verifier) ResourceMetadataPath() string { return v.resourcePath }

// ServeResourceMetadata answers GET and HEAD with the metadata document,
// without a token: a client learns from it where to get one. It is public
// and changes only with the configuration, so it may be cached briefly.
func (v *Verifier) ServeResourceMetadata(w http.ResponseWriter, r *http.Request) {
	if v.resourceDoc == nil {
		http.NotFound(w, r)
		return
	}
	serveDocument(w, r, v.resourceBody)
}

// audienceHasResource reports whether a token's audience names the
// resource: as written, or after RFC 3986 §6.2.2 normalisation of scheme
// and host case, as the token endpoint compares resources.
func audienceHasResource(aud []string, resource, normalized string) bool {
	for _, a := range aud {
		if a == resource {
			return true
		}
	}
	for _, a := range aud {
		if n, err := NormalizeResourceURI(a); err == nil && n == normalized {
			return true
		}
	}
	return false
}
