"""kumo.dns in a real daemon against a real DNS server on loopback (run by this test's event
loop, configured with `kumo.dns.configure_resolver` in `init`): two reception handlers wait for
their MX lookups at once while the listener answers a third client, and the RBL example
rejects a listed address."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kumoclient.testing import ScriptedMX
from tests.dns_server import DnsServer
from tests.smtp_client import Client
from tests.test_policy_daemon import routing, send, start, until

pytestmark = pytest.mark.slow

ZONE = """\
held-one 300 MX 10 mx1.held-one.test.
held-two 300 MX 20 mx-b.held-two.test.
held-two 300 MX 10 mx-a.held-two.test.
"""
SPAMCOP = """\
2.0.0.127 300 A 127.0.0.2
2.0.0.127 300 TXT "Blocked - see https://www.spamcop.net/bl.shtml?127.0.0.2"
"""


@pytest.fixture
async def mx() -> AsyncIterator[ScriptedMX]:
    async with ScriptedMX() as server:
        yield server


@pytest.fixture
async def dns_server() -> AsyncIterator[DnsServer]:
    held = ["held-one", "held-two"]
    async with DnsServer(ZONE, held=held, more={"bl.spamcop.net.": SPAMCOP}) as server:
        yield server


def resolver_init(server: DnsServer) -> str:
    return f"""
kumo.on('init', function()
  kumo.dns.configure_resolver {{
    name_servers = {{ '{server.address}' }}, options = {{ timeout = '60s' }},
  }}
end)
"""


async def test_two_reception_handlers_wait_for_lookup_mx_while_the_listener_answers_a_third(
    tmp_path: Path, mx: ScriptedMX, dns_server: DnsServer
) -> None:
    daemon = start(
        tmp_path,
        resolver_init(dns_server)
        + routing(mx)
        + f"""
kumo.on('smtp_server_message_received', function(msg)
  local domain = msg:recipient().domain
  local answer = kumo.dns.lookup_mx(domain)
  local file = io.open('{tmp_path}/mx-' .. domain, 'w')
  file:write(kumo.json_encode(answer.hosts))
  file:close()
end)
""",
    )
    try:
        first = asyncio.ensure_future(send(daemon.port, "one@held-one.test"))
        second = asyncio.ensure_future(send(daemon.port, "two@held-two.test"))
        # both handlers are inside kumo.dns.lookup_mx: their queries reached the server, whose
        # answers wait for release()
        await until(lambda: dns_server.waiting == {"held-one.test.", "held-two.test."})
        third = await Client.connect(daemon.port)  # greeting and EHLO answered meanwhile
        assert (await third.cmd("NOOP")).startswith("250")
        await third.close()
        assert not first.done()
        assert not second.done()
        dns_server.release()
        assert (await first).startswith("250")
        assert (await second).startswith("250")
    finally:
        assert daemon.stop() == 0
    assert json.loads((tmp_path / "mx-held-one.test").read_text()) == ["mx1.held-one.test."]
    assert json.loads((tmp_path / "mx-held-two.test").read_text()) == [
        "mx-a.held-two.test.",
        "mx-b.held-two.test.",
    ]


async def test_the_rbl_example_rejects_a_listed_address(
    tmp_path: Path, mx: ScriptedMX, dns_server: DnsServer
) -> None:
    daemon = start(
        tmp_path,
        resolver_init(dns_server)
        + routing(mx)
        + """
kumo.on('smtp_server_message_received', function(msg)
  local listed = msg:recipient().user
  local ip, reason = kumo.dns.rbl_lookup(listed, 'bl.spamcop.net')
  if ip then
    kumo.reject(550, string.format('5.7.1 %s', reason))
  end
end)
""",
    )
    try:
        refused = await send(daemon.port, "127.0.0.2@example.net")
        accepted = await send(daemon.port, "127.0.0.3@example.net")
    finally:
        assert daemon.stop() == 0
    assert refused == "550 5.7.1 Blocked - see https://www.spamcop.net/bl.shtml?127.0.0.2"
    assert accepted.startswith("250")
