"""SPEC 2.1 by DNS: MX records from a real DNS server on loopback decide where mail goes;
a null MX bounces (556 5.1.10), NXDOMAIN and DNS failures are transient (451 4.4.4), domains
with the same MX hosts share one site, and prohibited addresses bounce (550 5.4.4)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kumoclient.mx import MxResolver
from tests.dns_server import DnsServer
from tests.engine.conftest import (
    MakeEngine,
    ScriptedMX,
    deliver_one,
    hook_calls,
    next_record,
    records,
)

ZONE = """\
shop 300 MX 10 mx1.mail
shop 300 MX 20 mx2.mail
blog 300 MX 10 mx2.mail
blog 300 MX 20 mx1.mail
mx1.mail 300 A 127.0.0.1
mx2.mail 300 A 127.0.0.1
nomx 300 A 127.0.0.1
nullmx 300 MX 0 .
elsewhere 300 MX 10 mx.other
mx.other 300 A 127.0.0.1
"""


@pytest.fixture
async def dns() -> AsyncIterator[DnsServer]:
    async with DnsServer(ZONE, "test.", servfail=["broken"]) as server:
        yield server


def dns_policy(path: Path, port: int, *, egress: str = "prohibited_hosts = {},") -> Path:
    """A policy without mx_list: every domain is routed by its MX records, on `port`."""
    path.write_text(
        f"""
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {{ retry_interval = '1 hour', generate_dsn = false }}
end)
kumo.on('get_egress_path_config', function(routing_domain, egress_source, site_name)
  return kumo.make_egress_path {{
    smtp_port = {port}, enable_tls = 'Disabled', idle_timeout = '1s', {egress}
  }}
end)
kumo.on('smtp_client_rewrite_delivery_status', function(response)
  local f = io.open({str(path.with_suffix(".calls"))!r}, 'a')
  f:write(kumo.json_encode {{ response = response }}, '\\n')
  f:close()
end)
"""
    )
    return path


async def test_mail_goes_to_the_mx_of_the_domain(
    mx: ScriptedMX, dns: DnsServer, engines: MakeEngine, tmp_path: Path
) -> None:
    engine = engines(dns_policy(tmp_path / "p.lua", mx.port), resolver=MxResolver([dns.address]))
    await engine.start()
    record = await deliver_one(engine, recipient="someone@shop.test")
    assert record["type"] == "Delivery"
    assert record["site"] == "unspecified->(mx1|mx2).mail.test@smtp_client"
    assert record["peer_address"]["name"] in ("mx1.mail.test", "mx2.mail.test")
    assert mx.received[0][1] == ["someone@shop.test"]
    assert dns.count("shop", "MX") == 1


async def test_domains_with_the_same_mx_hosts_share_one_site(
    mx: ScriptedMX, dns: DnsServer, engines: MakeEngine, tmp_path: Path
) -> None:
    engine = engines(dns_policy(tmp_path / "p.lua", mx.port), resolver=MxResolver([dns.address]))
    await engine.start()
    first = await deliver_one(engine, recipient="a@shop.test")
    second = await deliver_one(engine, recipient="b@blog.test")
    assert first["queue"] != second["queue"]
    assert first["site"] == second["site"]
    assert len(engine.table.sites()) == 1
    other = await deliver_one(engine, recipient="c@elsewhere.test")
    assert other["site"] == "unspecified->mx.other.test@smtp_client"
    assert len(engine.table.sites()) == 2


async def test_a_domain_without_mx_records_is_its_own_mail_exchanger(
    mx: ScriptedMX, dns: DnsServer, engines: MakeEngine, tmp_path: Path
) -> None:
    engine = engines(dns_policy(tmp_path / "p.lua", mx.port), resolver=MxResolver([dns.address]))
    await engine.start()
    record = await deliver_one(engine, recipient="x@nomx.test")
    assert record["type"] == "Delivery"
    assert record["peer_address"]["name"] == "nomx.test"


async def test_a_null_mx_bounces_without_the_hook(
    mx: ScriptedMX, dns: DnsServer, engines: MakeEngine, tmp_path: Path
) -> None:
    policy = dns_policy(tmp_path / "p.lua", mx.port)
    engine = engines(policy, resolver=MxResolver([dns.address]))
    await engine.start()
    record = await deliver_one(engine, recipient="x@nullmx.test")
    assert record["type"] == "Bounce"
    assert record["response"]["code"] == 556
    assert record["response"]["enhanced_code"] == {"class": 5, "subject": 1, "detail": 10}
    assert record["response"]["content"] == "Recipient address has a null MX"
    assert record["response"]["command"] is None
    assert hook_calls(policy) == []
    assert mx.connections == 0
    await engine.flush()
    assert engine.spool.ids() == []


@pytest.mark.parametrize(
    ("domain", "reason"),
    [("missing.test", "NXDOMAIN"), ("broken.test", "SERVFAIL")],
)
async def test_nxdomain_and_dns_failures_are_transient_never_a_bounce(
    mx: ScriptedMX,
    dns: DnsServer,
    engines: MakeEngine,
    tmp_path: Path,
    domain: str,
    reason: str,
) -> None:
    policy = dns_policy(tmp_path / "p.lua", mx.port)
    engine = engines(policy, resolver=MxResolver([dns.address], timeout=2))
    await engine.start()
    [message_id] = await engine.submit("a@example.com", [f"x@{domain}"], b"Subject: x\r\n\r\nx\r\n")
    failure = await next_record(engine, "TransientFailure", message_id)
    response = failure["response"]
    assert (response["code"], response["enhanced_code"]) == (
        451,
        {"class": 4, "subject": 4, "detail": 4},
    )
    assert response["content"].startswith(f"KumoMTA internal: failed to resolve queue {domain}: ")
    assert f"MX lookup for {domain} failed: {reason}" in response["content"]
    assert hook_calls(policy) == []
    await engine.flush()
    assert engine.spool.ids() == [message_id]  # still spooled, for the retry
    assert [r["type"] for r in records(engine)] == ["Reception", "TransientFailure"]


async def test_an_mx_on_a_prohibited_address_bounces_naming_it(
    mx: ScriptedMX, dns: DnsServer, engines: MakeEngine, tmp_path: Path
) -> None:
    policy = dns_policy(tmp_path / "p.lua", mx.port, egress="")  # the default ranges
    engine = engines(policy, resolver=MxResolver([dns.address]))
    await engine.start()
    record = await deliver_one(engine, recipient="x@shop.test")
    assert record["type"] == "Bounce"
    assert (record["response"]["code"], record["response"]["content"]) == (
        550,
        "KumoMTA internal: 127.0.0.1 is on the list of prohibited_hosts",
    )
    assert mx.connections == 0
