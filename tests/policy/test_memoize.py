"""kumo.memoize with an injected clock: ttl, capacity (LRU), keys, errors, reloads."""

from __future__ import annotations

import pytest

from kumoclient.errors import PolicyLoadError
from kumoclient.policy.memoize import MemoRegistry
from kumoclient.policy.runtime import PolicyRuntime
from tests.policy.conftest import FakeClock, LoadPolicy

COUNTING = """
CALLS = 0
local f = kumo.memoize(function(...)
  CALLS = CALLS + 1
  return select('#', ...) == 0 and 'none' or kumo.json_encode({...})
end, {name = 'counting', ttl = '5 minutes', capacity = 2})
function call(...) return f(...) end
"""


def calls(runtime: PolicyRuntime) -> int:
    value = runtime._lua.globals().CALLS
    assert isinstance(value, int)
    return value


def test_within_ttl_the_function_is_not_called_again(
    load_policy: LoadPolicy, clock: FakeClock
) -> None:
    runtime = load_policy(COUNTING)
    call = runtime._lua.globals().call
    assert call("a") == '["a"]'
    clock.advance(299)
    assert call("a") == '["a"]'
    assert calls(runtime) == 1


def test_after_ttl_the_function_is_called_again(load_policy: LoadPolicy, clock: FakeClock) -> None:
    runtime = load_policy(COUNTING)
    call = runtime._lua.globals().call
    call("a")
    clock.advance(300)
    call("a")
    assert calls(runtime) == 2


def test_capacity_evicts_the_least_recently_used(load_policy: LoadPolicy) -> None:
    runtime = load_policy(COUNTING)
    call = runtime._lua.globals().call
    call("a")
    call("b")
    call("a")  # a is now more recent than b
    call("c")  # evicts b
    assert calls(runtime) == 3
    call("a")
    assert calls(runtime) == 3
    call("b")
    assert calls(runtime) == 4


def test_equal_tables_hit_the_same_entry_and_types_differ(load_policy: LoadPolicy) -> None:
    runtime = load_policy(COUNTING)
    lua = runtime._lua
    lua.execute("call({x = 1, y = {2, 3}})")
    lua.execute("local t = {}; t.y = {2, 3}; t.x = 1; call(t)")
    assert calls(runtime) == 1
    lua.execute("call(1)")
    lua.execute("call('1')")
    assert calls(runtime) == 3


def test_no_arguments_and_nil_share_a_key(load_policy: LoadPolicy) -> None:
    runtime = load_policy(COUNTING)
    runtime._lua.execute("call(); call(nil)")
    assert calls(runtime) == 1


def test_error_propagates_and_is_cached_for_60_seconds(
    load_policy: LoadPolicy, clock: FakeClock
) -> None:
    runtime = load_policy(
        """
        CALLS = 0
        local f = kumo.memoize(function()
          CALLS = CALLS + 1
          error('lookup failed')
        end, {name = 'failing', ttl = '1h', capacity = 5})
        function attempt() local ok, err = pcall(f); return err end
        """
    )
    try_ = runtime._lua.globals().attempt
    assert "lookup failed" in try_()
    clock.advance(59)
    assert "lookup failed" in try_()
    assert calls(runtime) == 1
    clock.advance(1)
    try_()
    assert calls(runtime) == 2


def test_several_return_values_come_back_as_one_table(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        local f = kumo.memoize(function() return 1, 'two', 3 end,
                               {name = 'multi', ttl = 60, capacity = 1})
        local first, second = f(), f()
        RESULT = kumo.json_encode(first) .. kumo.json_encode(second) .. select('#', f())
        """
    )
    assert runtime._lua.globals().RESULT == '[1,"two",3][1,"two",3]1'


def test_returned_tables_are_copies(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        local f = kumo.memoize(function() return {n = 1} end, {name = 'copy', ttl = 60, capacity = 1})
        f().n = 99
        N = f().n
        """
    )
    assert runtime._lua.globals().N == 1


def test_allow_stale_reads_serves_the_old_value_when_refresh_fails(
    load_policy: LoadPolicy, clock: FakeClock
) -> None:
    runtime = load_policy(
        """
        FAIL = false
        local f = kumo.memoize(function()
          if FAIL then error('source down') end
          return 'fresh'
        end, {name = 'stale', ttl = 10, capacity = 1, allow_stale_reads = true})
        function get() return f() end
        """
    )
    lua = runtime._lua
    assert lua.globals().get() == "fresh"
    clock.advance(11)
    lua.execute("FAIL = true")
    assert lua.globals().get() == "fresh"


def test_cache_survives_a_reload_and_is_shared_by_name(
    tmp_path: object, memo: MemoRegistry
) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    path = tmp_path / "policy.lua"
    path.write_text(COUNTING + "call('x')\n")
    first = PolicyRuntime(path, memo=memo)
    second = PolicyRuntime(path, memo=memo)  # a reload: same name, same parameters
    assert calls(first) == 1
    assert calls(second) == 0  # served from the cache the first runtime filled
    cache = memo.get("counting")
    assert cache is not None
    assert len(cache) == 1


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("{name = 'a', ttl = 5, capacity = 1, colour = 'red'}", "unknown key 'colour'"),
        ("{ttl = 5, capacity = 1}", "missing required key 'name'"),
        ("{name = 'a', capacity = 1}", "missing required key 'ttl'"),
        ("{name = 'a', ttl = 5}", "missing required key 'capacity'"),
        ("{name = 'a', ttl = '5', capacity = 1}", "has no unit"),
        ("{name = 'a', ttl = 5, capacity = 0}", "capacity = 0"),
        ("{name = 'a', ttl = 5, capacity = 1, allow_stale_reads = 'yes'}", "allow_stale_reads"),
    ],
)
def test_bad_parameters_are_errors_naming_the_line(
    load_policy: LoadPolicy, params: str, message: str
) -> None:
    with pytest.raises(PolicyLoadError, match=message) as info:
        load_policy(f"\nkumo.memoize(function() end, {params})")
    assert "policy.lua:2:" in str(info.value)


def test_uncacheable_arguments_are_an_error(load_policy: LoadPolicy) -> None:
    runtime = load_policy(COUNTING + "OK, ERR = pcall(call, function() end)\n")
    assert runtime._lua.globals().OK is False
    assert "cannot use the arguments as a cache key" in runtime._lua.globals().ERR
    assert "policy.lua:8:" in runtime._lua.globals().ERR  # the pcall line (call() tail-calls)
