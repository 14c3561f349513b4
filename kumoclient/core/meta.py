"""A message's metadata: a JSON object of any JSON values, as KumoMTA's `msg:set_meta` keeps it.

Rules: keys are texts; values are null, booleans, integers, finite numbers (JSON has no NaN
nor infinity), texts that are UTF-8 (no lone surrogates), arrays and objects of such values,
nested at most MAX_DEPTH levels; the reserved keys `queue`, `tenant`, `campaign`,
`routing_domain` hold strings or null (core.queue_name: they name the message's queue). A
check returns a new container, never the one it was given, or raises ValueError saying what
is wrong, naming the key.
"""

from __future__ import annotations

import math
from typing import Any

from kumoclient.core.queue_name import check_reserved
from kumoclient.errors import QueueNameError

MAX_DEPTH = 32  # tables in tables: far beyond any real policy's, far below json's recursion


def check_meta(value: Any) -> dict[str, Any]:
    """A whole metadata object (see the module's rules)."""
    if not isinstance(value, dict):
        raise ValueError(f"meta is {kind(value)}, not an object")
    checked = {}
    for name, item in value.items():
        key = name if type(name) is str and name.isascii() else text(name, "a meta key")
        # an ASCII string, the usual value, needs no more look; the rest (and the name an
        # error gives) only when it is something else: this runs for every message stored
        checked[key] = (
            item if type(item) is str and item.isascii() else check_value(item, f"meta {key!r}")
        )
    try:
        check_reserved(checked)
    except QueueNameError as exc:
        raise ValueError(str(exc)) from None
    return checked


def check_value(value: Any, name: str, depth: int = 0) -> Any:
    """One JSON value (a new container for arrays and objects); `name` names it in errors."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{name} holds a number that JSON cannot (NaN or infinity)")
        return value
    if isinstance(value, str):
        return text(value, name)
    if depth >= MAX_DEPTH:
        raise ValueError(f"{name} is nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, list | tuple):
        return [check_value(item, name, depth + 1) for item in value]
    if isinstance(value, dict):
        return {
            text(key, f"a key in {name}"): check_value(item, name, depth + 1)
            for key, item in value.items()
        }
    raise ValueError(f"{name} holds {type(value).__name__}, which is not a JSON value")


def text(value: Any, name: str) -> str:
    """A string that can be written as UTF-8 (the spool's fields are checked with it too)."""
    if not isinstance(value, str):
        raise ValueError(f"{name} is {kind(value)}, not a string")
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            raise ValueError(f"{name} holds a lone surrogate (not UTF-8)") from None
    return value


def kind(value: Any) -> str:
    """How a wrong value is named in a reason: its JSON type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    names = {int: "an integer", float: "a number", str: "a string", list: "an array"}
    return names.get(type(value), "an object")
