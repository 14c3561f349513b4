"""`kumo.set_config_monitor_globs`, `kumo.eval_config_monitor_globs` and
`kumo.bump_config_epoch` (policy/epoch.py)."""

from __future__ import annotations

import asyncio

from kumoclient.policy.api import kumo_function
from kumoclient.policy.epoch import EPOCH, MONITOR


@kumo_function("set_config_monitor_globs")
def set_config_monitor_globs(globs: list[str]) -> None:
    """Watch these globs (instead of the default ones) for configuration changes."""
    MONITOR.set_globs(globs)


@kumo_function("eval_config_monitor_globs")
async def eval_config_monitor_globs() -> list[str]:
    """The files the watched globs match now, sorted, each once."""
    return await asyncio.to_thread(MONITOR.evaluate)


@kumo_function("bump_config_epoch")
def bump_config_epoch() -> None:
    """Bump the configuration epoch (memoize caches with invalidate_with_epoch start afresh,
    the daemon reloads the policy)."""
    EPOCH.bump("kumo.bump_config_epoch()")
