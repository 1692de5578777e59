"""The metastore's Lua scripts; each runs atomically on the Redis server.

Tokens are compared as the decimal strings ``SET`` stored them.
"""

from __future__ import annotations

# KEYS: lock, fence counter. ARGV: ttl ms.
# The token comes from the counter only when the lock is taken, so tokens of one lock
# name grow by one per holder; the counter outlives the lock (it has no TTL).
ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token, 'PX', ARGV[1])
return token
"""

# KEYS: lock. ARGV: token, ttl ms.
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# KEYS: lock. ARGV: token, events channel, the lock_released event.
# The event is published in the same step, so no waiter can miss the release.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0
"""

# KEYS: lock, the node's assignment hash. ARGV: token, model, assignment JSON.
# A holder whose lock expired (paused, partitioned) finds another token there: refused.
PUT_ASSIGNMENT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
  return 1
end
return 0
"""

# KEYS: an index set, then the record key of each member. ARGV: the members.
# A member leaves the index only if its key is still gone now: a writer sets the key
# before adding the member, so a record written meanwhile is never dropped.
PRUNE = """
local removed = 0
for i, member in ipairs(ARGV) do
  if redis.call('EXISTS', KEYS[i + 1]) == 0 then
    removed = removed + redis.call('SREM', KEYS[1], member)
  end
end
return removed
"""
