package redisstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
)

// pipelineOptions checks that the store can send its calls through
// go-redis's autopipeline for uo: the store keeps one autopipeliner per
// client, so a single node only (a sentinel-backed store replaces its
// client on failover, a cluster routes by slot), and not with the cache,
// which answers most reads without a round trip to batch.
func pipelineOptions(uo *redis.UniversalOptions, opts Options) error {
	switch {
	case !opts.Pipeline:
		return nil
	case mode(uo) != "single":
		return fmt.Errorf("pipeline needs a single Redis node, not a %s", mode(uo))
	case opts.CacheEntries > 0:
		return errors.New("pipeline and the cache cannot be combined")
	}
	return nil
}

// startPipeline makes the autopipeliner of a single-node client: go-redis's
// deferred face, ordered, one batch in flight at a time, so that the commands
// queued while a batch is in flight go out together as the next. It
// dials nothing.
func (s *Store) startPipeline(c *redis.Client) error {
	var err error
	s.ap, err = c.AsyncAutoPipeline()
	return err
}

// pipelining tells whether the call about to start goes through the
// autopipeline: when the store has one and another call is in flight, so
// that there is something to share a round trip with. A call alone goes
// as a plain command, which costs less than a batch of one (the hand-off
// to the pipeline's writer and back: about 90 µs of CPU per read against
// 50 µs plain, BENCHMARKS.md). done ends the call; the caller runs it
// when the call has returned.
func (s *Store) pipelining() (done func(), ok bool) {
	if s.ap == nil {
		return func() {}, false
	}
	n := s.calls.Add(1)
	return s.callDone, n > 1
}

func (s *Store) callDone() { s.calls.Add(-1) }

// pipelinedGet is get through the autopipeline. A queued command no
// longer honours its context in go-redis (it waits for the batch ahead
// of it, and then for its own), so the wait for it is bounded here
// instead: the caller gets its answer, or grant.ErrUnavailable, within
// dial + write + read timeout, the bound of a plain call. An abandoned
// GET still runs; a read has no effect to undo.
func (s *Store) pipelinedGet(ctx context.Context, key string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.budget)
	defer cancel()
	cmd := redis.NewStringCmd(ctx, "get", key)
	err := s.ap.Submit(ctx, cmd).WaitContext(ctx)
	if err == nil || errors.Is(err, redis.Nil) {
		// Only once the batch has completed may the command be read.
		err = cmd.Err()
	}
	switch {
	case errors.Is(err, redis.Nil):
		return "", grant.ErrNotFound
	case err != nil:
		return "", unavailable(err)
	}
	s.checkPolicy(ctx)
	return cmd.Val(), nil
}

// pipelinedEval is script.Run through the autopipeline: EVALSHA, its
// wait bounded as pipelinedGet's. When Redis does not know the script
// (NOSCRIPT: a restarted or flushed server), it runs once as a plain
// call, which loads it.
func (s *Store) pipelinedEval(ctx context.Context, script *redis.Script, keys []string, args []any) (any, error) {
	bounded, cancel := context.WithTimeout(ctx, s.budget)
	defer cancel()
	a := make([]any, 0, 3+len(keys)+len(args))
	a = append(a, "evalsha", script.Hash(), len(keys))
	for _, k := range keys {
		a = append(a, k)
	}
	a = append(a, args...)
	cmd := redis.NewCmd(bounded, a...)
	err := s.ap.Submit(bounded, cmd).WaitContext(bounded)
	if err == nil || errors.Is(err, redis.Nil) {
		err = cmd.Err()
	}
	if redis.HasErrorPrefix(err, "NOSCRIPT") {
		return script.Run(ctx, s.client(), keys, args...).Result()
	}
	return cmd.Val(), err
}
