"""A policy's Lua state and the driver of its handler calls.

The state is Lua 5.4 through lupa with a memory limit, no `python` global, no `debug` library
and an attribute filter that refuses every attribute access into Python objects; policy code
only sees the Lua functions of the internal chunks (lua/*.lua). Every handler call runs in a
worker coroutine (lua/dispatch.lua): `fire` gives an idle worker the job and, each time the
call waits (an `async def` kumo function, io.popen, a memoized value another handler computes),
awaits what it waits for on the event loop and resumes the worker with the result, so many
handler calls can be in flight at once. A call that never waits costs one resume of an idle
worker, about what one call into Lua cost before. Workers are resumed from Python only: lupa
cannot call into Lua from Python while a Lua thread of the state is inside a resume.

While the policy file loads (a constructor, not a coroutine of asyncio) a wait is served by
running it to its end on an event loop of its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import secrets
import time
from collections.abc import Coroutine
from importlib import resources
from pathlib import Path
from time import perf_counter
from typing import Any, NoReturn, TypeVar

from lupa import lua54

from kumoclient import logs
from kumoclient.policy import modules  # noqa: F401  (importing registers the modules)
from kumoclient.policy.api import REGISTRY, VALUES
from kumoclient.policy.events import MULTI_HANDLER_EVENTS
from kumoclient.policy.host import Host
from kumoclient.policy.limits import PolicyLimits
from kumoclient.policy.memoize import MemoRegistry
from kumoclient.policy.paths import package_path, share_dir
from kumoclient.policy.results import Fired

log = logs.get_logger(__name__)

SLOW_HANDLER_SECONDS = 0.1
MAX_IDLE_WORKERS = 64
_CHUNKS = ("waits", "loading", "dispatch", "kumo")
_LUA_FAILURES = (lua54.LuaError, UnicodeError, TypeError, ValueError)
_T = TypeVar("_T")


def _deny_attributes(obj: object, name: object, is_setting: bool) -> NoReturn:
    raise AttributeError("policy code has no access to Python objects")


def _source(name: str) -> str:
    return resources.files("kumoclient.policy").joinpath(f"lua/{name}.lua").read_text()


def run_to_end(coroutine: Coroutine[Any, Any, _T]) -> _T:
    """Run `coroutine` on an event loop of its own (in a thread when this one has a loop)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="policy-load") as pool:
        return pool.submit(asyncio.run, coroutine).result()


class LuaVM:
    """The Lua state of one policy file (see the module's text)."""

    def __init__(self, path: Path, memo: MemoRegistry, limits: PolicyLimits) -> None:
        self.limits = limits
        self.path = path
        self.lua = lua54.LuaRuntime(
            register_eval=False,
            register_builtins=False,
            unpack_returned_tuples=True,
            attribute_filter=_deny_attributes,
            max_memory=limits.max_memory,
        )
        self.host = Host(self.lua, path, memo)
        load = self.lua.eval("load")
        self._wait = f"kumoclient-wait-{secrets.token_hex(8)}"
        settings = self.lua.table_from(
            {
                "wait_marker": self._wait,
                "share_dir": str(share_dir()),
                "package_path": package_path(path.parent, self.lua.eval("package.path")),
                "max_instructions": limits.max_instructions,
                "quantum": limits.quantum,
                "max_memory": limits.max_memory,
                "multi_events": self.lua.table_from(dict.fromkeys(MULTI_HANDLER_EVENTS, True)),
            }
        )
        sandbox = load(_source("sandbox"), "=kumoclient-sandbox", "t")
        core = sandbox(self.lua.table_from(self.host.functions()), settings)
        self.internal = core.internal
        self.host.internal = self.internal
        for name in _CHUNKS:
            load(_source(name), f"=kumoclient-{name}", "t")(core)
        functions = {
            e.name: self.lua.table_from({"source": e.source, "async": e.is_async})
            for e in REGISTRY.values()
        }
        values = {name: self.host.to_lua(value) for name, value in VALUES.items()}
        load(_source("bridge"), "=kumoclient-bridge", "t")(
            core, self.lua.table_from(functions), self.lua.table_from(values)
        )
        self._idle: list[Any] = []  # worker coroutines waiting for a job
        self._dead: Any = None  # the worker that just failed (not to be used again)

    def set_global(self, name: str, value: Any) -> None:
        """A Lua global (`_VALIDATING_CONFIG`)."""
        self.lua.globals()[name] = value

    def registered(self) -> dict[str, list[str]]:
        """Event name → the file:line of each handler, in call order."""
        return {name: list(wheres.values()) for name, wheres in self.internal.registered().items()}

    # --- the driver ------------------------------------------------------------------------

    def _worker(self) -> Any:
        if self._idle:
            return self._idle.pop()
        return self.internal.new_worker()

    def _send(self, worker: Any, values: tuple[Any, ...]) -> tuple[Any, ...]:
        """Resume `worker` with `values`; what it yields (a wait or an answer). A worker that
        fails itself is dropped (its answer is an error)."""
        try:
            answer = worker.send(values)
        except (*_LUA_FAILURES, StopIteration) as exc:
            return self._died(worker, exc)
        return answer if type(answer) is tuple else (answer,)

    def _died(self, worker: Any, exc: Exception) -> tuple[Any, ...]:
        # what the Lua side could not catch: a value lupa cannot convert (text that is not
        # UTF-8), memory exhausted outside a handler, an error while handling an error; the
        # worker is dead
        if isinstance(exc, lua54.LuaMemoryError):
            self.lua.execute("collectgarbage()")
        self._dead = worker
        reason = "its coroutine ended" if isinstance(exc, StopIteration) else str(exc)
        return ("error", None, f"policy handler failed: {reason}", None)

    async def fire(self, event: str, *args: Any) -> Fired:
        """Call the handler(s) of `event`; the outcome, never an exception (but cancellation).
        A call that does not wait costs one resume of an idle worker."""
        started = perf_counter()
        idle = self._idle
        worker = idle.pop() if idle else self.internal.new_worker()
        try:
            answer = worker.send(("fire", event, *args))
        except (*_LUA_FAILURES, StopIteration) as exc:
            answer = self._died(worker, exc)
        if type(answer) is not tuple:
            answer = (answer,)
        elif answer[0] == self._wait:
            return await self._drive(worker, answer, event, started)
        elapsed = perf_counter() - started
        if elapsed < SLOW_HANDLER_SECONDS and answer[0] == "ok" and len(idle) < MAX_IDLE_WORKERS:
            idle.append(worker)  # the common case, kept short: the rewrite hook's
            return Fired(*answer)
        return self._finish(worker, answer, event, elapsed)

    async def fire_task(self, event: str, *args: Any) -> Fired:
        """As `fire`, for a spawned task (its limit counts between two waits)."""
        started = time.perf_counter()
        worker = self._worker()
        answer = self._send(worker, ("task", event, *args))
        return await self._drive(worker, answer, event, started)

    async def _drive(
        self, worker: Any, answer: tuple[Any, ...], event: str, started: float
    ) -> Fired:
        busy = 0.0  # time spent in Lua, not waiting
        while answer[0] == self._wait:
            busy += time.perf_counter() - started
            try:
                result = await self.host.serve(*answer[1:])
            except BaseException:  # cancelled: the worker will never be resumed
                self.internal.abandon(worker)
                raise
            started = time.perf_counter()
            answer = self._send(worker, result)
        return self._finish(worker, answer, event, busy + time.perf_counter() - started)

    def load(self, path: str) -> Fired:
        """Run the policy file (blocking: its waits run to their end here)."""
        started = time.perf_counter()
        worker = self._worker()
        answer = self._send(worker, ("policy", path))
        while answer[0] == self._wait:
            result = run_to_end(self.host.serve(*answer[1:]))
            answer = self._send(worker, result)
        return self._finish(worker, answer, "(policy load)", time.perf_counter() - started)

    def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Run a firing to its end outside an event loop (the daemon's `init`, before it
        starts its loop; the `policy` commands)."""
        return run_to_end(coroutine)

    def _finish(self, worker: Any, answer: tuple[Any, ...], event: str, elapsed: float) -> Fired:
        fired = Fired(*answer)
        if self._dead is worker:
            self._dead = None
        elif len(self._idle) < MAX_IDLE_WORKERS:
            self._idle.append(worker)  # waiting for its next job
        if elapsed > SLOW_HANDLER_SECONDS:
            log.warning(
                "slow policy handler",
                policy_event=event,
                seconds=round(elapsed, 3),
                policy_location=fired.where,
                policy=str(self.path),
            )
        if fired.status == "error" and self.lua.get_memory_used() > self.limits.max_memory // 2:
            self.lua.execute("collectgarbage()")  # an aborted handler's garbage
        return fired
