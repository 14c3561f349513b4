"""The sandboxed Lua policy runtime: load a policy file, fire its events, convert the results.

The runtime is Lua 5.4 through lupa with no `python` global, no `debug` library and an
attribute filter that refuses every attribute access into Python objects; policy code only
sees the Lua functions of bootstrap.lua. A runtime is built whole from a file; reloading is
building a new one (see `PolicyHolder`), so a failed reload leaves the old one in place.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from lupa import lua54

from kumoclient import logs
from kumoclient.core.disposition import HookAnswer, rewrite
from kumoclient.core.reply import LITERAL_CRLF, single_line
from kumoclient.errors import PolicyError, PolicyLoadError, PolicyReject
from kumoclient.policy import modules  # noqa: F401  (importing registers the modules)
from kumoclient.policy.api import REGISTRY, VALUES
from kumoclient.policy.events import EVENTS, Result
from kumoclient.policy.host import Host, answers
from kumoclient.policy.memoize import GLOBAL_REGISTRY, MemoRegistry
from kumoclient.policy.message import MessageView
from kumoclient.records import (
    EgressPathConfig,
    EsmtpListenerConfig,
    HttpListenerConfig,
    InitConfig,
    LocalLogsConfig,
    QueueConfig,
    QueueName,
    RedisThrottleConfig,
    Reply,
    ResolverConfig,
    RewriteOutcome,
    SpoolConfig,
)

log = logs.get_logger(__name__)

_C = TypeVar("_C", QueueConfig, EgressPathConfig)

REWRITE_EVENT = "smtp_client_rewrite_delivery_status"
SLOW_HANDLER_SECONDS = 0.1
_MAX_CODE = 65535


def _deny_attributes(obj: object, name: object, is_setting: bool) -> NoReturn:
    raise AttributeError("policy code has no access to Python objects")


@dataclass(frozen=True, slots=True)
class _Fired:
    status: str  # 'none', 'ok', 'error', 'reject'
    value: Any = None
    detail: Any = None
    where: str | None = None


class PolicyRuntime:
    """One loaded policy file."""

    def __init__(self, path: str | Path, *, memo: MemoRegistry = GLOBAL_REGISTRY) -> None:
        self.display_path = str(path)
        self.path = Path(path).resolve()
        if not self.path.is_file():
            raise PolicyLoadError(f"{self.display_path}: cannot read policy file: no such file")
        self._lua = lua54.LuaRuntime(
            register_eval=False,
            register_builtins=False,
            unpack_returned_tuples=True,
            attribute_filter=_deny_attributes,
        )
        self.host = Host(self._lua, self.path, memo)
        kinds = self._lua.table_from({e.name: e.handlers.value for e in EVENTS.values()})
        source = resources.files("kumoclient.policy").joinpath("bootstrap.lua").read_text()
        chunk = self._lua.eval("load")(source, "=kumoclient-bootstrap", "t")
        functions = self._lua.table_from({e.name: e.source for e in REGISTRY.values()})
        values = self._lua.table_from({k: self.host.to_lua(v) for k, v in VALUES.items()})
        self._internal = chunk(
            self._lua.table_from(self.host.functions()), kinds, functions, values
        )
        self.host.internal = self._internal
        self._fire_first = self._internal.fire_first
        self._fire_all = self._internal.fire_all
        ok, message, traceback = self._internal.load_policy(self.display_path)
        if not ok:
            raise PolicyLoadError(str(message), location=_location(message), traceback=traceback)
        self._internal.finish_loading()
        self._handlers: dict[str, list[str]] = {
            name: list(wheres.values()) for name, wheres in self._internal.registered().items()
        }

    # --- introspection -------------------------------------------------------------------

    def registered_events(self) -> dict[str, list[str]]:
        """Event name → the file:line of each handler, in call order."""
        return {name: list(wheres) for name, wheres in self._handlers.items()}

    def has_handler(self, event: str) -> bool:
        """True when the policy registered a handler for `event`."""
        return event in self._handlers

    # --- firing --------------------------------------------------------------------------

    def _fire(self, event: str, *args: Any) -> _Fired:
        fire = self._fire_all if EVENTS[event].result is Result.NOTHING else self._fire_first
        started = time.perf_counter()
        try:
            answer = fire(event, *args)
        except (lua54.LuaError, UnicodeError, TypeError, ValueError) as exc:
            # what the Lua side could not catch: a value lupa cannot convert (text that is not
            # UTF-8), an error raised while handling an error
            answer = ("error", f"{event} handler failed: {exc}", None, None)
        elapsed = time.perf_counter() - started
        if not isinstance(answer, tuple):
            answer = (answer,)
        fired = _Fired(*answer)
        if elapsed > SLOW_HANDLER_SECONDS:
            log.warning(
                "slow policy handler",
                policy_event=event,
                seconds=round(elapsed, 3),
                policy_location=fired.where,
                policy=self.display_path,
            )
        return fired

    def _raise_failure(self, event: str, fired: _Fired) -> NoReturn:
        if fired.status == "reject":
            text = " ".join(str(fired.detail).split())  # one line: no CR/LF into the reply
            raise PolicyReject(int(fired.value), text)
        raise PolicyError(
            f"{event} event failed: {fired.value}",
            location=_location(fired.value) or fired.where,
            traceback=fired.detail,
        )

    def run_init(self) -> InitConfig:
        """Fire `init` and collect what it configured (listeners, spools, logs, throttles)."""
        fired = self._fire("init")
        if fired.status not in ("ok", "none"):
            self._raise_failure("init", fired)
        found = [record for _, record in self.host.configured]
        logs_configs = [r for r in found if isinstance(r, LocalLogsConfig)]
        resolvers = [r for r in found if isinstance(r, ResolverConfig)]
        redis_throttles = [r for r in found if isinstance(r, RedisThrottleConfig)]
        return InitConfig(
            esmtp_listeners=tuple(r for r in found if isinstance(r, EsmtpListenerConfig)),
            http_listeners=tuple(r for r in found if isinstance(r, HttpListenerConfig)),
            spools=tuple(r for r in found if isinstance(r, SpoolConfig)),
            local_logs=logs_configs[-1] if logs_configs else None,
            resolver=resolvers[-1] if resolvers else None,
            redis_throttles=redis_throttles[-1] if redis_throttles else None,
        )

    def get_queue_config(self, name: QueueName) -> QueueConfig:
        """`get_queue_config(domain, tenant, campaign, routing_domain)`, or the defaults."""
        fired = self._fire(
            "get_queue_config", name.domain, name.tenant, name.campaign, name.routing_domain
        )
        return self._config_result("get_queue_config", fired, QueueConfig)

    def get_egress_path_config(
        self, routing_domain: str, egress_source: str, site_name: str
    ) -> EgressPathConfig:
        """`get_egress_path_config(routing_domain, egress_source, site_name)`, or defaults."""
        fired = self._fire("get_egress_path_config", routing_domain, egress_source, site_name)
        return self._config_result("get_egress_path_config", fired, EgressPathConfig)

    def _config_result(self, event: str, fired: _Fired, kind: type[_C]) -> _C:
        if fired.status in ("error", "reject"):
            self._raise_failure(event, fired)
        if fired.value is None:
            return kind()
        record = self._internal.opaque_of(fired.value) if lua54.lua_type(fired.value) else None
        if not isinstance(record, kind):
            maker = "kumo.make_queue_config" if kind is QueueConfig else "kumo.make_egress_path"
            raise PolicyError(
                f"{event} handler returned {_describe(fired.value)}; "
                f"expected {maker}{{...}} or nil",
                location=fired.where,
            )
        return record

    def rewrite_delivery_status(
        self, reply: Reply, queue: QueueName, line_break: str = LITERAL_CRLF
    ) -> RewriteOutcome:
        """SPEC 2.3: the hook's answer applied to the reply and classified (core.disposition)."""
        return rewrite(reply, self.rewrite_hook(reply, queue, line_break))

    def rewrite_hook(
        self, reply: Reply, queue: QueueName, line_break: str = LITERAL_CRLF
    ) -> HookAnswer | None:
        """Hand the one-line reply to `smtp_client_rewrite_delivery_status`; its answer, or
        None when the policy has no handler. A failing or garbage-returning hook answers
        with `error` set (the original reply stands) and logs one error line."""
        if REWRITE_EVENT not in self._handlers:
            return None
        response = single_line(reply, line_break)
        routing = queue.routing_domain or queue.domain
        fired = self._fire(
            REWRITE_EVENT, response, queue.domain, queue.tenant, queue.campaign, routing
        )
        problem: str | None = None
        new_code: int | None = None
        if fired.status == "ok":
            new_code, problem = _status_code(fired.value)
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
            policy_location=_location(problem) or fired.where,
            response=response,
            lua_traceback=fired.detail if fired.status == "error" else None,
        )
        return HookAnswer(error=problem)

    def message_event(self, event: str, view: MessageView) -> None:
        """Fire a reception event (`smtp_server_message_received`, `http_message_generated`).

        The handlers may change `view.meta` and `view.content`; `kumo.reject` raises
        PolicyReject and any other failure PolicyError.
        """
        if event not in self._handlers:
            return
        methods = {
            name: answers(_succeeding(fn))
            for name, fn in view.lua_methods(self.host.to_python).items()
        }
        msg = self._internal.make_msg(self._lua.table_from(methods))
        fired = self._fire(event, msg)
        if fired.status in ("error", "reject"):
            self._raise_failure(event, fired)

    def validate_auth_basic(self, user: str, password: str) -> bool:
        """`http_server_validate_auth_basic`: only a true result admits the client."""
        fired = self._fire("http_server_validate_auth_basic", user, password)
        if fired.status in ("error", "reject"):
            log.error(
                "http_server_validate_auth_basic event failed; denying",
                error=str(fired.value),
                policy_location=fired.where,
            )
            return False
        return fired.value is True


def _succeeding(fn: Callable[..., Any]) -> Callable[..., tuple[bool, Any]]:
    def call(*args: Any) -> tuple[bool, Any]:
        return True, fn(*args)

    return call


def _status_code(value: Any) -> tuple[int | None, str | None]:
    """The code a rewrite handler returned, or None and a description of the problem."""
    if value is None:
        return None, None
    if isinstance(value, bool) or lua54.lua_type(value) is not None:
        return None, f"{_describe(value)}; expected a status code or nil"
    number: float | int | None = None
    if isinstance(value, int | float):
        number = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            number = int(text)
        except ValueError:
            try:
                number = float(text)
            except ValueError:
                return None, f"the string {value!r}; expected a status code or nil"
    if number is None:
        return None, f"{_describe(value)}; expected a status code or nil"
    if isinstance(number, float) and not number.is_integer():
        return None, f"{number!r}, which is not a whole number"
    if not 0 <= number <= _MAX_CODE:
        return None, f"{number!r}, which is out of range for a status code"
    return int(number), None


def _describe(value: Any) -> str:
    kind = lua54.lua_type(value)
    if kind is not None:
        return f"a {kind}"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    return repr(value)


def _location(message: object) -> str | None:
    """`file:line` from the front of a Lua error message, when it has one."""
    if not isinstance(message, str):
        return None
    head = message.split(": ", 1)[0]
    path, _, line = head.rpartition(":")
    return head if path and line.isdigit() else None


class PolicyHolder:
    """The active policy of a daemon; `reload` swaps in a new runtime only when it loads."""

    def __init__(self, path: str | Path, *, memo: MemoRegistry = GLOBAL_REGISTRY) -> None:
        self._path = path
        self._memo = memo
        self.current = PolicyRuntime(path, memo=memo)
        self.generation = 1

    def reload(self) -> PolicyError | None:
        """Load the file again; on failure keep the old runtime and return the error."""
        try:
            runtime = PolicyRuntime(self._path, memo=self._memo)
        except PolicyError as exc:
            log.error(
                "policy reload failed; keeping the previous policy",
                policy=str(self._path),
                error=str(exc),
            )
            return exc
        self.current = runtime
        self.generation += 1
        log.info("policy reloaded", policy=str(self._path), generation=self.generation)
        return None
