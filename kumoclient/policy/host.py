"""The Python side of the `kumo` module: the callables the Lua chunks wrap, and the waits the
Lua driver hands to Python (`serve`).

Each host function answers `(True, value...)` or `(False, message)` and never raises into Lua,
so Lua code only ever sees plain Lua errors. Values cross with `convert`; Python objects that
Lua may hold (regex maps, typed configs, api.LuaObject) cross as Lua stand-ins made by the Lua
chunks.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from lupa import lua54

from kumoclient import logs
from kumoclient.errors import ConfigError, KumoClientError
from kumoclient.policy import config, limits
from kumoclient.policy.api import REGISTRY, KumoFunction, LuaObject, Values, fit_arguments
from kumoclient.policy.convert import ConversionError, to_lua, to_python
from kumoclient.policy.event_host import EventHost
from kumoclient.policy.memo_host import MemoHost
from kumoclient.policy.memoize import MemoRegistry
from kumoclient.policy.paths import share_path
from kumoclient.policy.popen import read_command
from kumoclient.policy.regex_map import RegexSetMap

log = logs.get_logger(__name__)
lua_log = logs.get_logger("lua")  # kumo.log_*: the target `lua`, as in KumoMTA

Answer = tuple[Any, ...]

_PATH_FIELDS = ("path", "log_dir", "tls_certificate", "tls_private_key", "tls_required_client_ca")
_MAX_PROXIES = 256
_HOOKS = (
    "index",
    "newindex",
    "len",
    "tostring",
    "call",
    "pairs",
    "eq",
    "add",
    "radd",
    "sub",
    "rsub",
    "close",
)


def _failure(exc: BaseException, name: str) -> tuple[bool, str]:
    if isinstance(exc, KumoClientError | ValueError | OSError):
        return False, str(exc)
    if isinstance(exc, lua54.LuaMemoryError):
        return False, "not enough memory"
    log.error("internal error in a kumo function", function=name, exc_info=exc)
    return False, f"internal error: {type(exc).__name__}: {exc}"


def answers(fn: Callable[..., Answer]) -> Callable[..., Answer]:
    """Turn exceptions into `(False, message)`; unexpected ones are logged with a traceback."""

    def inner(*args: Any) -> Answer:
        try:
            return fn(*args)
        except Exception as exc:  # a bug of ours must not surface as a Python object in Lua
            return _failure(exc, fn.__name__)

    inner.__name__ = fn.__name__
    return inner


class MapLookup:
    """The callable behind a regex_set_map's `__index`; `target` is the map."""

    __slots__ = ("_to_lua", "target")

    def __init__(self, target: RegexSetMap, to_lua_value: Callable[[Any], Any]) -> None:
        self.target = target
        self._to_lua = to_lua_value

    def __call__(self, subject: object) -> Any:
        if isinstance(subject, int | float) and not isinstance(subject, bool):
            subject = str(subject)
        if not isinstance(subject, str):
            return None
        return self._to_lua(self.target.lookup(subject))


def _waits(kind: type[LuaObject]) -> dict[str, bool]:
    """The methods and hooks of a LuaObject class that are `async def` (Lua waits for them)."""
    names = [*kind.lua_methods, *(f"lua_{hook}" for hook in _HOOKS)]
    return {name: True for name in names if inspect.iscoroutinefunction(getattr(kind, name))}


class Host:
    """State and functions the Lua side calls; one per policy runtime."""

    def __init__(self, lua: Any, policy_path: Path, memo: MemoRegistry) -> None:
        self._lua = lua
        self._policy_dir = policy_path.parent
        self._proxies: dict[int, tuple[object, Any]] = {}
        self._classes: dict[type[LuaObject], tuple[Any, Any]] = {}  # method and wait sets
        self.internal: Any = None  # the Lua chunks' `internal` table, set by the runtime
        self.configured: list[tuple[str, object]] = []
        self.memo = MemoHost(memo, self.to_python, self.to_lua)
        self.events = EventHost(self.to_python, self.to_lua)

    def functions(self) -> dict[str, Callable[..., Any]]:
        """The table handed to the Lua chunks as `host`."""
        return {
            "memoize_new": answers(self.memo.memoize_new),
            "memo_get": self.memo.memo_get,
            "memo_put": answers(self.memo.memo_put),
            "memo_put_error": self.memo.memo_put_error,
            "memo_abandon": self.memo.memo_abandon,
            "memo_retries": self.memo.memo_retries,
            "regex_set_map_new": answers(self.regex_set_map_new),
            "make_config": answers(self.make_config),
            "configure": answers(self.configure),
            "log": self.log,
            "module_call": answers(self.module_call),
            "object_method": answers(self.object_method),
            "object_hook": answers(self.object_hook),
            "interrupted": limits.interrupted,
            "validation_failed": self.events.note_validation_failed,
            "spawn_task": answers(self.events.spawn_task),
            "invoke_arguments": answers(self.events.invoke_arguments),
            "invoke_result": answers(self.events.invoke_result),
        }

    # --- conversion ------------------------------------------------------------------

    def to_python(self, value: Any) -> Any:
        """A Lua value as Python data."""
        return to_python(value, self.internal.opaque_of)

    def to_lua(self, value: Any) -> Any:
        """Python data as a Lua value; maps, configs and LuaObjects become their stand-ins."""
        if value is None or type(value) in (str, int, float, bool, bytes):
            return value
        cached = self._proxies.get(id(value))  # a memoized map or object: its stand-in
        if cached is not None and cached[0] is value:
            return cached[1]
        return to_lua(self._lua, value, self._stand_in)

    def _stand_in(self, value: object) -> Any:
        cached = self._proxies.get(id(value))
        if cached is not None and cached[0] is value:
            return cached[1]
        if isinstance(value, LuaObject):
            methods, waits = self._object_class(type(value))
            proxy = self.internal.make_object(value, value.lua_name, methods, waits)
            if not value.lua_cached:
                return proxy
        elif isinstance(value, RegexSetMap):
            proxy = self.internal.make_map_proxy(MapLookup(value, self.to_lua))
        elif type(value).__module__ == "kumoclient.records":
            proxy = self.internal.make_config_proxy(type(value).__name__, value, self._lua.table())
        else:
            raise ConversionError(f"cannot hand a {type(value).__name__} to Lua")
        if len(self._proxies) >= _MAX_PROXIES:
            self._proxies.clear()
        self._proxies[id(value)] = (value, proxy)
        return proxy

    def _object_class(self, kind: type[LuaObject]) -> tuple[Any, Any]:
        """The Lua set of a LuaObject class's method names and of its `async def` methods and
        hooks, made once per class."""
        found = self._classes.get(kind)
        if found is None:
            methods = self._lua.table_from(dict.fromkeys(kind.lua_methods, True))
            found = self._classes[kind] = (methods, self._lua.table_from(_waits(kind)))
        return found

    # --- regex_set_map ----------------------------------------------------------

    def regex_set_map_new(self, rules: Any) -> Answer:
        table = self.to_python(rules)
        if table == []:
            table = {}
        if not isinstance(table, dict):
            raise ConfigError("kumo.regex_set_map.new: expected a table of pattern = value")
        return True, MapLookup(RegexSetMap(table), self.to_lua)

    def resolve(self, path: str, source: str | None) -> Path:
        """A path given to a kumo function, relative to the calling policy file's directory
        (a missing file under /opt/kumomta/share/ is read from the bundled share)."""
        candidate = Path(path)
        if candidate.is_absolute():
            return share_path(candidate)
        base = self._policy_dir
        if source and source.startswith("@"):
            base = Path(source[1:]).resolve().parent
        return base / candidate

    # --- configuration -------------------------------------------------------------------

    def make_config(self, kind: str, params: Any, source: str | None) -> Answer:
        return True, self._record(kind, params, source)

    def configure(self, kind: str, params: Any, source: str | None) -> Answer:
        self.configured.append((kind, self._record(kind, params, source)))
        return True, None

    def _record(self, kind: str, params: Any, source: str | None) -> object:
        record = config.MAKERS[kind](self.to_python(params))
        changes = {
            name: str(self.resolve(value, source))
            for name in _PATH_FIELDS
            if isinstance(value := getattr(record, name, None), str)
        }
        if changes:
            record = replace(record, **changes)  # type: ignore[type-var]
        return record

    # --- modules written in Python (policy.api) ---------------------------------------------

    def module_call(self, name: str, source: str | None, *args: Any) -> Answer:
        entry = REGISTRY[name]
        return self._results(entry.fn(*self._arguments(entry, source, args)))

    def _arguments(self, entry: KumoFunction, source: str | None, args: Sequence[Any]) -> list[Any]:
        """The Python arguments of a module function: converted, the calling file's directory
        first when it wants it, fitted to its parameters as Lua calls are."""
        values = [self.to_python(arg) for arg in args]
        if entry.source:
            values.insert(0, str(self.resolve(".", source)))  # the calling file's directory
        return fit_arguments(entry.fn, values)

    def _method_arguments(self, target: LuaObject, method: str, args: Sequence[Any]) -> list[Any]:
        values = [self.to_python(a) for a in args]
        return fit_arguments(getattr(type(target), method), values, skip=1)

    def object_method(self, target: LuaObject, method: str, *args: Any) -> Answer:
        return self._results(getattr(target, method)(*self._method_arguments(target, method, args)))

    def object_hook(self, target: LuaObject, hook: str, *args: Any) -> Answer:
        values = [self.to_python(arg) for arg in args]
        if hook == "pairs":
            return True, self._pairs(target.lua_pairs())
        return self._results(getattr(target, f"lua_{hook}")(*values))

    def _pairs(self, pairs: Any) -> Any:
        return self._lua.table_from(
            [self._lua.table_from([self.to_lua(k), self.to_lua(v)]) for k, v in pairs]
        )

    def _results(self, result: Any) -> Answer:
        if isinstance(result, Values):
            return (True, *(self.to_lua(value) for value in result))
        return True, self.to_lua(result)

    def log(self, level: str, where: str, message: str) -> None:
        lua_log.log(logs.level_number(level), message, policy_location=where)

    # --- waits: what the Lua driver hands to Python ------------------------------------------

    async def serve(self, kind: str, *args: Any) -> Answer:
        """Serve one wait of a handler: `(True, results...)` or `(False, message)`."""
        try:
            return await self._serve(kind, *args)
        except Exception as exc:
            return _failure(exc, kind)

    async def _serve(self, kind: str, *args: Any) -> Answer:
        if kind == "call":
            name, source, *rest = args
            entry = REGISTRY[name]
            return self._results(await entry.fn(*self._arguments(entry, source, rest)))
        if kind == "method":
            target, method, *rest = args
            call: Callable[..., Awaitable[Any]] = getattr(target, method)
            return self._results(await call(*self._method_arguments(target, method, rest)))
        if kind == "hook":
            target, hook, *rest = args
            result = await getattr(target, f"lua_{hook}")(*(self.to_python(a) for a in rest))
            return (True, self._pairs(result)) if hook == "pairs" else self._results(result)
        if kind == "memo_wait":
            return await self.memo.memo_wait(*args)
        if kind == "popen":
            output, how, code = await read_command(args[0])
            return True, output, how, code
        raise ConfigError(f"unknown wait {kind!r}")
