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
