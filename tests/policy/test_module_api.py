"""The seam between Python modules and Lua: registered functions and objects as policies see them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kumoclient.errors import ConfigError, PolicyLoadError
from kumoclient.policy.api import REGISTRY, VALUES, KumoFunction, LuaObject, Values
from kumoclient.policy.memoize import MemoRegistry
from kumoclient.policy.runtime import PolicyRuntime


class Counter(LuaObject):
    lua_name = "test.counter"
    lua_methods = frozenset({"add", "total"})

    def __init__(self) -> None:
        self.items: dict[str, int] = {}

    def add(self, key: str, amount: int = 1) -> int:
        self.items[key] = self.items.get(key, 0) + amount
        return self.items[key]

    def total(self) -> Values:
        return Values((sum(self.items.values()), len(self.items)))

    def lua_index(self, key: Any) -> Any:
        return self.items.get(key)

    def lua_len(self) -> int:
        return len(self.items)

    def lua_tostring(self) -> str:
        return f"counter of {len(self.items)}"

    def lua_pairs(self) -> Iterator[tuple[Any, Any]]:
        return iter(sorted(self.items.items()))


def _boom() -> None:
    raise ConfigError("test.boom: refused on purpose")


@pytest.fixture(autouse=True)
def registered() -> Iterator[None]:
    extra = {
        "test.pair": KumoFunction("test.pair", lambda a, b: Values((b, a))),
        "test.counter": KumoFunction("test.counter", Counter),
        "test.size": KumoFunction("test.size", lambda c: len(c.items)),
        "test.boom": KumoFunction("test.boom", _boom),
        "test.here": KumoFunction("test.here", lambda where: where, source=True),
    }
    REGISTRY.update(extra)
    VALUES["test.answer"] = 42
    yield
    for name in extra:
        del REGISTRY[name]
    del VALUES["test.answer"]


def run(tmp_path: Path, body: str) -> PolicyRuntime:
    policy = tmp_path / "p.lua"
    policy.write_text(body)
    return PolicyRuntime(policy, memo=MemoRegistry())


def test_functions_values_and_several_results(tmp_path: Path) -> None:
    run(
        tmp_path,
        """
        local a, b = kumo.test.pair(1, 'x')
        assert(a == 'x' and b == 1, 'pair')
        assert(kumo.test.answer == 42, 'value')
        """,
    )


def test_an_object_has_methods_indexing_length_tostring_and_pairs(tmp_path: Path) -> None:
    run(
        tmp_path,
        """
        local c = kumo.test.counter()
        assert(c:add('a') == 1 and c:add('a', 2) == 3 and c:add('b') == 1)
        local total, keys = c:total()
        assert(total == 4 and keys == 2, 'total')
        assert(c.a == 3 and c.missing == nil, 'index')
        assert(#c == 2, 'len')
        assert(tostring(c) == 'counter of 2', 'tostring')
        local seen = {}
        for k, v in pairs(c) do seen[#seen + 1] = k .. '=' .. v end
        assert(table.concat(seen, ',') == 'a=3,b=1', 'pairs')
        assert(kumo.test.size(c) == 2, 'handed back as the object')
        """,
    )


def test_an_error_names_the_policy_line_that_called(tmp_path: Path) -> None:
    with pytest.raises(PolicyLoadError) as caught:
        run(tmp_path, "local x = 1\nkumo.test.boom()\n")
    assert str(caught.value).startswith(f"{tmp_path / 'p.lua'}:2: test.boom: refused on purpose")


def test_a_read_only_object_refuses_assignment_at_the_callers_line(tmp_path: Path) -> None:
    with pytest.raises(PolicyLoadError) as caught:
        run(tmp_path, "local c = kumo.test.counter()\n\nc.x = 1\n")
    assert "p.lua:3: test.counter is read-only" in str(caught.value)


def test_a_source_function_gets_the_calling_files_directory(tmp_path: Path) -> None:
    run(tmp_path, f"assert(kumo.test.here() == {str(tmp_path)!r}, kumo.test.here())\n")


def test_lua_calling_convention_extra_arguments_dropped_missing_are_nil(tmp_path: Path) -> None:
    REGISTRY["test.two"] = KumoFunction("test.two", lambda a, b: Values((a, b)))
    try:
        run(
            tmp_path,
            """
            local a, b = kumo.test.two(1, 2, 3, 4)
            assert(a == 1 and b == 2, 'extras dropped')
            local c, d = kumo.test.two(5)
            assert(c == 5 and d == nil, 'missing is nil')
            """,
        )
    finally:
        del REGISTRY["test.two"]


def test_strings_that_are_not_utf8_arrive_as_bytes_and_bytes_return_exact(tmp_path: Path) -> None:
    seen: list[object] = []

    def echo(value: object, other: object) -> Values:
        seen.extend([value, other])
        return Values((value, b"\x00\xff\xfe"))

    REGISTRY["test.echo"] = KumoFunction("test.echo", echo)
    try:
        run(
            tmp_path,
            """
            local same, fixed = kumo.test.echo('\\xff\\x00\\x80abc', 'text é')
            assert(same == '\\xff\\x00\\x80abc', 'round trip')
            assert(fixed == '\\x00\\xff\\xfe' and #fixed == 3, 'bytes result')
            """,
        )
    finally:
        del REGISTRY["test.echo"]
    assert seen == [b"\xff\x00\x80abc", "text é"]
