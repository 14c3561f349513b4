"""`kumo.memoize` caches: named, TTL'd, LRU-bounded, living in Python across policy reloads.

Rules (SPEC 4.3, KumoMTA's reference page):
- the key is the JSON text of the call's arguments (computed by the caller); with
  `invalidate_with_epoch` (and not `allow_stale_reads`) the configuration epoch at the start of
  the lookup is part of it, so a bump makes every older entry unreachable at once;
- an entry expires `ttl` seconds after it was computed; at most `capacity` entries are kept,
  the least recently used is evicted first;
- an error raised by the function is cached for ERROR_TTL (60 s) and raised again on a hit;
- one caller computes a missing value; the others wait for it (`Pending`) at most
  `populate_timeout` from the start of their lookup, then fail — or, with
  `allow_stale_reads`, get the expired value; `retry_on_populate_timeout` makes the caller try
  again instead (three tries in all). A computation that takes longer than `populate_timeout`
  is presumed stuck: the next caller computes the value itself;
- with `allow_stale_reads`, an expired value is also served when recomputing it fails;
- caches are shared by name: memoizing again with the same name and the same parameters reuses
  the cache (that is how it survives a reload); different parameters replace it.
The clock is a parameter, so the rules are tested without sleeping.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from kumoclient.policy.epoch import EPOCH, ConfigEpoch

ERROR_TTL = 60.0
POPULATE_TIMEOUT = 120.0

Clock = Callable[[], float]


class Lookup(enum.IntEnum):
    """The state of a key; the numbers are shared with lua/kumo.lua."""

    HIT = 1
    MISS = 2  # the caller computes the value
    CACHED_ERROR = 3
    WAIT = 4  # another caller computes it


@dataclass(frozen=True, slots=True)
class MemoParams:
    """The validated `{name=, ttl=, capacity=, ...}` table."""

    name: str
    ttl: float
    capacity: int
    allow_stale_reads: bool = False
    invalidate_with_epoch: bool = False
    populate_timeout: float = POPULATE_TIMEOUT
    retry_on_populate_timeout: bool = False


@dataclass(slots=True)
class _Entry:
    value: object
    error: str | None
    expires: float


@dataclass(slots=True)
class Pending:
    """A value being computed: until when it is waited for, and who waits."""

    deadline: float
    waiters: list[asyncio.Future[None]] = field(default_factory=list)

    def settle(self) -> None:
        """Wake every waiter (they look the key up again)."""
        for waiter in self.waiters:
            if not waiter.done():
                waiter.get_loop().call_soon_threadsafe(_wake, waiter)
        self.waiters.clear()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class MemoCache:
    """One named cache."""

    def __init__(self, params: MemoParams, clock: Clock, epoch: ConfigEpoch) -> None:
        self.params = params
        self._clock = clock
        self._epoch = epoch
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._pending: dict[str, Pending] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def key(self, arguments: str) -> str:
        """The cache key of a call's JSON arguments (with the epoch when it counts)."""
        if self.params.invalidate_with_epoch and not self.params.allow_stale_reads:
            return f"{self._epoch.value}\0{arguments}"
        return arguments

    def get(self, key: str) -> tuple[Lookup, object]:
        """HIT and the value, CACHED_ERROR and the message, MISS (compute it; it is now
        pending) or WAIT (another caller computes it) and the time to wait until."""
        now = self._clock()
        entry = self._entries.get(key)
        if entry is not None and entry.expires > now:
            self._entries.move_to_end(key)
            self.hits += 1
            if entry.error is not None:
                return Lookup.CACHED_ERROR, entry.error
            return Lookup.HIT, entry.value
        pending = self._pending.get(key)
        if pending is not None and pending.deadline > now:
            return Lookup.WAIT, now + self.params.populate_timeout
        if pending is not None:  # stuck: this caller takes over
            pending.settle()
        self.misses += 1
        self._pending[key] = Pending(now + self.params.populate_timeout)
        return Lookup.MISS, None

    def pending(self, key: str) -> Pending | None:
        """The computation of `key` in progress, if any."""
        return self._pending.get(key)

    def remaining(self, deadline: float) -> float:
        """Seconds until `deadline` (a time of this cache's clock)."""
        return max(0.0, deadline - self._clock())

    def stale(self, key: str) -> tuple[bool, object]:
        """An expired value still held for `key`, when stale reads are allowed."""
        entry = self._entries.get(key)
        if entry is None or entry.error is not None or not self.params.allow_stale_reads:
            return False, None
        return True, entry.value

    def put(self, key: str, value: object) -> None:
        """Store a computed value for `ttl` seconds."""
        self._store(key, _Entry(value, None, self._clock() + self.params.ttl))

    def put_error(self, key: str, message: str) -> None:
        """Store an error for ERROR_TTL seconds."""
        self._store(key, _Entry(None, message, self._clock() + ERROR_TTL))

    def abandon(self, key: str) -> None:
        """The computation of `key` ended without a value (its handler was aborted)."""
        pending = self._pending.pop(key, None)
        if pending is not None:
            pending.settle()

    def clear(self) -> None:
        """Forget every value (waiters compute theirs again)."""
        self._entries.clear()
        for pending in self._pending.values():
            pending.settle()
        self._pending.clear()

    def _store(self, key: str, entry: _Entry) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.params.capacity:
            self._entries.popitem(last=False)
        self.abandon(key)


class MemoRegistry:
    """All caches of a process, by name; outlives policy runtimes."""

    def __init__(self, clock: Clock = time.monotonic, epoch: ConfigEpoch = EPOCH) -> None:
        self.clock = clock
        self.epoch = epoch
        self._caches: dict[str, MemoCache] = {}

    def cache(self, params: MemoParams) -> MemoCache:
        """The cache named `params.name`, reused when its parameters are unchanged."""
        existing = self._caches.get(params.name)
        if existing is not None and existing.params == params:
            return existing
        cache = MemoCache(params, self.clock, self.epoch)
        self._caches[params.name] = cache
        return cache

    def get(self, name: str) -> MemoCache | None:
        """The cache called `name`, if any."""
        return self._caches.get(name)

    def clear(self) -> None:
        """Forget every memoized value of every cache (SIGHUP: read everything again)."""
        for cache in self._caches.values():
            cache.clear()


GLOBAL_REGISTRY = MemoRegistry()
