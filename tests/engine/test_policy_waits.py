"""Routing with a policy whose configuration events wait (kumo.sleep, as a DNS or HTTP lookup
would): the messages of a queue are parked behind one get_queue_config call, those of a site
behind one get_egress_path_config call, and a runaway config handler leaves its message to be
retried with the reason."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.engine.conftest import MakeEngine, ScriptedMX, next_record

WAITING = """
QUEUE_CALLS, PATH_CALLS = 0, 0
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  QUEUE_CALLS = QUEUE_CALLS + 1
  kumo.sleep(0.2)
  return kumo.make_queue_config {{ protocol = {{ smtp = {{ mx_list = {{ '{mx}' }} }} }} }}
end)
kumo.on('get_egress_path_config', function(routing_domain, egress_source, site_name)
  PATH_CALLS = PATH_CALLS + 1
  kumo.sleep(0.2)
  return kumo.make_egress_path {{ prohibited_hosts = {{}}, enable_tls = 'Disabled' }}
end)
"""


async def test_messages_wait_for_one_config_call_each_and_all_are_delivered(
    mx: ScriptedMX, engines: MakeEngine, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.lua"
    policy.write_text(WAITING.format(mx=mx.address))
    engine = engines(policy)
    await engine.start()
    ids = await engine.submit(
        "a@example.com", [f"r{i}@example.net" for i in range(5)], b"Subject: x\r\n\r\nhi\r\n"
    )
    outcomes = await asyncio.wait_for(asyncio.gather(*(engine.outcome(i) for i in ids)), 20)
    assert {record["type"] for record in outcomes} == {"Delivery"}
    globals_ = engine.policy.current._lua.globals()
    assert (globals_.QUEUE_CALLS, globals_.PATH_CALLS) == (1, 1)


async def test_a_runaway_get_queue_config_retries_the_message_with_the_reason(
    mx: ScriptedMX, engines: MakeEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUMOCLIENT_LUA_MAX_INSTRUCTIONS", "2000000")
    policy = tmp_path / "policy.lua"
    policy.write_text("kumo.on('get_queue_config', function()\n  while true do end\nend)\n")
    engine = engines(policy)
    await engine.start()
    [message_id] = await engine.submit("a@example.com", ["b@example.net"], b"Subject: x\r\n\r\n")
    record = await next_record(engine, "TransientFailure", message_id)
    content = record["response"]["content"]
    assert "policy.lua:2: instruction limit exceeded" in content
    assert message_id in engine.spool.ids()  # kept for its next attempt
