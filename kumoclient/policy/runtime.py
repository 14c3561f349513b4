"""The policy runtime: load a policy file, fire its events, convert the results.

A runtime is built whole from a file; reloading is building a new one (see `PolicyHolder`), so
a failed reload leaves the old one in place. The events are fired with `await`: a handler may
wait (for DNS, HTTP, a sleep) while the daemon goes on, and many handlers may be in flight.
Each handler call is limited (`PolicyLimits`): a call over its instruction or memory limit is
aborted with an error naming the policy's file:line, and the event's failure rule applies.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from lupa import lua54

from kumoclient import logs
from kumoclient.configs import (
    AccountingConfig,
    EgressPathConfig,
    EsmtpListenerConfig,
    HttpInjectLimit,
    HttpListenerConfig,
    InitConfig,
    LocalLogsConfig,
    QueueConfig,
    RedisThrottleConfig,
    ResolverConfig,
    SpoolConfig,
)
from kumoclient.core.disposition import HookAnswer, rewrite
from kumoclient.core.reply import LITERAL_CRLF, single_line
from kumoclient.errors import ConfigError, PolicyError, PolicyLoadError, PolicyReject
from kumoclient.policy.epoch import EPOCH, ConfigEpoch
from kumoclient.policy.limits import PolicyLimits
from kumoclient.policy.memoize import GLOBAL_REGISTRY, MemoRegistry
from kumoclient.policy.message import MessageView
from kumoclient.policy.results import Fired, auth_info, describe, location, status_code
from kumoclient.policy.tasks import PolicyTasks, Spawn, TaskRequest
from kumoclient.policy.vm import LuaVM
from kumoclient.records import AuthInfo, QueueName, Reply, RewriteOutcome

log = logs.get_logger(__name__)

_C = TypeVar("_C", QueueConfig, EgressPathConfig)
_T = TypeVar("_T")

REWRITE_EVENT = "smtp_client_rewrite_delivery_status"


class PolicyRuntime:
    """One loaded policy file. `validating`: `policy check` / `run --validate` (the Lua global
    `_VALIDATING_CONFIG` is true and `kumo.spawn_task` does nothing)."""

    def __init__(
        self,
        path: str | Path,
        *,
        memo: MemoRegistry = GLOBAL_REGISTRY,
        limits: PolicyLimits | None = None,
        validating: bool = False,
        tasks: PolicyTasks | None = None,
    ) -> None:
        self.display_path = str(path)
        self.path = Path(path).resolve()
        if not self.path.is_file():
            raise PolicyLoadError(f"{self.display_path}: cannot read policy file: no such file")
        self.vm = LuaVM(self.path, memo, limits or PolicyLimits.from_environment())
        self.host = self.vm.host
        self._lua = self.vm.lua
        self.tasks = tasks if tasks is not None else PolicyTasks()
        self.host.events.validating = validating
        self.host.events.spawn = self._spawn
        if validating:
            self.vm.set_global("_VALIDATING_CONFIG", True)
        fired = self.vm.load(self.display_path)
        if fired.failed:
            message = str(fired.value)
            if fired.status == "reject":
                message = f"{self.display_path}: kumo.reject called while loading the policy"
            raise PolicyLoadError(message, location=location(message), traceback=fired.detail)
        self._handlers = self.vm.registered()
        self.handled = frozenset(self._handlers)  # every event with a handler (fixed at load)

    # --- introspection -------------------------------------------------------------------

    def registered_events(self) -> dict[str, list[str]]:
        """Event name → the file:line of each handler, in call order."""
        return {name: list(wheres) for name, wheres in self._handlers.items()}

    def has_handler(self, event: str) -> bool:
        """True when the policy registered a handler for `event`."""
        return event in self._handlers

    @property
    def validation_failed(self) -> bool:
        """True once a handler called `kumo.validation_failed()`."""
        return self.host.events.validation_failed

    # --- firing --------------------------------------------------------------------------

    async def fire(self, event: str, *args: Any) -> Fired:
        """Call the handler(s) of `event` with `args` (Python data, converted for Lua)."""
        return await self.vm.fire(event, *(self.host.to_lua(a) for a in args))

    def run(self, coroutine: Coroutine[Any, Any, _T]) -> _T:
        """Run a firing to its end without an event loop (the daemon before it starts one,
        the `policy` commands)."""
        return self.vm.run(coroutine)

    def raise_failure(self, event: str, fired: Fired) -> NoReturn:
        """PolicyReject for a handler's kumo.reject / kumo.disconnect, else PolicyError."""
        self._raise_failure(event, fired)

    def _raise_failure(self, event: str, fired: Fired) -> NoReturn:
        if fired.status == "reject":
            text = " ".join(str(fired.detail).split())  # one line: no CR/LF into the reply
            raise PolicyReject(int(fired.value), text, str(fired.disconnect or "If421"))
        raise failure(event, fired)

    def _spawn(self, request: TaskRequest) -> None:
        self.tasks.request(request, self._run_task)

    async def _run_task(self, event: str, args: Any) -> None:
        fired = await self.vm.fire_task(event, self.host.to_lua(args))
        if fired.failed:
            log.error(
                "policy task failed; it has ended",
                policy_event=event,
                error=str(fired.value),
                policy_location=location(fired.value) or fired.where,
            )

    # --- lifecycle events ------------------------------------------------------------------

    async def start(self) -> InitConfig:
        """`pre_init`, then `init`: what init configured (PolicyError when either fails)."""
        await self._fire_lifecycle("pre_init")
        return await self.run_init()

    async def run_init(self) -> InitConfig:
        """Fire `init` and collect what it configured (listeners, spools, logs, throttles)."""
        await self._fire_lifecycle("init")
        return _init_config([record for _, record in self.host.configured])

    async def validate_config(self) -> None:
        """Fire `validate_config`; PolicyError when it fails or calls kumo.validation_failed()."""
        await self._fire_lifecycle("validate_config")
        if self.validation_failed:
            raise PolicyError(
                f"{self.display_path}: validate_config: the policy reported that its "
                "configuration is not valid (kumo.validation_failed)"
            )

    async def _fire_lifecycle(self, event: str) -> None:
        fired = await self.vm.fire(event)
        if fired.failed:
            self._raise_failure(event, fired)

    # --- configuration events ----------------------------------------------------------------

    async def get_queue_config(self, name: QueueName) -> QueueConfig:
        """`get_queue_config(domain, tenant, campaign, routing_domain)`, or the defaults."""
        fired = await self.vm.fire(
            "get_queue_config", name.domain, name.tenant, name.campaign, name.routing_domain
        )
        return self._config_result("get_queue_config", fired, QueueConfig)

    async def get_egress_path_config(
        self, routing_domain: str, egress_source: str, site_name: str
    ) -> EgressPathConfig:
        """`get_egress_path_config(routing_domain, egress_source, site_name)`, or defaults."""
        fired = await self.vm.fire(
            "get_egress_path_config", routing_domain, egress_source, site_name
        )
        return self._config_result("get_egress_path_config", fired, EgressPathConfig)

    def _config_result(self, event: str, fired: Fired, kind: type[_C]) -> _C:
        if fired.failed:
            self._raise_failure(event, fired)
        if fired.value is None:
            return kind()
        record = self.host.internal.opaque_of(fired.value) if lua54.lua_type(fired.value) else None
        if not isinstance(record, kind):
            maker = "kumo.make_queue_config" if kind is QueueConfig else "kumo.make_egress_path"
            raise PolicyError(
                f"{fired.where}: {event} handler returned {describe(fired.value)}; "
                f"expected {maker}{{...}} or nil",
                location=fired.where,
            )
        return record

    # --- delivery and reception events ------------------------------------------------------

    async def rewrite_delivery_status(
        self, reply: Reply, queue: QueueName, line_break: str = LITERAL_CRLF
    ) -> RewriteOutcome:
        """SPEC 2.3: the hook's answer applied to the reply and classified (core.disposition)."""
        return rewrite(reply, await self.rewrite_hook(reply, queue, line_break))

    async def rewrite_hook(
        self, reply: Reply, queue: QueueName, line_break: str = LITERAL_CRLF
    ) -> HookAnswer | None:
        """Hand the one-line reply to `smtp_client_rewrite_delivery_status`; its answer, or
        None when the policy has no handler. A failing (or aborted) or garbage-returning hook
        answers with `error` set (the original reply stands) and logs one error line."""
        if REWRITE_EVENT not in self._handlers:
            return None
        response = single_line(reply, line_break)
        routing = queue.routing_domain or queue.domain
        fired = await self.vm.fire(
            REWRITE_EVENT, response, queue.domain, queue.tenant, queue.campaign, routing
        )
        problem: str | None = None
        new_code: int | None = None
        if fired.status == "ok":
            new_code, problem = status_code(fired.value)
            if problem is not None:
                problem = f"{fired.where}: handler returned {problem}"
        elif fired.status == "error":
            problem = str(fired.value)
        elif fired.status == "reject":
            call = f"kumo.reject({fired.value}, {fired.detail!r})"
            problem = f"{fired.where}: {call} is not allowed in this event"
        if problem is None:
            return HookAnswer(new_code)
        log.error(
            f"{REWRITE_EVENT} event failed: {problem}. Preserving original response",
            policy=self.display_path,
            policy_location=location(problem) or fired.where,
            response=response,
            lua_traceback=fired.detail if fired.status == "error" else None,
        )
        return HookAnswer(error=problem)

    async def message_event(self, event: str, view: MessageView, *args: Any) -> None:
        """Fire a reception event (`smtp_server_message_received`, `http_message_generated`
        and the listener's events) with the `msg` object and the event's other arguments
        (`conn_meta`, `auth_info`: Python data or LuaObjects).

        The handlers may change the view (its meta, content, envelope, schedule);
        `kumo.reject` raises PolicyReject and any other failure (an aborted handler too)
        PolicyError. After the event, `msg` is released: a policy that kept it gets an error
        when it uses it.
        """
        if event not in self._handlers:
            return
        msg = self.host.to_lua(view)
        try:
            fired = await self.vm.fire(event, msg, *(self.host.to_lua(a) for a in args))
        finally:  # a policy that kept `msg` (a global) must not keep the message alive
            self.host.internal.release_object(msg)
        if fired.failed:
            self._raise_failure(event, fired)

    async def validate_auth_basic(self, user: str, password: str) -> bool | AuthInfo:
        """`http_server_validate_auth_basic`: true, or an AuthInfo table (its identities and
        groups), admits the client; anything else, or a failure, denies it."""
        fired = await self.vm.fire("http_server_validate_auth_basic", user, password)
        if fired.failed:
            log.error(
                "http_server_validate_auth_basic event failed; denying",
                error=str(fired.value),
                policy_location=location(fired.value) or fired.where,
            )
            return False
        if fired.value is True or lua54.lua_type(fired.value) != "table":
            return fired.value is True
        try:
            return auth_info(self.host.to_python(fired.value))
        except (ValueError, ConfigError) as exc:
            log.error(
                "http_server_validate_auth_basic returned a bad AuthInfo; denying",
                error=str(exc),
                policy_location=fired.where,
            )
            return False


def failure(event: str, fired: Fired) -> PolicyError:
    """The PolicyError of a failed handler call: `<event> event failed: file:line: message`,
    located where the error arose (else at the handler's kumo.on)."""
    return PolicyError(
        f"{event} event failed: {fired.value}",
        location=location(fired.value) or fired.where,
        traceback=fired.detail,
    )


def _init_config(found: list[object]) -> InitConfig:
    logs_configs = [r for r in found if isinstance(r, LocalLogsConfig)]
    resolvers = [r for r in found if isinstance(r, ResolverConfig)]
    redis_throttles = [r for r in found if isinstance(r, RedisThrottleConfig)]
    accounting = [r.path for r in found if isinstance(r, AccountingConfig)]
    inject_limits = [r.rate for r in found if isinstance(r, HttpInjectLimit)]
    return InitConfig(
        esmtp_listeners=tuple(r for r in found if isinstance(r, EsmtpListenerConfig)),
        http_listeners=tuple(r for r in found if isinstance(r, HttpListenerConfig)),
        spools=tuple(r for r in found if isinstance(r, SpoolConfig)),
        local_logs=logs_configs[-1] if logs_configs else None,
        resolver=resolvers[-1] if resolvers else None,
        redis_throttles=redis_throttles[-1] if redis_throttles else None,
        accounting_db_path=accounting[-1] if accounting else None,
        httpinject_recipient_rate=inject_limits[-1] if inject_limits else None,
    )


class PolicyHolder:
    """The active policy of a daemon; `reload` swaps in a new runtime only when it loads.

    It reloads by itself when the configuration epoch is bumped (`kumo.bump_config_epoch()`,
    a watched file changed, `refresh`), as KumoMTA builds new Lua states then. Tasks the
    policy spawns (`kumo.spawn_task`) run in the engine that `attach`es.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        memo: MemoRegistry = GLOBAL_REGISTRY,
        limits: PolicyLimits | None = None,
        epoch: ConfigEpoch = EPOCH,
    ) -> None:
        self._path = path
        self.memo = memo
        self._limits = limits
        self.tasks = PolicyTasks()
        self.current = PolicyRuntime(path, memo=memo, limits=limits, tasks=self.tasks)
        self.generation = 1
        self._epoch = epoch
        self._reload_pending = False
        epoch.subscribe(self._epoch_bumped)

    def reload(self) -> PolicyError | None:
        """Load the file again; on failure keep the old runtime and return the error."""
        self._reload_pending = True  # a bump made while the file loads needs no other reload
        try:
            runtime = PolicyRuntime(
                self._path, memo=self.memo, limits=self._limits, tasks=self.tasks
            )
        except PolicyError as exc:
            log.error(
                "policy reload failed; keeping the previous policy",
                policy=str(self._path),
                error=str(exc),
            )
            return exc
        finally:
            self._reload_pending = False
        self.current = runtime
        self.generation += 1
        log.info("policy reloaded", policy=str(self._path), generation=self.generation)
        return None

    def refresh(self, reason: str) -> None:
        """An operator's reload (SIGHUP): forget every memoized value, bump the epoch (which
        reloads the policy)."""
        self.memo.clear()
        self._epoch.bump(reason)

    def _epoch_bumped(self, epoch: int) -> None:
        if self._reload_pending:  # one reload for bumps in a row, none for the reload's own
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.reload()
            return
        self._reload_pending = True
        loop.call_soon(self.reload)  # not from inside the handler that bumped

    def attach(self, spawn: Spawn) -> None:
        """Run the policy's tasks (`kumo.spawn_task`) with `spawn` (the engine's task group)."""
        self.tasks.attach(spawn)

    async def detach(self) -> None:
        """Cancel the policy's tasks (the engine stops)."""
        await self.tasks.detach()
