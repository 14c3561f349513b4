"""The lookups `kumo.dns` asks of kumoclient.mx — MX records as published, TXT, PTR, addresses
by strategy —, against a real DNS server in the test's event loop; zone text in memory (the
Test resolver); several upstreams in turn; the current resolver; the hosts file."""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import AsyncIterator
from pathlib import Path

import dns.name
import pytest

from kumoclient.mx import (
    AggregateUpstream,
    DnsTemporaryFailure,
    MxRecords,
    MxResolver,
    ZoneUpstream,
    current_resolver,
    forget_resolver,
    hosts_file_addresses,
    use_resolver,
)
from tests.dns_server import DnsServer

ZONE = """\
$TTL 300
multi     MX 20 B.multi.test.
multi     MX 10 c.multi.test.
multi     MX 10 a.multi.test.
multi     TXT "v=spf1 " "-all"
multi     TXT "second"
nodata    A 192.0.2.1
nullmx    MX 0 .
dual      A 192.0.2.10
dual      AAAA 2001:db8::10
v6only    AAAA 2001:db8::11
"""
REVERSE = "1 300 PTR One.test.\n1 300 PTR other.test.\n"


@pytest.fixture
async def server() -> AsyncIterator[DnsServer]:
    more = {"2.0.192.in-addr.arpa.": REVERSE}
    async with DnsServer(ZONE, servfail=["broken"], more=more) as running:
        yield running


@pytest.fixture
def resolver(server: DnsServer) -> MxResolver:
    return MxResolver([server.address], timeout=2.0)


# --- MX records as published --------------------------------------------------------------


async def test_exchangers_sorted_by_preference_then_name_unshuffled(resolver: MxResolver) -> None:
    answer = await resolver.exchangers("Multi.Test")
    assert answer == MxRecords(
        "multi.test.", ((10, "a.multi.test"), (10, "c.multi.test"), (20, "b.multi.test")), False
    )


async def test_exchangers_of_a_domain_without_mx_is_the_domain_at_preference_1(
    resolver: MxResolver,
) -> None:
    assert await resolver.exchangers("nodata.test") == MxRecords(
        "nodata.test.", ((1, "nodata.test"),), True
    )


async def test_exchangers_show_a_null_mx_as_a_dot(resolver: MxResolver) -> None:
    assert (await resolver.exchangers("nullmx.test")).records == ((0, "."),)


async def test_exchangers_nxdomain_is_an_error(resolver: MxResolver) -> None:
    with pytest.raises(DnsTemporaryFailure, match=r"MX lookup for missing\.test failed: NXDOMAIN"):
        await resolver.exchangers("missing.test")


async def test_exchangers_and_delivery_share_the_cache(
    resolver: MxResolver, server: DnsServer
) -> None:
    await resolver.exchangers("multi.test")
    answer = await resolver.resolve("multi.test")
    assert set(answer.hosts) == {"a.multi.test", "b.multi.test", "c.multi.test"}
    assert server.count("multi", "MX") == 1


# --- other records -----------------------------------------------------------------------


async def test_txt_records_each_joined(resolver: MxResolver) -> None:
    assert sorted(await resolver.records("multi.test", "TXT")) == ["second", "v=spf1 -all"]


async def test_ptr_names_keep_their_final_dot(resolver: MxResolver) -> None:
    names = await resolver.records("1.2.0.192.in-addr.arpa", "PTR")
    assert sorted(names) == ["One.test.", "other.test."]


async def test_nodata_is_empty_and_nxdomain_an_error_unless_allowed(
    resolver: MxResolver,
) -> None:
    assert await resolver.records("nodata.test", "TXT") == []
    with pytest.raises(DnsTemporaryFailure, match=r"TXT lookup for missing\.test failed: NXDOMAIN"):
        await resolver.records("missing.test", "TXT")
    assert await resolver.records("missing.test", "TXT", nxdomain_ok=True) == []


async def test_a_server_failure_is_an_error_even_when_nxdomain_is_allowed(
    resolver: MxResolver, server: DnsServer
) -> None:
    with pytest.raises(DnsTemporaryFailure, match=f"SERVFAIL from {server.address}"):
        await resolver.records("broken.test", "A", nxdomain_ok=True)


@pytest.mark.parametrize(
    ("strategy", "name", "expected"),
    [
        ("Ipv4AndIpv6", "dual.test", ["192.0.2.10", "2001:db8::10"]),
        ("Ipv4Only", "dual.test", ["192.0.2.10"]),
        ("Ipv6Only", "dual.test", ["2001:db8::10"]),
        ("Ipv4ThenIpv6", "dual.test", ["192.0.2.10"]),
        ("Ipv6ThenIpv4", "dual.test", ["2001:db8::10"]),
        ("Ipv4ThenIpv6", "v6only.test", ["2001:db8::11"]),
        ("Ipv6ThenIpv4", "nodata.test", ["192.0.2.1"]),
    ],
)
async def test_addresses_by_strategy(
    resolver: MxResolver, server: DnsServer, strategy: str, name: str, expected: list[str]
) -> None:
    assert await resolver.addresses(name, strategy) == expected


async def test_the_second_family_is_not_asked_when_the_first_answers(
    resolver: MxResolver, server: DnsServer
) -> None:
    await resolver.addresses("dual.test", "Ipv4ThenIpv6")
    assert (server.count("dual", "A"), server.count("dual", "AAAA")) == (1, 0)


# --- zone text in memory and several upstreams -----------------------------------------------

TEST_ZONE = """
$ORIGIN example.com.
@       600  IN MX 2 two.example.com.
                MX 1 one.example.com.
one 300 A 10.0.0.1
www 300 CNAME one.example.com.
"""


async def test_zone_text_answers_records_nodata_and_nxdomain() -> None:
    resolver = MxResolver(upstream=ZoneUpstream([TEST_ZONE]))
    assert (await resolver.exchangers("example.com")).records == (
        (1, "one.example.com"),
        (2, "two.example.com"),
    )
    assert await resolver.addresses("www.example.com") == ["10.0.0.1"]  # through the CNAME
    assert await resolver.records("nothing.example.com", "A") == []  # inside a zone: NODATA
    with pytest.raises(DnsTemporaryFailure, match="NXDOMAIN"):
        await resolver.records("example.org", "A")


async def test_zone_servfail_names_fail() -> None:
    resolver = MxResolver(upstream=ZoneUpstream([TEST_ZONE], servfail=["one.example.com"]))
    with pytest.raises(DnsTemporaryFailure, match="SERVFAIL"):
        await resolver.addresses("one.example.com")


@pytest.mark.parametrize(
    ("zone", "message"),
    [
        ("one 300 A 10.0.0.1\n", "zone 1: the zone text has no \\$ORIGIN"),
        ("$ORIGIN x.\n@ A", "zone 1:"),
    ],
)
def test_a_bad_zone_is_refused(zone: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ZoneUpstream([zone])


async def test_aggregate_asks_in_turn_until_one_knows_the_name(server: DnsServer) -> None:
    zones = ZoneUpstream(["$ORIGIN local.example.\n@ 60 A 10.9.9.9\n"])
    network = MxResolver([server.address], timeout=2.0).upstream
    resolver = MxResolver(upstream=AggregateUpstream([zones, network]))
    assert await resolver.addresses("local.example") == ["10.9.9.9"]
    assert await resolver.addresses("dual.test") == ["192.0.2.10", "2001:db8::10"]
    assert server.count("local.example") == 0  # the zones knew it
    with pytest.raises(DnsTemporaryFailure, match="NXDOMAIN"):
        await resolver.addresses("missing.test")


async def test_aggregate_reports_a_failure_when_no_upstream_knows_the_name(
    server: DnsServer,
) -> None:
    zones = ZoneUpstream(["$ORIGIN local.example.\n@ 60 A 10.9.9.9\n"])
    network = MxResolver([server.address], timeout=2.0).upstream
    resolver = MxResolver(upstream=AggregateUpstream([zones, network]))
    with pytest.raises(DnsTemporaryFailure, match="SERVFAIL"):
        await resolver.addresses("broken.test")


# --- the current resolver, loops, the hosts file ---------------------------------------------


def test_the_current_resolver_is_the_one_in_use_else_a_system_one() -> None:
    mine = MxResolver(["127.0.0.1:9"])
    use_resolver(mine)
    try:
        assert current_resolver() is mine
    finally:
        forget_resolver(mine)
    other = current_resolver()
    assert other is not mine
    assert current_resolver() is other  # made once
    forget_resolver(mine)  # not the current one: nothing changes
    assert current_resolver() is other


async def test_lookups_on_two_event_loops_at_once_do_not_share_a_future(
    resolver: MxResolver, server: DnsServer
) -> None:
    """A policy loading runs its lookups on an event loop of its own (in a thread) while the
    daemon's loop resolves too: each loop waits for its own query."""
    server.held = {dns.name.from_text("multi.test.")}

    def other_loop() -> MxRecords:
        return asyncio.run(resolver.exchangers("multi.test"))

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        here = asyncio.ensure_future(resolver.exchangers("multi.test"))
        there = asyncio.get_running_loop().run_in_executor(pool, other_loop)
        async with asyncio.timeout(30):  # both loops send their own query
            while server.held_queries < 2:
                await asyncio.sleep(0.01)
        server.release()
        assert (await here).records == (await there).records


def test_hosts_file_names(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("# comment\n::1 localhost\n127.0.0.1 localhost loopback.\nbad line\n")
    assert hosts_file_addresses("LocalHost.", str(hosts)) == ["127.0.0.1", "::1"]
    assert hosts_file_addresses("loopback", str(hosts)) == ["127.0.0.1"]
    assert hosts_file_addresses("elsewhere", str(hosts)) == []
    assert hosts_file_addresses("localhost", str(tmp_path / "missing")) == []
