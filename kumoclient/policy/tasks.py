"""`kumo.spawn_task{event_name=, args=}`: background tasks that fire a policy event.

A request made before an engine runs (usually in `init`) waits until one attaches; afterwards
each request starts at once, as a task of the engine's task group. The task fires the event
with one argument, the `args` list, and ends when the handler returns; an error is logged
(with the policy's `file:line`) and ends the task, as in KumoMTA. The instruction limit of a
task counts the instructions between two waits (a task that loops around `kumo.sleep` runs for
ever). When validating (`policy check`, `run --validate`) requests are ignored. Stopping the
engine cancels the tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from kumoclient import logs

log = logs.get_logger(__name__)

Spawn = Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]]
Run = Callable[[str, Any], Awaitable[None]]  # fires the event, logs its failure


@dataclass(frozen=True, slots=True)
class TaskRequest:
    """One `kumo.spawn_task` call."""

    event_name: str
    args: list[Any]


class PolicyTasks:
    """The spawned tasks of a daemon: requests waiting for an engine, tasks running."""

    def __init__(self) -> None:
        self._waiting: list[tuple[TaskRequest, Run]] = []
        self._spawn: Spawn | None = None
        self._running: set[asyncio.Task[None]] = set()

    def request(self, request: TaskRequest, run: Run) -> None:
        """Start `run(event_name, args)` now, or when an engine attaches."""
        if self._spawn is None:
            self._waiting.append((request, run))
            return
        task = self._spawn(self._guarded(request, run), f"policy task {request.event_name}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    def attach(self, spawn: Spawn) -> None:
        """An engine runs: start the waiting requests, and later ones at once."""
        self._spawn = spawn
        waiting, self._waiting = self._waiting, []
        for request, run in waiting:
            self.request(request, run)

    async def detach(self) -> None:
        """The engine stops: cancel the tasks and wait for them to end."""
        self._spawn = None
        running = list(self._running)
        for task in running:
            task.cancel()
        for task in running:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _guarded(self, request: TaskRequest, run: Run) -> None:
        try:
            await run(request.event_name, request.args)
        except asyncio.CancelledError:
            raise
        except Exception:  # a task must never take the engine's task group down
            log.exception("policy task failed", policy_event=request.event_name)
