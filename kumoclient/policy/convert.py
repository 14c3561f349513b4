"""Values between Lua and Python: tables become lists or dicts, Python values become Lua tables.

Lua → Python: nil → None; booleans and numbers as themselves; a string as `str` when it is
UTF-8, else (an argument of a Python module function) as `bytes`; a table whose keys are
exactly 1..n → list; any other table → dict (number keys become strings, as in JSON); a table
that stands for a Python object (a regex map, a typed config) → that object. Functions,
coroutines and userdata cannot be converted.
Python → Lua: lists and tuples → sequence tables, dicts → tables, `bytes` → a Lua string of
those bytes, other values as themselves;
objects that have a Lua stand-in are turned into it by the runtime's `wrap` callback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lupa import lua54

from kumoclient.errors import ConfigError

MAX_DEPTH = 64
_LUA_INT_MIN, _LUA_INT_MAX = -(2**63), 2**63 - 1


class ConversionError(ConfigError):
    """A Lua value has no Python (JSON-like) form."""


def to_python(value: Any, opaque_of: Callable[[Any], Any], depth: int = 0) -> Any:
    """Convert a value that came from Lua; see the module rules."""
    kind = lua54.lua_type(value)
    if kind is None:
        if isinstance(value, bytes):
            return value.decode("utf-8", errors="replace")
        return value
    if kind != "table":
        raise ConversionError(f"cannot convert a Lua {kind} to data")
    if depth >= MAX_DEPTH:
        raise ConversionError(f"table nested more than {MAX_DEPTH} deep (a cycle?)")
    stand_in = opaque_of(value)
    if isinstance(stand_in, str):  # a string that is not UTF-8: its bytes (lua/bridge.lua)
        return stand_in.encode("latin-1")
    if stand_in is not None:
        return getattr(stand_in, "target", stand_in)
    items = list(value.items())
    keys = [k for k, _ in items]
    if (
        keys
        and all(isinstance(k, int) and not isinstance(k, bool) for k in keys)
        and sorted(keys) == list(range(1, len(keys) + 1))
    ):
        ordered = sorted(items, key=lambda kv: int(kv[0]))
        return [to_python(v, opaque_of, depth + 1) for _, v in ordered]
    out: dict[str, Any] = {}
    for key, item in items:
        out[_key(key)] = to_python(item, opaque_of, depth + 1)
    return out


def _key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bool) or lua54.lua_type(key) is not None:
        raise ConversionError(f"table keys must be strings or numbers, got {key!r}")
    if isinstance(key, float) and key.is_integer():
        return str(int(key))
    return str(key)


def to_lua(runtime: Any, value: Any, wrap: Callable[[Any], Any], depth: int = 0) -> Any:
    """Convert a Python value for Lua; `runtime` is the lupa LuaRuntime."""
    if value is None or isinstance(value, bool | str | float | bytes):
        return value
    if isinstance(value, int):
        return value if _LUA_INT_MIN <= value <= _LUA_INT_MAX else float(value)
    if depth >= MAX_DEPTH:
        raise ConversionError(f"value nested more than {MAX_DEPTH} deep")
    if isinstance(value, list | tuple):
        return runtime.table_from([to_lua(runtime, v, wrap, depth + 1) for v in value])
    if isinstance(value, dict):
        return runtime.table_from(
            {k: to_lua(runtime, v, wrap, depth + 1) for k, v in value.items()}
        )
    return wrap(value)
