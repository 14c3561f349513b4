"""Prometheus metrics: counters move with each disposition, gauges come back to zero, and
every engine counts in its own registry."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from kumoclient.core.selector import Selector
from kumoclient.engine.engine import Engine
from tests.engine.conftest import (
    MESSAGE,
    MakeEngine,
    ScriptedMX,
    next_record,
    records,
    write_policy,
)

QUEUE = "example.net"
TO_500 = "if response:find('over quota', 1, true) then return 500 end"


def samples(engine: Engine) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the engine's exposition, by name and labels."""
    text, content_type = engine.metrics_text()
    assert content_type.startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text.decode())
        for sample in family.samples
    }


def value(engine: Engine, name: str, **labels: str) -> float | None:
    return samples(engine).get((name, frozenset(labels.items())))


async def eventually(check: object, timeout: float = 10.0) -> None:
    """Poll a zero-argument predicate until it holds (bounded)."""
    assert callable(check)
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.05)


async def test_counters_after_a_delivery_a_transient_failure_and_a_rewrite_bounce(
    mx: ScriptedMX, engines: MakeEngine, tmp_path: Path
) -> None:
    mx.replies[("RCPT", "later@example.net")] = "451 4.7.1 try again later"
    mx.replies[("RCPT", "full@example.net")] = "452 4.2.2 mailbox over quota"
    policy = write_policy(tmp_path / "p.lua", [mx.address], rewrite=TO_500)
    engine = engines(policy)
    await engine.start()
    assert value(engine, "kumoclient_spooled_messages") == 0

    rcpts = ["ok@example.net", "later@example.net", "full@example.net"]
    ok, later, full = await engine.submit("a@example.com", rcpts, MESSAGE)
    async with asyncio.timeout(20):
        delivered: dict[str, Any] = await engine.outcome(ok)
        bounced: dict[str, Any] = await engine.outcome(full)
    await eventually(lambda: engine.counts.get("TransientFailure") == 1)
    [failed] = [r for r in records(engine) if r["type"] == "TransientFailure"]
    assert failed["id"] == later
    site = delivered["site"]
    assert site.endswith("@smtp_client")
    assert (delivered["type"], bounced["type"]) == ("Delivery", "Bounce")
    assert bounced["response"]["content"].endswith(
        "(kumomta: status was rewritten from 452 -> 500)"
    )
    assert failed["response"]["code"] == 451

    got = samples(engine)
    by_site = frozenset({("queue", QUEUE), ("site", site)})
    by_queue = frozenset({("queue", QUEUE)})
    assert got[("kumoclient_messages_received_total", by_queue)] == 3
    assert got[("kumoclient_deliveries_total", by_site)] == 1
    assert got[("kumoclient_transient_failures_total", by_site)] == 1
    assert got[("kumoclient_bounces_total", by_site)] == 1
    assert ("kumoclient_expirations_total", by_site) not in got
    # the hook ran for the two rejections; it changed one code
    assert got[("kumoclient_rewrite_hook_calls_total", by_queue)] == 2
    assert got[("kumoclient_rewrites_total", by_queue)] == 1
    assert got[("kumoclient_rewrite_hook_seconds_count", frozenset())] == 2
    assert 0 < got[("kumoclient_rewrite_hook_seconds_sum", frozenset())] < 2
    # the transient one waits an hour in the spool
    assert got[("kumoclient_spooled_messages", frozenset())] == 1

    # it leaves by an administrative bounce: the spool gauge is back to zero
    assert engine.bounce(Selector(domain=QUEUE), "metrics test") == 1
    record = await engine.outcome(later)
    assert record["type"] == "AdminBounce"
    got = samples(engine)
    assert got[("kumoclient_admin_bounces_total", by_queue)] == 1
    assert got[("kumoclient_spooled_messages", frozenset())] == 0
    assert got[("kumoclient_transient_failures_total", by_site)] == 1  # not counted again


async def test_no_hook_calls_are_counted_without_a_handler(
    mx: ScriptedMX, engines: MakeEngine, tmp_path: Path
) -> None:
    mx.replies[("RCPT", "no@example.net")] = "550 5.1.1 no such user"
    engine = engines(write_policy(tmp_path / "p.lua", [mx.address]))
    await engine.start()
    [message_id] = await engine.submit("a@example.com", ["no@example.net"], MESSAGE)
    async with asyncio.timeout(20):
        record: dict[str, Any] = await engine.outcome(message_id)
    assert record["type"] == "Bounce"
    got = samples(engine)
    assert ("kumoclient_rewrite_hook_calls_total", frozenset({("queue", QUEUE)})) not in got
    assert got[("kumoclient_rewrite_hook_seconds_count", frozenset())] == 0
    assert (
        got[("kumoclient_bounces_total", frozenset({("queue", QUEUE), ("site", record["site"])}))]
        == 1
    )


async def test_the_connection_gauge_returns_to_zero_after_the_idle_close(
    mx: ScriptedMX, engines: MakeEngine, tmp_path: Path
) -> None:
    engine = engines(write_policy(tmp_path / "p.lua", [mx.address]))  # idle_timeout 1s
    await engine.start()
    ids = await engine.submit("a@example.com", ["x@example.net", "y@example.net"], MESSAGE)
    async with asyncio.timeout(20):
        finals = [await engine.outcome(message_id) for message_id in ids]
    site = str(finals[0]["site"])
    assert {r["type"] for r in finals} == {"Delivery"}
    opened = value(engine, "kumoclient_connections_open", site=site)
    assert opened is not None
    assert 1 <= opened <= mx.connections  # the idle session is still open
    await eventually(lambda: value(engine, "kumoclient_connections_open", site=site) == 0)
    assert value(engine, "kumoclient_spooled_messages") == 0
    await engine.stop()
    assert value(engine, "kumoclient_connections_open", site=site) == 0


async def test_the_spool_gauge_starts_from_the_scan_and_a_restart_receives_nothing(
    mx: ScriptedMX, engines: MakeEngine, tmp_path: Path
) -> None:
    mx.replies[("RCPT", "later@example.net")] = "451 4.7.1 try again later"
    policy = write_policy(tmp_path / "p.lua", [mx.address])
    first = engines(policy)
    await first.start()
    failure = asyncio.create_task(next_record(first, "TransientFailure"))
    await asyncio.sleep(0)  # subscribed before the attempt can end
    await first.submit("a@example.com", ["later@example.net"], MESSAGE)
    await failure
    await first.stop()

    second = engines(policy)
    assert await second.start() == 1
    got = samples(second)
    assert got[("kumoclient_spooled_messages", frozenset())] == 1
    received = [key for key in got if key[0] == "kumoclient_messages_received_total"]
    assert received == []  # re-enumerating the spool is not receiving
    # and the first engine's counts are its own
    assert value(first, "kumoclient_messages_received_total", queue=QUEUE) == 1
