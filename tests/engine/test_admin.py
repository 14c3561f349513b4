"""Queue administration while deliveries run: suspend/resume, administrative bounce,
retry now, queue states; nothing is lost."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from kumoclient.core.selector import Selector
from kumoclient.engine.control import QueueState
from kumoclient.engine.engine import Engine
from tests.engine.conftest import MESSAGE, MakeEngine, ScriptedMX, records, write_policy

SENDER = "a@example.com"


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll a predicate until it holds (bounded)."""
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


def state(engine: Engine, queue: str) -> QueueState | None:
    return next((s for s in engine.queue_states() if s.queue == queue), None)


def held(engine: Engine, queue: str) -> int:
    found = state(engine, queue)
    return 0 if found is None else found.held


def received_by(mx: ScriptedMX, domain: str) -> list[str]:
    return [rcpt for _, rcpts, _ in mx.received for rcpt in rcpts if rcpt.endswith(domain)]


async def outcomes(
    engine: Engine, ids: list[str], timeout: float = 20.0
) -> list[dict[str, object]]:
    async with asyncio.timeout(timeout):
        return [await engine.outcome(message_id) for message_id in ids]


async def test_a_suspended_domain_waits_while_others_deliver_and_goes_on_resume(
    mx: ScriptedMX, engines: MakeEngine, tmp_path: Path
) -> None:
    engine = engines(write_policy(tmp_path / "p.lua", [mx.address]))
    await engine.start()
    info = engine.suspend(Selector(domain="Held.example"), "maintenance")
    assert (info.selector.domain, info.reason, info.held, info.expires) == (
        "held.example",
        "maintenance",
        0,
        None,
    )
    held = await engine.submit(SENDER, [f"h{i}@held.example" for i in range(3)], MESSAGE)
    others = await engine.submit(SENDER, ["o1@other.example", "o2@other.example"], MESSAGE)

    assert {r["type"] for r in await outcomes(engine, others)} == {"Delivery"}
    await asyncio.sleep(1.0)  # the held ones had every chance to go
    assert received_by(mx, "@held.example") == []
    queue = state(engine, "held.example")
    assert queue is not None
    assert (queue.count, queue.held, queue.scheduled, queue.suspended) == (3, 3, 0, True)
    [listed] = engine.list_suspensions()
    assert (listed.id, listed.held) == (info.id, 3)
    assert sorted(engine.spool.ids()) == sorted(held)  # spooled all along

    assert engine.resume(Selector(domain="other.example")) == 0  # no such suspension
    assert engine.resume(Selector(domain="held.example")) == 1
    assert engine.list_suspensions() == []
    assert {r["type"] for r in await outcomes(engine, held)} == {"Delivery"}
    assert sorted(received_by(mx, "@held.example")) == [f"h{i}@held.example" for i in range(3)]


async def test_suspending_takes_messages_out_of_the_ready_queue(
    mx: ScriptedMX, engines: MakeEngine, tmp_path: Path
) -> None:
    """One connection at two messages a second: most of them wait in the ready queue."""
    policy = write_policy(
        tmp_path / "p.lua", [mx.address], egress="connection_limit = 1, max_message_rate = '2/s',"
    )
    engine = engines(policy)
    await engine.start()
    ids = await engine.submit(SENDER, [f"r{i}@ready.example" for i in range(6)], MESSAGE)

    def ready() -> int:
        queue = state(engine, "ready.example")
        return 0 if queue is None else queue.ready

    await eventually(lambda: ready() >= 2)
    before = len(mx.received)
    info = engine.suspend(Selector(domain="ready.example"), "too fast")
    assert info.held >= 2
    assert ready() == 0
    await asyncio.sleep(1.2)
    # at most the transaction already under way went out
    assert len(mx.received) <= before + 1
    queue = state(engine, "ready.example")
    assert queue is not None
    assert queue.held + len(mx.received) == 6

    assert engine.resume(suspension_id=info.id) == 1
    assert {r["type"] for r in await outcomes(engine, ids)} == {"Delivery"}
    assert len(mx.received) == 6


async def test_a_suspension_with_a_duration_lapses_by_itself(
    mx: ScriptedMX, engines: MakeEngine, tmp_path: Path
) -> None:
    engine = engines(write_policy(tmp_path / "p.lua", [mx.address]))
    await engine.start()
    info = engine.suspend(Selector(tenant="t1"), "brief", duration=0.5)
    assert info.expires is not None
    assert info.expires > info.created
    [message_id] = await engine.submit(SENDER, ["x@example.net"], MESSAGE, {"tenant": "t1"})
    record = await outcomes(engine, [message_id])
    assert record[0]["type"] == "Delivery"
    assert engine.list_suspensions() == []


async def test_a_suspended_message_survives_a_restart(
    mx: ScriptedMX, engines: MakeEngine, tmp_path: Path
) -> None:
    """Suspensions are in memory; the messages are spooled and go after a restart."""
    policy = write_policy(tmp_path / "p.lua", [mx.address])
    first = engines(policy)
    await first.start()
    first.suspend(Selector(), "everything")
    [message_id] = await first.submit(SENDER, ["x@example.net"], MESSAGE)
    await eventually(lambda: held(first, "example.net") == 1)
    await first.stop()
    assert mx.received == []

    second = engines(policy)
    assert await second.start() == 1
    await eventually(lambda: len(mx.received) == 1)
    assert [r["id"] for r in records(second) if r["type"] == "Delivery"] == [message_id]


async def test_admin_bounce_writes_records_and_empties_the_spool(
    mx: ScriptedMX, engines: MakeEngine, tmp_path: Path
) -> None:
    for rcpt in ("s1@bounce.example", "s2@bounce.example", "keep@bounce.example"):
        mx.replies[("RCPT", rcpt)] = "451 4.7.1 try again later"
    engine = engines(write_policy(tmp_path / "p.lua", [mx.address]))
    await engine.start()
    engine.suspend(Selector(campaign="c9"), "on hold")
    scheduled = await engine.submit(
        SENDER, ["s1@bounce.example", "s2@bounce.example"], MESSAGE, {"tenant": "t1"}
    )
    [held] = await engine.submit(
        SENDER, ["h@bounce.example"], MESSAGE, {"tenant": "t1", "campaign": "c9"}
    )
    [keep] = await engine.submit(SENDER, ["keep@bounce.example"], MESSAGE, {"tenant": "t2"})
    await eventually(lambda: engine.counts.get("TransientFailure") == 3)
    await eventually(lambda: engine.list_suspensions()[0].held == 1)
    first = state(engine, "t1@bounce.example")
    assert first is not None
    assert (first.count, first.scheduled) == (2, 2)
    assert first.last_response == "451 4.7.1 try again later"

    bounced = engine.bounce(Selector(domain="bounce.example", tenant="t1"), "spam run")
    assert bounced == 3
    finals = await outcomes(engine, [*scheduled, held])
    delivered = [r for r in records(engine) if r["type"] == "Delivery"]
    assert delivered == []
    template = next(r for r in records(engine) if r["type"] == "TransientFailure")
    for record in finals:
        assert record["type"] == "AdminBounce"
        assert record["response"] == {
            "code": 551,
            "enhanced_code": {"class": 5, "subject": 7, "detail": 1},
            "content": "Administrative bounce: spam run",
            "command": None,
        }
        assert set(record) == set(template)  # SPEC 6 fields
    assert [r["queue"] for r in finals] == [
        "t1@bounce.example",
        "t1@bounce.example",
        "c9:t1@bounce.example",
    ]
    assert [r["num_attempts"] for r in finals] == [1, 1, 0]
    await engine.flush()
    assert engine.spool.ids() == [keep]
    on_disk = [r["id"] for r in records(engine) if r["type"] == "AdminBounce"]
    assert sorted(on_disk) == sorted([*scheduled, held])
    assert engine.list_suspensions()[0].held == 0
    assert [s.queue for s in engine.queue_states()] == ["t2@bounce.example"]
    assert engine.bounce(Selector(domain="bounce.example", tenant="t1"), "again") == 0


async def test_admin_bounce_of_a_message_in_flight_is_not_requeued(
    mx: ScriptedMX, engines: MakeEngine, tmp_path: Path
) -> None:
    """One message a second: the second one is in flight, waiting for its slot."""
    mx.replies[("RCPT", "slow@example.net")] = "451 4.7.1 try again later"
    policy = write_policy(
        tmp_path / "p.lua", [mx.address], egress="connection_limit = 1, max_message_rate = '1/s',"
    )
    engine = engines(policy)
    await engine.start()
    first, second = await engine.submit(SENDER, ["ok@example.net", "slow@example.net"], MESSAGE)
    assert (await outcomes(engine, [first]))[0]["type"] == "Delivery"

    def in_flight() -> int:
        queue = state(engine, "example.net")
        return 0 if queue is None else queue.in_flight

    await eventually(lambda: in_flight() == 1)
    assert engine.bounce(Selector(), "stop it") == 1
    [record] = await outcomes(engine, [second])
    assert record["type"] == "AdminBounce"
    assert engine.queue_states() == []
    await engine.flush()
    assert engine.spool.ids() == []
    assert [rcpts for _, rcpts, _ in mx.received] == [["ok@example.net"]]


async def test_retry_now_moves_a_message_due_in_an_hour_to_now(
    mx: ScriptedMX, engines: MakeEngine, tmp_path: Path
) -> None:
    mx.replies[("RCPT", "b@example.net")] = "451 4.7.1 try again later"
    engine = engines(write_policy(tmp_path / "p.lua", [mx.address]))  # retry_interval 1 hour
    await engine.start()
    [message_id] = await engine.submit(SENDER, ["b@example.net"], MESSAGE)
    await eventually(lambda: engine.counts.get("TransientFailure") == 1)
    queue = state(engine, "example.net")
    assert queue is not None
    assert queue.scheduled == 1
    assert queue.next_due is not None
    assert queue.oldest_created is not None
    assert queue.next_due - queue.oldest_created > 3000

    del mx.replies[("RCPT", "b@example.net")]
    assert engine.retry_now(Selector(domain="other.example")) == 0
    assert engine.retry_now(Selector(domain="example.net")) == 1
    [record] = await outcomes(engine, [message_id])
    assert (record["type"], record["num_attempts"]) == ("Delivery", 1)
