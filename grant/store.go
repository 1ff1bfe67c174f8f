package grant

import (
	"context"
	"time"
)

// Store keeps token records and replay marks. Implementations: package
// memstore (in-process) and package redisstore. Every method that reaches a
// backend wraps ErrUnavailable around a failure to do so, so that the edge
// answers 503 and never lets a request pass unverified.
//
// Key layout (relative to the store's key prefix), shared by all stores:
//
//	at:{hash}     AccessRecord, expires at its Exp
//	rt:{hash}     RefreshRecord, expires at its Exp
//	ch:{chain}    the keys issued in one refresh chain, expires with its last refresh token
//	jti:{mark}    replay mark, expires at Mark.Until
type Store interface {
	// Issue writes a grant atomically: it sets every replay mark if absent
	// and, only if none existed, writes the records. If a mark existed it
	// writes nothing and returns ErrReplay.
	Issue(ctx context.Context, is *Issuance) error

	// ClaimMarks sets every replay mark if none exists, each until its
	// Until, and returns ErrReplay (writing nothing) if one does. It is
	// for client assertions at endpoints that issue nothing
	// (introspection, revocation) or before a refresh rotation.
	ClaimMarks(ctx context.Context, marks []Mark) error

	// Access returns the access token record stored under hash, or
	// ErrNotFound.
	Access(ctx context.Context, hash string) (*AccessRecord, error)

	// Refresh returns the refresh token record stored under hash, or
	// ErrNotFound. A rotated record is returned with Rotated set.
	Refresh(ctx context.Context, hash string) (*RefreshRecord, error)

	// Rotate exchanges the refresh token oldHash for the tokens in next,
	// atomically: if oldHash is live and not yet rotated it is marked
	// rotated and next is written (next.Marks are ignored); if it was
	// already rotated, every key of its chain is deleted and
	// ErrRefreshReuse returned; if it is gone, ErrNotFound.
	Rotate(ctx context.Context, oldHash string, next *Issuance) error

	// RevokeAccess deletes one access token record. Deleting a missing
	// record is not an error.
	RevokeAccess(ctx context.Context, hash string) error

	// RevokeChain deletes every access and refresh token of a chain.
	RevokeChain(ctx context.Context, chain string) error

	// Close releases the store's connections.
	Close() error
}

// Issuance is one grant's worth of writes.
type Issuance struct {
	// Marks are the replay marks to claim (set-if-absent) before writing.
	Marks []Mark

	AccessHash string
	Access     *AccessRecord

	// RefreshHash and Refresh are empty when no refresh token is issued.
	// When set, Refresh.Chain names the chain; the access token joins it.
	RefreshHash string
	Refresh     *RefreshRecord
}

// Mark is a replay record: Key is already the full hashed mark (see
// ReplayMarkKey) and it must be kept until Until.
type Mark struct {
	Key   string
	Until time.Time
}
