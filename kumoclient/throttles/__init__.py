"""Throttles and connection limits shared by several nodes through Redis, or local ones.

`SharedThrottles` is the one interface the engine uses, whether or not the policy called
`kumo.configure_redis_throttles`:

- `throttle(key, rate)` gives an `AsyncThrottle` whose `await reserve()` books the next event
  and answers the seconds to wait for it (the caller sleeps). Without Redis it is the local
  GCRA of `core.throttle`; with Redis the same algorithm runs atomically in a Redis script, so
  every node booking on the same key shares one budget: a burst of `limit`, then one event
  every `period / limit` seconds, across all of them.
- `acquire(key, limit)` / `release(lease)` is a counting semaphore across nodes (the shared
  `connection_limit`): a lease is a member of a Redis sorted set scored by its expiry; leases
  are renewed while held and expire after `lease_seconds` when their node stops renewing them.
  Without Redis every acquire is granted (the engine's own per-process limit applies).

When Redis is unreachable or answers with an error, every call falls back to the local
behaviour and never raises: one warning is logged when that starts, Redis is tried again at
most every `retry_interval` seconds (by one call; the others stay local), and one info line is
logged when it answers again. See docs/throttles.md.
"""

from kumoclient.throttles.shared import (
    DEFAULT_LEASE_SECONDS,
    DEFAULT_RETRY_INTERVAL,
    KEY_PREFIX,
    LEASES_PREFIX,
    THROTTLE_PREFIX,
    AsyncThrottle,
    Lease,
    LocalThrottle,
    RedisThrottle,
    SharedThrottles,
    redact,
)

__all__ = [
    "DEFAULT_LEASE_SECONDS",
    "DEFAULT_RETRY_INTERVAL",
    "KEY_PREFIX",
    "LEASES_PREFIX",
    "THROTTLE_PREFIX",
    "AsyncThrottle",
    "Lease",
    "LocalThrottle",
    "RedisThrottle",
    "SharedThrottles",
    "redact",
]
