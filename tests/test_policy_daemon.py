"""The policy in a real daemon: reception handlers that wait while the listener serves, SIGHUP
after editing a memoized rules file, and runaway handlers (issue 15 item 3): the reply stands
or the client gets 451, the daemon keeps serving, SIGTERM stops it, memory stays bounded, and a
restart with the runaway message spooled still serves."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kumoclient.spool import Spool
from kumoclient.testing import ScriptedMX
from tests.daemon_process import DaemonProcess
from tests.smtp_client import Client

pytestmark = pytest.mark.slow

REJECTION = "452 4.2.2 The email account that you tried to reach is over quota."
CONTENT = b"Subject: t\r\n\r\nhello\r\n"


@pytest.fixture
async def mx() -> AsyncIterator[ScriptedMX]:
    async with ScriptedMX() as server:
        server.reply("*", REJECTION)
        yield server


def routing(mx: ScriptedMX, retry: str = "1s") -> str:
    return f"""
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {{
    retry_interval = '{retry}', protocol = {{ smtp = {{ mx_list = {{ '{mx.address}' }} }} }},
  }}
end)
kumo.on('get_egress_path_config', function(routing_domain, egress_source, site_name)
  return kumo.make_egress_path {{ prohibited_hosts = {{}}, enable_tls = 'Disabled' }}
end)
"""


def records(data: Path, kind: str) -> list[dict[str, object]]:
    found = []
    for path in sorted((data / "logs").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record["type"] == kind:
                found.append(record)
    return found


async def until(predicate: object, timeout: float = 30.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def send(port: int, recipient: str) -> str:
    client = await Client.connect(port)
    try:
        return await client.transaction("a@example.com", [recipient], CONTENT)
    finally:
        await client.close()


def start(tmp_path: Path, source: str, **environment: str) -> DaemonProcess:
    policy = tmp_path / "policy.lua"
    policy.write_text(textwrap.dedent(source))
    daemon = DaemonProcess(tmp_path / "data", policy)
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    try:
        return daemon.start()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# --- handlers that wait ---------------------------------------------------------------------


async def test_two_reception_handlers_wait_while_the_listener_answers_a_third_client(
    tmp_path: Path, mx: ScriptedMX
) -> None:
    release = tmp_path / "release"
    daemon = start(
        tmp_path,
        routing(mx)
        + f"""
kumo.on('smtp_server_message_received', function(msg)
  local marker = '{tmp_path}/started-' .. msg:recipient().email
  io.open(marker, 'w'):close()
  while io.open('{release}') == nil do kumo.sleep(0.02) end
end)
""",
    )
    try:
        first = asyncio.ensure_future(send(daemon.port, "one@example.net"))
        second = asyncio.ensure_future(send(daemon.port, "two@example.net"))
        # both handlers are inside kumo.sleep at once: neither can end before the release
        await until(lambda: len(list(tmp_path.glob("started-*"))) == 2)
        third = await Client.connect(daemon.port)  # greeting and EHLO answered meanwhile
        assert (await third.cmd("NOOP")).startswith("250")
        await third.close()
        assert not first.done()
        assert not second.done()
        release.touch()
        assert (await first).startswith("250")
        assert (await second).startswith("250")
    finally:
        assert daemon.stop() == 0


# --- SIGHUP ----------------------------------------------------------------------------------


async def test_sighup_after_editing_a_memoized_rules_file_applies_the_new_rule(
    tmp_path: Path, mx: ScriptedMX
) -> None:
    rules = tmp_path / "dsn_rewrite.json"
    rules.write_text("{}")
    example = (Path(__file__).parents[1] / "examples" / "dsn_rewrite.lua").read_text()
    daemon = start(tmp_path, routing(mx, retry="1 hour") + example)
    data = tmp_path / "data"
    try:
        assert (await send(daemon.port, "first@example.net")).startswith("250")
        await until(lambda: records(data, "TransientFailure"))
        rules.write_text(json.dumps({"over quota": 500}))
        daemon.signal(signal.SIGHUP)
        await until(lambda: "policy reloaded" in daemon.stderr())
        assert (await send(daemon.port, "second@example.net")).startswith("250")
        await until(lambda: records(data, "Bounce"))
    finally:
        assert daemon.stop() == 0
    [bounce] = records(data, "Bounce")
    assert bounce["recipient"] == "second@example.net"
    response = bounce["response"]
    assert isinstance(response, dict)
    assert "(kumomta: status was rewritten from 452 -> 500)" in str(response["content"])


# --- runaway handlers ---------------------------------------------------------------------------

RUNAWAY_HOOK = """
kumo.on('smtp_client_rewrite_delivery_status', function(response)
  io.open('{marker}', 'w'):close()
  while true do end
end)
"""


async def test_a_runaway_rewrite_hook_keeps_the_reply_and_the_daemon_serves_after_restart(
    tmp_path: Path, mx: ScriptedMX
) -> None:
    marker = tmp_path / "hook-ran"
    source = routing(mx) + RUNAWAY_HOOK.format(marker=marker)
    limit = {"KUMOCLIENT_LUA_MAX_INSTRUCTIONS": "300000000"}
    data = tmp_path / "data"
    daemon = start(tmp_path, source, **limit)
    try:
        assert (await send(daemon.port, "loop@example.net")).startswith("250")
        await until(marker.exists)
        # the hook holds the loop until its limit: a client waits for its greeting, then is
        # served (the runaway ended with its limit, not with the daemon)
        assert (await send(daemon.port, "other@example.net")).startswith("250")
        await until(lambda: records(data, "TransientFailure"))
    finally:
        assert daemon.stop() == 0
    failure = records(data, "TransientFailure")[0]
    response = failure["response"]
    assert isinstance(response, dict)
    assert response["code"] == 452
    assert "rewritten" not in str(response["content"])
    assert "policy.lua:" in daemon.stderr()
    assert "instruction limit exceeded" in daemon.stderr()
    assert "loop@example.net" in {str(r["recipient"]) for r in records(data, "TransientFailure")}

    # restart with the runaway messages spooled (due at once): the daemon still serves
    marker.unlink()
    restarted = start(tmp_path, source, **limit)
    try:
        await until(marker.exists)  # the spooled message met the hook again
        assert (await send(restarted.port, "after@example.net")).startswith("250")
    finally:
        assert restarted.stop() == 0
    assert len(Spool(data / "spool").ids()) == 3  # nothing lost, nothing delivered


async def test_sigterm_stops_the_daemon_while_a_handler_runs_for_ever(
    tmp_path: Path, mx: ScriptedMX
) -> None:
    marker = tmp_path / "hook-ran"
    daemon = start(
        tmp_path,
        routing(mx) + RUNAWAY_HOOK.format(marker=marker),
        KUMOCLIENT_LUA_MAX_INSTRUCTIONS=str(10**15),
    )
    assert (await send(daemon.port, "loop@example.net")).startswith("250")
    await until(marker.exists)
    try:
        assert daemon.stop(timeout=20) == 0
    finally:
        daemon.kill()
    assert "handler interrupted: kumoclient is stopping" in daemon.stderr()
    assert len(Spool(tmp_path / "data" / "spool").ids()) == 1  # still there for next time


def _memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


async def test_an_allocating_handler_stays_under_the_memory_limit(
    tmp_path: Path, mx: ScriptedMX
) -> None:
    limit_mib = 64
    daemon = start(
        tmp_path,
        routing(mx)
        + """
kumo.on('smtp_client_rewrite_delivery_status', function(response)
  local t = {}
  while true do t[#t + 1] = string.rep('x', 1000000) .. #t end
end)
""",
        KUMOCLIENT_LUA_MAX_MEMORY=f"{limit_mib}MiB",
    )
    data = tmp_path / "data"
    try:
        assert daemon.proc is not None
        before = _memory_kib(daemon.proc.pid, "VmHWM")
        assert (await send(daemon.port, "hog@example.net")).startswith("250")
        await until(lambda: records(data, "TransientFailure"))
        peak = _memory_kib(daemon.proc.pid, "VmHWM")
        assert (await send(daemon.port, "next@example.net")).startswith("250")  # serving
    finally:
        assert daemon.stop() == 0
    assert "Lua memory limit exceeded" in daemon.stderr()
    # the peak grew by the Lua limit and some slack, never by what the handler asked for
    assert (peak - before) / 1024 < limit_mib + 48, (before, peak)


async def test_a_runaway_reception_handler_answers_451_and_the_daemon_serves(
    tmp_path: Path, mx: ScriptedMX
) -> None:
    daemon = start(
        tmp_path,
        routing(mx)
        + """
kumo.on('smtp_server_message_received', function(msg)
  if msg:recipient().email == 'loop@example.net' then while true do end end
end)
""",
        KUMOCLIENT_LUA_MAX_INSTRUCTIONS="50000000",
    )
    try:
        reply = await send(daemon.port, "loop@example.net")
        assert reply.startswith("451 4.3.0"), reply
        assert (await send(daemon.port, "fine@example.net")).startswith("250")
    finally:
        assert daemon.stop() == 0
    assert len(Spool(tmp_path / "data" / "spool").ids()) == 1  # only the accepted one


async def test_editing_a_watched_rules_file_applies_it_without_a_signal(
    tmp_path: Path, mx: ScriptedMX
) -> None:
    """The monitor notices the change (it polls every 10 s), bumps the epoch: the cache with
    invalidate_with_epoch computes the rules again."""
    rules = tmp_path / "rules.json"
    rules.write_text("{}")
    daemon = start(
        tmp_path,
        routing(mx, retry="1 hour")
        + """
local rules = kumo.memoize(function()
  return kumo.regex_set_map.new(kumo.json_load('rules.json'))
end, { name = 'watched_rules', ttl = '1 hour', capacity = 1, invalidate_with_epoch = true })
kumo.on('smtp_client_rewrite_delivery_status', function(response)
  return rules()[response]
end)
""",
    )
    data = tmp_path / "data"
    try:
        assert (await send(daemon.port, "first@example.net")).startswith("250")
        await until(lambda: records(data, "TransientFailure"))
        rules.write_text(json.dumps({"over quota": 550}))
        await until(lambda: "configuration files changed" in daemon.stderr(), timeout=40)
        assert (await send(daemon.port, "second@example.net")).startswith("250")
        await until(lambda: records(data, "Bounce"))
    finally:
        assert daemon.stop() == 0
    assert [r["recipient"] for r in records(data, "Bounce")] == ["second@example.net"]
