// Package redisstore is the grant.Store on Redis (7.0 or later): tokens
// survive restarts and config reloads, and every Caddy instance pointed at
// the same Redis sees the same tokens. Downstream services may read access
// records directly (SPEC §4).
//
// # Key layout
//
// Every key starts with Options.KeyPrefix (default "jwtgrant:"):
//
//	at:{hash}   access record: the JSON of grant.AccessRecord; Redis expiry at its exp
//	rt:{hash}   refresh record: the JSON of grant.RefreshRecord; expiry at its exp.
//	            Rotation appends "rotated":true and "rotated_to":{hash of the token
//	            the rotation issued} to the JSON and keeps the expiry.
//	ch:{chain}  a SET of the full keys (prefix included) of every at: and rt: key
//	            issued in the refresh chain; its expiry is pushed to the latest exp
//	            of its members, so revoking the chain finds them all while any lives
//	jti:{mark}  replay mark: a string holding the access hash of the grant that
//	            claimed it; expiry at Mark.Until (millisecond precision)
//
// Every expiry is sent as a time to live measured by the gateway's clock
// (Options.Now), never as an absolute time, so that Redis's own clock
// does not matter.
//
// {hash} is hex(sha256(token)); tokens are never stored in clear.
//
// # Atomicity
//
// On a single node or behind sentinels, every write is one Lua script, so
// one round trip and atomic: Issue checks all marks before it sets any, so
// a replay writes nothing; Rotate reads the old refresh record (decoding
// with cjson only its own members after the claims, which cjson may not
// read: see luaState), and either marks it rotated and writes the next tokens or,
// if it was rotated already, deletes every key of its chain; RevokeChain
// deletes the chain's members and the set. Rotation marks the record by
// editing its JSON text rather than re-encoding it with cjson, which would
// turn an empty "aud" array into an object and round large numbers.
//
// The client library does not retry commands (MaxRetries -1), so that a
// store call is bounded by its timeouts. The scripts are idempotent for
// the same arguments all the same, for a retry configured by a caller: a
// mark already held by the same access hash, or a refresh record already
// rotated to the same token, means the first attempt succeeded. Tokens
// are fresh random values, so a genuine replay or reuse never matches.
//
// # Cluster
//
// Several addresses without a master name make a cluster client. Its keys
// hash to different slots, so multi-key scripts are impossible (CROSSSLOT)
// and each operation is a short sequence instead, keeping the guarantees
// that matter: Issue claims every replay mark with SET NX before writing
// anything (on a replay it releases the marks it took and writes no
// record), and Rotate decides with a one-key script on the old refresh
// record, so that exactly one of concurrent rotations wins. What is given
// up is all-or-nothing: Issue gives its marks back when its records
// cannot be written, but a reply lost in transit can leave them claimed,
// and a failure part-way through Rotate can leave a rotated token whose
// successors were not written, and a revocation racing a rotation of the same chain may miss
// the token that rotation writes. The client then gets an error and
// signs in again.
package redisstore

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/caddy-jwt-grant/caddy-jwt-grant/grant"
)

// Store is a grant.Store on Redis, safe for concurrent use.
type Store struct {
	// c is the client New made. Calls outside a cluster go through
	// client(), which in sentinel mode follows failovers with fresh
	// clients (see switcher); a cluster client is never replaced.
	c       redis.UniversalClient
	cur     atomic.Pointer[holder]
	sw      *switcher // nil outside sentinel mode
	prefix  string
	cluster bool
	now     func() time.Time
	desc    string
	// waitReplicas and waitTimeout are Options.WaitReplicas and the
	// effective WaitTimeout; waitReplicas 0 sends no WAIT.
	waitReplicas int
	waitTimeout  time.Duration
	log          *zap.Logger
	policy       atomic.Int32 // see checkPolicy
	// budget is how long one store call may last, SPEC §6's bound: dial +
	// write + read timeout of the client's options as the client
	// completed them (callBudget).
	budget time.Duration
	// ap, when set, carries Access's reads and eval's scripts
	// (Options.Pipeline), each waited for at most budget, while other
	// calls are in flight (calls counts them; see pipelining).
	ap    *redis.AutoPipeliner
	calls atomic.Int32
	// decoded holds the access records Access decoded last, by their
	// bytes.
	decoded decoded
}

var _ grant.Store = (*Store)(nil)

// New creates a Store on one client of uo, without touching the network:
// the client dials on first use, so a Redis that is down at start-up
// delays nothing and is reported per request as grant.ErrUnavailable. The
// client is a sentinel-backed one when uo.MasterName is set, a cluster
// client for several addresses, else a single-node client. Behind
// sentinels the store also subscribes, from its first call on, to every
// sentinel's +switch-master, and moves to a fresh client when its master
// changes (see switcher). Errors never contain the password.
func New(uo *redis.UniversalOptions, opts Options) (*Store, error) {
	if err := validate(uo); err != nil {
		return nil, fmt.Errorf("redisstore: %w", err)
	}
	wait, err := waitTimeout(uo, opts)
	if err != nil {
		return nil, fmt.Errorf("redisstore: %w", err)
	}
	uo = withDefaults(uo)
	if err := pipelineOptions(uo, opts); err != nil {
		return nil, fmt.Errorf("redisstore: %w", err)
	}
	if err := cacheOptions(uo, opts.CacheEntries); err != nil {
		return nil, fmt.Errorf("redisstore: %w", err)
	}
	s := &Store{prefix: cmp.Or(opts.KeyPrefix, DefaultKeyPrefix), now: opts.Now, desc: describe(uo), log: opts.Logger,
		waitReplicas: opts.WaitReplicas, waitTimeout: wait}
	if s.now == nil {
		s.now = time.Now
	}
	switch mode(uo) {
	case "sentinel":
		fo := uo.Failover()
		c := redis.NewFailoverClient(fo)
		s.c, s.budget = c, callBudget(c.Options())
		s.sw = newSwitcher(s, fo)
	case "cluster":
		c := newClusterClient(uo.Cluster())
		o := c.Options()
		s.c, s.cluster, s.budget = c, true, o.DialTimeout+o.WriteTimeout+o.ReadTimeout
	default:
		c := redis.NewClient(uo.Simple())
		s.c, s.budget = c, callBudget(c.Options())
		if opts.Pipeline {
			if err := s.startPipeline(c); err != nil {
				_ = c.Close()
				return nil, fmt.Errorf("redisstore: %w", err)
			}
		}
	}
	// The sentinel watch starts with the first call.
	s.cur.Store(&holder{c: s.c, watched: s.sw == nil})
	return s, nil
}

// callBudget is dial + write + read timeout of a client's completed
// options: the bound of one store call.
func callBudget(o *redis.Options) time.Duration {
	return o.DialTimeout + o.WriteTimeout + o.ReadTimeout
}

// String names the store's Redis for logs: addresses and mode, never
// credentials.
func (s *Store) String() string { return "redis " + s.desc }

// Close closes the client and its connections, and in sentinel mode stops
// following failovers and closes the clients a failover replaced.
func (s *Store) Close() error {
	if s.sw != nil {
		s.sw.stop()
	}
	return s.cur.Load().c.Close()
}

// unavailable marks a failure to get an answer from Redis. The cause stays
// reachable too, so that a caller can tell its own cancelled context from
// an outage.
func unavailable(err error) error { return fmt.Errorf("%w: %w", grant.ErrUnavailable, err) }

func (s *Store) atKey(hash string) string     { return s.prefix + "at:" + hash }
func (s *Store) rtKey(hash string) string     { return s.prefix + "rt:" + hash }
func (s *Store) chainKey(chain string) string { return s.prefix + "ch:" + chain }
func (s *Store) markKey(mark string) string   { return s.prefix + "jti:" + mark }

// ttl is the time left until t by the store's clock, in whole
// milliseconds rounded up and at least one (Redis refuses zero), so that
// Redis keeps a key at least until t by the gateway's clock, whatever its
// own clock says.
func (s *Store) ttl(t time.Time) int64 {
	d := t.Sub(s.now())
	ms := d.Milliseconds()
	if d > time.Duration(ms)*time.Millisecond {
		ms++
	}
	return max(ms, 1)
}

// expTTL is ttl for a record's exp, in Unix seconds.
func (s *Store) expTTL(exp int64) int64       { return s.ttl(time.Unix(exp, 0)) }
func chainExp(is *grant.Issuance) (exp int64) { return max(is.Access.Exp, refreshExp(is)) }

func refreshExp(is *grant.Issuance) int64 {
	if is.Refresh == nil {
		return 0
	}
	return is.Refresh.Exp
}

// Access implements grant.Store.
// The record is shared with other verifications of the same bytes (see
// decoded): callers must not modify it.
func (s *Store) Access(ctx context.Context, hash string) (*grant.AccessRecord, error) {
	var v string
	var err error
	if done, ok := s.pipelining(); ok {
		v, err = s.pipelinedGet(ctx, s.atKey(hash))
		done()
	} else {
		v, err = s.get(ctx, s.atKey(hash))
		done()
	}
	if err != nil {
		return nil, err
	}
	rec, err := s.decoded.access(v)
	if err != nil {
		return nil, fmt.Errorf("redisstore: malformed access record: %w", err)
	}
	return rec, nil
}

// Refresh implements grant.Store.
func (s *Store) Refresh(ctx context.Context, hash string) (*grant.RefreshRecord, error) {
	v, err := s.get(ctx, s.rtKey(hash))
	if err != nil {
		return nil, err
	}
	rec := new(grant.RefreshRecord)
	if err := json.Unmarshal([]byte(v), rec); err != nil {
		return nil, fmt.Errorf("redisstore: malformed refresh record: %w", err)
	}
	return rec, nil
}

func (s *Store) get(ctx context.Context, key string) (string, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	v, err := s.client().Get(ctx, key).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return "", grant.ErrNotFound
	case err != nil:
		return "", unavailable(err)
	}
	s.checkPolicy(ctx)
	return v, nil
}

// RevokeAccess implements grant.Store. The key stays listed in its chain
// set; deleting a missing key later is harmless.
func (s *Store) RevokeAccess(ctx context.Context, hash string) error {
	if s.waitReplicas == 0 {
		ctx, cancel := s.bound(ctx)
		defer cancel()
		if err := s.client().Del(ctx, s.atKey(hash)).Err(); err != nil {
			return unavailable(err)
		}
		return nil
	}
	var del *redis.IntCmd
	var wait *redis.Cmd
	_, _ = s.client().Pipelined(ctx, func(p redis.Pipeliner) error {
		del = p.Del(ctx, s.atKey(hash))
		wait = s.wait(ctx, p)
		return nil
	})
	if err := del.Err(); err != nil {
		return unavailable(err)
	}
	_, err := s.waitFailed(acks(wait))
	return err
}

// RevokeChain implements grant.Store.
func (s *Store) RevokeChain(ctx context.Context, chain string) error {
	if s.cluster {
		return s.clusterRevokeChain(ctx, chain)
	}
	_, acks, err := s.eval(ctx, revokeChainScript, []string{s.chainKey(chain)})
	if err != nil {
		return unavailable(err)
	}
	// A revocation is not taken back: deleting again is what the retry
	// after the 503 does anyway.
	_, err = s.waitFailed(acks)
	return err
}

// encoded is an issuance ready for Redis: its records as JSON and the keys
// they go to.
// Expiries are times to live in milliseconds, measured when encoded.
type encoded struct {
	atKey, rtKey   string // rtKey is "" without refresh token
	atJSON, rtJSON []byte
	atTTL, rtTTL   int64
	chainTTL       int64
}

func (s *Store) encode(is *grant.Issuance) (*encoded, error) {
	e := &encoded{atKey: s.atKey(is.AccessHash), atTTL: s.expTTL(is.Access.Exp), chainTTL: s.expTTL(chainExp(is))}
	var err error
	if e.atJSON, err = json.Marshal(is.Access); err != nil {
		return nil, fmt.Errorf("redisstore: encoding access record: %w", err)
	}
	if is.Refresh != nil {
		e.rtKey, e.rtTTL = s.rtKey(is.RefreshHash), s.expTTL(is.Refresh.Exp)
		if e.rtJSON, err = json.Marshal(is.Refresh); err != nil {
			return nil, fmt.Errorf("redisstore: encoding refresh record: %w", err)
		}
	}
	return e, nil
}

// Issue implements grant.Store. The access record's chain is the refresh
// record's when there is one, else Access.Chain (which may be "": none).
func (s *Store) Issue(ctx context.Context, is *grant.Issuance) error {
	if err := is.Validate(true); err != nil {
		return err
	}
	e, err := s.encode(is)
	if err != nil {
		return err
	}
	chain := is.Access.Chain
	if is.Refresh != nil {
		chain = is.Refresh.Chain
	}
	chainKey := ""
	if chain != "" {
		chainKey = s.chainKey(chain)
	}
	if s.cluster {
		return s.clusterIssue(ctx, is, e, chainKey)
	}
	keys := make([]string, 0, 3+len(is.Marks))
	keys = append(keys, e.atKey, e.rtKey, chainKey)
	args := make([]any, 0, 6+len(is.Marks))
	args = append(args, e.atJSON, e.atTTL, e.rtJSON, e.rtTTL, e.chainTTL, is.AccessHash)
	for _, m := range is.Marks {
		keys = append(keys, s.markKey(m.Key))
		args = append(args, s.ttl(m.Until))
	}
	res, acks, err := s.eval(ctx, issueScript, keys, args...)
	if err != nil {
		return unavailable(err)
	}
	s.checkPolicy(ctx)
	if err := s.claimResult(res, is.Marks); err != nil {
		return err
	}
	if failed, err := s.waitFailed(acks); failed {
		s.undo(ctx, undoIssueScript, append([]string{e.atKey, e.rtKey}, keys[3:]...), is.AccessHash)
		return err
	}
	return nil
}

// ClaimMarks implements grant.Store: replay marks claimed on their own, in
// one round trip (outside a cluster). The marks hold a fresh random
// claimant, so that a command retried after a lost reply is not taken for
// a replay.
func (s *Store) ClaimMarks(ctx context.Context, marks []grant.Mark) error {
	if err := grant.ValidateMarks(marks); err != nil {
		return err
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	owner := "claim:" + hex.EncodeToString(b[:])
	if s.cluster {
		return s.clusterClaimMarks(ctx, marks, owner)
	}
	keys := make([]string, len(marks))
	args := make([]any, 1, 1+len(marks))
	args[0] = owner
	for i, m := range marks {
		keys[i] = s.markKey(m.Key)
		args = append(args, s.ttl(m.Until))
	}
	res, acks, err := s.eval(ctx, claimMarksScript, keys, args...)
	if err != nil {
		return unavailable(err)
	}
	if err := s.claimResult(res, marks); err != nil {
		return err
	}
	if failed, err := s.waitFailed(acks); failed {
		s.undo(ctx, undoIssueScript, append([]string{"", ""}, keys...), owner)
		return err
	}
	return nil
}

// claimResult turns the reply of a script that claims marks into nil or
// the ReplayError of the mark whose key it returned.
func (s *Store) claimResult(res any, marks []grant.Mark) error {
	switch v := res.(type) {
	case int64:
		if v == codeOK {
			return nil
		}
	case string:
		for _, m := range marks {
			if s.markKey(m.Key) == v {
				return &grant.ReplayError{Key: m.Key}
			}
		}
	}
	return fmt.Errorf("%w: unexpected script result %v", grant.ErrUnavailable, res)
}

// Rotate implements grant.Store. The next tokens join the chain of the
// rotated token, whatever chain next's records name.
func (s *Store) Rotate(ctx context.Context, oldHash string, next *grant.Issuance) error {
	if err := next.Validate(false); err != nil {
		return err
	}
	e, err := s.encode(next)
	if err != nil {
		return err
	}
	if s.cluster {
		return s.clusterRotate(ctx, oldHash, next, e)
	}
	keys := []string{s.rtKey(oldHash), e.atKey, e.rtKey}
	res, acks, err := s.eval(ctx, rotateScript, keys,
		s.prefix, e.atJSON, e.atTTL, e.rtJSON, e.rtTTL, e.chainTTL, next.Claimant())
	if err != nil {
		return unavailable(err)
	}
	code, _ := res.(int64)
	if err := rotateResult(code); err != nil {
		return err
	}
	if failed, err := s.waitFailed(acks); failed {
		// Else the client's retry with the same refresh token would
		// look like reuse and revoke its chain.
		s.undo(ctx, undoRotateScript, keys, next.Claimant())
		return err
	}
	return nil
}

func rotateResult(code int64) error {
	switch code {
	case codeOK:
		return nil
	case codeNotFound:
		return grant.ErrNotFound
	case codeReuse:
		return grant.ErrRefreshReuse
	}
	return fmt.Errorf("%w: unexpected script result %d", grant.ErrUnavailable, code)
}
