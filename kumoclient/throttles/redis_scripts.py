"""The Lua scripts the shared throttles run inside Redis, each atomic there: the GCRA booking
of a rate limit, and the acquiring and renewing of connection leases (throttles/shared.py)."""

# KEYS[1]: the throttle's key. ARGV: seconds between events, the burst tolerance (seconds),
# how many events to book (the wait is for the last of them).
# The theoretical arrival time (TAT) of the next event is stored in Redis time (seconds since
# the epoch) and expires once it lies in the past, where it no longer matters. Answers the
# wait as a string (Redis would truncate a Lua number to an integer).
GCRA = """
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local quantity = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then
  tat = now
end
local next_tat = tat + interval * quantity
redis.call('SET', KEYS[1], string.format('%.6f', next_tat),
           'PX', math.ceil((next_tat - now) * 1000) + 1000)
local wait = tat + interval * (quantity - 1) - tolerance - now
if wait < 0 then
  wait = 0
end
return string.format('%.6f', wait)
"""

# KEYS[1]: the lease set. ARGV: lease id, limit, lease seconds. Expired leases are dropped
# first; answers 1 when the lease was added, 0 when `limit` leases are held.
ACQUIRE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil(ttl * 1000) + 1000)
return 1
"""

# KEYS[1]: the lease set. ARGV: lease seconds, then the lease ids to renew. Only leases still
# in the set are renewed (XX): a released or reclaimed lease stays gone. Answers how many.
RENEW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local ttl = tonumber(ARGV[1])
local renewed = 0
for i = 2, #ARGV do
  renewed = renewed + redis.call('ZADD', KEYS[1], 'XX', 'CH', now + ttl, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], math.ceil(ttl * 1000) + 1000)
return renewed
"""
