"""The writer of delivery log records (SPEC 6): JSONL segment files, and the records held in
memory while the disk cannot take them; their JSON form is `core.log_record`'s.

`RecordLog` writes JSONL segment files `<log_dir>/<UTC %Y%m%d-%H%M%S>.jsonl`.
`write` holds a record in memory; held records go to the current segment every
FLUSH_INTERVAL, or at once when FLUSH_SIZE bytes wait. `sync()` writes and fsyncs them and
is what callers await before a message leaves the spool (concurrent calls share one
fsync). A new segment starts at open and every `max_segment_duration`.

Faults: when the records cannot be written (a full disk or quota; a segment that cannot be
written or created: I/O error, read-only, file size limit, an immutable directory) they
stay held, `health` goes down (one log line) and `sync()` raises
LogUnavailable. Every FLUSH_INTERVAL the writer tries again — the same segment after a
full disk, a new one after any other error — and once everything held is written,
`health` is up (one log line). At most `hold_limit` bytes are held: past it `write` keeps
no record and says so. Bytes written since the segment's last fsync are kept until an
fsync succeeds: after a failed fsync (the kernel may have dropped them) they are written
again to a new segment, so a record may appear twice in the log, never not at all. A
segment never ends in part of a record once it is left. A rotation that cannot create the
new segment goes on writing the current one and tries again (one log line).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import errno
import json
import os
import time
import uuid
from pathlib import Path

import orjson
import structlog

from kumoclient.core import log_record
from kumoclient.errors import LogUnavailable
from kumoclient.logs.health import LogHealth
from kumoclient.records import LogRecord

NODE_ID = str(uuid.uuid1())  # this process's `nodeid` in log records

# a full disk or quota: the segment itself is fine and is tried again; any other error
# (permission, immutable file, read-only file system, I/O error) drops it for a new one
_SPACE_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT})
_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC

_log = structlog.get_logger(__name__)


def encode_record(record: LogRecord) -> bytes:
    """One JSON line (core.log_record's object). orjson, 40 times faster than json on these
    records; json for what orjson refuses (text that is not valid UTF-8, e.g. a server's reply
    decoded with surrogate escapes), escaped so the line stays valid UTF-8."""
    fields = log_record.encode(record)
    try:
        return orjson.dumps(fields, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        return json.dumps(fields, separators=(",", ":")).encode() + b"\n"


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


class RecordLog:
    """The delivery log's writer (see the module's text)."""

    FLUSH_INTERVAL = 0.5
    FLUSH_SIZE = 256 * 1024  # held bytes written at once, without waiting for the interval
    HOLD_LIMIT = 64 * 1024 * 1024  # held bytes at most: about 70,000 records
    UNSYNCED_LIMIT = 4 * 1024 * 1024  # written bytes kept for a failed fsync; fsync beyond

    def __init__(self, log_dir: Path, max_segment_duration: float = 3600.0) -> None:
        self.log_dir = log_dir
        self.max_segment_duration = max_segment_duration
        self.health = LogHealth()
        self.hold_limit = self.HOLD_LIMIT
        self.path: Path | None = None  # the current segment
        self.dropped = 0  # records not kept: hold_limit bytes were waiting
        self._fd: int | None = None
        self._segment_start = 0.0
        self._held = bytearray()  # records not written to a segment yet
        self._unsynced = bytearray()  # written to the current segment since its last fsync
        self._written = 0  # records kept so far
        self._synced = 0  # of which durable
        self._rotation_failed = False
        self._given_up: Path | None = None  # a segment left after an error: never reopened
        self._dropped_before = 0  # `dropped` when the current fault began
        self._lock = asyncio.Lock()  # segment changes and fsyncs, one at a time
        self._flusher: asyncio.Task[None] | None = None

    @property
    def held(self) -> int:
        """Records waiting in memory to be written."""
        return self._held.count(b"\n")

    async def open(self) -> None:
        """Start a segment and the periodic flush (a segment that cannot be created now is a
        fault like any later one: records are held and the flush tries again)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.flush()
        self._flusher = asyncio.create_task(self._flush_loop(), name="log-flush")

    def write(self, record: LogRecord) -> bool:
        """Hold one record for the log (written within FLUSH_INTERVAL). False when it was not
        kept, because `hold_limit` bytes wait already (the log is down): the caller must not
        act as if it were written."""
        line = encode_record(record)
        if len(self._held) + len(line) > self.hold_limit:
            self.dropped += 1
            return False
        self._held += line
        self._written += 1
        if len(self._held) >= self.FLUSH_SIZE and self.health.ok:
            self.flush()
        return True

    def flush(self) -> None:
        """Write the held records to the segment now. Never raises: a failure takes `health`
        down, a success brings it up."""
        if not self._lock.locked():
            self._flush()
            return
        # a sync is fsyncing the segment in a thread: write to it, change nothing else (a
        # failure is met again, and handled, by the next flush)
        if self._fd is not None and self.health.ok:
            with contextlib.suppress(OSError):
                self._write_held()

    async def sync(self) -> None:
        """Make every record written so far durable. LogUnavailable while the log cannot take
        them: they stay held; await `health.wait_ok` and call again."""
        target = self._written
        async with self._lock:
            if self._synced >= target:
                return
            upto = self._written
            self._flush()
            fd = self._fd
            if not self.health.ok or fd is None:
                raise LogUnavailable(self.health.reason)
            mark = len(self._unsynced)
            try:
                await asyncio.to_thread(os.fsync, fd)
            except OSError as exc:
                self._abandon()
                self._fault(exc)
                raise LogUnavailable(self.health.reason) from exc
            del self._unsynced[:mark]
            self._synced = upto

    async def close(self) -> None:
        """Write and fsync what is held, and close. Records that cannot be written now are
        lost (logged with their number)."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        with contextlib.suppress(LogUnavailable):
            await self.sync()
        if self._held or self.dropped > self._dropped_before:
            _log.error(
                "delivery log records lost at stop: the log could not be written",
                records=self.held,
                dropped=self.dropped - self._dropped_before,
                error=self.health.reason,
            )
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    # --- the segment ----------------------------------------------------------------------

    def _flush(self) -> None:
        try:
            self._rotate_if_due(time.time())
            self._drain()
        except OSError as exc:
            self._fault(exc)
            return
        if not self.health.ok:
            self._recovered()

    def _rotate_if_due(self, now: float) -> None:
        """A segment to write to: a new one when there is none (OSError when it cannot be
        made), or when the current one is max_segment_duration old (else kept)."""
        if self._fd is None:
            self._start_segment(now)
            return
        if now - self._segment_start < self.max_segment_duration:
            return
        try:
            self._start_segment(now)
        except OSError as exc:
            if not self._rotation_failed:
                _log.warning(
                    "cannot start a new log segment; records go on into the current one",
                    error=_reason(exc),
                    errno=exc.errno,
                    path=str(self.path),
                )
                self._rotation_failed = True
            return
        if self._rotation_failed:
            _log.info("new log segment started after failed rotations", path=str(self.path))
            self._rotation_failed = False

    def _start_segment(self, now: float) -> None:
        stamp = datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%Y%m%d-%H%M%S")
        path = self.log_dir / f"{stamp}.jsonl"
        if path == self._given_up:  # the same second: the next one gives a new name
            raise FileExistsError(errno.EEXIST, "a segment given up has this name", str(path))
        fd = os.open(path, _OPEN_FLAGS, 0o644)
        old, self._fd = self._fd, fd
        self.path, self._segment_start = path, now
        if old is not None:
            self._retire(old)

    def _drain(self) -> None:
        """Write every held byte to the segment. After an error other than a full disk the
        segment is left and a new one tried once; OSError when that fails too, or when the
        disk is full (what was written stays written, the rest held)."""
        try:
            self._write_held()
        except OSError as exc:
            if exc.errno in _SPACE_ERRORS:
                raise
            if self.health.ok:
                _log.warning(
                    "log segment cannot be written; starting a new one",
                    error=_reason(exc),
                    errno=exc.errno,
                    path=str(self.path),
                )
            old, self._fd = self._fd, None
            self._given_up = self.path
            if old is not None:
                self._retire(old)
            try:
                self._start_segment(time.time())
            except OSError:
                raise exc from None  # the cause to report is the segment's error
            self._write_held()

    def _write_held(self) -> None:
        assert self._fd is not None
        while self._held:
            count = os.write(self._fd, self._held)
            self._unsynced += self._held[:count]
            del self._held[:count]

    def _retire(self, fd: int) -> None:
        """Close a segment no longer written to: what it got since its last fsync is fsynced
        there, or held again when that fsync fails; an unfinished record at its end (a write
        cut short by a full disk) is cut off and held again."""
        whole = self._unsynced.rfind(b"\n") + 1
        again = self._unsynced[whole:]
        if again:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, os.fstat(fd).st_size - len(again))
        try:
            os.fsync(fd)
        except OSError as exc:
            _log.warning(
                "fsync of a log segment failed; its latest records are written again",
                error=_reason(exc),
                errno=exc.errno,
            )
            again = self._unsynced
        finally:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._held[:0] = again
        self._unsynced = bytearray()

    def _abandon(self) -> None:
        """Leave the current segment without trusting it (its fsync failed): everything written
        there since its last good fsync is held again, for a new segment."""
        fd, self._fd = self._fd, None
        self._given_up = self.path
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._held[:0] = self._unsynced
        self._unsynced = bytearray()

    # --- health ---------------------------------------------------------------------------

    def _fault(self, exc: OSError) -> None:
        if self.health.ok:
            self._dropped_before = self.dropped
        self.health.down(_reason(exc), errno=exc.errno, path=str(self.path), held=self.held)

    def _recovered(self) -> None:
        self.health.up(dropped=self.dropped - self._dropped_before, path=str(self.path))

    async def _flush_loop(self) -> None:
        """Every FLUSH_INTERVAL: write what is held (after a fault: try again) and fsync when
        much is unsynced. It must outlive every error: it is how a fault ends."""
        while True:
            await asyncio.sleep(self.FLUSH_INTERVAL)
            try:
                async with self._lock:
                    self._flush()
                if len(self._unsynced) > self.UNSYNCED_LIMIT:
                    await self.sync()
            except LogUnavailable:
                pass  # the fault is logged once, and tried again next time
            except Exception:  # a bug of ours must not end the log's recovery
                _log.exception("delivery log flush failed")
