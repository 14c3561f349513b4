"""Lifecycle and custom events: pre_init before init, validate_config and kumo.validation_failed,
kumo.spawn_task in the engine's task group, kumo.invoke_*, kumo.get_event_registrars,
kumo.traceback."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from kumoclient.engine.engine import Engine
from kumoclient.errors import PolicyError
from kumoclient.policy.check import load_validating, sample_events, validate
from kumoclient.policy.memoize import MemoRegistry
from kumoclient.policy.runtime import PolicyHolder
from tests.policy.conftest import LoadPolicy, lua


async def test_pre_init_handlers_run_before_init(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        ORDER = {}
        kumo.on('init', function() table.insert(ORDER, 'init') end)
        kumo.on('pre_init', function() table.insert(ORDER, 'pre_init 1') end)
        kumo.on('pre_init', function() table.insert(ORDER, 'pre_init 2') end)
        """
    )
    await runtime.start()
    assert list(runtime._lua.globals().ORDER.values()) == ["pre_init 1", "pre_init 2", "init"]


def write(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "policy.lua"
    path.write_text(textwrap.dedent(source))
    return path


async def test_validate_config_and_validation_failed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        SEEN = {}
        kumo.on('init', function() SEEN.validating = _VALIDATING_CONFIG end)
        kumo.on('validate_config', function() SEEN.first = true end)
        kumo.on('validate_config', function()
          if os.getenv('MAKE_IT_FAIL') then kumo.validation_failed() end
        end)
        """,
    )
    runtime = load_validating(path)
    await validate(runtime)
    assert lua(runtime, "return SEEN.validating and SEEN.first") is True
    failing = load_validating(path)
    failing._lua.execute("os.getenv = function() return '1' end")
    with pytest.raises(PolicyError, match=r"kumo\.validation_failed"):
        await validate(failing)


async def test_sample_events_report_a_mistake_inside_a_config_handler(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        kumo.on('get_egress_path_config', function(domain, source, site)
          return kumo.make_egress_path { connection_limit = 2 }
        end)
        kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
          return kumo.make_queue_config {
            max_age = '1 day',
            retry_intervl = '10 minutes',
          }
        end)
        """,
    )
    runtime = load_validating(path)
    with pytest.raises(PolicyError) as info:
        await sample_events(runtime)
    assert info.value.location == f"{path}:6"
    assert "make_queue_config: unknown key 'retry_intervl'" in str(info.value)


async def test_spawn_task_runs_in_the_engine_and_stops_with_it(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        TICKS = 0
        kumo.on('init', function()
          kumo.spawn_task { event_name = 'ticker', args = { 'hello', 2 } }
        end)
        kumo.on('ticker', function(args)
          ARGS = args[1] .. ' ' .. args[2]
          while true do
            TICKS = TICKS + 1
            kumo.sleep(0.01)
          end
        end)
        """,
    )
    holder = PolicyHolder(path, memo=MemoRegistry())
    await holder.current.start()
    async with Engine(holder, data_dir=tmp_path / "data"):
        while lua(holder.current, "return TICKS") < 3:
            await asyncio.sleep(0.01)
    ticks = lua(holder.current, "return TICKS")
    assert lua(holder.current, "return ARGS") == "hello 2"
    await asyncio.sleep(0.05)
    assert lua(holder.current, "return TICKS") == ticks  # cancelled with the engine


async def test_spawn_task_does_nothing_when_validating(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        kumo.on('init', function() kumo.spawn_task { event_name = 'never', args = {} } end)
        kumo.on('never', function() RAN = true end)
        """,
    )
    runtime = load_validating(path)
    await validate(runtime)
    runtime.tasks.attach(lambda coroutine, name: asyncio.ensure_future(coroutine))
    await asyncio.sleep(0)
    assert lua(runtime, "return RAN") is None


async def test_invoke_functions_call_the_handlers(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
          return kumo.make_queue_config {
            retry_interval = tenant == 't' and '5m' or '1m',
            protocol = { smtp = { mx_list = { 'mx.' .. domain } } },
          }
        end)
        kumo.on('get_egress_path_config', function(routing_domain, source, site)
          return kumo.make_egress_path { connection_limit = #site }
        end)
        kumo.on('e', function()
          local q = kumo.invoke_get_queue_config('c:t@example.com')
          local p = kumo.invoke_get_egress_path_config('example.com', 'unspecified', 'abc')
          local pool = kumo.invoke_get_egress_pool(nil)
          return table.concat({ q.retry_interval, q.protocol.smtp.mx_list[1],
                                p.connection_limit, pool.entries[1].name }, ' ')
        end)
        """
    )
    assert (await runtime.fire("e")).value == "300.0 mx.example.com 3 unspecified"


async def test_get_event_registrars_and_traceback(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        local function register()
          kumo.on('get_queue_config', function() end)
        end
        register()
        kumo.on('get_queue_config', function() end)
        REG = kumo.get_event_registrars('get_queue_config')
        local function where() local frames = kumo.traceback(1); return frames end
        local frames = where()
        FIRST = frames[1].short_src .. ':' .. frames[1].curr_line .. ' ' .. frames[1].what
        """
    )
    stacks = runtime._lua.globals().REG
    first = list(stacks[1].values())
    assert [frame.rsplit(":", 1)[1] for frame in first] == ["3", "5"]
    assert next(iter(stacks[2].values())).endswith(":6")
    assert "kumoclient-" not in " ".join(first)
    assert lua(runtime, "return FIRST").endswith("policy.lua:8 Lua")
