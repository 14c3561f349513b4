"""The Python side of the `kumo` module: the callables bootstrap.lua wraps.

Each host function answers `(True, value)` or `(False, message)` and never raises into Lua,
so Lua code only ever sees plain Lua errors. Values cross with `convert`; Python objects that
Lua may hold (regex maps, typed configs) cross as Lua stand-ins made by bootstrap.lua.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from kumoclient import logs
from kumoclient.core.duration import parse_duration
from kumoclient.errors import ConfigError, KumoClientError
from kumoclient.policy import config
from kumoclient.policy.api import REGISTRY, LuaObject, Values, fit_arguments
from kumoclient.policy.convert import ConversionError, to_lua, to_python
from kumoclient.policy.memoize import Lookup, MemoCache, MemoParams, MemoRegistry
from kumoclient.policy.regex_map import RegexSetMap

log = logs.get_logger(__name__)

Answer = tuple[bool, Any]

_MEMO_KEYS = {
    "name",
    "ttl",
    "capacity",
    "allow_stale_reads",
    # accepted for KumoMTA compatibility; see docs/policy.md
    "invalidate_with_epoch",
    "populate_timeout",
    "retry_on_populate_timeout",
}
_PATH_FIELDS = ("path", "log_dir", "tls_certificate", "tls_private_key")
_MAX_PROXIES = 256


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


def answers(fn: Callable[..., Answer]) -> Callable[..., Answer]:
    """Turn exceptions into `(False, message)`; unexpected ones are logged with a traceback."""

    def inner(*args: Any) -> Answer:
        try:
            return fn(*args)
        except (KumoClientError, ValueError, OSError) as exc:
            return False, str(exc)
        except Exception as exc:  # a bug of ours must not surface as a Python object in Lua
            log.exception("internal error in a kumo function", function=fn.__name__)
            return False, f"internal error: {type(exc).__name__}: {exc}"

    inner.__name__ = fn.__name__
    return inner


class Host:
    """State and functions the Lua side calls; one per policy runtime."""

    def __init__(self, lua: Any, policy_path: Path, memo: MemoRegistry) -> None:
        self._lua = lua
        self._policy_dir = policy_path.parent
        self._memo = memo
        self._caches: list[MemoCache] = []
        self._proxies: dict[int, tuple[object, Any]] = {}
        self.internal: Any = None  # bootstrap.lua's `internal` table, set by the runtime
        self.configured: list[tuple[str, object]] = []

    def functions(self) -> dict[str, Callable[..., Any]]:
        """The table handed to bootstrap.lua as `host`."""
        return {
            "memoize_new": answers(self.memoize_new),
            "memo_get": self.memo_get,
            "memo_put": answers(self.memo_put),
            "memo_put_error": self.memo_put_error,
            "regex_set_map_new": answers(self.regex_set_map_new),
            "make_config": answers(self.make_config),
            "configure": answers(self.configure),
            "log": self.log,
            "module_call": answers(self.module_call),
            "object_method": answers(self.object_method),
            "object_hook": answers(self.object_hook),
        }

    # --- conversion ------------------------------------------------------------------

    def to_python(self, value: Any) -> Any:
        """A Lua value as Python data."""
        return to_python(value, self.internal.opaque_of)

    def to_lua(self, value: Any) -> Any:
        """Python data as a Lua value; maps and configs become their Lua stand-ins."""
        if value is None or type(value) in (str, int, float, bool, bytes):
            return value
        return to_lua(self._lua, value, self._stand_in)

    def _stand_in(self, value: object) -> Any:
        cached = self._proxies.get(id(value))
        if cached is not None and cached[0] is value:
            return cached[1]
        if isinstance(value, LuaObject):
            methods = self._lua.table_from(sorted(type(value).lua_methods))
            proxy = self.internal.make_object(value, value.lua_name, methods)
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

    # --- memoize ---------------------------------------------------------------------

    def memoize_new(self, params: Any) -> Answer:
        table = self.to_python(params)
        if not isinstance(table, dict):
            raise ConfigError(
                "kumo.memoize: the second argument must be a table {name=, ttl=, capacity=}"
            )
        unknown = sorted(set(table) - _MEMO_KEYS)
        if unknown:
            raise ConfigError(f"kumo.memoize: unknown key {unknown[0]!r}", key=unknown[0])
        for required in ("name", "ttl", "capacity"):
            if required not in table:
                raise ConfigError(f"kumo.memoize: missing required key {required!r}")
        name, capacity = table["name"], table["capacity"]
        if not isinstance(name, str) or not name:
            raise ConfigError(f"kumo.memoize: name = {name!r}: expected a non-empty string")
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ConfigError(f"kumo.memoize: capacity = {capacity!r}: expected an integer >= 1")
        stale = table.get("allow_stale_reads", False)
        if not isinstance(stale, bool):
            raise ConfigError(f"kumo.memoize: allow_stale_reads = {stale!r}: expected a boolean")
        ttl = parse_duration(table["ttl"], what="kumo.memoize: ttl")
        self._caches.append(self._memo.cache(MemoParams(name, ttl, capacity, stale)))
        return True, len(self._caches) - 1

    def memo_get(self, cache_id: int, *args: Any) -> tuple[int, Any]:
        """HIT and the value, CACHED_ERROR and the message, MISS and the key, or 0 and an error."""
        try:
            key = self._memo_key(args)
        except (ConversionError, ValueError) as exc:
            return 0, f"memoized function: cannot use the arguments as a cache key: {exc}"
        state, value = self._caches[cache_id].get(key)
        if state is Lookup.HIT:
            return state, self.to_lua(value)
        if state is Lookup.CACHED_ERROR:
            return state, value
        return state, key

    def _memo_key(self, args: tuple[Any, ...]) -> str:
        if not args:
            return "null"
        data = [self.to_python(a) for a in args]
        return json.dumps(
            data[0] if len(data) == 1 else data,
            sort_keys=True,
            separators=(",", ":"),
            allow_nan=False,
        )

    def memo_put(self, cache_id: int, key: str, value: Any) -> Answer:
        data = self.to_python(value)
        self._caches[cache_id].put(key, data)
        return True, self.to_lua(data)

    def memo_put_error(self, cache_id: int, key: str, message: str) -> Answer:
        """Cache the error, unless a stale value may be served instead: then answer it."""
        cache = self._caches[cache_id]
        usable, value = cache.stale(key)
        if usable:
            log.warning(
                "memoized function failed; serving the stale value",
                cache=cache.params.name,
                error=message,
            )
            return True, self.to_lua(value)
        cache.put_error(key, message)
        return False, None

    # --- regex_set_map ----------------------------------------------------------

    def regex_set_map_new(self, rules: Any) -> Answer:
        table = self.to_python(rules)
        if table == []:
            table = {}
        if not isinstance(table, dict):
            raise ConfigError("kumo.regex_set_map.new: expected a table of pattern = value")
        target = RegexSetMap(table)
        return True, MapLookup(target, self.to_lua)

    def resolve(self, path: str, source: str | None) -> Path:
        """A path given to a kumo function, relative to the calling policy file's directory."""
        candidate = Path(path)
        if candidate.is_absolute():
            return candidate
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
        if entry.is_async:
            raise ConfigError(f"kumo.{name} waits for I/O, which this runtime cannot do yet")
        values = [self.to_python(arg) for arg in args]
        if entry.source:
            values.insert(0, str(self.resolve(".", source)))  # the calling file's directory
        return self._results(entry.fn(*fit_arguments(entry.fn, values)))

    def object_method(self, target: LuaObject, method: str, *args: Any) -> Answer:
        values = [self.to_python(a) for a in args]
        fitted = fit_arguments(getattr(type(target), method), values, skip=1)
        return self._results(getattr(target, method)(*fitted))

    def object_hook(self, target: LuaObject, hook: str, *args: Any) -> Answer:
        values = [self.to_python(arg) for arg in args]
        if hook == "pairs":
            pairs = [
                self._lua.table_from([self.to_lua(k), self.to_lua(v)])
                for k, v in target.lua_pairs()
            ]
            return True, self._lua.table_from(pairs)
        return self._results(getattr(target, f"lua_{hook}")(*values))

    def _results(self, result: Any) -> Answer:
        if isinstance(result, Values):
            return (True, *(self.to_lua(value) for value in result))
        return True, self.to_lua(result)

    def log(self, level: str, where: str, message: str) -> None:
        log.log(logs.level_number(level), message, policy_location=where)
