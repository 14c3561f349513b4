"""The bundled policy-extras helpers: policy_utils and typing, required as KumoMTA's are."""

from __future__ import annotations

from pathlib import Path

import pytest

from kumoclient.errors import PolicyLoadError
from tests.policy.conftest import LoadPolicy, lua


def test_policy_utils_functions(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        local utils = require 'policy-extras.policy_utils'
        EQ = utils.equals({a = {1, 2}, b = 'x'}, {b = 'x', a = {1, 2}})
        NE = utils.equals({a = 1}, {a = 1, b = 2})
        local dest = {keep = 1, nested = {x = 1}}
        utils.merge_into({add = 2}, dest)
        utils.recursive_merge_into({nested = {y = 2}}, dest)
        MERGED = kumo.json_encode(dest)
        CONTAINS = utils.table_contains({'a', 'b'}, 'b') and not utils.table_contains({'a'}, nil)
        EMPTY = utils.table_is_empty({}) and not utils.table_is_empty({1})
        KEYS = #utils.table_keys({a = 1, b = 2})
        STARTS = utils.starts_with('policy.lua', 'policy') and utils.ends_with('policy.lua', '.lua')
        IP4, PORT4 = utils.split_ip_port('10.0.0.1:25')
        IP6, PORT6 = utils.split_ip_port('[::1]:2025')
        DUMP = utils.dumps({1, 2})
        DUMP_MAP = utils.dumps({foo = 'bar'})
        SAME = utils.load_json_or_toml_file({inline = true}).inline
        """
    )
    g = runtime._lua.globals()
    assert (g.EQ, g.NE, g.CONTAINS, g.EMPTY, g.KEYS, g.STARTS) == (True, False, True, True, 2, True)
    assert g.MERGED == '{"add":2,"keep":1,"nested":{"x":1,"y":2}}'
    assert (g.IP4, g.PORT4, g.IP6, g.PORT6) == ("10.0.0.1", "25", "::1", "2025")
    assert g.DUMP == "{\n  [1] = 1,\n  [2] = 2\n}"
    assert g.DUMP_MAP == '{\n  ["foo"] = "bar"\n}'
    assert g.SAME is True


def test_policy_utils_assert_eq_names_the_callers_line(load_policy: LoadPolicy) -> None:
    with pytest.raises(PolicyLoadError) as info:
        load_policy(
            "local utils = require 'policy-extras.policy_utils'\n"
            "utils.assert_eq({1}, {2}, 'lists differ')\n"
        )
    assert "policy.lua:2: lists differ. expected\n[1]\n == \n[2]" in str(info.value)


def test_load_json_or_toml_file_resolves_against_the_policy_not_the_helper(
    load_policy: LoadPolicy, tmp_path: Path
) -> None:
    (tmp_path / "data.json").write_text('{"a": [1, 2]}')
    runtime = load_policy(
        "local utils = require 'policy-extras.policy_utils'\n"
        "N = #utils.load_json_or_toml_file('data.json').a\n"
    )
    assert lua(runtime, "return N") == 2


TYPES = """
local typing = require 'policy-extras.typing'
local Layer = typing.enum('Layer', 'Above', 'Below')
local Point = typing.record('Point', { x = typing.number, y = typing.number })
local Example = typing.record('Example', { point = Point, layer = typing.option(Layer) })
"""


def test_typing_builds_checked_records(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        TYPES
        + """
        local utils = require 'policy-extras.policy_utils'
        local pt = Point { x = 123, y = 2.5 }
        local a = Example { point = pt, layer = 'Above' }
        A = utils.equals(a, { point = { y = 2.5, x = 123 }, layer = 'Above' })
        local b = Example { point = { x = 1, y = 4 } }   -- a plain table becomes a Point
        B = getmetatable(b.point) == Point and b.layer == nil
        local WithDefault = typing.record('WithDefault', {
          layer = typing.default(Layer, 'Above'),
          enabled = typing.default(typing.boolean, true),
        })
        local d = WithDefault { enabled = false }
        D = d.layer == 'Above' and d.enabled == false
        L = #typing.list(typing.string) { 'hello', 'there' }
        local m = typing.map(typing.string, typing.number) { a = 1 }
        M = m.a
        V = typing.variant(typing.string, typing.number)(5)
        DYN = typing.record('Dyn', { _dynamic = function(k, v) return k == 'ok' end }) { ok = 1 }.ok
        X = typing.extract_deserialize_error('deserialize error: invalid type: x, while processing y')
        """
    )
    g = runtime._lua.globals()
    assert (g.A, g.B, g.D, g.L, g.M, g.V, g.DYN) == (True, True, True, 2, 1, 5, 1)
    assert g.X == "invalid type: x"


@pytest.mark.parametrize(
    ("code", "messages"),
    [
        ("Point { x = 123 }", ["Point: missing value for field 'y' of type 'number'"]),
        (
            "Point { x = 123, y = true }",
            ["Point: invalid value for field 'y'", "Expected 'number', got 'boolean' true"],
        ),
        (
            "Example { point = { x = 1, y = 4 }, layer = 'Wrong' }",
            [
                "Example: invalid value for field 'layer'",
                "Unexpected 'Layer' value 'Wrong', expected one of 'Above', 'Below'",
            ],
        ),
        (
            "typing.record('Foo', { ex = Example }) { ex = Point { x = 1, y = 4 } }",
            [
                "Foo: invalid value for field 'ex'",
                "Expected value of type 'Example' but got type 'Point' with value",
            ],
        ),
        (
            "typing.map(typing.string, Example) { [123] = 1 }",
            ["map<string,Example>: invalid key 123", "Expected 'string', got 'number' 123"],
        ),
        (
            "typing.list(typing.string) { 1, 2 }",
            ["list<string>: invalid value for idx 1", "Expected 'string', got 'number' 1"],
        ),
        ("Point { x = 1, y = 2, z = 3 }", ["Point: unknown field 'z'"]),
        (
            "local p = Point { x = 1, y = 2 }; return p.z",
            ["Point: attempt to read unknown field 'z'"],
        ),
    ],
)
def test_typing_errors_name_the_policy_line_and_the_problem(
    load_policy: LoadPolicy, code: str, messages: list[str]
) -> None:
    with pytest.raises(PolicyLoadError) as info:
        load_policy(TYPES + f"local function build()\n  {code}\nend\nbuild()\n")
    text = str(info.value)
    lines = text.splitlines()
    for message, line in zip(messages, lines, strict=False):
        assert message in line
        assert "policy.lua:7:" in line  # the line that built the value, not typing.lua's
    assert "typing.lua" not in text


def test_helpers_are_found_where_kumomta_installs_them(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        local a = require 'policy-extras.policy_utils'
        local b = dofile('/opt/kumomta/share/policy-extras/policy_utils.lua')
        SAME_API = type(a.merge_into) == 'function' and type(b.merge_into) == 'function'
        """
    )
    assert lua(runtime, "return SAME_API") is True
