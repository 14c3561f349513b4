"""kumoclient.mx against a real authoritative DNS server running in the test's event loop."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from kumoclient.mx import (
    DnsTemporaryFailure,
    MxAnswer,
    MxResolver,
    NullMx,
    parse_nameserver,
)
from tests.dns_server import DnsServer

ZONE = """\
$TTL 300
ordered   MX 30 C.Ordered.TEST.
ordered   MX 10 a.ordered.test.
ordered   MX 20 b.ordered.test.
multi     MX 5 Primary.Multi.TEST.
multi     MX 10 mx-a.multi.test.
multi     MX 10 mx-b.multi.test.
multi     MX 10 mx-c.multi.test.
multi     MX 20 backup1.multi.test.
multi     MX 20 backup2.multi.test.
twice     MX 10 same.test.
twice     MX 20 same.test.
nodata    A 192.0.2.1
nullmx    MX 0 .
cached    120 MX 10 mail.test.
mail      A 192.0.2.10
mail      AAAA 2001:db8::10
v6only    AAAA 2001:db8::11
alias     CNAME mail.test.
a.b.deep  A 192.0.2.12
"""
BIG = "".join(f"big 300 A 198.51.100.{i}\n" for i in range(1, 61))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def dns_server() -> AsyncIterator[DnsServer]:
    async with DnsServer(ZONE + BIG, servfail=["broken"], silent=["slow"]) as server:
        yield server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_resolver(dns_server: DnsServer, clock: FakeClock) -> Callable[..., MxResolver]:
    def make(**kwargs: Any) -> MxResolver:
        kwargs.setdefault("timeout", 2.0)
        return MxResolver([dns_server.address], clock=clock, **kwargs)

    return make


@pytest.fixture
def resolver(make_resolver: Callable[..., MxResolver]) -> MxResolver:
    return make_resolver(rng=random.Random(0))


# --- MX ---------------------------------------------------------------------------------


async def test_mx_in_preference_order_lower_case(resolver: MxResolver) -> None:
    answer = await resolver.resolve("Ordered.Test.")
    assert answer == MxAnswer(
        domain="ordered.test",
        hosts=("a.ordered.test", "b.ordered.test", "c.ordered.test"),
        preferences=(10, 20, 30),
        implicit=False,
    )


async def test_hosts_shuffled_within_a_preference_only(
    make_resolver: Callable[..., MxResolver],
) -> None:
    tens: set[tuple[str, ...]] = set()
    twenties: set[tuple[str, ...]] = set()
    for seed in range(20):
        answer = await make_resolver(rng=random.Random(seed)).resolve("multi.test")
        assert answer.preferences == (5, 10, 10, 10, 20, 20)
        assert answer.hosts[0] == "primary.multi.test"
        assert set(answer.hosts[1:4]) == {"mx-a.multi.test", "mx-b.multi.test", "mx-c.multi.test"}
        assert set(answer.hosts[4:]) == {"backup1.multi.test", "backup2.multi.test"}
        tens.add(answer.hosts[1:4])
        twenties.add(answer.hosts[4:])
    assert len(twenties) == 2  # both orders happen
    assert len(tens) > 2


async def test_shuffle_is_per_call_and_reproducible(
    make_resolver: Callable[..., MxResolver], dns_server: DnsServer
) -> None:
    one, two = make_resolver(rng=random.Random(7)), make_resolver(rng=random.Random(7))
    first = [(await one.resolve("multi.test")).hosts for _ in range(10)]
    second = [(await two.resolve("multi.test")).hosts for _ in range(10)]
    assert first == second
    assert len(set(first)) > 1  # a cached answer is shuffled again on every call
    assert dns_server.count("multi", "MX") == 2  # one query per resolver


async def test_host_listed_twice_kept_at_best_preference(resolver: MxResolver) -> None:
    answer = await resolver.resolve("twice.test")
    assert (answer.hosts, answer.preferences) == (("same.test",), (10,))


async def test_nodata_is_an_implicit_mx(resolver: MxResolver) -> None:
    answer = await resolver.resolve("NoData.test")
    assert answer == MxAnswer("nodata.test", ("nodata.test",), (0,), implicit=True)
    assert await resolver.addresses(answer.hosts[0]) == ["192.0.2.1"]


async def test_empty_non_terminal_is_nodata(resolver: MxResolver) -> None:
    answer = await resolver.resolve("b.deep.test")
    assert answer.implicit
    assert answer.hosts == ("b.deep.test",)


async def test_null_mx_is_reported_as_such(resolver: MxResolver) -> None:
    """(The 556 5.1.10 Bounce it becomes: tests/core/test_synthesized.py, test_disposition.py
    and tests/engine/test_routing.py.)"""
    with pytest.raises(NullMx) as caught:
        await resolver.resolve("nullmx.test")
    assert caught.value.domain == "nullmx.test"
    assert caught.value.text == "Recipient address has a null MX"


async def test_nxdomain_is_a_temporary_failure(resolver: MxResolver) -> None:
    with pytest.raises(DnsTemporaryFailure) as caught:
        await resolver.resolve("missing.test")
    failure = caught.value
    assert (failure.name, failure.rdtype, failure.reason) == ("missing.test", "MX", "NXDOMAIN")
    assert failure.text == "MX lookup for missing.test failed: NXDOMAIN"


async def test_servfail_is_temporary(resolver: MxResolver, dns_server: DnsServer) -> None:
    with pytest.raises(DnsTemporaryFailure) as caught:
        await resolver.resolve("broken.test")
    assert caught.value.reason == f"SERVFAIL from {dns_server.address}"
    assert (
        caught.value.text == f"MX lookup for broken.test failed: SERVFAIL from {dns_server.address}"
    )


async def test_refused_is_temporary(resolver: MxResolver, dns_server: DnsServer) -> None:
    with pytest.raises(DnsTemporaryFailure) as caught:
        await resolver.resolve("example.com")
    assert caught.value.reason == f"REFUSED from {dns_server.address}"


async def test_no_answer_times_out_temporarily(
    make_resolver: Callable[..., MxResolver], dns_server: DnsServer
) -> None:
    resolver = make_resolver(timeout=0.5)
    started = time.monotonic()
    with pytest.raises(DnsTemporaryFailure) as caught:
        await resolver.resolve("slow.test")
    assert time.monotonic() - started < 2.0
    assert caught.value.reason == "timed out after 0.5 s"
    assert caught.value.text == "MX lookup for slow.test failed: timed out after 0.5 s"
    assert dns_server.count("slow") >= 1


async def test_no_nameservers_is_temporary() -> None:
    with pytest.raises(DnsTemporaryFailure) as caught:
        await MxResolver([]).resolve("example.com")
    assert caught.value.reason == "no nameservers configured"


async def test_invalid_domain_is_temporary(resolver: MxResolver) -> None:
    with pytest.raises(DnsTemporaryFailure, match="invalid domain name"):
        await resolver.resolve("a..b")


async def test_domain_literal(resolver: MxResolver, dns_server: DnsServer) -> None:
    answer = await resolver.resolve("[192.0.2.5]")
    assert (answer.hosts, answer.implicit) == (("192.0.2.5",), True)
    assert dns_server.queries == 0


# --- cache ------------------------------------------------------------------------------


async def test_answer_cached_for_its_ttl(
    resolver: MxResolver, dns_server: DnsServer, clock: FakeClock
) -> None:
    assert (await resolver.resolve("cached.test")).hosts == ("mail.test",)
    clock.now += 119
    await resolver.resolve("cached.test")
    assert dns_server.count("cached", "MX") == 1
    clock.now += 2  # 121 s > TTL 120
    await resolver.resolve("cached.test")
    assert dns_server.count("cached", "MX") == 2


async def test_nodata_cached_for_the_soa_negative_ttl(
    resolver: MxResolver, dns_server: DnsServer, clock: FakeClock
) -> None:
    await resolver.resolve("nodata.test")
    clock.now += 59
    await resolver.resolve("nodata.test")
    assert dns_server.count("nodata", "MX") == 1
    clock.now += 2  # min(SOA TTL 300, SOA minimum 60)
    await resolver.resolve("nodata.test")
    assert dns_server.count("nodata", "MX") == 2


@pytest.mark.parametrize("name", ["missing.test", "broken.test"])
async def test_failures_cached_for_the_negative_ttl(
    make_resolver: Callable[..., MxResolver], dns_server: DnsServer, clock: FakeClock, name: str
) -> None:
    resolver = make_resolver(negative_ttl=10.0)
    for _ in range(3):
        with pytest.raises(DnsTemporaryFailure):
            await resolver.resolve(name)
    assert dns_server.count(name, "MX") == 1
    clock.now += 11
    with pytest.raises(DnsTemporaryFailure):
        await resolver.resolve(name)
    assert dns_server.count(name, "MX") == 2


async def test_concurrent_lookups_share_one_query(
    resolver: MxResolver, dns_server: DnsServer
) -> None:
    answers = await asyncio.gather(*(resolver.resolve("ordered.test") for _ in range(5)))
    assert {a.hosts for a in answers} == {("a.ordered.test", "b.ordered.test", "c.ordered.test")}
    assert dns_server.count("ordered", "MX") == 1


async def test_cache_is_bounded_lru(
    make_resolver: Callable[..., MxResolver], dns_server: DnsServer
) -> None:
    resolver = make_resolver(cache_size=2)
    for name in ("ordered.test", "multi.test", "ordered.test", "cached.test"):
        await resolver.resolve(name)
    # ordered was used last before cached arrived: multi is the one evicted
    await resolver.resolve("ordered.test")
    assert dns_server.count("ordered", "MX") == 1
    await resolver.resolve("multi.test")
    assert dns_server.count("multi", "MX") == 2


async def test_clear_cache(resolver: MxResolver, dns_server: DnsServer) -> None:
    await resolver.resolve("ordered.test")
    resolver.clear_cache()
    await resolver.resolve("ordered.test")
    assert dns_server.count("ordered", "MX") == 2


# --- addresses --------------------------------------------------------------------------


async def test_addresses_a_then_aaaa(resolver: MxResolver, dns_server: DnsServer) -> None:
    assert await resolver.addresses("Mail.test.") == ["192.0.2.10", "2001:db8::10"]
    assert await resolver.addresses("v6only.test") == ["2001:db8::11"]
    assert await resolver.addresses("alias.test") == ["192.0.2.10", "2001:db8::10"]
    await resolver.addresses("mail.test")  # cached
    assert dns_server.count("mail", "A") == 1
    assert dns_server.count("mail", "AAAA") == 1


async def test_addresses_of_a_name_without_any(resolver: MxResolver) -> None:
    assert await resolver.addresses("ordered.test") == []


async def test_addresses_nxdomain_is_temporary(resolver: MxResolver) -> None:
    with pytest.raises(DnsTemporaryFailure) as caught:
        await resolver.addresses("missing.test")
    assert caught.value.rdtype == "A/AAAA"
    assert caught.value.text == "A/AAAA lookup for missing.test failed: NXDOMAIN"


async def test_addresses_truncated_udp_retried_over_tcp(
    resolver: MxResolver, dns_server: DnsServer
) -> None:
    addresses = await resolver.addresses("big.test")
    assert sorted(addresses) == sorted(f"198.51.100.{i}" for i in range(1, 61))
    transports = [t for n, rdtype, t in dns_server.log if n == "big.test." and rdtype == "A"]
    assert transports == ["udp", "tcp"]


@pytest.mark.parametrize(
    ("literal", "address"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("[192.0.2.7]", "192.0.2.7"),
        ("::1", "::1"),
        ("[IPv6:2001:DB8::1]", "2001:db8::1"),
    ],
)
async def test_ip_literal_passes_through(
    resolver: MxResolver, dns_server: DnsServer, literal: str, address: str
) -> None:
    assert await resolver.addresses(literal) == [address]
    assert dns_server.queries == 0


# --- configuration ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("10.0.0.1", ("10.0.0.1", 53)),
        ("10.0.0.1:5353", ("10.0.0.1", 5353)),
        ("[::1]:5353", ("::1", 5353)),
        ("[::1]", ("::1", 53)),
        ("2001:db8::1", ("2001:db8::1", 53)),
    ],
)
def test_parse_nameserver(text: str, parsed: tuple[str, int]) -> None:
    assert parse_nameserver(text) == parsed


@pytest.mark.parametrize("text", ["ns.example.com", "10.0.0.1:0", "10.0.0.1:x", "[::1]x"])
def test_parse_nameserver_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="nameserver"):
        parse_nameserver(text)
