"""The configuration epoch (KumoMTA's "Configuration Monitoring"): a number that grows when
the configuration may have changed, and the files watched to notice it.

The epoch is bumped by `kumo.bump_config_epoch()`, by SIGHUP (daemon), and when a watched
file appears, changes or goes away: every POLL_INTERVAL seconds the monitor evaluates the
globs (`kumo.set_config_monitor_globs`; KumoMTA's default, /opt/kumomta/etc, plus the files of
the policy's own directory) and compares each match's size and modification time. A bump makes
every `kumo.memoize` cache with `invalidate_with_epoch = true` start afresh, and the daemon
reload its policy (KumoMTA builds new Lua states at each bump).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import Callable
from pathlib import Path

from wcmatch import glob

from kumoclient import logs
from kumoclient.errors import ConfigError

log = logs.get_logger(__name__)

POLL_INTERVAL = 10.0
KUMO_GLOB = "/opt/kumomta/etc/**/*.{lua,json,toml,yaml}"
_FLAGS = glob.GLOBSTAR | glob.BRACE | glob.NODIR

Fingerprint = dict[str, tuple[int, int]]


class ConfigEpoch:
    """The epoch of one process; listeners (weakly held bound methods) hear each bump."""

    def __init__(self) -> None:
        self.value = 0
        self._listeners: list[weakref.WeakMethod[Callable[[int], None]]] = []

    def bump(self, reason: str) -> int:
        """Increment the epoch and tell the listeners; the new epoch."""
        self.value += 1
        log.info("configuration epoch bumped", epoch=self.value, reason=reason)
        alive = []
        for ref in self._listeners:
            listener = ref()
            if listener is not None:
                alive.append(ref)
                listener(self.value)
        self._listeners = alive
        return self.value

    def subscribe(self, listener: Callable[[int], None]) -> None:
        """Call the bound method `listener(epoch)` at each bump while its object lives."""
        self._listeners.append(weakref.WeakMethod(listener))


class ConfigMonitor:
    """The watched globs; `run()` polls them and bumps `epoch` on a change."""

    def __init__(self, epoch: ConfigEpoch) -> None:
        self.epoch = epoch
        self.globs: tuple[str, ...] = (KUMO_GLOB,)
        self._chosen = False

    def set_globs(self, globs: list[str]) -> None:
        """`kumo.set_config_monitor_globs`: watch these instead."""
        if not isinstance(globs, list) or not all(isinstance(g, str) and g for g in globs):
            raise ConfigError("kumo.set_config_monitor_globs: expected a list of glob strings")
        self.globs = tuple(globs)
        self._chosen = True

    def watch_policy_directory(self, policy: Path) -> None:
        """Add the policy's own directory (not its subdirectories) to the default globs,
        unless the policy chose its globs."""
        if not self._chosen:
            directory = glob.escape(str(policy.resolve().parent))
            self.globs = (KUMO_GLOB, f"{directory}/*.{{lua,json,toml,yaml}}")

    def evaluate(self) -> list[str]:
        """The files the globs match now, sorted, each once (blocking: call in a thread)."""
        return sorted(set(glob.glob(list(self.globs), flags=_FLAGS)))

    def fingerprint(self) -> Fingerprint:
        """Size and modification time of each matched file (blocking)."""
        found: Fingerprint = {}
        for name in self.evaluate():
            with contextlib.suppress(OSError):  # gone since it was listed: not in the print
                status = Path(name).stat()
                found[name] = (status.st_size, status.st_mtime_ns)
        return found

    async def run(
        self, interval: float = POLL_INTERVAL, changed: Callable[[str], None] | None = None
    ) -> None:
        """Poll until cancelled; when the fingerprint changes, call `changed(reason)` (by
        default: bump the epoch)."""
        before = await asyncio.to_thread(self.fingerprint)
        while True:
            await asyncio.sleep(interval)
            now = await asyncio.to_thread(self.fingerprint)
            if now != before:
                first = sorted(set(now.items()) ^ set(before.items()))[0][0]
                reason = f"configuration files changed: {first}"
                if changed is None:
                    self.epoch.bump(reason)
                else:
                    changed(reason)
                before = now


EPOCH = ConfigEpoch()
MONITOR = ConfigMonitor(EPOCH)
