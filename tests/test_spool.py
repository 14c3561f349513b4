"""The spool on real files: durable store, enumerate, update, remove, quarantine, drops."""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from kumoclient.core import msgid
from kumoclient.errors import SpoolError
from kumoclient.records import SpooledMessage
from kumoclient.spool import Spool, Submission

CONTENT = b"Subject: t\r\n\r\nbody\r\n"


def submission(*recipients: str, content: bytes = CONTENT) -> Submission:
    return Submission("s@example.com", recipients, content)


async def stored(spool: Spool, *recipients: str) -> list[SpooledMessage]:
    messages = spool.prepare(submission(*recipients))
    await spool.store(messages, CONTENT)
    return messages


@pytest.fixture
async def spool(tmp_path: Path) -> Spool:
    spool = Spool(tmp_path / "spool")
    await spool.start()
    yield spool  # type: ignore[misc]
    await spool.close()


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


async def test_update_changes_state_without_touching_content(spool: Spool) -> None:
    (message,) = await stored(spool, "a@x.com")
    before = (spool.data / message.id).stat()
    from dataclasses import replace

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


async def test_corrupt_meta_and_truncated_content_are_quarantined_the_rest_load(
    spool: Spool,
) -> None:
    good, bad_meta, truncated = await stored(spool, "a@x.com", "b@x.com", "c@x.com")
    (spool.meta / f"{bad_meta.id}.json").write_text("{not json")
    path = spool.data / truncated.id
    path.write_bytes(path.read_bytes()[:-5])
    loaded = [m.id for m in spool.enumerate()]
    assert loaded == [good.id]
    quarantined = sorted(p.name for p in spool.quarantine.iterdir())
    assert f"{bad_meta.id}.reason" in quarantined
    assert f"{truncated.id}.reason" in quarantined
    assert "corrupt metadata" in (spool.quarantine / f"{bad_meta.id}.reason").read_text()
    assert "truncated content" in (spool.quarantine / f"{truncated.id}.reason").read_text()
    assert spool.ids() == [good.id]


async def test_garbage_file_in_data_is_quarantined(spool: Spool) -> None:
    (spool.data / ("f" * 32)).write_bytes(b"\x00\x01garbage")
    (message,) = await stored(spool, "a@x.com")
    assert [m.id for m in spool.enumerate()] == [message.id]
    assert "bad magic" in (spool.quarantine / f"{'f' * 32}.reason").read_text()


async def test_read_only_enumeration_counts_but_does_not_move(spool: Spool) -> None:
    (spool.data / ("e" * 32)).write_bytes(b"junk")
    assert list(spool.enumerate(quarantine=False)) == []
    assert spool.unreadable == 1
    assert (spool.data / ("e" * 32)).exists()


async def test_checksum_mismatch_is_detected_on_read(spool: Spool) -> None:
    (message,) = await stored(spool, "a@x.com")
    path = spool.data / message.id
    blob = bytearray(path.read_bytes())
    blob[-3] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(SpoolError, match="checksum mismatch"):
        await spool.read_content(message.id)


async def test_failed_submission_leaves_nothing(spool: Spool, tmp_path: Path) -> None:
    messages = spool.prepare(submission("a@x.com", "b@x.com"))
    (spool.data / f".{messages[1].id}.tmp").mkdir()  # the second write fails
    with pytest.raises(SpoolError, match="cannot write to the spool"):
        await spool.store(messages, CONTENT)
    assert spool.ids() == []
    assert not (spool.data / f".{messages[0].id}.tmp").exists()


def test_drop_is_atomic_and_idempotent_to_pick_up(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    ids = spool.drop(submission("a@x.com", "b@x.com"))
    (path,) = spool.pending_drops()
    sub, _created = spool.read_drop(path)
    assert [msgid.message_id(sub.base, i) for i in range(2)] == ids
    assert not list(spool.incoming.glob(".*"))


def test_corrupt_drop_raises(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    path = spool.incoming / f"{'a' * 28}.msg"
    path.write_bytes(b"not json\nbody")
    with pytest.raises(SpoolError, match="corrupt incoming file"):
        spool.read_drop(path)


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
    with pytest.raises(SpoolError, match="closed"):
        await stored(spool, "late@x.com")


@pytest.mark.parametrize(
    "header",
    [
        {"size": None},
        {"created": [1]},
        {"meta": [1, 2]},
        {"sender": {"deep": [[[[1]]]]}, "meta": "x"},
    ],
)
async def test_headers_of_the_wrong_types_are_quarantined(
    spool: Spool, header: dict[str, object]
) -> None:
    (good,) = await stored(spool, "a@x.com")
    (bad,) = await stored(spool, "b@x.com")
    path = spool.data / bad.id
    _magic, raw, rest = path.read_bytes().split(b"\n", 2)
    fields = {**json.loads(raw), **header}
    encoded = json.dumps(fields).encode()
    path.write_bytes(b"KCSPOOL1 " + str(len(encoded)).encode() + b"\n" + encoded + b"\n" + rest)
    assert [m.id for m in spool.enumerate()] == [good.id]
    assert (spool.quarantine / f"{bad.id}.reason").exists()


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


async def test_the_daemon_scan_removes_metadata_whose_message_is_gone(spool: Spool) -> None:
    orphan = spool.meta / f"{msgid.message_id(msgid.submission_base(1.0, 7), 0)}.json"
    orphan.write_text('{"attempts": 1, "due": 0}')
    list(spool.scan(quarantine=False))
    assert orphan.exists()  # a reader beside the daemon changes nothing
    list(spool.scan())
    assert not orphan.exists()


# --- recycled files (free/) ----------------------------------------------------------------


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
    from kumoclient import spool as spool_module

    monkeypatch.setattr(spool_module, "POOL_LIMIT", 3)
    monkeypatch.setattr(spool_module, "POOL_FILE_LIMIT", 1000)
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
