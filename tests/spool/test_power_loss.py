"""Power loss (issue 15, item 7): what a failed syncfs wrote is made durable another way, or
undone durably; a drop file picked up again rewrites an entry a power loss tore.

The syncfs failures are scripted: no real part produces a failing syncfs(2) on demand (it
reports a write-back error of any file of the filesystem, which needs a failing disk), so
`disk._SYNCFS` is replaced by a function that fails with EIO, and os.fsync is wrapped to
record (and, where a test says so, fail) each call with the path of its descriptor. Every
file, directory and rename is real; the full disk of the temporary-file test is a real tmpfs.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from kumoclient.engine.reception import Reception
from kumoclient.logs import RecordLog
from kumoclient.policy.memoize import MemoRegistry
from kumoclient.policy.runtime import PolicyHolder
from kumoclient.spool import Spool, SpoolUnavailable, disk
from tests.conftest import record_writer
from tests.spool.common import CONTENT, fill, small_tmpfs, stored, submission


def failing_syncfs(fd: int) -> int:
    """syncfs(2) as it returns after a write-back error: -1, errno EIO."""
    ctypes.set_errno(errno.EIO)
    return -1


class Fsyncs:
    """os.fsync, recording the path of each descriptor synced (and what a synced directory
    held then); `fails(path)` makes the call fail with EIO instead."""

    def __init__(self, fails: Callable[[str], bool] = lambda path: False) -> None:
        self.real = os.fsync
        self.fails = fails
        self.paths: list[str] = []
        self.listings: list[tuple[str, set[str]]] = []

    def __call__(self, fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        self.paths.append(path)
        if os.path.isdir(path):
            self.listings.append((path, set(os.listdir(path))))
        if self.fails(path):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        self.real(fd)


@pytest.fixture
async def batched(tmp_path: Path) -> AsyncIterator[Spool]:
    """A started spool that groups its writes under one syncfs (Linux)."""
    if disk._SYNCFS is None:
        pytest.skip("this system has no syncfs")
    spool = Spool(tmp_path / "spool")
    await spool.start()
    yield spool
    await spool.close()


async def test_after_a_failed_syncfs_each_file_and_data_are_fsynced_before_the_ack(
    batched: Spool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fsyncs = Fsyncs()
    monkeypatch.setattr(disk, "_SYNCFS", failing_syncfs)
    monkeypatch.setattr(os, "fsync", fsyncs)
    messages = await stored(batched, "a@x.com", "b@x.com", "c@x.com")
    for message in messages:
        assert str(batched.data / message.id) in fsyncs.paths
    assert fsyncs.paths[-1] == str(batched.data)  # the renames, after the files' data
    assert "syncfs failed: syncing each file instead" in capsys.readouterr().out
    monkeypatch.undo()
    reopened = Spool(batched.root)  # the acknowledged messages are there, whole
    assert sorted(m.id for m in reopened.enumerate()) == sorted(m.id for m in messages)
    for message in messages:
        assert await reopened.read_content(message.id) == CONTENT


async def test_when_the_fallback_fails_too_the_group_is_unlinked_and_that_made_durable(
    batched: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    (kept,) = await stored(batched, "kept@x.com")
    data = str(batched.data)
    fsyncs = Fsyncs(fails=lambda path: os.path.dirname(path) == data)  # files, not data/
    monkeypatch.setattr(disk, "_SYNCFS", failing_syncfs)
    monkeypatch.setattr(os, "fsync", fsyncs)
    prepared = batched.prepare(submission("a@x.com", "b@x.com"))
    with pytest.raises(SpoolUnavailable, match="cannot sync the spool") as raised:
        await batched.store(prepared, CONTENT)
    assert raised.value.errno == errno.EIO
    assert batched.ids() == [kept.id]
    folder, listing = fsyncs.listings[-1]  # data/ synced once the unlinks were done
    assert folder == data
    assert listing.isdisjoint(m.id for m in prepared)
    monkeypatch.undo()
    assert await Spool(batched.root).read_content(kept.id) == CONTENT


async def test_a_failed_syncfs_in_apply_fsyncs_each_metadata_file_and_the_folders(
    batched: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second, gone = await stored(batched, "a@x.com", "b@x.com", "c@x.com")
    fsyncs = Fsyncs()
    monkeypatch.setattr(disk, "_SYNCFS", failing_syncfs)
    monkeypatch.setattr(os, "fsync", fsyncs)
    updates = [replace(m, attempts=1, due=9.0, last_response="451 later") for m in (first, second)]
    batched.apply(updates, [gone.id])
    for message in (first, second):
        assert str(batched.meta / f"{message.id}.json") in fsyncs.paths
    assert fsyncs.paths[-2:] == [str(batched.meta), str(batched.data)]
    assert gone.id not in fsyncs.listings[-1][1]
    monkeypatch.undo()
    reopened = Spool(batched.root)
    assert {m.id: m.attempts for m in reopened.enumerate()} == {first.id: 1, second.id: 1}


async def test_a_failed_apply_whose_fallback_fails_is_unavailable_and_retried_whole(
    batched: Spool, monkeypatch: pytest.MonkeyPatch
) -> None:
    (message,) = await stored(batched, "a@x.com")
    monkeypatch.setattr(disk, "_SYNCFS", failing_syncfs)
    monkeypatch.setattr(os, "fsync", Fsyncs(fails=lambda path: path.endswith(".json")))
    update = replace(message, attempts=1, due=9.0)
    with pytest.raises(SpoolUnavailable, match="cannot update the spool"):
        batched.apply([update], [])
    monkeypatch.undo()
    assert [p.name for p in batched.meta.iterdir() if p.name.endswith(".tmp")] == []
    batched.apply([update], [])  # the state writer's next batch
    assert Spool(batched.root).load(message.id).attempts == 1


async def test_a_failed_apply_leaves_no_temporary_file(tmp_path: Path) -> None:
    """A real full disk (tmpfs) fails the write of a metadata file half-way."""
    with small_tmpfs(tmp_path / "small") as mount:
        spool = Spool(mount / "spool")
        await spool.start()
        try:
            messages = await stored(spool, "a@x.com", "b@x.com")
            fill(mount)
            long = [replace(m, attempts=1, last_response="451 " + "x" * 20_000) for m in messages]
            with pytest.raises(SpoolUnavailable) as raised:
                spool.apply(long, [])
            assert raised.value.errno == errno.ENOSPC
            assert [p.name for p in spool.meta.iterdir()] == []
            assert [m.attempts for m in spool.enumerate()] == [0, 0]
        finally:
            await spool.close()


async def test_a_drop_picked_up_again_rewrites_a_torn_entry_and_keeps_an_intact_one(
    tmp_path: Path,
) -> None:
    """A crash after the pick-up stored the messages but before the drop file was removed
    leaves both; a power loss may also have torn an entry (renamed, data not on disk). The
    next pick-up checks each existing entry's size and CRC: the torn one is written again
    from the drop file, the intact one is left as it is."""
    policy = tmp_path / "policy.lua"
    policy.write_text("")
    spool = Spool(tmp_path / "spool")
    await spool.start()
    records = RecordLog(tmp_path / "logs")
    await records.open()
    try:
        reception = Reception(
            PolicyHolder(policy, memo=MemoRegistry()), spool, record_writer(spool, records)
        )
        torn_id, intact_id = spool.drops.drop(submission("a@x.com", "b@x.com"))
        (dropped,) = spool.drops.pending()
        shutil.copy(dropped, tmp_path / "drop")
        assert await reception.pick_up_drops() == 1
        shutil.copy(tmp_path / "drop", dropped)  # its removal never reached the disk
        torn = spool.data / torn_id
        torn.write_bytes(torn.read_bytes()[:25])  # what a power loss can leave
        intact = (spool.data / intact_id).stat()
        assert await reception.pick_up_drops() == 1
        assert await spool.read_content(torn_id) == CONTENT
        again = (spool.data / intact_id).stat()
        assert (again.st_ino, again.st_mtime_ns) == (intact.st_ino, intact.st_mtime_ns)
        assert sorted(m.id for m in Spool(spool.root).enumerate()) == [torn_id, intact_id]
    finally:
        await spool.close()
        await records.close()
