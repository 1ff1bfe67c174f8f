package grant

import (
	"errors"
	"net/http"
)

// Error is an OAuth 2.0 error response (RFC 6749 §5.2, RFC 6750 §3.1).
// Every failure the core reports to a client is one of these; the HTTP
// edge turns it into a status, headers and a JSON body without looking
// inside the failure again.
type Error struct {
	// Code is the RFC 6749 error code, e.g. "invalid_grant".
	Code string
	// Description is the error_description: short, fixed text that never
	// echoes an assertion, token, secret or key.
	Description string
	// Status is the HTTP status code.
	Status int
	// Reason is a short stable label for logs and metrics ("bad_signature").
	Reason string
	// RetryAfter, in seconds, is sent as Retry-After when non-zero.
	RetryAfter int
}

func (e *Error) Error() string { return e.Code + ": " + e.Description }

// OAuth error codes.
const (
	CodeInvalidRequest         = "invalid_request"
	CodeInvalidClient          = "invalid_client"
	CodeInvalidGrant           = "invalid_grant"
	CodeUnauthorizedClient     = "unauthorized_client"
	CodeUnsupportedGrantType   = "unsupported_grant_type"
	CodeInvalidScope           = "invalid_scope"
	CodeInvalidTarget          = "invalid_target"
	CodeTemporarilyUnavailable = "temporarily_unavailable"
	CodeServerError            = "server_error"
	CodeInvalidToken           = "invalid_token"
	CodeInsufficientScope      = "insufficient_scope"
	defaultRetryAfterSeconds   = 5
)

func newError(code string, status int, reason, desc string) *Error {
	return &Error{Code: code, Status: status, Reason: reason, Description: desc}
}

func invalidRequest(reason, desc string) *Error {
	return newError(CodeInvalidRequest, http.StatusBadRequest, reason, desc)
}

func invalidClient(reason, desc string) *Error {
	return newError(CodeInvalidClient, http.StatusUnauthorized, reason, desc)
}

func invalidGrant(reason, desc string) *Error {
	return newError(CodeInvalidGrant, http.StatusBadRequest, reason, desc)
}

func unauthorizedClient(reason, desc string) *Error {
	return newError(CodeUnauthorizedClient, http.StatusBadRequest, reason, desc)
}

func invalidScope(reason, desc string) *Error {
	return newError(CodeInvalidScope, http.StatusBadRequest, reason, desc)
}

// invalidTarget is RFC 8707 §2's answer to a resource that is malformed,
// unknown or not granted.
func invalidTarget(reason, desc string) *Error {
	return newError(CodeInvalidTarget, http.StatusBadRequest, reason, desc)
}

// unavailable is the answer to an outage of the store or of an issuer's
// keys: 503 with Retry-After, never a pass.
func unavailable(reason, desc string) *Error {
	e := newError(CodeTemporarilyUnavailable, http.StatusServiceUnavailable, reason, desc)
	e.RetryAfter = defaultRetryAfterSeconds
	return e
}

// Store errors. A Store returns ErrNotFound for an unknown or expired key,
// ErrReplay when a replay mark already exists, ErrRefreshReuse when a rotated
// refresh token is presented again, and wraps ErrUnavailable around any
// failure to reach its backend.
var (
	ErrNotFound     = errors.New("not found")
	ErrReplay       = errors.New("replay mark already present")
	ErrRefreshReuse = errors.New("refresh token already rotated")
	ErrUnavailable  = errors.New("store unavailable")
)
