"""Where `require` looks: the policy's directory, /opt/kumomta/etc/policy, the bundled share
directory, /opt/kumomta/share, KUMOCLIENT_LUA_PATH; /opt/kumomta/share read from the bundled
share when it is not there."""

from __future__ import annotations

from pathlib import Path

import pytest

from kumoclient.errors import PolicyLoadError
from kumoclient.policy.paths import share_dir
from tests.policy.conftest import LoadPolicy, lua


def test_require_kumo_is_the_kumo_module(load_policy: LoadPolicy) -> None:
    runtime = load_policy("local k = require 'kumo'\nSAME = k == kumo and k.on ~= nil\n")
    assert lua(runtime, "return SAME") is True


def test_the_search_order(
    load_policy: LoadPolicy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = tmp_path / "extra"
    monkeypatch.setenv("KUMOCLIENT_LUA_PATH", f"{extra};/somewhere/?.luac")
    runtime = load_policy("")
    templates = str(lua(runtime, "return package.path")).split(";")
    assert templates[:10] == [
        f"{tmp_path}/?.lua",
        f"{tmp_path}/?/init.lua",
        "/opt/kumomta/etc/policy/?.lua",
        "/opt/kumomta/etc/policy/?/init.lua",
        f"{share_dir()}/?.lua",
        f"{share_dir()}/?/init.lua",
        "/opt/kumomta/share/?.lua",
        "/opt/kumomta/share/?/init.lua",
        f"{extra}/?.lua",
        f"{extra}/?/init.lua",
    ]
    assert templates[10] == "/somewhere/?.luac"


def test_modules_beside_the_policy_and_on_kumoclient_lua_path(
    load_policy: LoadPolicy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "helpers").mkdir()
    (tmp_path / "helpers" / "local_helper.lua").write_text("return { answer = 42 }")
    extra = tmp_path / "lib"
    (extra / "pkg").mkdir(parents=True)
    (extra / "pkg" / "init.lua").write_text("kumo.sleep(0)\nreturn { waited = true }")
    monkeypatch.setenv("KUMOCLIENT_LUA_PATH", str(extra))
    runtime = load_policy("A = require('helpers.local_helper').answer\nB = require('pkg').waited\n")
    assert (lua(runtime, "return A"), lua(runtime, "return B")) == (42, True)


def test_a_missing_kumomta_share_is_read_from_the_bundled_one(load_policy: LoadPolicy) -> None:
    assert not Path("/opt/kumomta/share/policy-extras/typing.lua").exists()
    runtime = load_policy(
        """
        package.path = '/opt/kumomta/share/?.lua'   -- as if only KumoMTA's directory existed
        local typing = require 'policy-extras.typing'
        local again = dofile('/opt/kumomta/share/policy-extras/typing.lua')
        local chunk = loadfile('/opt/kumomta/share/policy-extras/policy_utils.lua')
        local file = io.open('/opt/kumomta/share/policy-extras/policy_utils.lua')
        OK = type(typing.record) == 'function' and type(again.list) == 'function'
          and type(chunk) == 'function' and file:read('l') ~= nil
        """
    )
    assert lua(runtime, "return OK") is True


def test_a_missing_module_names_the_line_and_the_places_searched(
    load_policy: LoadPolicy,
) -> None:
    with pytest.raises(PolicyLoadError) as info:
        load_policy("\nrequire 'no.such.module'\n")
    text = str(info.value)
    assert "policy.lua:2: module 'no.such.module' not found:" in text
    assert "/opt/kumomta/share/no/such/module.lua" in text
