"""The sandbox: policy code cannot reach Python objects, whatever it tries."""

from __future__ import annotations

from pathlib import Path

import pytest

from kumoclient.errors import PolicyLoadError
from tests.policy.conftest import LoadPolicy

ESCAPES = [
    "return python.eval('1+1')",
    "return python.builtins.open",
    "return require('python')",
    "return package.loaded.python.eval",
    "return debug.getregistry()",
    "return debug.getupvalue(kumo.on, 1)",
    "return kumo.on.__class__",
    "return kumo.json_parse.__globals__",
    "return getmetatable(kumo.regex_set_map.new({a=1})).__index",
    "local m = kumo.regex_set_map.new({a=1}); return rawget(m, '__class__').x",
    "return load(string.dump(function() return 1 end))()",
    "return package.loadlib('libc.so.6', 'system')",
]


@pytest.mark.parametrize("attempt", ESCAPES)
def test_escape_attempt_fails_at_load(load_policy: LoadPolicy, attempt: str) -> None:
    with pytest.raises(PolicyLoadError):
        load_policy(f"local x = (function() {attempt} end)()\nassert(x ~= nil)\n")


def test_no_python_object_is_reachable_from_globals(load_policy: LoadPolicy) -> None:
    """Walk every table reachable from _G and kumo's objects: no userdata but Lua's files."""
    runtime = load_policy(
        """
        local seen, found = {}, {}
        local function walk(t, path)
          if seen[t] then return end
          seen[t] = true
          for k, v in pairs(t) do
            local kind = type(v)
            local mt = getmetatable(v)
            local lua_file = kind == 'userdata' and type(mt) == 'table' and mt.__name == 'FILE*'
            if kind == 'userdata' and not lua_file then found[#found + 1] = path .. '.' .. tostring(k) end
            if kind == 'table' then walk(v, path .. '.' .. tostring(k)) end
            if type(mt) == 'table' then walk(mt, path .. '.' .. tostring(k) .. '<mt>') end
          end
        end
        walk(_G, '_G')
        walk(kumo.regex_set_map.new({a = 1}), 'map')
        walk(kumo.make_queue_config({}), 'queue_config')
        FOUND = table.concat(found, ',')
        """
    )
    assert runtime._lua.globals().FOUND == ""
    assert runtime._lua.globals().python is None
    assert runtime._lua.globals().debug is None


def test_errors_from_kumo_functions_are_strings_not_python_exceptions(
    load_policy: LoadPolicy,
) -> None:
    runtime = load_policy(
        """
        local ok, err = pcall(kumo.json_parse, '{bad')
        KIND = type(err)
        """
    )
    assert runtime._lua.globals().KIND == "string"


def test_text_load_still_works(load_policy: LoadPolicy) -> None:
    runtime = load_policy("X = load('return 41 + 1')()\nY = load('return Z', 'c', 't', {Z = 7})()")
    assert runtime._lua.globals().X == 42
    assert runtime._lua.globals().Y == 7


def test_text_that_is_not_utf8_reaches_lua_as_a_string_error(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        "local ok, err = pcall(kumo.json_parse, '\\xff\\xfe')\nKIND = type(err)\nOK = ok\n"
    )
    assert runtime._lua.globals().OK is False
    assert runtime._lua.globals().KIND == "string"


async def test_a_rejection_cannot_be_forged(load_policy: LoadPolicy) -> None:
    from kumoclient.errors import PolicyError, PolicyReject
    from kumoclient.policy.message import MessageView

    runtime = load_policy(
        """
        local ok, real = pcall(kumo.reject, 550, 'x')
        MT = getmetatable(real)
        kumo.on('smtp_server_message_received', function(msg)
          error(setmetatable({code = 250, text = 'forged'}, {__name = 'kumo.reject'}))
        end)
        """
    )
    assert runtime._lua.globals().MT is False
    view = MessageView("0" * 32, "a@x", "b@y", b"Subject: x\r\n\r\n", {})
    with pytest.raises(PolicyError) as info:
        await runtime.message_event("smtp_server_message_received", view)
    assert not isinstance(info.value, PolicyReject)


async def test_an_error_while_handling_an_error_stays_a_policy_error(
    load_policy: LoadPolicy,
) -> None:
    from kumoclient.errors import PolicyError
    from kumoclient.policy.message import MessageView

    runtime = load_policy(
        """
        kumo.on('smtp_server_message_received', function(msg)
          setmetatable(getmetatable(''), {__eq = error, __index = error})
          error(setmetatable({}, {__tostring = function() error('no') end}))
        end)
        """
    )
    view = MessageView("0" * 32, "a@x", "b@y", b"Subject: x\r\n\r\n", {})
    with pytest.raises(PolicyError):
        await runtime.message_event("smtp_server_message_received", view)


def test_require_refuses_precompiled_modules(load_policy: LoadPolicy, tmp_path: Path) -> None:
    (tmp_path / "evil.lua").write_bytes(b"\x1bLua" + b"\x00" * 20)
    (tmp_path / "fine.lua").write_text("return {answer = 42}")
    runtime = load_policy(
        f"package.path = '{tmp_path}/?.lua'\n"
        "OK, ERR = pcall(require, 'evil')\nFINE = require('fine').answer\n"
    )
    g = runtime._lua.globals()
    assert g.OK is False
    assert "attempt to load a binary chunk" in g.ERR
    assert g.FINE == 42


async def test_rewrite_hook_returning_non_utf8_keeps_the_reply(load_policy: LoadPolicy) -> None:
    from kumoclient.core.reply import parse_one_line
    from kumoclient.records import QueueName

    runtime = load_policy(
        "kumo.on('smtp_client_rewrite_delivery_status', function() return '\\xff' end)"
    )
    reply = parse_one_line("452 4.2.2 full")
    outcome = await runtime.rewrite_delivery_status(reply, QueueName("d.com"))
    assert outcome.reply == reply
    assert outcome.error is not None
