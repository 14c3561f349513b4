"""Start-up after a kill (engine/recovery.py): a spooled message whose Delivery record the
previous run had written leaves the spool without a second delivery; every other spooled
message is delivered as always. The spool and the log are real files, left as a run killed
between the record and the spool removal leaves them; the MX is a real SMTP server."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import structlog

from kumoclient.engine.engine import Engine
from kumoclient.engine.recovery import SEGMENTS, delivered_before
from kumoclient.logs import encode_record
from kumoclient.policy.runtime import PolicyHolder
from kumoclient.records import LogRecord, RecordType, Reply
from kumoclient.spool import Spool, Submission
from tests.engine.conftest import ScriptedMX, write_policy

BODY = b"Subject: recovery\r\n\r\nHello\r\n"


async def spooled(spool_dir: Path, recipients: list[str]) -> dict[str, str]:
    """One spooled message per recipient; recipient -> id."""
    spool = Spool(spool_dir)
    await spool.start()
    messages = spool.prepare(Submission("a@example.com", tuple(recipients), BODY))
    await spool.store(messages, BODY)
    await spool.close()
    return {message.recipient: message.id for message in messages}


def record(kind: RecordType, message_id: str, recipient: str) -> bytes:
    reply = Reply(250, None, "OK queued", ".\r\n") if kind is RecordType.DELIVERY else None
    now = time.time()
    return encode_record(
        LogRecord(
            kind,
            message_id,
            "a@example.com",
            recipient,
            "example.net",
            now,
            now,
            30,
            response=reply,
        )
    )


async def test_a_message_logged_as_delivered_before_the_kill_is_not_sent_again(
    mx: ScriptedMX, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    ids = await spooled(
        data / "spool",
        ["logged@example.net", "cut@example.net", "bounced@example.net", "new@example.net"],
    )
    logs = data / "logs"
    logs.mkdir(parents=True)
    (logs / "20260101-000000.jsonl").write_bytes(
        record(RecordType.RECEPTION, ids["logged@example.net"], "logged@example.net")
        + record(RecordType.DELIVERY, ids["logged@example.net"], "logged@example.net")
        + record(RecordType.BOUNCE, ids["bounced@example.net"], "bounced@example.net")
        # the kill cut the last line: not a record
        + record(RecordType.DELIVERY, ids["cut@example.net"], "cut@example.net")[:-20]
    )
    engine = Engine(PolicyHolder(write_policy(tmp_path / "p.lua", [mx.address])), data_dir=data)
    delivered: set[str] = set()
    all_three = asyncio.Event()

    def seen(fields: dict[str, object]) -> None:
        if fields["type"] == "Delivery":
            delivered.add(str(fields["recipient"]))
            if len(delivered) == 3:
                all_three.set()

    engine.subscribe(seen)
    with structlog.testing.capture_logs() as logged:
        await engine.start()
    try:
        await asyncio.wait_for(all_three.wait(), 20)
        await engine.dispositions.state.flush()
    finally:
        await engine.stop()
    assert sorted(r for _, rcpts, _ in mx.received for r in rcpts) == [
        "bounced@example.net",  # a Bounce may still owe a DSN: only Delivery counts
        "cut@example.net",
        "new@example.net",
    ]
    assert Spool(data / "spool").ids() == []  # the logged one left without a delivery
    [recovered] = [e for e in logged if e["event"].startswith("messages delivered before")]
    assert recovered["messages"] == 1


def test_only_the_tails_of_the_newest_segments_are_read(tmp_path: Path) -> None:
    """The records that matter are the last ones a killed run wrote; older segments are
    not read (start-up stays fast with a long log)."""
    spooled_ids = {f"{n:032x}" for n in range(SEGMENTS + 1)}
    _, *newest = sorted(spooled_ids)
    for index, message_id in enumerate(sorted(spooled_ids)):
        segment = tmp_path / f"2026010{index + 1}-000000.jsonl"
        segment.write_bytes(record(RecordType.DELIVERY, message_id, "r@example.net"))
    assert delivered_before(tmp_path, spooled_ids) == set(newest)  # not `oldest`


def test_an_unreadable_log_means_no_recovery_not_a_failed_start(tmp_path: Path) -> None:
    (tmp_path / "20260101-000000.jsonl").mkdir()  # a directory where a segment should be
    assert delivered_before(tmp_path, {"0" * 32}) == set()
