package grant

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/keys"
)

// Metadata is the authorization server metadata document (RFC 8414 §2).
// Every list says what this configuration actually offers, so that a
// client discovering it is never sent to a method it cannot use.
type Metadata struct {
	// Issuer is issuer_url.
	Issuer string `json:"issuer"`
	// TokenEndpoint is issuer_url + token_path.
	TokenEndpoint string `json:"token_endpoint"`
	// IntrospectionEndpoint and RevocationEndpoint are absent when off.
	IntrospectionEndpoint string `json:"introspection_endpoint,omitempty"`
	RevocationEndpoint    string `json:"revocation_endpoint,omitempty"`
	// JWKSURI is present when access tokens are JWTs.
	JWKSURI string `json:"jwks_uri,omitempty"`
	// ResponseTypesSupported is required by RFC 8414 and empty: there is
	// no authorization endpoint.
	ResponseTypesSupported []string `json:"response_types_supported"`
	// GrantTypesSupported is the JWT bearer grant and, when some client
	// can get refresh tokens, refresh_token.
	GrantTypesSupported []string `json:"grant_types_supported"`
	// TokenEndpointAuthMethodsSupported are the client authentication
	// methods configured clients can use.
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported,omitempty"`
	// TokenEndpointAuthSigningAlgValuesSupported are the algorithms of
	// private_key_jwt client assertions, when a client uses it.
	TokenEndpointAuthSigningAlgValuesSupported []string `json:"token_endpoint_auth_signing_alg_values_supported,omitempty"`
	// The introspection and revocation endpoints authenticate clients as
	// the token endpoint does.
	IntrospectionEndpointAuthMethodsSupported          []string `json:"introspection_endpoint_auth_methods_supported,omitempty"`
	IntrospectionEndpointAuthSigningAlgValuesSupported []string `json:"introspection_endpoint_auth_signing_alg_values_supported,omitempty"`
	RevocationEndpointAuthMethodsSupported             []string `json:"revocation_endpoint_auth_methods_supported,omitempty"`
	RevocationEndpointAuthSigningAlgValuesSupported    []string `json:"revocation_endpoint_auth_signing_alg_values_supported,omitempty"`
	// DPoPSigningAlgValuesSupported are the algorithms of DPoP proofs
	// (RFC 9449 §5.1): every token request may carry one.
	DPoPSigningAlgValuesSupported []string `json:"dpop_signing_alg_values_supported,omitempty"`
	// AuthorizationGrantProfilesSupported names the ID-JAG profile when a
	// trusted issuer has it (SPEC §7); which issuers do is not published.
	AuthorizationGrantProfilesSupported []string `json:"authorization_grant_profiles_supported,omitempty"`
}

// Metadata returns the server's metadata document, derived from its
// configuration alone.
func (s *Server) Metadata() *Metadata {
	base := strings.TrimRight(s.cfg.IssuerURL, "/")
	m := &Metadata{
		Issuer:                        s.cfg.IssuerURL,
		TokenEndpoint:                 s.tokenURL,
		ResponseTypesSupported:        []string{},
		GrantTypesSupported:           []string{GrantTypeJWTBearer},
		DPoPSigningAlgValuesSupported: s.dpop.algs,
	}
	if s.cfg.JWKSPath != "" {
		m.JWKSURI = base + s.cfg.JWKSPath
	}
	var secret, keyed, refresh bool
	for _, t := range s.cfg.Tenants {
		for _, c := range t.Clients {
			secret = secret || c.SecretHash != nil
			keyed = keyed || c.Keys != nil
			if _, rt := s.lifetimes(c); rt > 0 {
				refresh = true
			}
		}
	}
	if s.hasProfile(ProfileIDJAG) {
		m.AuthorizationGrantProfilesSupported = []string{GrantProfileIDJAG}
	}
	if refresh {
		m.GrantTypesSupported = append(m.GrantTypesSupported, GrantTypeRefreshToken)
	}
	var methods, algs []string
	if secret {
		methods = append(methods, "client_secret_basic", "client_secret_post")
	}
	if keyed {
		methods = append(methods, "private_key_jwt")
		algs = keys.DefaultAlgorithms
	}
	m.TokenEndpointAuthMethodsSupported = methods
	m.TokenEndpointAuthSigningAlgValuesSupported = algs
	if s.cfg.IntrospectionPath != "" {
		m.IntrospectionEndpoint = base + s.cfg.IntrospectionPath
		m.IntrospectionEndpointAuthMethodsSupported = methods
		m.IntrospectionEndpointAuthSigningAlgValuesSupported = algs
	}
	if s.cfg.RevocationPath != "" {
		m.RevocationEndpoint = base + s.cfg.RevocationPath
		m.RevocationEndpointAuthMethodsSupported = methods
		m.RevocationEndpointAuthSigningAlgValuesSupported = algs
	}
	return m
}

// metadataHandler is the metadata endpoint (RFC 8414 §3, SPEC §3.5). It
// encodes the document once: it changes only with the configuration.
func (s *Server) metadataHandler() http.HandlerFunc {
	body, err := json.Marshal(s.Metadata())
	if err != nil {
		// Strings and string slices always encode.
		panic("grant: encoding metadata: " + err.Error())
	}
	return func(w http.ResponseWriter, r *http.Request) { serveDocument(w, r, body) }
}

// serveDocument answers GET and HEAD with a public JSON document that
// changes only with the configuration (server or resource metadata), so
// that it may be cached briefly: a config reload shows within five
// minutes.
func serveDocument(w http.ResponseWriter, r *http.Request, body []byte) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, "GET, HEAD")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age=300")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}
