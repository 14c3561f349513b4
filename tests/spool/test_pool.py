"""Recycled files (free/): a removed message's file is written over by a later one."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from kumoclient.spool import Spool, pool
from tests.spool.common import CONTENT, stored, submission


async def test_a_removed_message_file_is_recycled_for_the_next_message(spool: Spool) -> None:
    long_content = b"Subject: long\r\n\r\n" + b"x" * 5000 + b"\r\n"
    [old] = spool.prepare(submission("old@x.com", content=long_content))
    await spool.store([old], long_content)
    inode = os.stat(spool.data / old.id).st_ino
    await asyncio.to_thread(spool.apply, [], [old.id])
    assert spool.ids() == []
    assert [p.name for p in spool.free.iterdir()] == [old.id]

    [new] = await stored(spool, "new@x.com")

    assert os.stat(spool.data / new.id).st_ino == inode  # the same file, written over
    assert list(spool.free.iterdir()) == []
    assert await spool.read_content(new.id) == CONTENT  # cut to its new, shorter length
    [loaded] = spool.enumerate()
    assert (loaded.id, loaded.recipient) == (new.id, "new@x.com")
    assert spool.unreadable == 0


async def test_the_pool_keeps_a_bounded_number_of_small_files(
    spool: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pool, "POOL_LIMIT", 3)
    monkeypatch.setattr(pool, "POOL_FILE_LIMIT", 1000)
    small = [m for _ in range(5) for m in await stored(spool, "s@x.com")]
    big_content = b"Subject: big\r\n\r\n" + b"y" * 2000 + b"\r\n"
    [big] = spool.prepare(submission("big@x.com", content=big_content))
    await spool.store([big], big_content)

    await asyncio.to_thread(spool.apply, [], [big.id, *(m.id for m in small)])

    assert spool.ids() == []
    kept = sorted(p.name for p in spool.free.iterdir())
    assert len(kept) == 3
    assert big.id not in kept  # over POOL_FILE_LIMIT: unlinked


async def test_two_spools_on_one_directory_never_take_the_same_free_file(tmp_path: Path) -> None:
    """As a reception worker and the main process do: each takes what the other left."""
    first, second = Spool(tmp_path / "spool"), Spool(tmp_path / "spool")
    await first.start()
    await second.start(clean=False)
    try:
        gone = [m for _ in range(4) for m in await stored(first, "g@x.com")]
        await asyncio.to_thread(first.apply, [], [m.id for m in gone])
        inodes = {os.stat(p).st_ino for p in first.free.iterdir()}
        assert len(inodes) == 4
        taken = await asyncio.gather(
            *(stored(spool, f"n{i}@x.com") for i in range(6) for spool in (first, second))
        )
        ids = [m.id for batch in taken for m in batch]
        assert sorted(ids) == first.ids()  # 12 messages, each in a file of its own
        used = [os.stat(first.data / i).st_ino for i in ids]
        assert len(set(used)) == 12
        assert inodes <= set(used)  # every free file was taken once
        assert {m.recipient for m in first.enumerate()} == {f"n{i}@x.com" for i in range(6)}
    finally:
        await first.close()
        await second.close()


async def test_files_in_free_are_not_messages_after_a_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    await spool.start()
    [gone, kept] = await stored(spool, "gone@x.com", "kept@x.com")
    await asyncio.to_thread(spool.apply, [], [gone.id])
    await spool.close()

    restarted = Spool(tmp_path / "spool")
    await restarted.start()
    try:
        assert [m.id for m in restarted.enumerate()] == [kept.id]
        assert [p.name for p in restarted.free.iterdir()] == [gone.id]
        assert list(restarted.quarantine.iterdir()) == []
    finally:
        await restarted.close()
