"""The Python side of the event functions of `kumo`: `validation_failed`, `spawn_task` and the
`invoke_*` functions (lua/dispatch.lua and lua/kumo.lua call these through the host)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from kumoclient.configs import EgressPathConfig, QueueConfig
from kumoclient.core.queue_name import parse_queue_name
from kumoclient.errors import ConfigError
from kumoclient.policy import config
from kumoclient.policy.tasks import TaskRequest

Answer = tuple[Any, ...]

_UNSPECIFIED = "unspecified"


class EventHost:
    """The event functions of one policy runtime; `validating` and `spawn` are set by it."""

    def __init__(self, to_python: Callable[[Any], Any], to_lua: Callable[[Any], Any]) -> None:
        self._to_python = to_python
        self._to_lua = to_lua
        self.validating = False
        self.validation_failed = False
        self.spawn: Callable[[TaskRequest], None] | None = None

    def note_validation_failed(self) -> None:
        """`kumo.validation_failed()`."""
        self.validation_failed = True

    def spawn_task(self, params: Any) -> Answer:
        """`kumo.spawn_task{event_name=, args=}` (ignored while validating)."""
        table = self._to_python(params)
        if not isinstance(table, dict) or set(table) - {"event_name", "args"}:
            raise ConfigError("kumo.spawn_task: expected a table {event_name=, args={...}}")
        name, args = table.get("event_name"), table.get("args", [])
        if not isinstance(name, str) or not name:
            raise ConfigError("kumo.spawn_task: event_name must be a non-empty string")
        if args == {}:
            args = []
        if not isinstance(args, list):
            raise ConfigError("kumo.spawn_task: args must be a list (a sequence table)")
        if not self.validating and self.spawn is not None:
            self.spawn(TaskRequest(name, json.loads(json.dumps(args))))
        return True, None

    def invoke_arguments(self, event: str, *args: Any) -> Answer:
        """The event arguments of `kumo.invoke_<event>(...)`."""
        values = [self._to_python(a) for a in args]
        if event == "get_queue_config":
            if len(values) != 1 or not isinstance(values[0], str):
                raise ConfigError("kumo.invoke_get_queue_config: expected a queue name")
            queue = parse_queue_name(values[0])
            return True, queue.domain, queue.tenant, queue.campaign, queue.routing_domain
        if event == "get_egress_path_config":
            if len(values) != 3 or not all(isinstance(v, str) for v in values):
                raise ConfigError(
                    "kumo.invoke_get_egress_path_config: expected routing_domain, "
                    "egress_source and site_name (strings)"
                )
            return (True, *values)
        name = values[0] if values else None
        if name is None:
            name = _UNSPECIFIED
        if not isinstance(name, str):
            raise ConfigError(f"kumo.invoke_{event}: expected a name, got {name!r}")
        return True, name

    def invoke_result(self, event: str, value: Any, first: Any) -> Answer:
        """What `kumo.invoke_<event>` returns: the params table of the event's result."""
        data = self._to_python(value) if value is not None else None
        if event in ("get_queue_config", "get_egress_path_config"):
            kind = QueueConfig if event == "get_queue_config" else EgressPathConfig
            if data is None:
                data = kind()
            if not isinstance(data, kind):
                raise ConfigError(f"{event} returned {type(data).__name__}, not its config")
            return True, self._to_lua(config.params_of(data))
        if data is None and first == _UNSPECIFIED:
            data = {"name": _UNSPECIFIED}
            if event == "get_egress_pool":
                data["entries"] = [{"name": _UNSPECIFIED}]
        if data is None:
            raise ConfigError(f"{event} did not return a value for {first!r}")
        return True, self._to_lua(data)
