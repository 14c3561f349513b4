"""The engine while its delivery log cannot be written (a real tmpfs as the log directory,
filled to ENOSPC): no attempt starts, submissions are refused with 451 4.3.0 and nothing is
stored, records already made are held, a delivered message leaves the spool only once its
record is durable, and all of it resumes by itself when the disk has room again."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from kumoclient.core.selector import Selector
from kumoclient.engine.engine import Engine
from kumoclient.errors import ReceptionPaused
from kumoclient.policy.runtime import PolicyHolder
from kumoclient.spool import Submission
from tests.engine.conftest import MESSAGE, ScriptedMX, write_policy
from tests.small_disk import SmallDisk


async def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def logged(log_dir: Path) -> Counter[tuple[str, str]]:
    """(type, id) of every record in the log's segments, counted."""
    return Counter(
        (record["type"], record["id"])
        for path in sorted(log_dir.glob("*.jsonl"))
        for line in path.read_text().splitlines()
        if (record := json.loads(line))
    )


def metric(engine: Engine, name: str) -> float:
    text, _ = engine.metrics_text()
    (line,) = [line for line in text.decode().splitlines() if line.startswith(name + " ")]
    return float(line.split()[1])


def engine_on(tmp_path: Path, mx: ScriptedMX) -> Engine:
    policy = write_policy(tmp_path / "policy.lua", [mx.address])
    return Engine(PolicyHolder(policy), data_dir=tmp_path / "data")


async def test_no_attempt_starts_while_the_log_is_down_and_each_message_goes_once_after(
    tmp_path: Path, mx: ScriptedMX
) -> None:
    with SmallDisk(tmp_path / "data" / "logs", "256k") as disk:
        engine = engine_on(tmp_path, mx)
        await engine.start()
        try:
            engine.suspend(Selector(), "wait")  # the messages wait until the log is down
            recipients = [f"r{n}@example.net" for n in range(10)]
            ids = await engine.submit("a@example.com", recipients, MESSAGE)
            await engine.records.sync()
            disk.fill()
            # their records are more than what the segment's last page has left
            late = [f"late{n}@example.net" for n in range(8)]
            ids += await engine.submit("a@example.com", late, MESSAGE)
            await wait_for(lambda: not engine.records.health.ok)  # the records met a full disk
            assert metric(engine, "kumoclient_log_unavailable") == 1.0

            with pytest.raises(ReceptionPaused) as refused:
                await engine.submit("a@example.com", ["refused@example.net"], MESSAGE)
            assert (refused.value.code, refused.value.text[:5]) == (451, "4.3.0")
            drop = engine.spool.drops.drop(
                Submission("a@example.com", ("dropped@example.net",), b"x")
            )
            assert await engine.reception.pick_up_drops() == 0  # the file waits in incoming/
            assert engine.spool.ids() == sorted(ids)  # nothing new was stored

            engine.resume()
            await asyncio.sleep(1.0)  # a chance to deliver, which the engine must not take
            assert mx.received == []
            freed = time.monotonic()
            disk.free()
            for message_id in ids:
                async with asyncio.timeout(20):
                    assert (await engine.outcome(message_id))["type"] == "Delivery"
            assert await engine.reception.pick_up_drops() == 1  # the waiting file now
            await wait_for(lambda: len(mx.received) == len(ids) + 1)
            await engine.flush()
            assert engine.records.health.ok
            assert metric(engine, "kumoclient_log_unavailable") == 0.0
        finally:
            await engine.stop(grace=2)
        assert all(at > freed for at in mx.received_at)
        delivered = Counter(rcpt for _, rcpts, _ in mx.received for rcpt in rcpts)
        assert delivered == Counter([*recipients, *late, "dropped@example.net"])
        assert engine.spool.ids() == []
        records = logged(disk.path)
        for message_id in [*ids, *drop]:
            assert records[("Reception", message_id)] == 1
            assert records[("Delivery", message_id)] == 1


async def test_a_message_delivered_as_the_disk_fills_leaves_the_spool_only_after_its_record(
    tmp_path: Path, mx: ScriptedMX
) -> None:
    with SmallDisk(tmp_path / "data" / "logs", "256k") as disk:
        engine = engine_on(tmp_path, mx)
        await engine.start()
        try:
            disk.fill()  # unknown to the engine until a record meets it
            [message_id] = await engine.submit("a@example.com", ["b@example.net"], MESSAGE)
            async with asyncio.timeout(20):
                assert (await engine.outcome(message_id))["type"] == "Delivery"
            await wait_for(lambda: not engine.records.health.ok)
            await asyncio.sleep(1.0)  # a chance to remove it, which the engine must not take
            assert engine.spool.ids() == [message_id]  # its record is held, not durable
            disk.free()
            await wait_for(lambda: engine.records.health.ok)
            await engine.flush()
            assert engine.spool.ids() == []
        finally:
            await engine.stop(grace=2)
        assert logged(disk.path)[("Delivery", message_id)] == 1
    assert len(mx.received) == 1

    # after a restart nothing is delivered again: the message left the spool with its record
    restarted = engine_on(tmp_path, mx)
    assert await restarted.start() == 0
    await restarted.stop(grace=2)
    assert len(mx.received) == 1


async def test_a_stop_while_the_log_is_down_returns_and_keeps_unrecorded_messages_spooled(
    tmp_path: Path, mx: ScriptedMX
) -> None:
    with SmallDisk(tmp_path / "data" / "logs", "256k") as disk:
        engine = engine_on(tmp_path, mx)
        await engine.start()
        disk.fill()
        [message_id] = await engine.submit("a@example.com", ["b@example.net"], MESSAGE)
        async with asyncio.timeout(20):
            await engine.outcome(message_id)
        await wait_for(lambda: not engine.records.health.ok)
        async with asyncio.timeout(15):
            await engine.stop(grace=2)
        # its Delivery record was never written: it stays (SPEC 1 invariant 2), and is
        # delivered again after a restart, the one duplicate a log fault can cause
        assert engine.spool.ids() == [message_id]
        assert logged(disk.path)[("Delivery", message_id)] == 0


async def test_a_final_record_past_the_hold_limit_keeps_its_message_spooled(
    tmp_path: Path, mx: ScriptedMX
) -> None:
    engine = engine_on(tmp_path, mx)
    await engine.start()
    try:
        engine.records.hold_limit = 1  # no record fits: each is refused
        [message_id] = await engine.submit("a@example.com", ["b@example.net"], MESSAGE)
        async with asyncio.timeout(20):
            assert (await engine.outcome(message_id))["type"] == "Delivery"
        assert engine.records.dropped == 2  # its Reception and Delivery records
        assert metric(engine, "kumoclient_log_records_dropped") == 2.0
        engine.records.hold_limit = engine.records.HOLD_LIMIT
        await engine.flush()
        # it never leaves the spool without its final record: delivered again at the next
        # start rather than missing from the log
        assert engine.spool.ids() == [message_id]
    finally:
        await engine.stop(grace=2)
    assert len(mx.received) == 1
