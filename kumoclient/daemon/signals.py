"""The daemon's stop signals, which must work even while a policy handler runs."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

from kumoclient.policy.limits import request_interrupt


def install_stop_signals(stop: Callable[[], None]) -> None:
    """SIGTERM and SIGINT call `stop` on the running loop, and first interrupt the policy
    handler that may be running now: a Python signal handler runs while Lua runs, because the
    count hook calls into Python (policy/limits.py), so a runaway handler cannot hold the stop
    back (an asyncio signal handler would wait for the loop, which the handler holds)."""
    loop = asyncio.get_running_loop()

    def handler(signum: int, frame: object) -> None:
        request_interrupt()
        loop.call_soon_threadsafe(stop)

    for number in (signal.SIGTERM, signal.SIGINT):
        loop.remove_signal_handler(number)
        signal.signal(number, handler)
