package caddymodule

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant/keys"
)

// withClientURL hands grant the URL the client addressed, for a request
// that carries a DPoP proof (whose htu must match it; others need no
// URL): Caddy's original request, before any route rewrote it (a
// handle_path or uri strip_prefix takes a prefix off r.URL.Path, but the
// client signed the whole path). The scheme is https when the connection
// was TLS; X-Forwarded-Proto and X-Forwarded-Host are believed only from a
// proxy that the server's trusted_proxies names, as Caddy itself does for
// the client IP.
func withClientURL(r *http.Request) *http.Request {
	if len(r.Header[grant.DPoPHeader]) == 0 {
		return r
	}
	// Caddy's copy of the original request keeps its URL only; no
	// rewrite changes the connection or Host, so those are r's.
	orig := r.URL
	if o, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && o.URL != nil {
		orig = o.URL
	}
	u := &url.URL{Scheme: "http", Host: r.Host, Path: orig.Path, RawPath: orig.RawPath}
	if r.TLS != nil {
		u.Scheme = "https"
	}
	if trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool); trusted {
		if proto := lastForwarded(r.Header, "X-Forwarded-Proto"); proto == "http" || proto == "https" {
			u.Scheme = proto
		}
		if host := lastForwarded(r.Header, "X-Forwarded-Host"); host != "" {
			u.Host = host
		}
	}
	return r.WithContext(grant.WithRequestURL(r.Context(), u))
}

// lastForwarded is the last element of a forwarded header: the one the
// trusted proxy next to us wrote (whatever came before it, the client may
// have sent), as Caddy's reverse_proxy reads X-Forwarded-Proto.
func lastForwarded(h http.Header, name string) string {
	values := h.Values(name)
	if len(values) == 0 {
		return ""
	}
	v := values[len(values)-1]
	if i := strings.LastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	return strings.ToLower(strings.TrimSpace(v))
}

// validateDPoP rejects DPoP options that JSON configuration can carry but
// the Caddyfile parser already refuses: an unknown proof algorithm, a
// negative lifetime, a client dpop value other than required.
func (h *Handler) validateDPoP(top block) error {
	for _, alg := range h.DPoPAlgorithms {
		if !keys.IsAsymmetric(alg) {
			return top.errorf("dpop_algorithms: unknown or unsupported algorithm %q", alg)
		}
	}
	if h.DPoPProofLifetime < 0 {
		return top.errorf("dpop_proof_lifetime must not be negative")
	}
	tenants := append([]TenantConfig{{Clients: h.Clients}}, h.Tenants...)
	for _, t := range tenants {
		tb := top
		if t.Domain != "" {
			tb = top.in("tenant", t.Domain, t.line)
		}
		for _, cc := range t.Clients {
			if cc.DPoP != "" && cc.DPoP != "required" {
				return tb.in("client", cc.ID, cc.line).errorf("dpop must be required, not %q", cc.DPoP)
			}
		}
	}
	return nil
}
