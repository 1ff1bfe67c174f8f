package grant

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
)

// maxFormSize bounds the body of a token, introspection or revocation
// request.
const maxFormSize = 64 << 10

// Server is the authorization server: the token, introspection,
// revocation, metadata and JWKS endpoints over a Store. It knows nothing of
// Caddy; the Caddy handler routes requests to its Serve methods.
type Server struct {
	cfg Config
	// audiences are the aud values naming this server: issuer_url and the
	// token endpoint URL.
	audiences []string
	tokenURL  string
	resources resourceIndex
	minter    Minter
	dpop      *dpopChecker
	log       *zap.Logger
	obs       Observer
	now       func() time.Time
}

// New checks cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.IssuerURL == "" {
		return nil, errors.New("issuer_url is required")
	}
	if cfg.Store == nil {
		return nil, errors.New("a store is required")
	}
	if cfg.AccessTokenTTL <= 0 {
		return nil, errors.New("access_token_ttl must be positive")
	}
	if cfg.Tenants[""] == nil {
		if cfg.Tenants == nil {
			cfg.Tenants = map[string]*Tenant{}
		}
		cfg.Tenants[""] = &Tenant{}
	}
	for domain, t := range cfg.Tenants {
		if t.Domain != domain {
			return nil, fmt.Errorf("tenant %q is filed under %q", t.Domain, domain)
		}
		for iss, is := range t.Issuers {
			if is.Issuer != iss || is.Keys == nil || len(is.Algorithms) == 0 {
				return nil, fmt.Errorf("trusted_issuer %q: incomplete", is.Name)
			}
			if err := checkProfile(is); err != nil {
				return nil, fmt.Errorf("trusted_issuer %q: %w", is.Name, err)
			}
		}
		for id, c := range t.Clients {
			if c.ID != id {
				return nil, fmt.Errorf("client %q is filed under %q", c.ID, id)
			}
			if (c.SecretHash == nil) == (c.Keys == nil) {
				return nil, fmt.Errorf("client %q: exactly one of secret and key source is required", id)
			}
			if c.SecretHash != nil && c.SecretHash.Comparer == nil {
				return nil, fmt.Errorf("client %q: secret: no comparer for its hash", id)
			}
			if c.SecretHash != nil && cfg.Secrets == nil {
				return nil, fmt.Errorf("client %q: secret: a client secret verifier is required", id)
			}
		}
	}
	resources, err := newResourceIndex(cfg.Resources)
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		tokenURL: strings.TrimRight(cfg.IssuerURL, "/") + cfg.TokenPath,
		minter:   cfg.Minter,
		log:      cfg.Logger,
		obs:      cfg.Observer,
		now:      cfg.Now,
	}
	s.resources = resources
	s.audiences = []string{cfg.IssuerURL, s.tokenURL}
	if s.dpop, err = newDPoPChecker(cfg.DPoPAlgorithms, cfg.DPoPProofLifetime, cfg.Policy.ClockSkew); err != nil {
		return nil, err
	}
	if s.minter == nil {
		s.minter = opaqueMinter{}
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	if s.obs == nil {
		s.obs = nopObserver{}
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.cfg.Realm == "" {
		s.cfg.Realm = "jwt_grant"
	}
	return s, nil
}

// Endpoints maps each enabled endpoint's path to its handler.
func (s *Server) Endpoints() map[string]http.HandlerFunc {
	m := map[string]http.HandlerFunc{s.cfg.TokenPath: s.ServeToken}
	if s.cfg.IntrospectionPath != "" {
		m[s.cfg.IntrospectionPath] = s.ServeIntrospect
	}
	if s.cfg.RevocationPath != "" {
		m[s.cfg.RevocationPath] = s.ServeRevoke
	}
	if s.cfg.MetadataPath != "" {
		m[s.cfg.MetadataPath] = s.metadataHandler()
	}
	if s.cfg.JWKSPath != "" {
		m[s.cfg.JWKSPath] = s.ServeJWKS
	}
	return m
}

// readForm reads an application/x-www-form-urlencoded body of at most
// maxFormSize in which no parameter is repeated (RFC 6749 §3.2) but
// resource, which RFC 8707 §2 lets repeat.
func readForm(r *http.Request) (url.Values, *Error) {
	// The media type as clients send it needs no parse: ParseMediaType
	// would return it unchanged.
	if ct := r.Header.Get("Content-Type"); ct != formMediaType {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != formMediaType {
			return nil, invalidRequest("bad_content_type", "content type must be application/x-www-form-urlencoded")
		}
	}
	if r.ContentLength > maxFormSize {
		return nil, tooLarge()
	}
	buf := bodyBuffers.Get().(*[]byte)
	body, err := readAtMost(r.Body, (*buf)[:0], maxFormSize+1)
	defer putBodyBuffer(buf, body)
	if err != nil {
		return nil, invalidRequest("bad_body", "request body could not be read")
	}
	if len(body) > maxFormSize {
		return nil, tooLarge()
	}
	// The string is a copy: nothing the form holds refers to the pooled
	// buffer.
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, invalidRequest("bad_body", "request body is not valid form encoding")
	}
	for k, v := range form {
		if len(v) > 1 && k != "resource" {
			return nil, invalidRequest("repeated_parameter", "a request parameter is repeated")
		}
	}
	return form, nil
}

const formMediaType = "application/x-www-form-urlencoded"

// bodyBuffers pools the buffers form bodies are read into, so that a
// request does not grow a fresh one from 512 bytes as io.ReadAll does.
// A body carries secrets (client_secret, assertions): putBodyBuffer wipes
// it before its buffer goes back.
var bodyBuffers = sync.Pool{New: func() any {
	b := make([]byte, 0, 2<<10)
	return &b
}}

// maxPooledBody bounds the buffers kept in bodyBuffers: an occasional
// large body does not pin its buffer.
const maxPooledBody = 16 << 10

// putBodyBuffer wipes body, the bytes read into (a grown copy of) *buf,
// and returns the buffer to the pool.
func putBodyBuffer(buf *[]byte, body []byte) {
	clear(body)
	if cap(body) > maxPooledBody {
		return
	}
	*buf = body[:0]
	bodyBuffers.Put(buf)
}

// readAtMost is io.ReadAll(io.LimitReader(r, limit)) appending to b: it
// reads until EOF, an error or limit bytes, and EOF is no error. It is
// written out because io.ReadAll always starts a fresh buffer.
func readAtMost(r io.Reader, b []byte, limit int) ([]byte, error) {
	for len(b) < limit {
		if len(b) == cap(b) {
			// The outgrown array is wiped like the final one.
			old := b
			b = slices.Grow(b, min(max(cap(b), 512), limit-len(b)))
			clear(old)
		}
		n, err := r.Read(b[len(b):min(cap(b), limit)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
	return b, nil
}

func tooLarge() *Error {
	return newError(CodeInvalidRequest, http.StatusRequestEntityTooLarge, "too_large", "request body is too large")
}

// tenantOf selects the tenant named by ?tenantDomain=, the top level when
// it is absent.
func (s *Server) tenantOf(r *http.Request) (*Tenant, *Error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, invalidRequest("bad_query", "query string is malformed")
	}
	v := q["tenantDomain"]
	switch {
	case len(v) > 1:
		return nil, invalidRequest("repeated_parameter", "tenantDomain is repeated")
	case len(v) == 0:
		return s.cfg.Tenants[""], nil
	}
	if t, ok := s.cfg.Tenants[v[0]]; ok && v[0] != "" {
		return t, nil
	}
	return nil, invalidRequest("unknown_tenant", "unknown tenantDomain")
}

// methodNotAllowed answers 405 with Allow.
func methodNotAllowed(w http.ResponseWriter, allow string) {
	w.Header().Set("Allow", allow)
	writeError(w, newError(CodeInvalidRequest, http.StatusMethodNotAllowed, "bad_method", "method not allowed"), "")
}

// setJSONHeaders marks a response as uncacheable (RFC 6749 §5.1) and
// sets a JSON body's type and length, as Header.Set would (the keys are canonical), from one array
// where Set makes a slice per value. Each slice's capacity ends at its
// value, so that an append by a later handler copies it rather than
// overwrites the next header's value.
func setJSONHeaders(h http.Header, length int) {
	v := &[4]string{"no-store", "no-cache", "application/json; charset=utf-8", strconv.Itoa(length)}
	h["Cache-Control"] = v[0:1:1]
	h["Pragma"] = v[1:2:2]
	h["Content-Type"] = v[2:3:3]
	h["Content-Length"] = v[3:4:4]
}

// writeJSON answers v as JSON with the no-store headers. The body is
// encoded into a pooled buffer, wiped before reuse as it holds tokens;
// ResponseWriter.Write keeps no reference to it (io.Writer's contract).
func writeJSON(w http.ResponseWriter, status int, v any) {
	buf := jsonBuffers.Get().(*bytes.Buffer)
	defer putJSONBuffer(buf)
	// Encode writes what Marshal returns and a newline.
	if err := json.NewEncoder(buf).Encode(v); err != nil {
		writeError(w, newError(CodeServerError, http.StatusInternalServerError, "encode", "response could not be encoded"), "")
		return
	}
	body := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	setJSONHeaders(w.Header(), len(body))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

var jsonBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledJSON bounds the buffers kept in jsonBuffers.
const maxPooledJSON = 16 << 10

func putJSONBuffer(buf *bytes.Buffer) {
	clear(buf.Bytes())
	if buf.Cap() > maxPooledJSON {
		return
	}
	buf.Reset()
	jsonBuffers.Put(buf)
}

type errorBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// writeError answers an OAuth error (RFC 6749 §5.2). realm, when set, is
// the Basic challenge sent with a 401.
func writeError(w http.ResponseWriter, e *Error, realm string) {
	h := w.Header()
	if e.Status == http.StatusUnauthorized && realm != "" {
		h.Set("WWW-Authenticate", `Basic realm="`+realm+`"`)
	}
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	body, _ := json.Marshal(errorBody{Error: e.Code, Description: e.Description})
	setJSONHeaders(h, len(body))
	w.WriteHeader(e.Status)
	_, _ = w.Write(body)
}

// storeError turns a store failure into the answer to the client: an
// outage is 503 and is counted.
func (s *Server) storeError(op string, err error) *Error {
	s.obs.StoreError(op)
	s.log.Warn("store error", zap.String("op", op), zap.Error(err))
	return unavailable("store_unavailable", "token store is unavailable")
}
