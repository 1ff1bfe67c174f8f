package redisstore

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
)

// defaultReadTimeout is go-redis's read timeout when the options leave it
// at zero; a WAIT must end before it.
const defaultReadTimeout = 3 * time.Second

// waitTimeout is the WAIT timeout of uo and opts: Options.WaitTimeout, by
// default half the read timeout, so that the pipeline's reply (the
// write's and then WAIT's, under one read deadline) arrives before the
// client gives up on it.
func waitTimeout(uo *redis.UniversalOptions, opts Options) (time.Duration, error) {
	read := uo.ReadTimeout
	if read == 0 {
		read = defaultReadTimeout
	}
	if opts.WaitReplicas < 0 {
		return 0, fmt.Errorf("negative wait_replicas %d", opts.WaitReplicas)
	}
	if opts.WaitReplicas == 0 {
		return 0, nil
	}
	if mode(uo) == "cluster" {
		// WAIT counts the replicas of the node it is sent to, and a
		// cluster grant spans nodes: one WAIT cannot vouch for it.
		return 0, fmt.Errorf("wait_replicas is not supported on a cluster")
	}
	t := opts.WaitTimeout
	switch {
	case t < 0:
		return 0, fmt.Errorf("negative wait_replicas timeout %v", t)
	case t == 0:
		t = read / 2
	case t >= read:
		return 0, fmt.Errorf("wait_replicas timeout %v must be shorter than the read timeout %v, which bounds the reply it waits for", t, read)
	}
	// WAIT 0 would block for ever; its resolution is a millisecond.
	return max(t, time.Millisecond), nil
}

// tooFewReplicas is the error of a write that fewer replicas than asked
// for acknowledged in time.
func (s *Store) tooFewReplicas(acks int64) error {
	return fmt.Errorf("%w: %d of %d replicas acknowledged the write within %v", grant.ErrUnavailable, acks, s.waitReplicas, s.waitTimeout)
}

// eval runs a writing script. With wait_replicas, WAIT follows it in the
// same pipeline (one round trip, one connection, so that WAIT counts the
// acknowledgements of this very write); acks is then the number of
// replicas that have it, else -1. Like redis.Script.Run it falls back to
// EVAL when the server does not know the script yet.
func (s *Store) eval(ctx context.Context, script *redis.Script, keys []string, args ...any) (res any, acks int64, err error) {
	if s.waitReplicas == 0 {
		if done, ok := s.pipelining(); ok {
			res, err = s.pipelinedEval(ctx, script, keys, args)
			done()
		} else {
			res, err = script.Run(ctx, s.client(), keys, args...).Result()
			done()
		}
		return res, -1, err
	}
	res, acks, err = s.evalAndWait(ctx, script.EvalSha, keys, args)
	if redis.HasErrorPrefix(err, "NOSCRIPT") {
		res, acks, err = s.evalAndWait(ctx, script.Eval, keys, args)
	}
	return res, acks, err
}

type evalFunc func(ctx context.Context, c redis.Scripter, keys []string, args ...any) *redis.Cmd

func (s *Store) evalAndWait(ctx context.Context, eval evalFunc, keys []string, args []any) (any, int64, error) {
	var res *redis.Cmd
	var wait *redis.Cmd
	_, _ = s.client().Pipelined(ctx, func(p redis.Pipeliner) error {
		res = eval(ctx, p, keys, args...)
		wait = s.wait(ctx, p)
		return nil
	})
	v, err := res.Result()
	if err != nil {
		return nil, 0, err
	}
	return v, acks(wait), nil
}

// wait queues WAIT on p. The pipeline reads its reply under the client's
// read timeout, which the WAIT timeout is shorter than.
func (s *Store) wait(ctx context.Context, p redis.Pipeliner) *redis.Cmd {
	return p.Do(ctx, "wait", s.waitReplicas, s.waitTimeout.Milliseconds())
}

// acks is WAIT's count; a WAIT that failed (its reply lost) confirmed
// nothing.
func acks(wait *redis.Cmd) int64 {
	n, err := wait.Int64()
	if err != nil {
		return 0
	}
	return n
}

// waitFailed tells whether a write that succeeded (by its script's result)
// lacks the replicas asked for; err is what the caller returns then.
func (s *Store) waitFailed(acks int64) (failed bool, err error) {
	if acks >= 0 && acks < int64(s.waitReplicas) {
		return true, s.tooFewReplicas(acks)
	}
	return false, nil
}

// undo runs a compensating script after a write answered 503 for want of
// replicas, so that the client may send the same request again (SPEC §6):
// the master keeps no replay mark or rotation of a request it refused.
// Best effort and not waited for: if the master is lost, so is the write.
func (s *Store) undo(ctx context.Context, script *redis.Script, keys []string, args ...any) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	_ = script.Run(ctx, s.client(), keys, args...).Err()
}

// undoIssueScript takes back an Issue or ClaimMarks: the records, and
// every mark still held by the owner.
//
//	KEYS: at key or '', rt key or '', mark keys...
//	ARGV: owner (the access hash, or ClaimMarks's claimant)
var undoIssueScript = redis.NewScript(`
for i = 1, 2 do
  if KEYS[i] ~= '' then redis.call('DEL', KEYS[i]) end
end
for i = 3, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end
end
return 0
`)

// undoRotateScript takes back a Rotate: it strips exactly the text the
// rotation appended to the old record, and deletes the next tokens.
//
//	KEYS: old rt key, next at key, next rt key or ''
//	ARGV: claimant
var undoRotateScript = redis.NewScript(`
local old = redis.call('GET', KEYS[1])
if old then
  local suffix = ',"rotated":true,"rotated_to":' .. cjson.encode(ARGV[1]) .. '}'
  if #old > #suffix and string.sub(old, -#suffix) == suffix then
    redis.call('SET', KEYS[1], string.sub(old, 1, -#suffix - 1) .. '}', 'KEEPTTL')
  end
end
redis.call('DEL', KEYS[2])
if KEYS[3] ~= '' then redis.call('DEL', KEYS[3]) end
return 0
`)
