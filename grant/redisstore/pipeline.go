package redisstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
)

// pipelineBlocking selects go-redis's blocking autopipeline face instead
// of the deferred one (a prototype switch for measurements).
var pipelineBlocking = false

// pipelineOptions checks that the store can send its reads through
// go-redis's autopipeline for uo.
func pipelineOptions(uo *redis.UniversalOptions, opts Options) error {
	switch {
	case !opts.PipelineReads:
		return nil
	case mode(uo) != "single":
		return fmt.Errorf("pipelined reads need a single Redis node, not a %s", mode(uo))
	case opts.CacheEntries > 0:
		return errors.New("pipelined reads and the cache do not go together")
	}
	return nil
}

// startPipeline makes the autopipeliner of a single-node client.
func (s *Store) startPipeline(c *redis.Client) error {
	o := c.Options()
	s.pipeBudget = o.DialTimeout + o.WriteTimeout + o.ReadTimeout
	var err error
	if pipelineBlocking {
		s.ap, err = c.AutoPipeline()
	} else {
		s.ap, err = c.AsyncAutoPipeline()
	}
	s.apBlocking = pipelineBlocking
	return err
}

// pipelinedGet is get through the autopipeline.
func (s *Store) pipelinedGet(ctx context.Context, key string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.pipeBudget)
	defer cancel()
	var b []byte
	var err error
	if s.apBlocking {
		b, err = s.ap.Get(ctx, key).Bytes()
	} else {
		cmd := redis.NewStringCmd(ctx, "get", key)
		if err = s.ap.Submit(ctx, cmd).WaitContext(ctx); err == nil || errors.Is(err, redis.Nil) {
			b, err = cmd.Bytes()
		}
	}
	switch {
	case errors.Is(err, redis.Nil):
		return nil, grant.ErrNotFound
	case err != nil:
		return nil, unavailable(err)
	}
	s.checkPolicy(ctx)
	return b, nil
}
