"""`kumo.domain_map.new`: a map from domain names to values where a `*.example.com` key answers
for every name below example.com that has no entry of its own."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

from kumoclient.errors import ConfigError
from kumoclient.policy.api import LuaObject, kumo_function
from kumoclient.policy.modules import args


class _Node:
    __slots__ = ("children", "has_value", "value")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.has_value = False
        self.value: Any = None


class DomainMap(LuaObject):
    """Labels from the right, as KumoMTA's map walks them: at each level an exact label wins;
    only a label with no node of its own falls to that level's `*`. So with `*.example.com`
    and `a.b.example.com` set, `b.example.com` has no value (its node exists, empty) while
    `x.y.example.com` takes the wildcard's. `*.example.com` does not answer for example.com.
    Names are compared as given (case-sensitive, a trailing dot is a label)."""

    lua_name: ClassVar[str] = "DomainMap"

    def __init__(self) -> None:
        self._top: dict[str, _Node] = {}
        self._keys: dict[str, Any] = {}

    def insert(self, key: str, value: Any) -> None:
        level = self._top
        labels = key.split(".")[::-1]
        node = _Node()
        for label in labels:
            node = level.setdefault(label, _Node())
            level = node.children
        node.has_value, node.value = True, value
        self._keys[key] = value

    def get(self, name: str) -> Any:
        level = self._top
        labels = name.split(".")[::-1]
        for depth, label in enumerate(labels):
            node = level.get(label)
            if node is None:
                wild = level.get("*")
                return wild.value if wild is not None and wild.has_value else None
            if depth == len(labels) - 1:
                return node.value if node.has_value else None
            level = node.children
        return None

    def lua_index(self, key: Any) -> Any:
        return self.get(args.text("domain_map", key, name="key"))

    def lua_newindex(self, key: Any, value: Any) -> None:
        if value is None:
            raise ConfigError("domain_map: a value cannot be nil")
        self.insert(args.text("domain_map", key, name="key"), value)

    def lua_pairs(self) -> Iterator[tuple[Any, Any]]:
        return iter(sorted(self._keys.items()))


@kumo_function("domain_map.new")
def new(table: Any = None) -> DomainMap:
    """An empty map, or one seeded from a table of domain = value."""
    result = DomainMap()
    if table is None or table == []:
        return result
    if not isinstance(table, dict):
        raise ConfigError("kumo.domain_map.new: expected a table of domain = value")
    for key, value in table.items():
        result.insert(key, value)
    return result
