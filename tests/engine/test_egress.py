"""Egress path settings seen from the receiving server: rate limits per site (counted),
`source_address` and `ehlo_domain`."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.engine.conftest import MESSAGE, MakeEngine, ScriptedMX, next_record, write_policy


async def send_batch(engines: MakeEngine, policy: Path, count: int) -> float:
    """Submit `count` messages and wait for their deliveries; the (monotonic) start time."""
    engine = engines(policy)
    await engine.start()
    started = time.monotonic()
    recipients = [f"r{i}@example.net" for i in range(count)]
    ids = await engine.submit("a@example.com", recipients, MESSAGE)
    async with asyncio.timeout(60):
        outcomes = [await engine.outcome(message_id) for message_id in ids]
    assert {record["type"] for record in outcomes} == {"Delivery"}
    return started


def over_the_limit(arrivals: list[float], started: float, burst: int, interval: float) -> list[int]:
    """The arrivals that came sooner than the limit allows: by `t` seconds after the start,
    at most `burst + t / interval` messages may have arrived. A stalled machine only makes
    arrivals later, so it cannot fail this count; a missing limit does."""
    return [
        index
        for index, moment in enumerate(sorted(arrivals))
        if index + 1 > burst + (moment - started) / interval + 1e-6
    ]


async def test_max_message_rate_spaces_messages_to_the_site(
    mx: ScriptedMX, engines: MakeEngine, tmp_path: Path
) -> None:
    # '5/s': a burst of 5, then one every 0.2 s; 25 messages take at least 4 s
    policy = write_policy(tmp_path / "p.lua", [mx.address], egress="max_message_rate = '5/s',")
    started = await send_batch(engines, policy, 25)
    assert len(mx.received_at) == 25
    assert over_the_limit(mx.received_at, started, burst=5, interval=0.2) == []


async def test_without_a_rate_limit_the_same_batch_is_not_spaced(
    mx: ScriptedMX, engines: MakeEngine, tmp_path: Path
) -> None:
    """The control for the test above: the counting shows the limit, not a slow machine."""
    policy = write_policy(tmp_path / "p.lua", [mx.address])
    started = await send_batch(engines, policy, 25)
    assert over_the_limit(mx.received_at, started, burst=5, interval=0.2) != []


async def test_max_connection_rate_spaces_new_connections(
    mx: ScriptedMX, engines: MakeEngine, tmp_path: Path
) -> None:
    # one message per connection, so every message needs a new connection at '2/s'
    policy = write_policy(
        tmp_path / "p.lua",
        [mx.address],
        egress="max_connection_rate = '2/s', max_deliveries_per_connection = 1,",
    )
    started = await send_batch(engines, policy, 8)
    assert mx.connections == 8
    # the burst of 2, then one connection every 0.5 s
    assert over_the_limit(mx.received_at, started, burst=2, interval=0.5) == []


@pytest.mark.parametrize("source", ["127.0.0.2", "127.0.0.3"])
async def test_source_address_is_the_address_the_server_sees(
    mx: ScriptedMX, engines: MakeEngine, tmp_path: Path, source: str
) -> None:
    policy = write_policy(
        tmp_path / "p.lua",
        [mx.address],
        egress=f"source_address = '{source}', ehlo_domain = 'out.example.com',",
    )
    await send_batch(engines, policy, 1)
    assert mx.peers == [source]
    assert mx.ehlo_names == ["out.example.com"]


async def test_a_source_address_that_is_not_ours_is_a_transient_failure_naming_it(
    mx: ScriptedMX, engines: MakeEngine, tmp_path: Path
) -> None:
    policy = write_policy(tmp_path / "p.lua", [mx.address], egress="source_address = '192.0.2.1',")
    engine = engines(policy)
    await engine.start()
    [message_id] = await engine.submit("a@example.com", ["b@example.net"], MESSAGE)
    failure = await next_record(engine, "TransientFailure", message_id)
    assert failure["response"]["code"] == 400
    assert "connect: Cannot assign requested address" in failure["response"]["content"]
    await engine.flush()
    assert engine.spool.ids() == [message_id]
    assert mx.connections == 0
