"""`kumo.memoize` caches: named, TTL'd, LRU-bounded, living in Python across policy reloads.

Rules (SPEC 4.3):
- the key is the JSON text of the call's arguments (computed by the caller);
- an entry expires `ttl` seconds after it was computed; at most `capacity` entries are kept,
  the least recently used is evicted first;
- an error raised by the function is cached for ERROR_TTL (60 s) and raised again on a hit;
- with `allow_stale_reads`, an expired value is still served when recomputing it fails;
- caches are shared by name: memoizing again with the same name and the same parameters reuses
  the cache (that is how it survives a reload); different parameters replace it.
The clock is a parameter, so the rules are tested without sleeping.
"""

from __future__ import annotations

import enum
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

ERROR_TTL = 60.0

Clock = Callable[[], float]


class Lookup(enum.IntEnum):
    """The state of a key; the numbers are shared with bootstrap.lua."""

    HIT = 1
    MISS = 2
    CACHED_ERROR = 3


@dataclass(frozen=True, slots=True)
class MemoParams:
    """The validated `{name=, ttl=, capacity=, ...}` table."""

    name: str
    ttl: float
    capacity: int
    allow_stale_reads: bool = False


@dataclass(slots=True)
class _Entry:
    value: object
    error: str | None
    expires: float


class MemoCache:
    """One named cache."""

    def __init__(self, params: MemoParams, clock: Clock) -> None:
        self.params = params
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> tuple[Lookup, object]:
        """HIT and the value, CACHED_ERROR and the message, or MISS and None."""
        entry = self._entries.get(key)
        if entry is None or entry.expires <= self._clock():
            self.misses += 1
            return Lookup.MISS, None
        self._entries.move_to_end(key)
        self.hits += 1
        if entry.error is not None:
            return Lookup.CACHED_ERROR, entry.error
        return Lookup.HIT, entry.value

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

    def _store(self, key: str, entry: _Entry) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self.params.capacity:
            self._entries.popitem(last=False)


class MemoRegistry:
    """All caches of a process, by name; outlives policy runtimes."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self._caches: dict[str, MemoCache] = {}

    def cache(self, params: MemoParams) -> MemoCache:
        """The cache named `params.name`, reused when its parameters are unchanged."""
        existing = self._caches.get(params.name)
        if existing is not None and existing.params == params:
            return existing
        cache = MemoCache(params, self.clock)
        self._caches[params.name] = cache
        return cache

    def get(self, name: str) -> MemoCache | None:
        """The cache called `name`, if any."""
        return self._caches.get(name)


GLOBAL_REGISTRY = MemoRegistry()
