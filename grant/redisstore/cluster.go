package redisstore

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
)

// releaseTimeout bounds the clean-up of a failed Issue, which runs even
// when the request's own deadline has passed.
const releaseTimeout = time.Second

// newClusterClient is the cluster client with reloadOnFailure.
func newClusterClient(o *redis.ClusterOptions) *redis.ClusterClient {
	c := redis.NewClusterClient(o)
	c.AddHook(reloadOnFailure{c})
	return c
}

// reloadOnFailure asks the cluster client to reload its slot map after a
// command failed for want of a node. The client reloads it on a MOVED
// reply or every minute, but a master that died never answers MOVED:
// after its replica was promoted, every command for its slots went on
// dialling the dead address (measured: 503s for the rest of the test, and
// the client's own retries go to the same slot map). The reload runs in
// the background, at most one at a time and one per 200 ms.
type reloadOnFailure struct{ c *redis.ClusterClient }

func (h reloadOnFailure) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h reloadOnFailure) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.check(ctx, err)
		return err
	}
}

func (h reloadOnFailure) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.check(ctx, err)
		return err
	}
}

func (h reloadOnFailure) check(ctx context.Context, err error) {
	if nodeFailure(err) && !errors.Is(ctx.Err(), context.Canceled) {
		h.c.ReloadState(ctx)
	}
}

// nodeFailure tells an error of the way to a node (refused, lost or timed
// out connection, a cluster that lost a master) from a reply: a missing
// key, a script error or a MOVED the client follows itself.
func nodeFailure(err error) bool {
	var nerr net.Error
	var rerr redis.Error
	switch {
	case err == nil, errors.Is(err, redis.Nil):
		return false
	case errors.As(err, &nerr), errors.Is(err, context.DeadlineExceeded):
		return true
	case errors.As(err, &rerr):
		msg := rerr.Error()
		return strings.HasPrefix(msg, "CLUSTERDOWN") || strings.HasPrefix(msg, "TRYAGAIN")
	}
	// io.EOF and the like: a connection lost.
	return true
}

// bound gives one store call on a cluster its deadline: dial + write +
// read timeout, the bound SPEC §6 sets for a request's store call. The
// cluster client retries a command that timed out or lost its connection
// (once on the same node, then on another) and follows MOVED and ASK
// replies, up to MaxRedirects (3) times in all: one command could wait
// four read timeouts and a call of several commands a multiple of that
// (measured with a hung node, SIGSTOP, and dial, write and read timeouts
// of 100, 100 and 400 ms: 1.68 s for one command, 2.96 s for a grant
// whose records were on that node; with the deadline 0.60-0.61 s).
// MaxRedirects -1 would end at one read timeout (0.20 s with every
// timeout 200 ms, where the deadline ends at 0.60 s) but stop following
// redirects as well, so that every request reaching a node that lost its
// slots in a failover or a resharding would get a 503 until the next
// reload of the slot map, where a redirect answers it within the same
// call. The deadline keeps both: redirects and retries go on while time
// is left. Outside a cluster a call is one command without retry, already
// bounded, and ctx is returned as it is.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if !s.cluster {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.budget)
}

// The cluster variants of the writes: sequences of single-key commands and
// scripts, as the package documentation explains.

func (s *Store) clusterIssue(ctx context.Context, is *grant.Issuance, e *encoded, chainKey string) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := s.clusterClaim(ctx, is.Marks, is.AccessHash); err != nil {
		return err
	}
	if err := s.clusterWrite(ctx, e, chainKey, false); err != nil {
		// The 503 must leave the assertion usable (SPEC §6). Only a
		// reply lost in transit after the records were written leaves
		// the marks behind, as the write's outcome is unknown then.
		s.release(ctx, is.Marks, is.AccessHash)
		return unavailable(err)
	}
	return nil
}

// clusterClaimMarks is ClaimMarks on a cluster.
func (s *Store) clusterClaimMarks(ctx context.Context, marks []grant.Mark, owner string) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.clusterClaim(ctx, marks, owner)
}

// clusterClaim claims marks one by one with SET NX, each holding owner;
// on a replay or an outage it releases those it took.
func (s *Store) clusterClaim(ctx context.Context, marks []grant.Mark, owner string) error {
	for i, m := range marks {
		key := s.markKey(m.Key)
		err := s.c.Do(ctx, "set", key, owner, "nx", "px", s.ttl(m.Until)).Err()
		if err == nil {
			continue
		}
		if !errors.Is(err, redis.Nil) {
			s.release(ctx, marks[:i], owner)
			return unavailable(err)
		}
		// Held already: by this very claimant if a lost reply was retried.
		held, err := s.c.Get(ctx, key).Result()
		if err == nil && held == owner {
			continue
		}
		s.release(ctx, marks[:i], owner)
		if err != nil && !errors.Is(err, redis.Nil) {
			return unavailable(err)
		}
		return &grant.ReplayError{Key: m.Key}
	}
	return nil
}

// release gives up marks held by owner before the 503 is answered, so
// that the client may present its assertion again at once. A mark whose
// node could not be reached (its master died, or the whole cluster
// refuses commands until a replica replaces it) is released later, in
// the background: without that, a mark claimed on a master just before
// it died stayed with the replica promoted in its place, and the retry of
// a grant the store knew had failed was refused as a replay (measured:
// 1 to 4 of some 200 grants answered 503 in a failover under load).
func (s *Store) release(ctx context.Context, marks []grant.Mark, owner string) {
	// The request's context may be what failed; releasing must not.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	var left []grant.Mark
	for _, m := range marks {
		if err := releaseScript.Run(ctx, s.c, []string{s.markKey(m.Key)}, owner).Err(); err != nil {
			left = append(left, m)
		}
	}
	if len(left) == 0 {
		return
	}
	if releasing.Add(1) > maxReleasing {
		releasing.Add(-1)
		return
	}
	go s.releaseLater(left, owner)
}

// maxReleasing bounds the marks' releases going on in the background, so
// that a long outage under load costs a bounded number of goroutines; a
// mark not released expires with its assertion.
const maxReleasing = 1024

// releaseRetry is how often a background release is tried, for at most
// releaseFor: longer than a failover with Redis's default node timeout
// (15 s) takes.
const (
	releaseRetry = 250 * time.Millisecond
	releaseFor   = time.Minute
)

// releasing counts the background releases of every Store in the
// process, as their goroutines are what maxReleasing bounds.
var releasing atomic.Int64

// releaseLater retries release until every mark is released, the marks
// have expired, the store is closed or releaseFor has passed.
func (s *Store) releaseLater(marks []grant.Mark, owner string) {
	defer releasing.Add(-1)
	give := time.Now().Add(releaseFor)
	for len(marks) > 0 && time.Now().Before(give) {
		time.Sleep(releaseRetry)
		ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
		left := marks[:0]
		for _, m := range marks {
			if !s.now().Before(m.Until) {
				continue
			}
			err := releaseScript.Run(ctx, s.c, []string{s.markKey(m.Key)}, owner).Err()
			if errors.Is(err, redis.ErrClosed) {
				cancel()
				return
			}
			if err != nil {
				left = append(left, m)
			}
		}
		cancel()
		marks = left
	}
}

func (s *Store) clusterRotate(ctx context.Context, oldHash string, next *grant.Issuance, e *encoded) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	oldKey := s.rtKey(oldHash)
	res, err := claimScript.Run(ctx, s.c, []string{oldKey}, next.Claimant()).Slice()
	if err != nil {
		return unavailable(err)
	}
	code, _ := res[0].(int64)
	chain, _ := res[1].(string)
	chainKey := ""
	if chain != "" {
		chainKey = s.chainKey(chain)
	}
	switch code {
	case codeOK:
		if err := s.clusterWrite(ctx, e, chainKey, true); errors.Is(err, errChainRevoked) {
			// A reuse of the same refresh token, at this gateway or
			// another, revoked the chain while this rotation filed its
			// tokens, and clusterWrite took them back. This rotation
			// still won: as on a single node, where the reuse's
			// revocation comes after the winner's tokens are written
			// and deletes them, the winner answers its tokens, stored
			// and then revoked with their chain (SPEC §3.2).
			return nil
		} else if err != nil {
			return unavailable(err)
		}
		if chainKey != "" {
			s.clusterPrune(ctx, chainKey)
		}
		return nil
	case codeReuse:
		if chainKey != "" {
			if err := s.clusterRevokeChain(ctx, chain); err != nil {
				return err
			}
		}
		if err := s.c.Del(ctx, oldKey).Err(); err != nil {
			return unavailable(err)
		}
	}
	return rotateResult(code)
}

// errChainRevoked is clusterWrite's answer when the chain was revoked
// (revokeChainClusterScript) before the new tokens, written, were filed
// in it: they have been deleted, as the revocation would have.
var errChainRevoked = errors.New("redisstore: the refresh chain was revoked")

// clusterWrite writes e's records and files them in the chain. A new
// grant's chain is known to no one yet, so one pipeline, which the client
// splits by node, does both. A rotation's chain may be revoked meanwhile
// by a reuse at any gateway (ordered): its records are written first and
// filed only once written, so that a revocation that finds them in the
// set also finds them in Redis; a revocation that came first left its
// mark in the set's place, and the records just written are deleted
// again (errChainRevoked). In one pipeline, a node could run the filing
// before another ran the write, and a revocation in between would
// delete a record not yet written.
func (s *Store) clusterWrite(ctx context.Context, e *encoded, chainKey string, ordered bool) error {
	var join *redis.IntCmd
	file := func(p redis.Pipeliner) {
		if chainKey == "" {
			return
		}
		if e.rtKey != "" {
			join = p.SAdd(ctx, chainKey, e.atKey, e.rtKey)
		} else {
			join = p.SAdd(ctx, chainKey, e.atKey)
		}
		p.Do(ctx, "pexpire", chainKey, e.chainTTL, "nx")
		p.Do(ctx, "pexpire", chainKey, e.chainTTL, "gt")
	}
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Do(ctx, "set", e.atKey, e.atJSON, "px", e.atTTL)
		if e.rtKey != "" {
			p.Do(ctx, "set", e.rtKey, e.rtJSON, "px", e.rtTTL)
		}
		if !ordered {
			file(p)
		}
		return nil
	})
	if err != nil || !ordered {
		return err
	}
	_, err = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		file(p)
		return nil
	})
	if join != nil && join.Err() != nil && strings.HasPrefix(join.Err().Error(), "WRONGTYPE") {
		// Deleted even when the request's deadline has passed: none of
		// these tokens may outlive its chain. A token not deleted is
		// not answered (an error, so a 503): no one knows it, so it
		// grants nothing.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
		defer cancel()
		keys := []string{e.atKey}
		if e.rtKey != "" {
			keys = append(keys, e.rtKey)
		}
		for _, k := range keys {
			if err := s.c.Del(ctx, k).Err(); err != nil {
				return err
			}
		}
		return errChainRevoked
	}
	return err
}

// clusterPrune is the cluster's version of the scripts' prune: best effort,
// as it only bounds the set's size.
func (s *Store) clusterPrune(ctx context.Context, chainKey string) {
	sample, err := s.c.SRandMemberN(ctx, chainKey, 4).Result()
	if err != nil || len(sample) == 0 {
		return
	}
	exists := make([]*redis.IntCmd, len(sample))
	_, _ = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range sample {
			exists[i] = p.Exists(ctx, k)
		}
		return nil
	})
	var gone []any
	for i, c := range exists {
		if n, err := c.Result(); err == nil && n == 0 {
			gone = append(gone, sample[i])
		}
	}
	if len(gone) > 0 {
		_ = s.c.SRem(ctx, chainKey, gone...).Err()
	}
}

// clusterRevokeChain marks the chain revoked in its set's place
// (revokeChainClusterScript), then deletes the members it held, one key at
// a time, as they live in different slots.
func (s *Store) clusterRevokeChain(ctx context.Context, chain string) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	members, err := revokeChainClusterScript.Run(ctx, s.c, []string{s.chainKey(chain)}).StringSlice()
	if err != nil {
		return unavailable(err)
	}
	if len(members) == 0 {
		return nil
	}
	_, err = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range members {
			p.Del(ctx, k)
		}
		return nil
	})
	if err != nil {
		return unavailable(err)
	}
	return nil
}
