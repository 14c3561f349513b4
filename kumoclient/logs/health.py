"""Whether delivery log records can be written now: one flag with one owner (the RecordLog),
asked by every part that must not go on while records cannot be written.

The flag lives in one byte of anonymous shared memory, so processes forked after it was made
(the daemon's reception workers) read the same value as the process that writes the log.
Only the owning `RecordLog` calls `down` and `up` (which write the fault's first and last log
lines); everyone else reads `ok` or awaits
`wait_ok` (in the owner's process: the event is not shared).
"""

from __future__ import annotations

import asyncio
import contextlib
import mmap
import time
from typing import Any

import structlog

_log = structlog.get_logger("kumoclient.logs.record_log")  # the lines are the writer's


class LogHealth:
    """Up (records are written) or down (they are held in memory); see the module's text."""

    def __init__(self) -> None:
        # MAP_SHARED | MAP_ANONYMOUS (mmap's default for fileno -1): a fork sees every change
        self._flag = mmap.mmap(-1, 1)
        self._up = asyncio.Event()
        self._up.set()
        self.reason = ""  # why it is down (the operating system's error), "" while up
        self.since: float | None = None  # time.monotonic() when it went down

    @property
    def ok(self) -> bool:
        """Whether records can be written now."""
        return self._flag[0] == 0

    async def wait_ok(self, timeout: float) -> bool:
        """Wait at most `timeout` seconds for the log to be up; whether it is."""
        if not self.ok:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._up.wait(), timeout)
        return self.ok

    def down(self, reason: str, **context: Any) -> None:
        """The owner could not write: records are held until `up`. One error line (with
        `context`) when this begins a fault."""
        if self.ok:
            self.since = time.monotonic()
            _log.error(
                "delivery log cannot be written: deliveries paused, new mail refused, "
                "records held until it can be",
                error=reason,
                **context,
            )
        self.reason = reason
        self._flag[0] = 1
        self._up.clear()

    def up(self, **context: Any) -> None:
        """The owner wrote everything it held. One info line (with how long the fault lasted
        and `context`) when this ends a fault."""
        if not self.ok:
            since = self.since
            seconds = round(time.monotonic() - since, 3) if since is not None else None
            _log.info(
                "delivery log written again: deliveries and reception resume",
                seconds=seconds,
                **context,
            )
        self._flag[0] = 0
        self.reason = ""
        self.since = None
        self._up.set()
