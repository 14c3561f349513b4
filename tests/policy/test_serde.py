"""kumo.json_* and kumo.serde.*: loading, parsing, encoding, relative paths, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from kumoclient.errors import PolicyLoadError
from tests.policy.conftest import LoadPolicy


def test_json_load_resolves_relative_paths_against_the_policy_directory(
    load_policy: LoadPolicy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data.json").write_text('{"a": [1, 2, {"b": null}], "c": "d"}')
    monkeypatch.chdir("/")
    runtime = load_policy(
        """
        local data = kumo.json_load('data.json')
        A2, C, B = data.a[2], data.c, data.a[3].b
        SAME = kumo.serde.json_load('data.json').c
        """
    )
    g = runtime._lua.globals()
    assert (g.A2, g.C, g.B, g.SAME) == (2, "d", None, "d")


def test_json_parse_and_encode_round_trip(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        local v = kumo.json_parse('{"z": 1, "a": [true, false, 1.5, "x"], "e": {}}')
        TEXT = kumo.json_encode(v)
        PRETTY = kumo.serde.json_encode_pretty({b = 1, a = {1, 2}})
        """
    )
    g = runtime._lua.globals()
    assert g.TEXT == '{"a":[true,false,1.5,"x"],"e":{},"z":1}'
    assert g.PRETTY == '{\n  "a": [\n    1,\n    2\n  ],\n  "b": 1\n}'


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (
            "kumo.json_load('missing.json')",
            r"kumo\.json_load: cannot read .*missing\.json: No such file",
        ),
        ("kumo.json_parse('{bad')", r"kumo\.json_parse: invalid JSON at line 1 column 2"),
        ("kumo.json_parse('NaN')", r"kumo\.json_parse: invalid JSON: NaN is not valid JSON"),
        ("kumo.json_encode({f = print})", r"cannot convert a Lua function to data"),
        ("kumo.json_parse(42)", r"expected a string, got int"),
    ],
)
def test_errors_name_the_problem_and_the_line(
    load_policy: LoadPolicy, code: str, message: str
) -> None:
    with pytest.raises(PolicyLoadError, match=message) as info:
        load_policy(f"-- line 1\n{code}\n")
    assert "policy.lua:2: " in str(info.value)


def test_malformed_dsn_rewrite_json_is_a_clear_error(
    load_policy: LoadPolicy, tmp_path: Path
) -> None:
    (tmp_path / "dsn_rewrite.json").write_text('{\n  "4\\\\.2\\\\.2 over quota": 500,\n}\n')
    with pytest.raises(
        PolicyLoadError, match=r"dsn_rewrite\.json: invalid JSON at line 3 column 1"
    ):
        load_policy("local d = kumo.json_load 'dsn_rewrite.json'")


def test_json_parse_treats_comments_as_spaces(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        local v = kumo.serde.json_parse [[
        {
          // a line comment
          "a": 1, # a shell comment
          /* a block
             comment */ "b": "not // a comment"
        }]]
        A, B = v.a, v.b
        """
    )
    g = runtime._lua.globals()
    assert (g.A, g.B) == (1, "not // a comment")


def test_a_json_error_after_a_comment_keeps_its_line(load_policy: LoadPolicy) -> None:
    with pytest.raises(PolicyLoadError, match=r"invalid JSON at line 3 column 1"):
        load_policy("kumo.json_parse('{\"a\": /* x\\n */ 1,\\n}')")


def test_toml_load_parse_and_the_old_names(
    load_policy: LoadPolicy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "data.toml").write_text('[tenant.acme]\nrate = "100/h"\nhosts = [1, 2]\n')
    monkeypatch.chdir("/")
    runtime = load_policy(
        """
        local a = kumo.serde.toml_load 'data.toml'
        local b = kumo.toml_load 'data.toml'
        RATE, HOST2, SAME = a.tenant.acme.rate, a.tenant.acme.hosts[2], b.tenant.acme.rate
        local t = kumo.toml_parse 'when = 1979-05-27T07:32:00Z\\nday = 1979-05-27'
        WHEN, DAY = t.when, t.day
        """
    )
    g = runtime._lua.globals()
    assert (g.RATE, g.HOST2, g.SAME) == ("100/h", 2, "100/h")
    assert (g.WHEN, g.DAY) == ("1979-05-27T07:32:00+00:00", "1979-05-27")


def test_toml_encode_plain_pretty_and_compact(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        local v = { name = 'x', list = { 1, 2 }, sub = { z = 1, a = true }, empty = {} }
        PLAIN = kumo.toml_encode(v)
        PRETTY = kumo.serde.toml_encode_pretty(v)
        COMPACT = kumo.serde.toml_encode_pretty_compact(v)
        BACK = kumo.serde.toml_parse(PRETTY).list[2]
        """
    )
    g = runtime._lua.globals()
    assert g.PLAIN == 'list = [1, 2]\nname = "x"\n\n[empty]\n\n[sub]\na = true\nz = 1\n'
    assert "list = [\n    1,\n    2,\n]" in g.PRETTY
    assert (
        g.COMPACT
        == 'empty = {}\nlist = [\n    1,\n    2,\n]\nname = "x"\n\n[sub]\na = true\nz = 1\n'
    )
    assert g.BACK == 2


def test_yaml_is_read_as_yaml_1_2(load_policy: LoadPolicy, tmp_path: Path) -> None:
    (tmp_path / "d.yaml").write_text("country: NO\nflag: yes\nn: 017\nt: true\nlist: [a, ~, 3]\n")
    runtime = load_policy(
        """
        local d = kumo.serde.yaml_load 'd.yaml'
        COUNTRY, FLAG, N, T, L1, L3 = d.country, d.flag, d.n, d.t, d.list[1], d.list[3]
        TEXT = kumo.serde.yaml_encode({ b = 'yes', a = { 1, 2 } })
        AGAIN = kumo.serde.yaml_parse(TEXT).b
        """
    )
    g = runtime._lua.globals()
    assert (g.COUNTRY, g.FLAG, g.N, g.T, g.L1, g.L3) == ("NO", "yes", 17, True, "a", 3)
    assert g.TEXT == "a:\n- 1\n- 2\nb: 'yes'\n"
    assert g.AGAIN == "yes"


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("kumo.serde.toml_parse('a = ')", r"kumo\.serde\.toml_parse: invalid TOML: "),
        ("kumo.toml_encode({1, 2})", r"kumo\.toml_encode: only a table can be encoded"),
        ("kumo.serde.yaml_parse('a: [1')", r"kumo\.serde\.yaml_parse: invalid YAML: "),
        ("kumo.serde.yaml_parse('a: 1\\n---\\nb: 2')", r"invalid YAML: expected a single document"),
        ("kumo.serde.yaml_load('nope.yaml')", r"kumo\.serde\.yaml_load: cannot read .*nope\.yaml"),
        (
            "kumo.serde.json_parse('{}', 1) kumo.serde.json_encode(0/0)",
            r"json_encode: Out of range float",
        ),
    ],
)
def test_format_errors_name_the_function_and_line(
    load_policy: LoadPolicy, code: str, message: str
) -> None:
    with pytest.raises(PolicyLoadError, match=message) as info:
        load_policy(f"-- line 1\n{code}\n")
    assert "policy.lua:2: " in str(info.value)
