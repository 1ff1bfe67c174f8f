package grant

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
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
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}
