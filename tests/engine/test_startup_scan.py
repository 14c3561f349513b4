"""Start-up with a full spool: listed at once, read in the background while delivering."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from kumoclient.engine.recovery import SCAN_BATCH
from kumoclient.records import SpooledMessage
from kumoclient.spool import Spool
from tests.engine.conftest import MESSAGE, MakeEngine, ScriptedMX, records, write_policy


async def fill(spool_dir: Path, count: int) -> list[str]:
    """`count` messages spooled by the library, as a daemon that stopped would leave them."""
    spool = Spool(spool_dir)
    await spool.start()
    now = time.time()
    ids = [f"{int(now * 1000) & 0xFFFF_FFFF_FFFF:012x}{n:016x}0000" for n in range(count)]
    for message_id in ids:
        message = SpooledMessage(
            id=message_id,
            sender="s@example.com",
            recipient=f"r{message_id[-8:]}@example.net",
            meta={},
            created=now,
            size=len(MESSAGE),
            due=now,
        )
        await spool.store([message], MESSAGE)
    await spool.close()
    return ids


async def test_background_scan_returns_once_listed_then_schedules_every_message(
    mx: ScriptedMX, engines: MakeEngine, tmp_path: Path
) -> None:
    count = SCAN_BATCH * 3 + 7
    ids = await fill(tmp_path / "data" / "spool", count)
    (tmp_path / "data" / "spool" / "data" / ("f" * 32)).write_bytes(b"not a spool entry")
    engine = engines(write_policy(tmp_path / "p.lua", [mx.address]))

    listed = await engine.start(background_scan=True)

    assert listed == count + 1  # listed, not yet read: the bad entry is still counted
    assert not engine.scanned.is_set()
    assert len(engine.table) == 0  # nothing read before start() returned
    await asyncio.wait_for(engine.scanned.wait(), 30)
    assert (tmp_path / "data" / "spool" / "quarantine" / ("f" * 32)).exists()
    for _ in range(300):
        if len(mx.received) == count:
            break
        await asyncio.sleep(0.05)
    delivered = [r["id"] for r in records(engine) if r["type"] == "Delivery"]
    assert sorted(delivered) == sorted(ids)


async def test_the_oldest_messages_are_read_first(
    mx: ScriptedMX, engines: MakeEngine, tmp_path: Path
) -> None:
    ids = await fill(tmp_path / "data" / "spool", SCAN_BATCH * 2)
    engine = engines(write_policy(tmp_path / "p.lua", [mx.address]))
    seen: list[str] = []
    original = engine.enqueue

    def watch(messages: list[SpooledMessage], content: bytes | None = None) -> None:
        seen.extend(m.id for m in messages)
        original(messages, content)

    engine.enqueue = watch  # type: ignore[method-assign]
    await engine.start(background_scan=True)
    await asyncio.wait_for(engine.scanned.wait(), 30)
    assert seen == sorted(ids)


async def test_without_background_scan_start_schedules_everything_first(
    mx: ScriptedMX, engines: MakeEngine, tmp_path: Path
) -> None:
    ids = await fill(tmp_path / "data" / "spool", 10)
    engine = engines(write_policy(tmp_path / "p.lua", [mx.address]))
    assert await engine.start() == 10
    assert engine.scanned.is_set()
    assert sorted(item.message.id for item in engine.table.items()) == sorted(ids)
