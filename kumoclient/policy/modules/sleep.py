"""`kumo.time.sleep(seconds)` and its older name `kumo.sleep`: the handler waits, the daemon
goes on."""

from __future__ import annotations

import asyncio
import math

from kumoclient.errors import ConfigError
from kumoclient.policy.api import kumo_function


@kumo_function("time.sleep")
async def sleep(seconds: object) -> None:
    """Wait `seconds` (an integer or a fraction, not negative)."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ConfigError(f"kumo.time.sleep: expected a number of seconds, got {seconds!r}")
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"kumo.time.sleep: {seconds!r} is not a duration in seconds")
    await asyncio.sleep(seconds)


kumo_function("sleep")(sleep)
