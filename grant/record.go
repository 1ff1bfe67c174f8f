package grant

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sync"
)

// RecordVersion is the format version written in every record's "v".
const RecordVersion = 1

// TokenRecord is what access and refresh records share: who the token was
// granted to, by whom, for what, and until when.
type TokenRecord struct {
	V            int                        `json:"v"`
	Sub          string                     `json:"sub"`
	ClientID     string                     `json:"client_id"`
	Scope        string                     `json:"scope"`
	Aud          []string                   `json:"aud"`
	Iss          string                     `json:"iss"`
	AssertionIss string                     `json:"assertion_iss"`
	Iat          int64                      `json:"iat"`
	Exp          int64                      `json:"exp"`
	Tenant       string                     `json:"tenant"`
	Claims       map[string]json.RawMessage `json:"claims"`
	// Cnf binds the token to the key of a DPoP proof (RFC 9449 §6); absent
	// for a bearer token.
	Cnf *Confirmation `json:"cnf,omitempty"`
	// Resource is the URIs of the resources (RFC 8707) the token was
	// granted for, absent when none; a refresh record keeps those its
	// chain was first granted, so that no refresh loses or widens them.
	Resource []string `json:"resource,omitempty"`
	// Profile is the assertion profile of the grant ("id-jag"), absent
	// for a plain RFC 7523 assertion.
	Profile string `json:"profile,omitempty"`
}

// AccessRecord is what the store keeps for a live access token, under
// {key_prefix}at:{hex(sha256(token))} (SPEC §4). Downstream services read
// it as it is; introspection answers the same members.
type AccessRecord struct {
	TokenRecord
	// JTI is the jti of a self-contained (token_format jwt) access token.
	JTI string `json:"jti,omitempty"`
	// Chain is the refresh chain this token was issued from, "" if none.
	// Revoking the chain deletes this record.
	Chain string `json:"chain,omitempty"`
}

// RefreshRecord is kept under {key_prefix}rt:{hex(sha256(token))}. Scope is
// the scope the chain was first granted: a refresh may narrow from it but
// never widen beyond it (RFC 6749 §6). Its "chain" member follows the
// shared ones in the JSON: readers decode it by name, never by position.
type RefreshRecord struct {
	TokenRecord
	Chain string `json:"chain"`
	// Rotated is set once the token has been exchanged; presenting it again
	// is reuse and revokes the chain.
	Rotated bool `json:"rotated,omitempty"`
}

// HashToken is the store key of a token: hex(sha256(token)). Tokens are
// never stored in clear.
func HashToken(token string) string {
	return sha256Hex(func(b []byte) []byte { return append(b, token...) })
}

// sha256Hex is hex(sha256(the bytes fill appends)), the only allocation
// being the result: fill appends to pooled scratch space, which is wiped
// before it goes back (the input may be a token), where a []byte
// conversion handed to the hash would be a heap copy per call.
func sha256Hex(fill func([]byte) []byte) string {
	p := hashInputs.Get().(*[]byte)
	b := fill((*p)[:0])
	sum := sha256.Sum256(b)
	clear(b)
	if cap(b) <= maxPooledHashInput {
		*p = b[:0]
		hashInputs.Put(p)
	}
	var out [2 * sha256.Size]byte
	hex.Encode(out[:], sum[:])
	return string(out[:])
}

var hashInputs = sync.Pool{New: func() any {
	b := make([]byte, 0, 256)
	return &b
}}

// maxPooledHashInput bounds the scratch space kept in hashInputs.
const maxPooledHashInput = 4 << 10
