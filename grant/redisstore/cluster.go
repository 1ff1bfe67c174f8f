package redisstore

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
)

// releaseTimeout bounds the clean-up of a failed Issue, which runs even
// when the request's own deadline has passed.
const releaseTimeout = time.Second

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
	c, ok := s.c.(*redis.ClusterClient)
	if !ok {
		return ctx, func() {}
	}
	// The options as the client completed them, defaults included.
	o := c.Options()
	return context.WithTimeout(ctx, o.DialTimeout+o.WriteTimeout+o.ReadTimeout)
}

// The cluster variants of the writes: sequences of single-key commands and
// scripts, as the package documentation explains.

func (s *Store) clusterIssue(ctx context.Context, is *grant.Issuance, e *encoded, chainKey string) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if err := s.clusterClaim(ctx, is.Marks, is.AccessHash); err != nil {
		return err
	}
	if err := s.clusterWrite(ctx, e, chainKey); err != nil {
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

// release gives up marks held by owner, best effort: a mark left behind
// only refuses a request that failed anyway.
func (s *Store) release(ctx context.Context, marks []grant.Mark, owner string) {
	// The request's context may be what failed; releasing must not.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	for _, m := range marks {
		_ = releaseScript.Run(ctx, s.c, []string{s.markKey(m.Key)}, owner).Err()
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
		if err := s.clusterWrite(ctx, e, chainKey); err != nil {
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

// clusterWrite writes e's records and files them in the chain, in one
// pipeline that the client splits by node.
func (s *Store) clusterWrite(ctx context.Context, e *encoded, chainKey string) error {
	_, err := s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Do(ctx, "set", e.atKey, e.atJSON, "px", e.atTTL)
		if e.rtKey != "" {
			p.Do(ctx, "set", e.rtKey, e.rtJSON, "px", e.rtTTL)
		}
		if chainKey != "" {
			if e.rtKey != "" {
				p.SAdd(ctx, chainKey, e.atKey, e.rtKey)
			} else {
				p.SAdd(ctx, chainKey, e.atKey)
			}
			p.Do(ctx, "pexpire", chainKey, e.chainTTL, "nx")
			p.Do(ctx, "pexpire", chainKey, e.chainTTL, "gt")
		}
		return nil
	})
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

// clusterRevokeChain deletes a chain's members one key at a time, as they
// live in different slots, then the set.
func (s *Store) clusterRevokeChain(ctx context.Context, chain string) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	chainKey := s.chainKey(chain)
	members, err := s.c.SMembers(ctx, chainKey).Result()
	if err != nil {
		return unavailable(err)
	}
	_, err = s.c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range members {
			p.Del(ctx, k)
		}
		p.Del(ctx, chainKey)
		return nil
	})
	if err != nil {
		return unavailable(err)
	}
	return nil
}
