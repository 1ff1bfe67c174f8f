package grant

import (
	"context"
	"errors"
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
	// writes nothing and returns a *ReplayError (which is ErrReplay) naming
	// the first held mark in the order of is.Marks.
	Issue(ctx context.Context, is *Issuance) error

	// ClaimMarks sets every replay mark if none exists, each until its
	// Until, and returns a *ReplayError (writing nothing) if one does. It is
	// for client assertions at endpoints that issue nothing
	// (introspection, revocation) or before a refresh rotation.
	ClaimMarks(ctx context.Context, marks []Mark) error

	// Access returns the access token record stored under hash, or
	// ErrNotFound. The record may be shared with other callers (a store
	// may hand out one decoding of the same stored bytes): it must not be
	// modified.
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

// ReplayError is the ErrReplay of Issue and ClaimMarks, naming the mark
// that was held already, so that the token endpoint tells a replayed client
// assertion from a replayed grant assertion without a second write.
type ReplayError struct {
	// Key is the Mark.Key of the held mark.
	Key string
}

func (e *ReplayError) Error() string { return ErrReplay.Error() }

// Is makes errors.Is(err, ErrReplay) hold for every ReplayError.
func (e *ReplayError) Is(target error) bool { return target == ErrReplay }

// Mark is a replay record: Key is already the full hashed mark (see
// replayMarkKey) and it must be kept until Until.
type Mark struct {
	Key   string
	Until time.Time
}

// Validate rejects an issuance no store could write faithfully: these are
// programming errors of the caller, not outages. withMarks checks the
// replay marks too (Rotate ignores them).
func (is *Issuance) Validate(withMarks bool) error {
	switch {
	case is == nil || is.Access == nil:
		return errors.New("issuance has no access record")
	case is.AccessHash == "":
		return errors.New("issuance has no access token hash")
	case (is.Refresh == nil) != (is.RefreshHash == ""):
		return errors.New("refresh token hash and record must come together")
	case is.Refresh != nil && is.Refresh.Chain == "":
		return errors.New("refresh record has no chain")
	case is.Access.Exp <= 0 || is.Refresh != nil && is.Refresh.Exp <= 0:
		return errors.New("record has no expiry")
	}
	if withMarks {
		return ValidateMarks(is.Marks)
	}
	return nil
}

// ValidateMarks rejects a replay mark without key or time.
func ValidateMarks(marks []Mark) error {
	for _, m := range marks {
		if m.Key == "" || m.Until.UnixMilli() <= 0 {
			return errors.New("replay mark needs a key and a time")
		}
	}
	return nil
}

// Claimant identifies a rotation by the fresh hash of the token it
// issues, so that a store can tell a retried rotation from reuse.
func (is *Issuance) Claimant() string {
	if is.RefreshHash != "" {
		return is.RefreshHash
	}
	return is.AccessHash
}
