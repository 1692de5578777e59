"""The Lua scripts of the Redis admission backend; each runs atomically on the server.

Times come from the server's ``TIME``, so gateways with skewed clocks agree. Key layout
(``P`` is the backend's prefix, ``G`` a gate name such as ``fleet`` or ``model:chat``):

    P rl:{key_id}     hash  r<second> -> requests, t<second> -> tokens (TTL: the window)
    P gate:G:leases   zset  lease id -> expiry (ms); the running requests
    P gate:G:queue    zset  waiter id -> -priority * 2^32 + arrival; the waiting ones
    P gate:G:alive    zset  waiter id -> expiry (ms); waiters that stop polling drop out
    P gate:G:seq      int   arrival counter, reset whenever the queue empties
    P gate-free       channel; a release publishes the gate's name there
"""

from __future__ import annotations

# KEYS: rate hash. ARGV: rpm (-1: none), tpm (-1: none), window_s.
# Sums the buckets still in the window (dropping older ones); refuses with the limit's
# letter and the seconds until enough of the oldest buckets leave, else counts one request.
RATE_CHECK = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local sec = math.floor(now)
local rpm, tpm, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local data = redis.call('HGETALL', KEYS[1])
local totals = {r = 0, t = 0}
local buckets = {r = {}, t = {}}
for i = 1, #data, 2 do
  local kind, s = string.sub(data[i], 1, 1), tonumber(string.sub(data[i], 2))
  if s <= sec - window then
    redis.call('HDEL', KEYS[1], data[i])
  else
    local n = tonumber(data[i + 1])
    totals[kind] = totals[kind] + n
    table.insert(buckets[kind], {s, n})
  end
end
local function wait(kind, limit)
  local list, total = buckets[kind], totals[kind]
  table.sort(list, function(a, b) return a[1] < b[1] end)
  for _, b in ipairs(list) do
    total = total - b[2]
    if total < limit then return b[1] + window - now end
  end
  return window
end
if tpm >= 0 and totals.t >= tpm then return {0, 'tpm', tostring(wait('t', tpm))} end
if rpm >= 0 and totals.r >= rpm then return {0, 'rpm', tostring(wait('r', rpm))} end
redis.call('HINCRBY', KEYS[1], 'r' .. sec, 1)
redis.call('EXPIRE', KEYS[1], window + 1)
return {1}
"""

# KEYS: rate hash. ARGV: tokens, window_s.
RATE_RECORD = """
local t = redis.call('TIME')
redis.call('HINCRBY', KEYS[1], 't' .. t[1], tonumber(ARGV[1]))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]) + 1)
return 1
"""

# KEYS: leases, queue, alive, seq. ARGV: id, -priority, max_concurrent (0: none),
# max_queue, ttl_ms, already_queued (1/0).
# Drops expired leases and silent waiters. Grants (moves the id to the leases) when a slot
# is free and the id ranks among the first `free` waiters (or nobody waits); refuses when
# the id is new and the queue is full; else (re)queues it and refreshes its heartbeat.
# Returns {state (1 granted, 0 waiting, -1 refused), running, waiting}.
GATE_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id, max, maxq, ttl = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local keep = ttl * 4
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local dead = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
for _, w in ipairs(dead) do redis.call('ZREM', KEYS[2], w) end
if #dead > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now) end
local running = redis.call('ZCARD', KEYS[1])
if redis.call('ZSCORE', KEYS[1], id) then
  return {1, running, redis.call('ZCARD', KEYS[2])}
end
local free = math.huge
if max > 0 then free = max - running end
local waiting = redis.call('ZCARD', KEYS[2])
local rank = redis.call('ZRANK', KEYS[2], id)
if not rank then
  if waiting == 0 and free > 0 then
    redis.call('ZADD', KEYS[1], now + ttl, id)
    redis.call('PEXPIRE', KEYS[1], keep)
    return {1, running + 1, 0}
  end
  if waiting >= maxq and ARGV[6] == '0' then return {-1, running, waiting} end
  if waiting == 0 then redis.call('DEL', KEYS[4]) end
  local seq = redis.call('INCR', KEYS[4])
  local score = string.format('%.0f', tonumber(ARGV[2]) * 4294967296 + seq)
  redis.call('ZADD', KEYS[2], score, id)
  waiting = waiting + 1
  rank = redis.call('ZRANK', KEYS[2], id)
end
if rank < free then
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
  redis.call('ZADD', KEYS[1], now + ttl, id)
  redis.call('PEXPIRE', KEYS[1], keep)
  return {1, running + 1, waiting - 1}
end
redis.call('ZADD', KEYS[3], now + ttl, id)
for i = 2, 4 do redis.call('PEXPIRE', KEYS[i], keep) end
return {0, running, waiting}
"""

# KEYS: leases, queue, alive. ARGV: id, channel, gate name.
# Removes the id wherever it is (lease or queue); a freed lease wakes the gate's waiters.
GATE_RELEASE = """
local freed = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if freed == 1 and redis.call('ZCARD', KEYS[2]) > 0 then
  redis.call('PUBLISH', ARGV[2], ARGV[3])
end
return freed
"""

# KEYS: leases. ARGV: ttl_ms, ids... Pushes the expiry of the leases still held (XX: a
# lease that already lapsed is not brought back). Returns how many were renewed.
GATE_RENEW = """
local t = redis.call('TIME')
local expiry = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
local renewed = 0
for i = 2, #ARGV do
  renewed = renewed + redis.call('ZADD', KEYS[1], 'XX', 'CH', expiry, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) * 4)
return renewed
"""
