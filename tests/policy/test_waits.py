"""Handlers that wait: an `async def` kumo function yields the handler's coroutine to the event
loop, which resumes it with the result; meanwhile other handlers and other tasks run."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import ClassVar

import pytest

from kumoclient.errors import ConfigError, PolicyError
from kumoclient.policy.api import REGISTRY, KumoFunction, LuaObject, Values
from kumoclient.policy.popen import read_command
from kumoclient.records import QueueName
from tests.policy.conftest import LoadPolicy, lua


class Gate(LuaObject):
    """A test object whose `wait` method waits until the test opens it."""

    lua_name = "Gate"
    lua_methods: ClassVar[frozenset[str]] = frozenset({"wait", "name"})

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.waiting = 0

    async def wait(self, label: str) -> str:
        self.waiting += 1
        await self.opened.wait()
        return f"{label} passed"

    def name(self) -> str:
        return "gate"


GATE: list[Gate] = []


async def _gate() -> Gate:
    return GATE[0]


async def _pair(a: int, b: int) -> Values:
    await asyncio.sleep(0)
    return Values((a + b, a * b))


async def _fails(reason: str) -> None:
    await asyncio.sleep(0)
    raise ConfigError(f"kumo.test_fails: {reason}")


@pytest.fixture(autouse=True)
def test_functions() -> Iterator[None]:
    """Registered for the runtimes of these tests only (the registry is read at load)."""
    added = {
        "test_gate": KumoFunction("test_gate", _gate),
        "test_pair": KumoFunction("test_pair", _pair),
        "test_fails": KumoFunction("test_fails", _fails),
    }
    REGISTRY.update(added)
    GATE[:] = [Gate()]
    yield
    for name in added:
        REGISTRY.pop(name)


async def test_handlers_waiting_at_the_same_time_interleave(load_policy: LoadPolicy) -> None:
    """Both calls are inside their handler (waiting) before either returns: they are in
    flight at once, and the test's own task runs meanwhile (it opens the gate)."""
    runtime = load_policy(
        """
        ORDER = {}
        kumo.on('get_queue_config', function(domain)
          table.insert(ORDER, 'start ' .. domain)
          local said = kumo.test_gate():wait(domain)
          table.insert(ORDER, said)
          return kumo.make_queue_config { retry_interval = domain == 'a.com' and '1m' or '2m' }
        end)
        """
    )
    gate = GATE[0]
    calls = [
        asyncio.ensure_future(runtime.get_queue_config(QueueName(d))) for d in ("a.com", "b.com")
    ]
    while gate.waiting < 2:
        await asyncio.sleep(0.01)
    assert not any(call.done() for call in calls)
    gate.opened.set()
    configs = await asyncio.gather(*calls)
    assert [c.retry_interval for c in configs] == [60, 120]
    order = list(runtime._lua.globals().ORDER.values())
    assert order[:2] == ["start a.com", "start b.com"]
    assert sorted(order[2:]) == ["a.com passed", "b.com passed"]


async def test_kumo_sleep_and_time_sleep_wait(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        kumo.on('my.event', function()
          kumo.sleep(0.01)
          kumo.time.sleep(0)
          return 'slept'
        end)
        """
    )
    assert (await runtime.fire("my.event")).value == "slept"


@pytest.mark.parametrize("bad", ["-1", "'soon'", "0/0"])
async def test_kumo_sleep_refuses_what_is_not_a_duration(load_policy: LoadPolicy, bad: str) -> None:
    runtime = load_policy(f"kumo.on('e', function()\n  kumo.sleep({bad})\nend)\n")
    fired = await runtime.fire("e")
    assert fired.status == "error"
    assert "policy.lua:2: kumo.time.sleep:" in fired.value


async def test_several_results_and_errors_of_a_waiting_function(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        kumo.on('e', function()
          local sum, product = kumo.test_pair(3, 4)
          local ok, err = pcall(kumo.test_fails, 'no luck')
          return sum .. ' ' .. product .. ' ' .. tostring(ok) .. ' ' .. err
        end)
        """
    )
    fired = await runtime.fire("e")
    assert fired.value.startswith("7 12 false ")
    assert fired.value.endswith("policy.lua:4: kumo.test_fails: no luck")


async def test_waits_pass_through_pcall_memoize_and_the_policys_own_coroutines(
    load_policy: LoadPolicy,
) -> None:
    runtime = load_policy(
        """
        local cached = kumo.memoize(function(x)
          kumo.sleep(0)
          return x * 2
        end, { name = 'waits', ttl = '1m', capacity = 4 })
        kumo.on('e', function()
          local ok, doubled = pcall(cached, 21)
          local gen = coroutine.wrap(function()
            kumo.sleep(0)
            coroutine.yield('first')
            kumo.sleep(0)
            coroutine.yield('second')
          end)
          local co = coroutine.create(function(a) kumo.sleep(0); return a + 1 end)
          local _, plus = coroutine.resume(co, 1)
          return table.concat({tostring(ok), doubled, gen(), gen(), plus}, ' ')
        end)
        """
    )
    assert (await runtime.fire("e")).value == "true 42 first second 2"


async def test_a_wait_where_lua_cannot_yield_is_a_clear_error(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        kumo.on('e', function()
          local t = {3, 1, 2}
          table.sort(t, function(a, b) kumo.sleep(0) return a < b end)
        end)
        """
    )
    fired = await runtime.fire("e")
    assert fired.status == "error"
    assert "policy.lua:4: kumo.sleep waits for I/O and cannot be called here" in fired.value


async def test_yield_in_the_body_of_a_handler_is_an_error(load_policy: LoadPolicy) -> None:
    runtime = load_policy("kumo.on('e', function()\n  coroutine.yield(1)\nend)\n")
    fired = await runtime.fire("e")
    assert "policy.lua:2: coroutine.yield called outside a coroutine" in fired.value
    assert (await runtime.fire("e")).status == "error"  # and the runtime still answers


async def test_a_cancelled_call_leaves_the_runtime_usable(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        kumo.on('e', function(label)
          if label == 'wait' then kumo.test_gate():wait('x') end
          return label
        end)
        """
    )
    call = asyncio.ensure_future(runtime.fire("e", "wait"))
    while GATE[0].waiting < 1:
        await asyncio.sleep(0.01)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert (await runtime.fire("e", "after")).value == "after"


def test_the_policy_file_may_wait_while_it_loads(load_policy: LoadPolicy) -> None:
    runtime = load_policy("kumo.sleep(0)\nLOADED = kumo.test_pair(1, 1)\n")
    assert lua(runtime, "return LOADED") == 2


async def test_loading_inside_a_running_event_loop_waits_too(load_policy: LoadPolicy) -> None:
    runtime = load_policy("kumo.sleep(0)\nLOADED = kumo.test_pair(2, 2)\n")
    assert lua(runtime, "return LOADED") == 4


async def test_io_popen_reads_a_commands_output(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        kumo.on('e', function()
          local f = io.popen('printf "one\\ntwo\\n"; exit 3')
          local first = f:read('l')
          local rest = f:read('a')
          local ok, how, code = f:close()
          local lines = {}
          for line in io.popen('echo a; echo b'):lines() do lines[#lines + 1] = line end
          return table.concat({first, rest, tostring(ok), how, code, table.concat(lines, ',')}, '|')
        end)
        """
    )
    assert (await runtime.fire("e")).value == "one|two\n|nil|exit|3|a,b"


async def test_io_popen_refuses_writing(load_policy: LoadPolicy) -> None:
    runtime = load_policy("kumo.on('e', function()\n  io.popen('cat', 'w')\nend)\n")
    fired = await runtime.fire("e")
    assert "policy.lua:2: io.popen: only mode 'r'" in fired.value


async def test_io_popen_is_bounded_in_size_and_time() -> None:
    with pytest.raises(ConfigError, match="printed more than 1000 bytes"):
        await read_command("head -c 5000 /dev/zero", max_output=1000)
    with pytest.raises(ConfigError, match=r"ran longer than 0\.2s"):
        await read_command("sleep 5", timeout=0.2)
    output, how, code = await read_command("kill -9 $$")
    assert (output, how, code) == (b"", "signal", 9)


async def test_a_waiting_object_method_and_a_plain_one(load_policy: LoadPolicy) -> None:
    GATE[0].opened.set()
    runtime = load_policy(
        """
        kumo.on('e', function()
          local gate = kumo.test_gate()
          return gate:wait('in') .. ' ' .. gate:name()
        end)
        """
    )
    assert (await runtime.fire("e")).value == "in passed gate"


async def test_errors_of_waiting_functions_never_name_kumoclient_internals(
    load_policy: LoadPolicy,
) -> None:
    runtime = load_policy(
        """
        kumo.on('get_queue_config', function()
          kumo.test_fails('x')
        end)
        """
    )
    with pytest.raises(PolicyError) as info:
        await runtime.get_queue_config(QueueName("d.com"))
    assert "policy.lua:3: kumo.test_fails: x" in str(info.value)
    assert "kumoclient-" not in str(info.value) + str(info.value.traceback)
