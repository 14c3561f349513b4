"""The delivery log writer under disk faults, on a real tmpfs of its own: a full disk, a
segment that cannot grow (the process's file size limit), an immutable directory when a new
segment is needed (at rotation, after an error), a failed fsync. Every record kept is written
once the disk can take it, whole and in order; none is lost."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import resource
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from kumoclient.errors import LogUnavailable
from kumoclient.logs import RecordLog
from kumoclient.records import LogRecord, RecordType, Reply
from tests.small_disk import SmallDisk


def record(index: int) -> LogRecord:
    return LogRecord(
        RecordType.DELIVERY,
        id=f"{index:032x}",
        sender="a@example.com",
        recipient=f"r{index}@example.net",
        queue="example.net",
        when=time.time(),
        created=time.time(),
        size=100,
        site="mx.example.net",
        response=Reply(250, None, "OK queued " + "x" * 300, ".\r\n"),
    )


def ids(segment: Path) -> list[int]:
    """The record indexes in a segment, in order (json.loads fails on a broken line)."""
    return [int(json.loads(line)["id"], 16) for line in segment.read_text().splitlines()]


def segments(log_dir: Path) -> list[Path]:
    return sorted(log_dir.glob("*.jsonl"))


def all_ids(log_dir: Path) -> list[int]:
    return [index for segment in segments(log_dir) for index in ids(segment)]


async def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def fault_lines(logs: list[dict[str, object]]) -> tuple[int, int]:
    """How many times the log said the fault began, and that it ended."""
    began = [e for e in logs if str(e["event"]).startswith("delivery log cannot be written")]
    ended = [e for e in logs if str(e["event"]).startswith("delivery log written again")]
    return len(began), len(ended)


async def test_the_periodic_flush_outlives_a_full_disk_and_writes_the_held_records_later(
    tmp_path: Path,
) -> None:
    with SmallDisk(tmp_path / "logs", "256k") as disk, capture_logs() as logs:
        log = RecordLog(disk.path)
        await log.open()
        try:
            for index in range(3):
                log.write(record(index))
            await log.sync()
            disk.fill()
            # about 15 kB: more than the segment's last page has left, so one write is cut
            # short in the middle of a record by the full disk
            assert all(log.write(record(index)) for index in range(3, 40))
            await wait_for(lambda: not log.health.ok)  # the flush loop met ENOSPC
            with pytest.raises(LogUnavailable):
                await log.sync()
            assert log.held > 0
            await asyncio.sleep(1.2)  # the flush loop tries again, twice, and fails
            assert not log.health.ok
            disk.free()
            await wait_for(lambda: log.health.ok)  # nobody but the flush loop writes them
            assert log.held == 0
            await log.sync()
            assert all_ids(disk.path) == list(range(40))  # once each, whole, in order
        finally:
            await log.close()
    assert fault_lines(logs) == (1, 1)


async def test_a_rotation_on_a_full_disk_leaves_no_record_cut_in_two(tmp_path: Path) -> None:
    with SmallDisk(tmp_path / "logs", "256k") as disk:
        log = RecordLog(disk.path, max_segment_duration=1.0)
        await log.open()
        try:
            first = log.path
            log.write(record(0))
            await log.sync()
            disk.fill()
            for index in range(1, 40):  # more than the last page takes: one is cut short
                log.write(record(index))
            await wait_for(lambda: not log.health.ok)
            await wait_for(lambda: log.path != first)  # rotated (a new file needs no space)
            disk.free()
            await wait_for(lambda: log.health.ok)
            await log.sync()
        finally:
            await log.close()
        assert first is not None
        assert 1 < len(ids(first)) < 40  # whole records only: the cut one was taken back
        assert all_ids(disk.path) == list(range(40))


async def test_past_the_hold_limit_a_record_is_not_kept_and_the_writer_says_so(
    tmp_path: Path,
) -> None:
    with SmallDisk(tmp_path / "logs", "256k") as disk:
        log = RecordLog(disk.path)
        await log.open()
        try:
            disk.fill()
            log.write(record(0))
            log.write(record(1))  # the segment's first page takes nothing: it has none
            await wait_for(lambda: not log.health.ok)
            log.hold_limit = 4096
            kept = [index for index in range(2, 30) if log.write(record(index))]
            assert 0 < len(kept) < 28
            assert log.dropped == 28 - len(kept)
            disk.free()
            await wait_for(lambda: log.health.ok)
            await log.sync()
            assert all_ids(disk.path) == [0, 1, *kept]
        finally:
            await log.close()


async def test_a_rotation_onto_an_immutable_directory_keeps_writing_the_current_segment(
    tmp_path: Path,
) -> None:
    with SmallDisk(tmp_path / "logs") as disk, capture_logs() as logs:
        log = RecordLog(disk.path, max_segment_duration=1.0)
        await log.open()
        try:
            log.write(record(0))
            await log.sync()
            first = log.path
            disk.immutable(disk.path)  # no new file can be made in it
            await asyncio.sleep(1.1)  # the segment is due for rotation
            log.write(record(1))
            await log.sync()  # the rotation fails; the record goes on into the old segment
            assert log.path == first
            assert log.health.ok
            disk.immutable(disk.path, on=False)
            await wait_for(lambda: log.path != first)  # the flush loop rotates now
            log.write(record(2))
            await log.sync()
        finally:
            await log.close()
        assert first is not None
        assert ids(first) == [0, 1]
        assert all_ids(disk.path) == [0, 1, 2]
    warnings = [e for e in logs if str(e["event"]).startswith("cannot start a new log segment")]
    assert len(warnings) == 1
    assert fault_lines(logs) == (0, 0)  # records were written all along


@contextlib.contextmanager
def file_size_limit(size: int) -> Iterator[None]:
    """RLIMIT_FSIZE for this process: a write past `size` bytes of a file fails with EFBIG, a
    real error of the kernel's that no chattr gives on a file already open (the immutable flag
    is checked when a file is opened, not on each write). Python ignores SIGXFSZ."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


async def test_a_segment_that_cannot_grow_is_left_for_a_new_one(tmp_path: Path) -> None:
    with SmallDisk(tmp_path / "logs") as disk:
        log = RecordLog(disk.path)
        await log.open()
        try:
            first = log.path
            with file_size_limit(8192):
                for index in range(15):  # about 11 kB
                    log.write(record(index))
                log.flush()  # EFBIG in the middle of a record: the writer leaves the segment
                await wait_for(lambda: log.path != first and log.held == 0)
            await log.sync()
        finally:
            await log.close()
        assert first is not None
        assert 0 < len(ids(first)) < 15  # ends in a whole record: the cut one went on
        assert all_ids(disk.path) == list(range(15))


async def test_an_unwritable_segment_in_an_immutable_directory_holds_the_records_until_one_can_be_made(
    tmp_path: Path,
) -> None:
    with SmallDisk(tmp_path / "logs") as disk, capture_logs() as logs:
        log = RecordLog(disk.path)
        await log.open()
        try:
            log.write(record(0))
            await log.sync()
            first = log.path
            disk.immutable(disk.path)
            with file_size_limit(os.path.getsize(str(first))):
                for index in range(1, 4):
                    log.write(record(index))
                await wait_for(lambda: not log.health.ok)
                with pytest.raises(LogUnavailable):
                    await log.sync()
                await asyncio.sleep(1.2)  # tried again, and again, without a new line
                disk.immutable(disk.path, on=False)
                await wait_for(lambda: log.health.ok)
            await log.sync()
        finally:
            await log.close()
        assert first is not None
        assert ids(first) == [0]
        assert all_ids(disk.path) == [0, 1, 2, 3]
    assert fault_lines(logs) == (1, 1)


async def test_a_failed_fsync_writes_the_unsynced_records_again_to_a_new_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a scripted fault: no real part here makes fsync fail on demand (a dm-flakey device
    # would, but needs a block device this machine lacks)
    real_fsync = os.fsync
    failures = [OSError(errno.EIO, "Input/output error")]

    def fsync(fd: int) -> None:
        if failures:
            raise failures.pop()
        real_fsync(fd)

    with SmallDisk(tmp_path / "logs") as disk:
        log = RecordLog(disk.path)
        await log.open()
        try:
            log.write(record(0))
            await log.sync()
            first = log.path
            log.write(record(1))
            log.write(record(2))
            monkeypatch.setattr(os, "fsync", fsync)
            with pytest.raises(LogUnavailable):
                await log.sync()
            await wait_for(lambda: log.health.ok)
            await log.sync()
            second = log.path
        finally:
            await log.close()
        assert second is not None
        assert second != first
        assert ids(second) == [1, 2]  # the kernel may have dropped them from the first
        assert set(all_ids(disk.path)) == {0, 1, 2}


async def test_closing_while_the_disk_is_full_returns_and_counts_the_lost_records(
    tmp_path: Path,
) -> None:
    with SmallDisk(tmp_path / "logs", "256k") as disk, capture_logs() as logs:
        log = RecordLog(disk.path)
        await log.open()
        disk.fill()
        for index in range(5):
            log.write(record(index))
        async with asyncio.timeout(10):
            await log.close()
    lost = [e for e in logs if e["event"].startswith("delivery log records lost at stop")]
    assert [e["records"] for e in lost] == [5]


async def test_a_first_segment_that_cannot_be_made_is_a_fault_that_ends_by_itself(
    tmp_path: Path,
) -> None:
    with SmallDisk(tmp_path / "logs") as disk:
        disk.immutable(disk.path)
        log = RecordLog(disk.path)
        await log.open()
        try:
            assert not log.health.ok
            log.write(record(0))
            disk.immutable(disk.path, on=False)
            await wait_for(lambda: log.health.ok)
            await log.sync()
        finally:
            await log.close()
        assert all_ids(disk.path) == [0]
