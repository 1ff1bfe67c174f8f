package grant

import (
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/go-jose/go-jose/v4"
)

// jwksMaxAge is how long a client may cache the published keys. The set
// changes only with the configuration, and resource servers refetch on an
// unknown kid anyway, so five minutes keeps a rotation quick to spread.
const jwksMaxAge = 300

// ServeJWKS is the JWKS endpoint (SPEC §3.5): the public keys that verify
// this server's JWT access tokens. Unlike the token endpoint it is public
// and cacheable.
func (s *Server) ServeJWKS(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, newError(CodeInvalidRequest, http.StatusMethodNotAllowed, "bad_method", "method not allowed"), "")
		return
	}
	doc := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	if kp, ok := s.minter.(KeyPublisher); ok {
		doc.Keys = append(doc.Keys, kp.PublicJWKs()...)
	}
	body, err := json.Marshal(doc)
	if err != nil {
		s.log.Error("encoding the jwks failed")
		writeError(w, newError(CodeServerError, http.StatusInternalServerError, "encode", "key set could not be encoded"), "")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age="+strconv.Itoa(jwksMaxAge))
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}
