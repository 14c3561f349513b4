"""The Python side of `kumo.memoize` (lua/kumo.lua calls these): parameters, lookups, stores and
the wait for a value another handler computes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

from kumoclient import logs
from kumoclient.core.duration import parse_duration
from kumoclient.errors import ConfigError
from kumoclient.policy.convert import ConversionError
from kumoclient.policy.memoize import (
    POPULATE_TIMEOUT,
    Lookup,
    MemoCache,
    MemoParams,
    MemoRegistry,
)

log = logs.get_logger(__name__)

Answer = tuple[Any, ...]

_MEMO_KEYS = {
    "name",
    "ttl",
    "capacity",
    "allow_stale_reads",
    "invalidate_with_epoch",
    "populate_timeout",
    "retry_on_populate_timeout",
}


def memo_params(table: Any) -> MemoParams:
    """The validated parameter table of `kumo.memoize` (ConfigError naming the key)."""
    if not isinstance(table, dict):
        raise ConfigError(
            "kumo.memoize: the second argument must be a table {name=, ttl=, capacity=}"
        )
    unknown = sorted(set(table) - _MEMO_KEYS)
    if unknown:
        raise ConfigError(f"kumo.memoize: unknown key {unknown[0]!r}", key=unknown[0])
    for required in ("name", "ttl", "capacity"):
        if required not in table:
            raise ConfigError(f"kumo.memoize: missing required key {required!r}")
    name, capacity = table["name"], table["capacity"]
    if not isinstance(name, str) or not name:
        raise ConfigError(f"kumo.memoize: name = {name!r}: expected a non-empty string")
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise ConfigError(f"kumo.memoize: capacity = {capacity!r}: expected an integer >= 1")
    flags = {}
    for key in ("allow_stale_reads", "invalidate_with_epoch", "retry_on_populate_timeout"):
        flag = table.get(key, False)
        if not isinstance(flag, bool):
            raise ConfigError(f"kumo.memoize: {key} = {flag!r}: expected a boolean", key=key)
        flags[key] = flag
    ttl = parse_duration(table["ttl"], what="kumo.memoize: ttl")
    timeout = table.get("populate_timeout")
    populate_timeout = (
        POPULATE_TIMEOUT
        if timeout is None
        else parse_duration(timeout, what="kumo.memoize: populate_timeout")
    )
    return MemoParams(name, ttl, capacity, populate_timeout=populate_timeout, **flags)


class MemoHost:
    """The memoize functions of one policy runtime (caches by number, in creation order)."""

    def __init__(
        self,
        registry: MemoRegistry,
        to_python: Callable[[Any], Any],
        to_lua: Callable[[Any], Any],
    ) -> None:
        self._registry = registry
        self._to_python = to_python
        self._to_lua = to_lua
        self._caches: list[MemoCache] = []

    def memoize_new(self, params: Any) -> Answer:
        self._caches.append(self._registry.cache(memo_params(self._to_python(params))))
        return True, len(self._caches) - 1

    def memo_get(self, cache_id: int, *args: Any) -> Answer:
        """HIT and the value, CACHED_ERROR and the message, MISS and the key, WAIT, the key
        and the time to wait until; or 0 and an error."""
        cache = self._caches[cache_id]
        try:
            key = cache.key(self._arguments(args))
        except (ConversionError, ValueError) as exc:
            return 0, f"memoized function: cannot use the arguments as a cache key: {exc}"
        state, value = cache.get(key)
        if state is Lookup.HIT:
            return state, self._to_lua(value)
        if state is Lookup.CACHED_ERROR:
            return state, value
        return state, key, value

    def _arguments(self, args: tuple[Any, ...]) -> str:
        if not args:
            return "null"
        data = [self._to_python(a) for a in args]
        return json.dumps(
            data[0] if len(data) == 1 else data,
            sort_keys=True,
            separators=(",", ":"),
            allow_nan=False,
        )

    def memo_put(self, cache_id: int, key: str, value: Any) -> Answer:
        data = self._to_python(value)
        self._caches[cache_id].put(key, data)
        return True, self._to_lua(data)

    def memo_put_error(self, cache_id: int, key: str, message: str) -> Answer:
        """Cache the error, unless a stale value may be served instead: then answer it."""
        cache = self._caches[cache_id]
        usable, value = cache.stale(key)
        if usable:
            log.warning(
                "memoized function failed; serving the stale value",
                cache=cache.params.name,
                error=message,
            )
            cache.abandon(key)
            return True, self._to_lua(value)
        cache.put_error(key, message)
        return False, None

    def memo_abandon(self, cache_id: int, key: str) -> None:
        self._caches[cache_id].abandon(key)

    def memo_retries(self, cache_id: int) -> bool:
        return self._caches[cache_id].params.retry_on_populate_timeout

    async def memo_wait(self, cache_id: int, key: str, deadline: float) -> Answer:
        """Wait until the value of `key` is computed: 'settled' (look it up again), 'stale'
        and the expired value, or ConfigError when `deadline` passes first."""
        cache = self._caches[cache_id]
        pending = cache.pending(key)
        if pending is None:
            return True, "settled"
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        pending.waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, cache.remaining(deadline))
        except TimeoutError:
            usable, value = cache.stale(key)
            if usable:
                return True, "stale", self._to_lua(value)
            timeout = cache.params.populate_timeout
            raise ConfigError(
                f"kumo.memoize {cache.params.name!r}: timed out after {timeout:g}s waiting "
                "for another handler to compute the value (populate_timeout)"
            ) from None
        return True, "settled"
