"""kumo.memoize's invalidate_with_epoch, populate_timeout and retry_on_populate_timeout; the
configuration epoch (kumo.bump_config_epoch, the watched globs) and reloads on a bump."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from kumoclient.policy.epoch import EPOCH, MONITOR, ConfigEpoch, ConfigMonitor
from kumoclient.policy.limits import PolicyLimits
from kumoclient.policy.memoize import MemoRegistry
from kumoclient.policy.runtime import PolicyHolder, PolicyRuntime
from tests.policy.conftest import lua


def load(
    tmp_path: Path, source: str, memo: MemoRegistry, limits: PolicyLimits | None = None
) -> PolicyRuntime:
    path = tmp_path / "policy.lua"
    path.write_text(textwrap.dedent(source))
    return PolicyRuntime(path, memo=memo, limits=limits)


EPOCH_POLICY = """
CALLS = 0
local function make(invalidate, name)
  return kumo.memoize(function()
    CALLS = CALLS + 1
    return CALLS
  end, { name = name, ttl = '1 hour', capacity = 4, invalidate_with_epoch = invalidate })
end
local with_epoch, without = make(true, 'with_epoch'), make(false, 'without')
kumo.on('with', function() return with_epoch() end)
kumo.on('without', function() return without() end)
"""


async def test_invalidate_with_epoch_starts_afresh_at_each_bump(tmp_path: Path) -> None:
    epoch = ConfigEpoch()
    runtime = load(tmp_path, EPOCH_POLICY, MemoRegistry(epoch=epoch))
    first, plain = (await runtime.fire("with")).value, (await runtime.fire("without")).value
    assert (await runtime.fire("with")).value == first  # cached
    epoch.bump("test")
    assert (await runtime.fire("with")).value != first  # a new epoch: computed again
    assert (await runtime.fire("without")).value == plain  # not tied to the epoch


WAITING_POLICY = """
CALLS = 0
local slow = kumo.memoize(function(seconds)
  CALLS = CALLS + 1
  kumo.sleep(seconds)
  return 'computed ' .. CALLS
end, { name = 'slow', ttl = '1 hour', capacity = 4, populate_timeout = '%s',
       retry_on_populate_timeout = %s })
kumo.on('get', function(seconds) return slow(seconds) end)
"""


async def test_concurrent_callers_share_one_computation(tmp_path: Path) -> None:
    runtime = load(tmp_path, WAITING_POLICY % ("10s", "false"), MemoRegistry())
    fired = await asyncio.gather(*(runtime.fire("get", 0.05) for _ in range(5)))
    assert {f.value for f in fired} == {"computed 1"}
    assert lua(runtime, "return CALLS") == 1


async def test_a_waiter_gives_up_after_populate_timeout(tmp_path: Path) -> None:
    runtime = load(tmp_path, WAITING_POLICY % ("50ms", "false"), MemoRegistry())
    slow = asyncio.ensure_future(runtime.fire("get", 0.5))
    await asyncio.sleep(0.01)
    waiter = await runtime.fire("get", 0.5)
    assert waiter.status == "error"
    assert "kumo.memoize 'slow': timed out after 0.05s waiting" in waiter.value
    assert "policy.lua:9:" in waiter.value  # `return slow(seconds)`: the tail call
    assert (await slow).value == "computed 1"


async def test_retry_on_populate_timeout_computes_it_itself(tmp_path: Path) -> None:
    runtime = load(tmp_path, WAITING_POLICY % ("50ms", "true"), MemoRegistry())
    slow = asyncio.ensure_future(runtime.fire("get", 0.3))
    await asyncio.sleep(0.01)
    waiter = await runtime.fire("get", 0.01)  # the first computation is presumed stuck
    assert waiter.status == "ok"
    assert waiter.value == "computed 2"
    await slow


async def test_an_aborted_computation_lets_the_next_caller_compute(tmp_path: Path) -> None:
    runtime = load(
        tmp_path,
        """
        local f = kumo.memoize(function(spin)
          if spin then while true do end end
          return 'fine'
        end, { name = 'spin', ttl = '1 hour', capacity = 4 })
        kumo.on('get', function(spin) return f(spin) end)
        """,
        MemoRegistry(),
        PolicyLimits(max_instructions=1_000_000),
    )
    assert (await runtime.fire("get", True)).status == "error"
    assert (await runtime.fire("get", False)).value == "fine"


async def test_bump_config_epoch_reloads_the_holders_policy(tmp_path: Path) -> None:
    path = tmp_path / "policy.lua"
    path.write_text("kumo.on('e', function() kumo.bump_config_epoch() end)\n")
    holder = PolicyHolder(path, memo=MemoRegistry())  # on the process's epoch
    before = EPOCH.value
    await holder.current.fire("e")
    assert EPOCH.value == before + 1
    await asyncio.sleep(0)  # the reload runs soon after, outside the handler
    assert holder.generation == 2


async def test_the_monitor_bumps_when_a_watched_file_changes(tmp_path: Path) -> None:
    epoch = ConfigEpoch()
    monitor = ConfigMonitor(epoch)
    rules = tmp_path / "rules.json"
    rules.write_text("{}")
    monitor.set_globs([f"{tmp_path}/**/*.{{json,toml}}"])
    assert monitor.evaluate() == [str(rules)]
    task = asyncio.ensure_future(monitor.run(interval=0.02))
    await asyncio.sleep(0.1)
    assert epoch.value == 0
    rules.write_text('{"changed": true}')
    while epoch.value == 0:
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_monitor_globs_from_the_policy(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text("")
    (tmp_path / "b.json").write_text("")
    runtime = load(
        tmp_path,
        f"""
        kumo.on('e', function()
          kumo.set_config_monitor_globs {{ '{tmp_path}/*.{{toml,json}}' }}
          return table.concat(kumo.eval_config_monitor_globs(), ',')
        end)
        """,
        MemoRegistry(),
    )
    before = MONITOR.globs
    try:
        assert (await runtime.fire("e")).value == f"{tmp_path}/a.toml,{tmp_path}/b.json"
    finally:
        MONITOR.globs = before


async def test_a_policy_that_bumps_while_it_loads_is_reloaded_once(tmp_path: Path) -> None:
    path = tmp_path / "policy.lua"
    path.write_text("kumo.bump_config_epoch()\n")
    holder = PolicyHolder(path, memo=MemoRegistry())
    EPOCH.bump("test")
    for _ in range(5):
        await asyncio.sleep(0)
    assert holder.generation == 2  # its own bump while reloading asked for no other reload
