package redisstore

import "github.com/redis/go-redis/v9"

// Script results. A replay is answered with the held mark's key instead.
const (
	codeOK       = 0
	codeNotFound = 2
	codeReuse    = 3
)

// luaHelpers are shared by the scripts. Expiries are times to live in
// milliseconds. join adds members to a chain set and pushes its expiry to
// ttl without ever pulling it in: NX sets it on a new set, GT raises it on
// an old one. prune drops a few members whose keys have
// expired, so that a chain refreshed for months keeps a set the size of its
// live tokens, as Redis's own active expiry samples keys. delete removes
// keys in batches, as unpack has a stack limit.
const luaHelpers = `
local function join(set, ttl, ...)
  redis.call('SADD', set, ...)
  redis.call('PEXPIRE', set, ttl, 'NX')
  redis.call('PEXPIRE', set, ttl, 'GT')
end
local function prune(set)
  for _, k in ipairs(redis.call('SRANDMEMBER', set, 4)) do
    if redis.call('EXISTS', k) == 0 then redis.call('SREM', set, k) end
  end
end
local function delete(keys)
  for i = 1, #keys, 1000 do
    redis.call('DEL', unpack(keys, i, math.min(i + 999, #keys)))
  end
end
`

// luaState reads what Rotate needs of a refresh record: its chain and
// whether, and to whom, it was rotated. Decoding the whole record with
// cjson would refuse copied claims that Go accepts and SPEC §6 lets an
// assertion carry (a lone surrogate escape such as "\ud800", nesting
// deeper than cjson's 1000), and every refresh of such a chain would fail
// for good. Nor is normalising the claims in Go at issuance an option:
// they must round-trip as sent. So the scripts decode only the record's
// tail: its members from the last `,"chain":` on. The gateway writes
// "chain" after "claims" (grant.RefreshRecord's field order, which Go's
// encoder keeps) with a hex value, and rotation appends its members after
// it; a "chain" inside the claims comes earlier and Go escapes every quote
// inside a string, so the last match is the record's own. The greedy .*
// finds it in one pass from the end. No library reads one member of a
// JSON text without parsing all of it.
const luaState = `
local function state(old)
  local tail = string.match(old, '^.*,("chain":.*)$')
  if not tail then return nil end
  local ok, rec = pcall(cjson.decode, '{' .. tail)
  if not ok or type(rec) ~= 'table' then return nil end
  return rec
end
`

// issueScript writes a grant if none of its replay marks is held by another.
//
//	KEYS: at key, rt key or '', chain key or '', mark keys...
//	ARGV: at JSON, at TTL, rt JSON, rt TTL, chain TTL, access hash (the
//	      marks' value), then each mark's TTL
//
// Returns the key of a mark held by another grant (a replay), or codeOK
// when written or when every held mark is held by this very grant (a
// retry: the first attempt wrote everything).
var issueScript = redis.NewScript(luaHelpers + `
local held = false
for i = 4, #KEYS do
  local owner = redis.call('GET', KEYS[i])
  if owner then
    if owner ~= ARGV[6] then return KEYS[i] end
    held = true
  end
end
if held then return 0 end
for i = 4, #KEYS do
  redis.call('SET', KEYS[i], ARGV[6], 'PX', ARGV[i + 3])
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if KEYS[2] ~= '' then
  redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
end
if KEYS[3] ~= '' then
  if KEYS[2] ~= '' then
    join(KEYS[3], ARGV[5], KEYS[1], KEYS[2])
  else
    join(KEYS[3], ARGV[5], KEYS[1])
  end
end
return 0
`)

// rotateScript exchanges a refresh token. The chain set's key is built from
// the old record, so it is not among KEYS; that is fine outside a cluster,
// the only place this script runs.
//
//	KEYS: old rt key, next at key, next rt key or ''
//	ARGV: key prefix, at JSON, at TTL, rt JSON, rt TTL, chain TTL, claimant
//
// Returns codeNotFound, codeReuse (after deleting the chain) or codeOK
// (also when the old token was rotated to this very claimant: a retry).
var rotateScript = redis.NewScript(luaHelpers + luaState + `
local old = redis.call('GET', KEYS[1])
if not old then return 2 end
local rec = state(old)
if not rec then return redis.error_reply('malformed refresh record') end
local set = nil
if type(rec.chain) == 'string' and rec.chain ~= '' then
  set = ARGV[1] .. 'ch:' .. rec.chain
end
if rec.rotated == true then
  if rec.rotated_to == ARGV[7] then return 0 end
  if set then
    delete(redis.call('SMEMBERS', set))
    redis.call('DEL', set)
  end
  redis.call('DEL', KEYS[1])
  return 3
end
redis.call('SET', KEYS[1], string.sub(old, 1, -2) .. ',"rotated":true,"rotated_to":' .. cjson.encode(ARGV[7]) .. '}', 'KEEPTTL')
redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
if KEYS[3] ~= '' then
  redis.call('SET', KEYS[3], ARGV[4], 'PX', ARGV[5])
end
if set then
  if KEYS[3] ~= '' then
    join(set, ARGV[6], KEYS[2], KEYS[3])
  else
    join(set, ARGV[6], KEYS[2])
  end
  prune(set)
end
return 0
`)

// revokeChainScript deletes a chain's members and its set.
//
//	KEYS: chain key
var revokeChainScript = redis.NewScript(luaHelpers + `
delete(redis.call('SMEMBERS', KEYS[1]))
redis.call('DEL', KEYS[1])
return 0
`)

// revokeChainClusterScript is a cluster's revocation of a chain, on the one
// key it may touch there: it takes the set's members and leaves in the
// set's place a string that lives at least a minute, and the caller deletes
// the members. A rotation files its new tokens in the set after it wrote
// them, in other slots, so without the mark a revocation that read the set
// before that SADD left the rotation's new tokens live; with it, the SADD
// fails (WRONGTYPE) and the rotation deletes its tokens (clusterWrite), as
// the revocation would have had it come a moment later.
// A minute is far beyond one store call's bound, the longest a rotation
// that claimed its refresh token can take to file its tokens.
//
//	KEYS: chain key
//
// Returns the members to delete.
var revokeChainClusterScript = redis.NewScript(`
if redis.call('TYPE', KEYS[1]).ok == 'string' then return {} end
local members = redis.call('SMEMBERS', KEYS[1])
local ttl = math.max(redis.call('PTTL', KEYS[1]), 60000)
redis.call('SET', KEYS[1], 'revoked', 'PX', ttl)
return members
`)

// claimScript is Rotate's decision in a cluster, on the one key it may
// touch there: the old refresh record.
//
//	KEYS: old rt key
//	ARGV: claimant
//
// Returns {code, chain}: codeNotFound, codeReuse (the caller deletes the
// chain) or codeOK (the caller writes the next tokens; also on a retry).
var claimScript = redis.NewScript(luaState + `
local old = redis.call('GET', KEYS[1])
if not old then return {2, ''} end
local rec = state(old)
if not rec then return redis.error_reply('malformed refresh record') end
local chain = ''
if type(rec.chain) == 'string' then chain = rec.chain end
if rec.rotated == true then
  if rec.rotated_to == ARGV[1] then return {0, chain} end
  return {3, chain}
end
redis.call('SET', KEYS[1], string.sub(old, 1, -2) .. ',"rotated":true,"rotated_to":' .. cjson.encode(ARGV[1]) .. '}', 'KEEPTTL')
return {0, chain}
`)

// claimMarksScript claims replay marks on their own, all or none.
//
//	KEYS: mark keys
//	ARGV: claimant (the marks' value), then each mark's TTL
//
// Returns the key of a mark held by another (a replay), or codeOK when
// claimed or when every held mark is held by this very claimant (a retry
// after a lost reply).
var claimMarksScript = redis.NewScript(`
local held = false
for i = 1, #KEYS do
  local owner = redis.call('GET', KEYS[i])
  if owner then
    if owner ~= ARGV[1] then return KEYS[i] end
    held = true
  end
end
if held then return 0 end
for i = 1, #KEYS do
  redis.call('SET', KEYS[i], ARGV[1], 'PX', ARGV[i + 1])
end
return 0
`)

// releaseScript deletes a replay mark only if the given grant holds it, so
// that undoing a failed Issue in a cluster never frees another's mark.
//
//	KEYS: mark key
//	ARGV: access hash
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 0
`)
