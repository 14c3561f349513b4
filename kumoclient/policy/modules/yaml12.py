"""YAML 1.2 (core schema) for PyYAML, which implements YAML 1.1: KumoMTA reads YAML 1.2, where
`yes`, `no`, `on`, `off` are strings, `017` is seventeen, `1:20` is text and `<<` an ordinary
key; timestamps stay strings (KumoMTA turns a document into JSON-like data)."""

from __future__ import annotations

import re

import yaml

_CORE = (
    ("tag:yaml.org,2002:null", r"~|null|Null|NULL|", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:bool", r"true|True|TRUE|false|False|FALSE", list("tTfF")),
    ("tag:yaml.org,2002:int", r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+", list("-+0123456789")),
    (
        "tag:yaml.org,2002:float",
        r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
        list("-+0123456789."),
    ),
)


class Yaml12Loader(yaml.SafeLoader):
    """A safe loader resolving plain scalars by the YAML 1.2 core schema."""

    yaml_implicit_resolvers: dict[str | None, list[tuple[str, re.Pattern[str]]]] = {}  # noqa: RUF012


def _construct_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    if text.startswith(("0o", "0x")):
        return int(text, 0)
    return int(text, 10)


class Yaml12Dumper(yaml.SafeDumper):
    """Quotes every string that would read back as another type under YAML 1.1 or 1.2."""


for _tag, _pattern, _first in _CORE:
    Yaml12Loader.add_implicit_resolver(_tag, re.compile(f"^(?:{_pattern})$"), _first)
    Yaml12Dumper.add_implicit_resolver(_tag, re.compile(f"^(?:{_pattern})$"), _first)
Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
