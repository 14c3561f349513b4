"""Connections the policy's modules keep on an event loop (Redis pools, HTTP sessions), shared
by key and closed when that loop ends.

Such connections belong to the loop that made them: the daemon's, or the one a policy file
runs on while it loads. `shared(key, make, close)` gives the running loop's object for `key`,
making it on first use. The first object made on a loop starts a task there that only waits;
when the loop ends (asyncio.Runner and asyncio.run cancel what is still running), the task is
cancelled and closes every object of its loop, so no socket is left open behind it.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

from kumoclient import logs

log = logs.get_logger(__name__)

_T = TypeVar("_T")


class _Kept:
    """The shared objects of one loop, and the task that closes them when it ends."""

    def __init__(self) -> None:
        self.objects: dict[Hashable, tuple[Any, Callable[[Any], Awaitable[None]]]] = {}
        self.task = asyncio.ensure_future(self._wait_for_the_end())

    async def _wait_for_the_end(self) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            objects, self.objects = self.objects, {}
            for value, close in objects.values():
                try:
                    await close(value)
                except Exception as exc:  # closing is best effort; the loop is ending anyway
                    log.debug("closing a policy connection failed", error=str(exc))


_LOOPS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Kept] = weakref.WeakKeyDictionary()


def shared(key: Hashable, make: Callable[[], _T], close: Callable[[_T], Awaitable[None]]) -> _T:
    """The running loop's object for `key` (made by `make` on first use; `close` closes it when
    the loop ends). Call from a coroutine."""
    loop = asyncio.get_running_loop()
    kept = _LOOPS.get(loop)
    if kept is None or kept.task.done():
        kept = _Kept()
        _LOOPS[loop] = kept
    found = kept.objects.get(key)
    if found is None:
        value = make()
        kept.objects[key] = (value, close)
        return value
    return found[0]  # type: ignore[no-any-return]


def forget(key: Hashable) -> None:
    """The running loop no longer keeps `key`'s object (it was closed otherwise)."""
    kept = _LOOPS.get(asyncio.get_running_loop())
    if kept is not None:
        kept.objects.pop(key, None)
