"""Real SMTP servers in the test's event loop, policies pointing at them, and an Engine."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from kumoclient.engine.engine import Engine
from kumoclient.mx import MxResolver
from kumoclient.policy.runtime import PolicyHolder


class ScriptedMX:
    """aiosmtpd answering per address: `replies[(phase, address)]` replaces the normal reply.

    Phases: MAIL (by sender), RCPT, DATA (the reply to DATA), DOT (the reply to the final dot).
    Accepted messages are kept in `received` as (sender, recipients, content bytes).
    With `pipelining`, EHLO offers PIPELINING (aiosmtpd reads pipelined commands in order);
    `chunks` keeps every read from the network, so tests can see what came in one write.
    """

    def __init__(self, *, pipelining: bool = False, eight_bit: bool = True) -> None:
        self.pipelining = pipelining
        self.eight_bit = eight_bit  # False: EHLO does not offer 8BITMIME
        self.mail_options: list[list[str]] = []
        self.chunks: list[bytes] = []
        self.replies: dict[tuple[str, str], str] = {}
        self.received: list[tuple[str, list[str], bytes]] = []
        self.received_at: list[float] = []  # monotonic time of each accepted message
        self.peers: list[str] = []  # the client address of each transaction
        self.ehlo_names: list[str] = []
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _ScriptedSMTP(self), "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        self.ehlo_names.append(hostname)
        if not self.eight_bit:
            responses = [line for line in responses if "8BITMIME" not in line]
        if self.pipelining:
            return [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.peers.append(str(session.peer[0]))
        reply = self.replies.get(("MAIL", address))
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        self.mail_options.append(list(options))
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self.replies.get(("RCPT", address))
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        for rcpt in envelope.rcpt_tos:
            reply = self.replies.get(("DOT", rcpt))
            if reply:
                return reply
        content = envelope.original_content or b""
        self.received.append((str(envelope.mail_from), list(envelope.rcpt_tos), content))
        self.received_at.append(time.monotonic())
        return "250 2.0.0 OK queued"


class _ScriptedSMTP(SMTP):
    def __init__(self, script: ScriptedMX) -> None:
        super().__init__(script, hostname="mx.test", decode_data=False, enable_SMTPUTF8=True)
        self.script = script

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.script.connections += 1
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.script.chunks.append(data)
        super().data_received(data)

    async def smtp_DATA(self, arg: str) -> None:
        for rcpt in self.envelope.rcpt_tos:
            reply = self.script.replies.get(("DATA", rcpt))
            if reply:
                await self.push(reply)
                return
        await super().smtp_DATA(arg)


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
