package grant

import (
	"crypto/rand"
	"encoding/base64"
)

// Minter makes access tokens. The store key of a token is always
// HashToken(token), whatever its format.
type Minter interface {
	// Mint returns the access token for rec, which is already complete
	// but for JTI, which a self-contained format may set.
	Mint(rec *AccessRecord) (string, error)
}

// opaqueMinter makes opaque access tokens: 256 bits from the CSPRNG,
// base64url-encoded. They mean nothing without the store.
type opaqueMinter struct{}

// Mint returns a fresh random token.
func (opaqueMinter) Mint(*AccessRecord) (string, error) { return randomToken(), nil }

// randomToken returns 256 bits from crypto/rand, base64url-encoded (43
// characters). crypto/rand.Read never fails on supported platforms.
func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// randomID returns 128 bits from crypto/rand, base64url-encoded: ids that
// must not collide but are not secrets (refresh chains, JWT jti).
func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
