"""Storing and changing messages on real files: durable store, group commit, update, remove."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from kumoclient.core import msgid
from kumoclient.spool import Spool, SpoolUnavailable
from tests.spool.common import CONTENT, stored, submission


def test_ids_are_time_ordered_and_carry_the_creation_time() -> None:
    early = msgid.message_id(msgid.submission_base(1_700_000_000.123, 5), 0)
    late = msgid.message_id(msgid.submission_base(1_700_000_001.0, 1), 0)
    assert len(early) == 32
    assert msgid.is_message_id(early)
    assert early < late
    assert msgid.created_at(early) == pytest.approx(1_700_000_000.123)


async def test_one_message_per_recipient_with_its_own_id(spool: Spool) -> None:
    messages = await stored(spool, "a@x.com", "b@y.com", "c@z.com")
    assert len({m.id for m in messages}) == 3
    loaded = {m.id: m for m in spool.enumerate()}
    assert [loaded[m.id].recipient for m in messages] == ["a@x.com", "b@y.com", "c@z.com"]
    assert [await spool.read_content(m.id) for m in messages] == [CONTENT] * 3
    assert not list((spool.data).glob(".*.tmp"))


async def test_concurrent_submissions_are_committed_in_groups(spool: Spool) -> None:
    batches = await asyncio.gather(*(stored(spool, f"r{i}@x.com") for i in range(50)))
    assert len(spool.ids()) == 50
    assert {b[0].id for b in batches} == set(spool.ids())


async def test_without_group_commit_every_submission_is_written_on_its_own(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path / "spool", group_commit=False)
    await spool.start()
    try:
        batches = await asyncio.gather(*(stored(spool, f"r{i}@x.com") for i in range(5)))
        assert sorted(b[0].id for b in batches) == spool.ids()
        assert [await spool.read_content(b[0].id) for b in batches] == [CONTENT] * 5
    finally:
        await spool.close()


async def test_update_changes_state_without_touching_content(spool: Spool) -> None:
    (message,) = await stored(spool, "a@x.com")
    before = (spool.data / message.id).stat()
    await spool.update(replace(message, attempts=3, due=123.0, last_response="451 4.3.0 later"))
    loaded = spool.load(message.id)
    assert (loaded.attempts, loaded.due, loaded.last_response) == (3, 123.0, "451 4.3.0 later")
    after = (spool.data / message.id).stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


async def test_remove_takes_data_and_meta(spool: Spool) -> None:
    (message,) = await stored(spool, "a@x.com")
    await spool.update(message)
    await spool.remove(message.id)
    assert spool.ids() == []
    assert not (spool.meta / f"{message.id}.json").exists()


async def test_failed_submission_leaves_nothing(spool: Spool) -> None:
    messages = spool.prepare(submission("a@x.com", "b@x.com"))
    (spool.data / f".{messages[1].id}.tmp").mkdir()  # the second write fails
    with pytest.raises(SpoolUnavailable, match="cannot write to the spool"):
        await spool.store(messages, CONTENT)
    assert spool.ids() == []
    assert not (spool.data / f".{messages[0].id}.tmp").exists()


def test_entry_header_is_json_with_size_and_crc(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    (message,) = spool.prepare(submission("a@x.com"))
    asyncio.run(spool.store([message], CONTENT))
    blob = (spool.data / message.id).read_bytes()
    first, header, rest = blob.split(b"\n", 2)
    assert first.startswith(b"KCSPOOL1 ")
    assert json.loads(header)["size"] == len(CONTENT)
    assert rest == CONTENT
    assert os.stat(spool.data / message.id).st_size == len(blob)


async def test_large_contents_are_read_back_whole(spool: Spool) -> None:
    """Past the first read (64 KB) the content is read on its own; both reads agree."""
    content = b"Subject: big\r\n\r\n" + os.urandom(3 * 1024 * 1024)
    (message,) = await stored(spool, "a@x.com", content=content)
    assert await spool.read_content(message.id) == content
    assert spool.content(message.id) == content
    [(loaded, whole)] = list(spool.scan())
    assert (loaded.id, loaded.size, whole) == (message.id, len(content), None)


async def test_a_waiter_cancelled_mid_commit_does_not_stop_the_spool(spool: Spool) -> None:
    """A client hanging up while its commit is pending must not kill the commit worker."""
    first = spool.prepare(submission("a@x.com"))
    task = asyncio.create_task(spool.store(first, CONTENT))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    second = await stored(spool, "b@x.com")  # would hang if the worker had died
    assert second[0].id in spool.ids()
    await asyncio.sleep(0.2)
    assert first[0].id in spool.ids()  # written anyway, like any unacknowledged submission


async def test_close_commits_what_is_queued_and_refuses_later_stores(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    await spool.start()
    tasks = [asyncio.create_task(stored(spool, f"r{i}@x.com")) for i in range(20)]
    await asyncio.sleep(0)
    await spool.close()
    await asyncio.gather(*tasks)
    assert len(spool.ids()) == 20
    with pytest.raises(SpoolUnavailable, match="closed") as raised:
        await stored(spool, "late@x.com")
    assert raised.value.errno is None
    assert len(spool.ids()) == 20


async def test_apply_removes_the_metadata_of_a_message_updated_before_a_restart(
    spool: Spool, tmp_path: Path
) -> None:
    [message] = await stored(spool, "a@example.com")
    spool.apply([replace(message, attempts=1)], [])
    await spool.close()
    again = Spool(tmp_path / "spool")
    await again.start()
    assert [m.attempts for m in again.enumerate()] == [1]
    again.apply([], [message.id])  # removal after a restart: the scan knew of its metadata
    assert list(again.meta.iterdir()) == []
    assert again.ids() == []
    await again.close()
