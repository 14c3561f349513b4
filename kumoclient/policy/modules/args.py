"""Checks of the arguments Lua code passes to the Python modules, with KumoMTA's meaning: a
string parameter wants UTF-8 text, a bytes parameter takes any Lua string."""

from __future__ import annotations

import math
from typing import Any

from kumoclient.errors import ConfigError


def _kind(value: Any) -> str:
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str | bytes):
        return "string"
    if isinstance(value, list | dict):
        return "table"
    return getattr(value, "lua_name", type(value).__name__)


def text(what: str, value: Any, *, name: str = "argument") -> str:
    """A UTF-8 string (as KumoMTA's String parameters); numbers are not strings here."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        raise ConfigError(f"{what}: {name} is not valid UTF-8 text")
    raise ConfigError(f"{what}: {name} must be a string, got {_kind(value)}")


def data(what: str, value: Any, *, name: str = "argument") -> bytes:
    """Any Lua string, as its bytes."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise ConfigError(f"{what}: {name} must be a string, got {_kind(value)}")


def integer(what: str, value: Any, *, name: str = "argument", minimum: int | None = None) -> int:
    """A Lua integer (a float with an integral value is accepted, as Lua converts it)."""
    if isinstance(value, float) and value.is_integer() and math.isfinite(value):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{what}: {name} must be an integer, got {_kind(value)}")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{what}: {name} must be at least {minimum}, got {value}")
    return value


def optional_text(what: str, value: Any, default: str, *, name: str = "argument") -> str:
    """An optional string parameter: nil means `default`."""
    return default if value is None else text(what, value, name=name)
