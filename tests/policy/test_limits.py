"""Runaway policies: a handler call over its instruction or memory limit is aborted with an error
naming the policy's file:line, whatever the policy does to catch it; the runtime goes on."""

from __future__ import annotations

import signal
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from kumoclient.core.reply import parse_one_line
from kumoclient.errors import ConfigError, PolicyError, PolicyLoadError
from kumoclient.policy.limits import (
    PolicyLimits,
    clear_interrupt,
    request_interrupt,
)
from kumoclient.policy.memoize import MemoRegistry
from kumoclient.policy.message import MessageView
from kumoclient.policy.runtime import PolicyRuntime
from kumoclient.records import QueueName

MIB = 1024 * 1024
SMALL = PolicyLimits(max_instructions=2_000_000, max_memory=32 * MIB)

Load = Callable[..., PolicyRuntime]


@pytest.fixture
def load(tmp_path: Path) -> Load:
    def load(source: str, limits: PolicyLimits = SMALL) -> PolicyRuntime:
        path = tmp_path / "policy.lua"
        path.write_text(textwrap.dedent(source))
        return PolicyRuntime(path, memo=MemoRegistry(), limits=limits)

    return load


RUNAWAYS = {
    "plain loop": "while true do end",
    "pcall": "pcall(function() while true do end end)",
    "pcall in a loop": "while true do pcall(function() while true do end end) end",
    "xpcall whose handler loops": (
        "xpcall(function() while true do end end, function() while true do end end)"
    ),
    "coroutine": "coroutine.wrap(function() while true do end end)()",
    "resumed coroutine": (
        "while true do coroutine.resume(coroutine.create(function() while true do end end)) end"
    ),
    "error handler catching everything": (
        "while true do local ok = pcall(function() for i = 1, 1e9 do end end) end"
    ),
}


@pytest.mark.parametrize("body", RUNAWAYS.values(), ids=RUNAWAYS.keys())
async def test_a_runaway_handler_is_aborted_naming_its_line(load: Load, body: str) -> None:
    runtime = load(f"kumo.on('e', function()\n  {body}\nend)\n")
    fired = await runtime.fire("e")
    assert fired.status == "error"
    assert "policy.lua:2: instruction limit exceeded (2000000 instructions" in fired.value
    assert (await runtime.fire("e")).status == "error"  # the next call is limited again


async def test_the_limit_is_per_call_not_per_runtime(load: Load) -> None:
    runtime = load(
        """
        kumo.on('e', function()
          local n = 0
          for i = 1, 150000 do n = n + i end   -- well over half the limit
          return n
        end)
        """
    )
    for _ in range(3):
        assert (await runtime.fire("e")).status == "ok"


async def test_a_runaway_rewrite_hook_keeps_the_original_reply(load: Load) -> None:
    runtime = load(
        "kumo.on('smtp_client_rewrite_delivery_status', function() while true do end end)"
    )
    reply = parse_one_line("452 4.2.2 over quota")
    outcome = await runtime.rewrite_delivery_status(reply, QueueName("d.com"))
    assert outcome.reply == reply
    assert outcome.error is not None
    assert "policy.lua:1: instruction limit exceeded" in outcome.error


async def test_a_runaway_reception_handler_is_a_policy_error(load: Load) -> None:
    runtime = load(
        "kumo.on('smtp_server_message_received', function(msg)\n  while true do end\nend)"
    )
    view = MessageView("0" * 32, "a@x.com", "b@y.com", b"Subject: x\r\n\r\n", {})
    with pytest.raises(PolicyError, match=r"policy\.lua:2: instruction limit exceeded"):
        await runtime.message_event("smtp_server_message_received", view)


async def test_a_runaway_config_event_is_a_policy_error(load: Load) -> None:
    runtime = load("kumo.on('get_queue_config', function()\n  repeat until false\nend)")
    with pytest.raises(PolicyError, match=r"policy\.lua:2: instruction limit exceeded"):
        await runtime.get_queue_config(QueueName("d.com"))


def test_a_runaway_policy_file_fails_to_load(load: Load) -> None:
    with pytest.raises(PolicyLoadError, match=r"policy\.lua:3: instruction limit exceeded"):
        load("local x = 1\n\nwhile true do x = x + 1 end\n")


ALLOCATE = """
kumo.on('e', function(swallow)
  local t = {}
  local function grow()
    while true do t[#t + 1] = string.rep('x', 100000) .. #t end
  end
  if swallow then
    while true do pcall(grow) end
  end
  grow()
end)
kumo.on('small', function() return string.rep('y', 1000) end)
"""


@pytest.mark.parametrize("swallow", [False, True], ids=["plain", "inside pcall"])
async def test_an_allocating_handler_stops_at_the_memory_limit(load: Load, swallow: bool) -> None:
    runtime = load(ALLOCATE)
    fired = await runtime.fire("e", swallow)
    assert fired.status == "error"
    assert "Lua memory limit exceeded (33554432 bytes" in fired.value
    assert "policy.lua:" in fired.value
    assert runtime.vm.lua.get_memory_used() < 32 * MIB
    assert (await runtime.fire("small")).value == "y" * 1000  # and it goes on


@pytest.fixture
def interrupt_after() -> Iterator[Callable[[float], None]]:
    """A real signal, whose Python handler asks for the interrupt (as the daemon's does)."""
    previous = signal.signal(signal.SIGALRM, lambda *_: request_interrupt())

    def arm(seconds: float) -> None:
        signal.setitimer(signal.ITIMER_REAL, seconds)

    yield arm
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)
    clear_interrupt()


async def test_a_signal_interrupts_a_handler_that_would_run_for_ever(
    load: Load, interrupt_after: Callable[[float], None]
) -> None:
    runtime = load(
        "kumo.on('e', function()\n  while true do end\nend)\n",
        PolicyLimits(max_instructions=10**15, max_memory=32 * MIB),
    )
    interrupt_after(0.3)
    fired = await runtime.fire("e")
    assert "policy.lua:2: handler interrupted: kumoclient is stopping" in fired.value


def test_limits_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUMOCLIENT_LUA_MAX_INSTRUCTIONS", "5_000_000")
    monkeypatch.setenv("KUMOCLIENT_LUA_MAX_MEMORY", "64MiB")
    assert PolicyLimits.from_environment() == PolicyLimits(5_000_000, 64 * MIB)
    monkeypatch.setenv("KUMOCLIENT_LUA_MAX_MEMORY", "lots")
    with pytest.raises(ConfigError, match="KUMOCLIENT_LUA_MAX_MEMORY='lots'"):
        PolicyLimits.from_environment()
    monkeypatch.setenv("KUMOCLIENT_LUA_MAX_MEMORY", "1k")
    with pytest.raises(ConfigError, match="must be at least"):
        PolicyLimits.from_environment()


async def test_a_coroutine_kept_from_an_earlier_call_counts_for_the_call_resuming_it(
    load: Load,
) -> None:
    runtime = load(
        """
        kumo.on('make', function()
          KEPT = coroutine.create(function() coroutine.yield() while true do end end)
          coroutine.resume(KEPT)
        end)
        kumo.on('resume', function()
          coroutine.resume(KEPT)
        end)
        """
    )
    assert (await runtime.fire("make")).status == "ok"
    fired = await runtime.fire("resume")
    assert "instruction limit exceeded" in fired.value
    assert "policy.lua:3:" in fired.value


@pytest.mark.parametrize("limit", [1, 7, 50, 333, 1000, 5000])
async def test_tiny_limits_abort_cleanly_whatever_instruction_they_fall_on(
    load: Load, limit: int
) -> None:
    source = (
        "kumo.on('e', function()\n  local n = 0\n  for i = 1, 100 do n = n + i end\n"
        "  return n\nend)\n"
    )
    load_error = None
    try:
        runtime = load(source, PolicyLimits(max_instructions=limit, max_memory=32 * MIB))
    except PolicyLoadError as exc:
        load_error = str(exc)
    if load_error is not None:  # loading needs more than the limit: it says so
        assert "instruction limit exceeded" in load_error
        assert "policy handler failed" not in load_error
        return
    for _ in range(20):  # wherever the count ends, the answer is the handler's or its abort
        fired = await runtime.fire("e")
        assert fired.status in ("ok", "error")
        if fired.status == "error":
            assert "instruction limit exceeded" in fired.value
            assert "policy handler failed" not in fired.value  # no worker died
