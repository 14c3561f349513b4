"""`kumo.serde.*` (JSON, TOML, YAML: load, parse, encode) and the older `kumo.json_*` /
`kumo.toml_*` names of the same functions."""

from __future__ import annotations

import datetime
import functools
import json
import math
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomlkit
import yaml

from kumoclient.errors import ConfigError
from kumoclient.policy.api import kumo_function
from kumoclient.policy.modules.yaml12 import Yaml12Dumper, Yaml12Loader


def _register(name: str, fn: Callable[..., Any], *, source: bool = False) -> None:
    """`kumo.serde.<name>`, and `kumo.<name>` for the JSON and TOML functions KumoMTA kept
    under their old names; error messages name the function as the policy called it."""
    for prefix in ("serde.", "") if not name.startswith("yaml") else ("serde.",):
        kumo_function(prefix + name, source=source)(functools.partial(fn, f"kumo.{prefix}{name}"))


def read_text(what: str, base: str, path: object) -> tuple[Path, str]:
    """The UTF-8 text of `path` (relative to `base`), or a ConfigError naming it."""
    if not isinstance(path, str):
        raise ConfigError(f"{what}: expected a file path, got {path!r}")
    resolved = Path(base, path)
    try:
        return resolved, resolved.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {resolved}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what}: {resolved}: not UTF-8 text: {exc}") from exc


def _text(what: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{what}: expected a string, got {type(value).__name__}")
    return value


# --- JSON ------------------------------------------------------------------------------------


def strip_json_comments(text: str) -> str:
    """`/* */`, `//` and `#` comments outside strings become spaces (newlines kept, so error
    positions stay true), as KumoMTA's JSON reader allows."""
    out = list(text)
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
            i += 1
            continue
        end = -1
        if ch == "#" or text.startswith("//", i):
            end = text.find("\n", i)
            end = n if end < 0 else end
        elif text.startswith("/*", i):
            close = text.find("*/", i + 2)
            end = n if close < 0 else close + 2
        if end < 0:
            i += 1
            continue
        for j in range(i, end):
            if out[j] != "\n":
                out[j] = " "
        i = end
    return "".join(out)


def parse_json(text: str, what: str) -> Any:
    """JSON with comments allowed; NaN and Infinity are refused."""
    try:
        return json.loads(strip_json_comments(text), parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{what}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    except ValueError as exc:
        raise ConfigError(f"{what}: invalid JSON: {exc}") from exc


def _reject_constant(name: str) -> float:
    if name in ("NaN", "Infinity", "-Infinity"):
        raise ValueError(f"{name} is not valid JSON")
    return math.nan


def json_load(what: str, base: str, path: object) -> Any:
    resolved, text = read_text(what, base, path)
    return parse_json(text, f"{what}: {resolved}")


def json_parse(what: str, text: object) -> Any:
    return parse_json(_text(what, text), what)


def json_encode(what: str, value: object, *, pretty: bool = False) -> str:
    try:
        if pretty:
            return json.dumps(value, sort_keys=True, ensure_ascii=False, indent=2, allow_nan=False)
        return json.dumps(
            value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what}: {exc}") from exc


_register("json_load", json_load, source=True)
_register("json_parse", json_parse)
_register("json_encode", json_encode)
_register("json_encode_pretty", functools.partial(json_encode, pretty=True))


# --- TOML ------------------------------------------------------------------------------------


def parse_toml(text: str, what: str) -> Any:
    """A TOML document; dates and times become their RFC 3339 text."""
    try:
        return _dates_as_text(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what}: invalid TOML: {exc}") from exc


def _dates_as_text(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _dates_as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_dates_as_text(v) for v in value]
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    return value


def toml_load(what: str, base: str, path: object) -> Any:
    resolved, text = read_text(what, base, path)
    return parse_toml(text, f"{what}: {resolved}")


def toml_parse(what: str, text: object) -> Any:
    return parse_toml(_text(what, text), what)


def toml_encode(what: str, value: object, *, style: str = "plain") -> str:
    """TOML text of a table, keys sorted at every level (KumoMTA's order is the Lua table's):
    `plain` (arrays on one line), `pretty` (one element a line) or `compact` (pretty, with
    empty tables inline as `k = {}`)."""
    if not isinstance(value, dict):
        raise ConfigError(f"{what}: only a table can be encoded as a TOML document")
    try:
        document = tomlkit.item(_sorted(value, inline_empty=style == "compact"))
        if style != "plain":
            _pretty_arrays(document)
        return tomlkit.dumps(document)
    except (TypeError, ValueError, tomlkit.exceptions.TOMLKitError) as exc:
        raise ConfigError(f"{what}: {exc}") from exc


def _sorted(value: Any, *, inline_empty: bool) -> Any:
    if isinstance(value, dict):
        if not value and inline_empty:
            return tomlkit.inline_table()
        return {k: _sorted(value[k], inline_empty=inline_empty) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v, inline_empty=False) for v in value]
    return value


def _pretty_arrays(container: Any) -> None:
    for item in container.values():
        if isinstance(item, tomlkit.items.Array):
            if len(item) and not isinstance(item[0], tomlkit.items.InlineTable):
                item.multiline(True)
        elif isinstance(item, tomlkit.items.Table):
            _pretty_arrays(item)
        elif isinstance(item, tomlkit.items.AoT):
            for table in item:
                _pretty_arrays(table)


_register("toml_load", toml_load, source=True)
_register("toml_parse", toml_parse)
_register("toml_encode", toml_encode)
_register("toml_encode_pretty", functools.partial(toml_encode, style="pretty"))
kumo_function("serde.toml_encode_pretty_compact")(
    functools.partial(toml_encode, "kumo.serde.toml_encode_pretty_compact", style="compact")
)


# --- YAML ------------------------------------------------------------------------------------


def parse_yaml(text: str, what: str) -> Any:
    """One YAML 1.2 document (core schema: `yes`/`no`/`on`/`off` stay strings)."""
    try:
        return yaml.load(text, Loader=Yaml12Loader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what}: invalid YAML: {exc}") from exc


def yaml_load(what: str, base: str, path: object) -> Any:
    resolved, text = read_text(what, base, path)
    return parse_yaml(text, f"{what}: {resolved}")


def yaml_parse(what: str, text: object) -> Any:
    return parse_yaml(_text(what, text), what)


def yaml_encode(what: str, value: object) -> str:
    try:
        return yaml.dump(
            value, Dumper=Yaml12Dumper, allow_unicode=True, sort_keys=True, default_flow_style=False
        )
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what}: {exc}") from exc


_register("yaml_load", yaml_load, source=True)
_register("yaml_parse", yaml_parse)
_register("yaml_encode", yaml_encode)
