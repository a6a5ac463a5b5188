"""The staging area's Lua scripts on Redis Cluster (see :mod:`.cluster`).

Every KEYS entry carries the ``{staging}`` hash tag, so each script runs on one slot, on
one node, atomically, exactly as MULTI would on a single Redis.
"""

#: KEYS: entry, index. ARGV: payload, expires_at_ms, staged_id.
STAGE = """
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return 1
"""
#: KEYS: index. ARGV: now_ms. The live members, oldest expiry first, with their scores.
LIST = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
"""
#: KEYS: claim, entry, index. ARGV: claim, lease_ms, staged_id.
#: Returns {won, holder, payload, score, wrong_type}; false stands for nil.
CLAIM = """
local won = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
local holder = redis.call('GET', KEYS[1])
local payload = redis.pcall('GET', KEYS[2])
local wrong = 0
if type(payload) == 'table' and payload.err then
  payload = false
  wrong = 1
end
local score = redis.call('ZSCORE', KEYS[3], ARGV[3])
return {won and 1 or 0, holder, payload, score, wrong}
"""
#: KEYS: claim. ARGV: claim. Compare-and-delete.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""
#: KEYS: claim, entry, index. ARGV: fate, keep_until_ms, staged_id, checked ('1'/'0'), claim.
SETTLE = """
if ARGV[4] == '1' and redis.call('GET', KEYS[1]) ~= ARGV[5] then
  return 0
end
redis.call('DEL', KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[3])
redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
return 1
"""
