"""Real SMTP servers in the test's event loop, policies pointing at them, and an Engine."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from kumoclient.engine.engine import Engine
from kumoclient.mx import MxResolver
from kumoclient.policy.runtime import PolicyHolder
from kumoclient.testing import ScriptedMX


@pytest.fixture
async def mx() -> AsyncIterator[ScriptedMX]:
    server = ScriptedMX()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture(params=[False, True], ids=["lockstep", "pipelining"])
async def either_mx(request: pytest.FixtureRequest) -> AsyncIterator[ScriptedMX]:
    """The scripted MX without and with PIPELINING: both ways of sending a transaction."""
    server = ScriptedMX(pipelining=request.param)
    await server.start()
    yield server
    await server.stop()


def write_policy(
    path: Path,
    mx_list: list[str],
    *,
    rewrite: str | None = None,
    queue: str = "",
    egress: str = "",
) -> Path:
    """A policy delivering to `mx_list`; `rewrite` is the body of the rewrite handler.

    The handler first appends its arguments (and their Lua types) as one JSON line to
    `<path>.calls`, so tests can see every call the engine made.
    """
    calls = path.with_suffix(".calls")
    hosts = ", ".join(json.dumps(h) for h in mx_list)
    source = f"""
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {{
    retry_interval = '1 hour',
    protocol = {{ smtp = {{ mx_list = {{ {hosts} }} }} }},
    {queue}
  }}
end)
kumo.on('get_egress_path_config', function(routing_domain, egress_source, site_name)
  return kumo.make_egress_path {{
    prohibited_hosts = {{}}, enable_tls = 'Disabled', idle_timeout = '1s',
    {egress}
  }}
end)
"""
    if rewrite is not None:
        source += f"""
kumo.on('smtp_client_rewrite_delivery_status',
  function(response, domain, tenant, campaign, routing_domain)
    local f = io.open({json.dumps(str(calls))}, 'a')
    f:write(kumo.json_encode {{
      response = response, domain = domain, tenant = tenant, campaign = campaign,
      routing_domain = routing_domain, tenant_type = type(tenant),
      campaign_type = type(campaign),
    }}, '\\n')
    f:close()
    {rewrite}
  end)
"""
    path.write_text(source)
    return path


def hook_calls(policy: Path) -> list[dict[str, Any]]:
    calls = policy.with_suffix(".calls")
    if not calls.exists():
        return []
    return [json.loads(line) for line in calls.read_text().splitlines()]


MakeEngine = Callable[..., Engine]


@pytest.fixture
async def engines(tmp_path: Path) -> AsyncIterator[MakeEngine]:
    """Start engines on a policy file (data under tmp_path); all are stopped at the end."""
    started: list[Engine] = []

    def make(policy: Path, data: str = "data", resolver: MxResolver | None = None) -> Engine:
        engine = Engine(PolicyHolder(policy), data_dir=tmp_path / data, resolver=resolver)
        started.append(engine)
        return engine

    yield make
    for engine in started:
        await engine.stop(grace=2)


MESSAGE = (
    b"From: a@example.com\r\nTo: b@example.net\r\nSubject: test\r\n"
    b"Message-ID: <1@example.com>\r\n\r\nHello\r\n.leading dot\r\n"
)


async def deliver_one(
    engine: Engine,
    recipient: str = "b@example.net",
    sender: str = "a@example.com",
    meta: dict[str, str] | None = None,
    timeout: float = 20.0,
) -> dict[str, Any]:
    """Submit one message and return its final record."""
    [message_id] = await engine.submit(sender, [recipient], MESSAGE, meta)
    async with asyncio.timeout(timeout):
        return await engine.outcome(message_id)


def records(engine: Engine) -> list[dict[str, Any]]:
    engine.records.flush()
    return [
        json.loads(line)
        for path in sorted(engine.records.log_dir.glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]


async def next_record(
    engine: Engine, kind: str, message_id: str | None = None, timeout: float = 20.0
) -> dict[str, Any]:
    """Wait for the next record of `kind` (for `message_id` when given)."""
    future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    def seen(record: dict[str, Any]) -> None:
        if record["type"] == kind and message_id in (None, record["id"]) and not future.done():
            future.set_result(record)

    engine.subscribe(seen)
    try:
        async with asyncio.timeout(timeout):
            return await future
    finally:
        engine.unsubscribe(seen)
