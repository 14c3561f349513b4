"""The on-disk spool: durable writes before acknowledgement, metadata updates, enumeration,
quarantine, removal, and the `incoming/` drop folder.

Layout under the spool directory:
  data/<id>        one message: a header line, a JSON header, then the content bytes
  meta/<id>.json   scheduling state written after the first attempt (attempts, due, response)
  incoming/        submissions dropped by `kumoclient inject`, picked up by the daemon
  quarantine/      entries that could not be read, each with a `.reason` file
  free/            files of delivered messages, kept to be written over by new ones

Durability (SPEC 1): nothing is acknowledged before its file and its directory entry are on
disk. Concurrent submissions are grouped: one worker thread takes every submission that
arrived while the previous group was being written, writes each message to a temporary name,
renames it into `data/`, and then makes the whole group durable with one `syncfs(2)` of the
spool's filesystem (the "equivalent group commit" of SPEC 1; on systems without syncfs, each
file is fsynced and `data/` once). Without group commit (`group_commit=False`) every
submission is written, fsynced, renamed and its directory fsynced on its own; `bench/spool.py`
measures both. A submission is all or nothing: if any of its messages cannot be written, the
others are removed again and the error is raised to the submitter.

Files are recycled: a message that leaves the spool is renamed into `free/` (up to
POOL_LIMIT files of at most POOL_FILE_LIMIT bytes; the rest are unlinked), and a new message
takes one of those files (an atomic rename, so processes sharing the spool never take the same
one), writes over it and cuts it to length. Allocating and freeing an inode per message costs
more than the rest of the spool's work together, and on an ext4 without a journal the
allocator skips every inode freed in the last 30 s, which made each new file cost up to half a
millisecond of kernel time at 1,000 messages/s (docs/performance.md). What `free/` holds is
never read: a recycled file counts only once it is renamed into `data/` and synced like any
other.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import random
import re
import secrets
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kumoclient import logs
from kumoclient.core import msgid
from kumoclient.errors import SpoolEntryMissing, SpoolError
from kumoclient.records import SpooledMessage

log = logs.get_logger(__name__)

MAGIC = b"KCSPOOL1 "
_HEADER_LIMIT = 1 << 20
_WHOLE_READ = 64 * 1024  # entries up to this size are read whole in one call


@dataclass(frozen=True, slots=True)
class Submission:
    """One submission: an envelope with N recipients and the content they share."""

    sender: str
    recipients: tuple[str, ...]
    content: bytes
    meta: tuple[dict[str, str], ...] = ()  # per recipient; empty means {} for each
    base: str = ""  # id prefix; chosen on store when empty
    reception_protocol: str = "ESMTP"


_Entries = list[tuple[SpooledMessage, bytes]]


@dataclass(slots=True)
class _Pending:
    messages: _Entries
    fresh: bool
    future: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def encode_entry(message: SpooledMessage, content: bytes) -> bytes:
    """The bytes of `data/<id>`."""
    header = json.dumps(
        {
            "id": message.id,
            "sender": message.sender,
            "recipient": message.recipient,
            "meta": message.meta,
            "created": message.created,
            "size": len(content),
            "crc32": zlib.crc32(content),
            "reception_protocol": message.reception_protocol,
        },
        separators=(",", ":"),
    ).encode()
    return MAGIC + str(len(header)).encode() + b"\n" + header + b"\n" + content


def decode_header(blob: bytes, file_size: int) -> tuple[dict[str, Any], int]:
    """The header of an entry and the offset where its content starts; checks the size."""
    if not blob.startswith(MAGIC):
        raise SpoolError("not a spool entry (bad magic)")
    newline = blob.find(b"\n", len(MAGIC))
    if newline < 0:
        raise SpoolError("truncated header line")
    try:
        length = int(blob[len(MAGIC) : newline])
    except ValueError as exc:
        raise SpoolError("bad header length") from exc
    start = newline + 1
    if length > _HEADER_LIMIT or len(blob) < start + length + 1:
        raise SpoolError("truncated header")
    try:
        header = json.loads(blob[start : start + length])
    except ValueError as exc:
        raise SpoolError(f"corrupt header: {exc}") from exc
    if not isinstance(header, dict) or not {"id", "sender", "recipient", "size"} <= set(header):
        raise SpoolError("header lacks id, sender, recipient or size")
    content_start = start + length + 1
    if file_size != content_start + int(header["size"]):
        raise SpoolError(
            f"truncated content: {file_size - content_start} of {header['size']} bytes"
        )
    return header, content_start


def _drain(queue: asyncio.Queue[_Pending | None]) -> list[_Pending | None]:
    items: list[_Pending | None] = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


class Spool:
    """A spool directory; `start()` before storing, `close()` when done."""

    def __init__(self, root: Path, *, group_commit: bool = True) -> None:
        self.root = root
        self.data = root / "data"
        self.meta = root / "meta"
        self.incoming = root / "incoming"
        self.quarantine = root / "quarantine"
        self.free = root / "free"
        self._pool = _FilePool(f"{self.free}{os.sep}")
        self.group_commit = group_commit
        self.unreadable = 0
        self._data_fd: int | None = None
        self._data_prefix = f"{self.data}{os.sep}"  # plain strings: no pathlib per message
        self._meta_prefix = f"{self.meta}{os.sep}"
        # ids with a metadata file (from the scan and from updates): a removal unlinks only
        # the files that exist, one system call per message saved on this hot path
        self._stated: set[str] = set()
        self._closed = False
        self._queue: asyncio.Queue[_Pending | None] | None = None
        self._committer: asyncio.Task[None] | None = None
        for folder in (self.data, self.meta, self.incoming, self.quarantine, self.free):
            folder.mkdir(parents=True, exist_ok=True)

    # --- lifecycle ---------------------------------------------------------------------

    def remove_stale(self) -> None:
        """Remove the temporary files a crash left behind. A `.tmp` file was never
        acknowledged (acknowledgement comes after the rename), so deleting it loses nothing;
        but only while no other process is writing to this spool."""
        for folder in (self.data, self.meta, self.incoming):
            for stale in folder.glob(".*.tmp"):
                stale.unlink(missing_ok=True)

    async def start(self, *, clean: bool = True) -> None:
        """Start the group-commit worker; first `remove_stale()` unless `clean` is False
        (a reception worker: the main process owns the spool and cleaned it before)."""
        if clean:
            self.remove_stale()
        if _SYNCFS is not None and self._data_fd is None:
            # one descriptor for the spool's life: write-back errors are reported per open
            # descriptor from when it was opened, so a fresh one per sync could miss them
            self._data_fd = os.open(self.data, os.O_RDONLY | os.O_DIRECTORY)
        self._queue = asyncio.Queue()
        self._committer = asyncio.create_task(self._commit_loop(self._queue), name="spool-commit")

    async def close(self) -> None:
        """Commit what is queued, then stop the worker (never in the middle of a group)."""
        if self._committer is not None and self._queue is not None:
            queue, self._queue = self._queue, None
            self._closed = True  # later store() calls fail fast
            await queue.put(None)
            await self._committer
            self._committer = None
        if self._data_fd is not None:
            os.close(self._data_fd)
            self._data_fd = None

    # --- storing -----------------------------------------------------------------------

    def prepare(self, submission: Submission, now: float | None = None) -> list[SpooledMessage]:
        """The per-recipient messages of a submission (ids assigned, nothing written)."""
        created = time.time() if now is None else now
        base = submission.base or msgid.submission_base(created, secrets.randbits(64))
        metas = submission.meta or tuple({} for _ in submission.recipients)
        return [
            SpooledMessage(
                id=msgid.message_id(base, index),
                sender=submission.sender,
                recipient=recipient,
                meta=dict(metas[index]),
                created=created,
                size=len(submission.content),
                due=created,
                reception_protocol=submission.reception_protocol,
            )
            for index, recipient in enumerate(submission.recipients)
        ]

    async def store(
        self, messages: list[SpooledMessage], content: bytes, *, fresh: bool = True
    ) -> None:
        """Write the messages durably; returns only once they would survive a crash.
        `fresh=False`: some may be in the spool already (an `incoming/` file picked up again
        after a crash); those are left as they are.

        A caller that is cancelled while waiting (the client hung up) does not cancel the
        commit: its messages are written anyway, as after any unacknowledged submission.
        """
        entries = [(m, content) for m in messages]
        if self._closed:
            raise SpoolError("the spool is closed")
        if not self.group_commit or self._queue is None:  # per message, or not started
            await asyncio.to_thread(self._commit_group, [(entries, fresh)])
            return
        pending = _Pending(entries, fresh)
        await self._queue.put(pending)
        await asyncio.shield(pending.future)

    async def _commit_loop(self, queue: asyncio.Queue[_Pending | None]) -> None:
        """Commit groups until the `None` that close() sends; one bad group stops nothing.

        The queue is passed in: close() may take it from `self` before this task first runs.
        """
        stopping = False
        while not stopping:
            group: list[_Pending] = []
            for item in [await queue.get(), *_drain(queue)]:
                if item is None:
                    stopping = True
                else:
                    group.append(item)
            if not group:
                continue
            try:
                errors: list[SpoolError | None] = await asyncio.to_thread(
                    self._commit_group, [(p.messages, p.fresh) for p in group], collect_errors=True
                )
            except Exception as exc:  # a bug of ours: fail this group, keep serving
                log.exception("spool commit failed")
                errors = [SpoolError(f"spool commit failed: {exc}") for _ in group]
            for pending, error in zip(group, errors, strict=True):
                if pending.future.done():  # its waiter is gone
                    continue
                if error is None:
                    pending.future.set_result(None)
                else:
                    pending.future.set_exception(error)

    def _commit_group(
        self, group: list[tuple[_Entries, bool]], collect_errors: bool = False
    ) -> list[SpoolError | None]:
        """Write every submission of the group, then make the whole group durable at once.

        With `syncfs` (Linux), files are written and renamed without their own fsync and one
        `syncfs` of the spool's filesystem flushes the data and the directory entries of the
        whole group; otherwise each file is fsynced and the directory once.
        """
        batched = self.group_commit and self._data_fd is not None
        errors: list[SpoolError | None] = []
        written: list[_Entries] = []
        for entries, fresh in group:
            try:
                self._write_submission(entries, sync_each=not batched, fresh=fresh)
                errors.append(None)
                written.append(entries)
            except SpoolError as exc:
                if not collect_errors:
                    raise
                errors.append(exc)
        if not written:
            return errors
        try:
            if batched:
                assert self._data_fd is not None
                _syncfs(self._data_fd)
            else:
                _fsync_dir(self.data)
        except OSError as exc:
            failure = SpoolError(f"cannot sync the spool: {exc.strerror or exc}")
            for entries in written:
                for message, _ in entries:
                    with contextlib.suppress(OSError):
                        (self.data / message.id).unlink()
            if not collect_errors:
                raise failure from exc
            errors = [failure if e is None else e for e in errors]
        return errors

    def _write_submission(
        self, entries: _Entries, *, sync_each: bool = True, fresh: bool = True
    ) -> None:
        written: list[str] = []  # plain strings: no pathlib objects per message
        renames: list[tuple[str, str]] = []
        try:
            for message, content in entries:
                final = f"{self._data_prefix}{message.id}"
                tmp = f"{self._data_prefix}.{message.id}.tmp"
                recycled = self._pool.take(tmp)
                flags = os.O_WRONLY if recycled else os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                fd = os.open(tmp, flags, 0o640)
                written.append(tmp)
                _write_fd(fd, encode_entry(message, content), sync=sync_each, cut=recycled)
                renames.append((tmp, final))
            for tmp, final in renames:
                if not fresh and os.path.exists(final):  # picked up again: already durable
                    os.unlink(tmp)
                    continue
                os.rename(tmp, final)
                written.append(final)
        except OSError as exc:
            for path in written:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            raise SpoolError(f"cannot write to the spool: {exc.strerror or exc}") from exc

    # --- updating and removing ------------------------------------------------------------

    async def update(self, message: SpooledMessage) -> None:
        """Persist attempts, next due time and last response without touching the content."""
        await asyncio.to_thread(self.apply, [message], [])

    async def remove(self, message_id: str) -> None:
        """Take a message out of the spool (after its final log record is durable)."""
        await asyncio.to_thread(self._remove, message_id)

    def _remove(self, message_id: str) -> None:
        for path in (self.meta / f"{message_id}.json", self.data / message_id):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        _fsync_dir(self.data)

    def apply(self, updates: list[SpooledMessage], removals: list[str]) -> None:
        """Write many metadata updates and removals, then make them durable at once.

        Blocking (run it in a thread). Callers make the final log records of `removals`
        durable first (SPEC 1, invariant 2).
        """
        removed = set(removals)
        try:
            for message in updates:
                if message.id not in removed:
                    tmp = self.meta / f".{message.id}.json.tmp"
                    _write_file(tmp, _state_blob(message), sync=self._data_fd is None)
                    os.rename(tmp, f"{self._meta_prefix}{message.id}.json")
                    self._stated.add(message.id)
            for message_id in removals:
                if message_id in self._stated:
                    self._stated.discard(message_id)
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(f"{self._meta_prefix}{message_id}.json")
                with contextlib.suppress(FileNotFoundError):
                    self._pool.give(f"{self._data_prefix}{message_id}", message_id)
            if self._data_fd is not None:
                _syncfs(self._data_fd)
            else:
                _fsync_dir(self.meta)
                _fsync_dir(self.data)
        except OSError as exc:
            raise SpoolError(f"cannot update the spool: {exc.strerror or exc}") from exc

    def content(self, message_id: str) -> bytes:
        """`read_content` without a thread, for small messages already in the page cache."""
        return self._read_content(message_id)

    async def read_content(self, message_id: str) -> bytes:
        """The content bytes of a message, checked against its recorded size and CRC."""
        return await asyncio.to_thread(self._read_content, message_id)

    def _read_content(self, message_id: str) -> bytes:
        try:
            fd = os.open(self.data / message_id, os.O_RDONLY)
        except FileNotFoundError as exc:
            raise SpoolEntryMissing(
                f"{message_id}: not in the spool", message_id=message_id
            ) from exc
        try:
            chunks = [os.read(fd, 1 << 20)]
            while len(chunks[-1]) == 1 << 20:
                chunks.append(os.read(fd, 1 << 20))
        finally:
            os.close(fd)
        blob = b"".join(chunks)
        header, start = decode_header(blob, len(blob))
        content = blob[start:]
        if "crc32" in header and zlib.crc32(content) != header["crc32"]:
            raise SpoolError(f"{message_id}: content checksum mismatch")
        return content

    # --- enumeration -----------------------------------------------------------------------

    def enumerate(self, *, quarantine: bool = True) -> Iterator[SpooledMessage]:
        """Every readable message; unreadable ones are quarantined and logged, never raised.

        With `quarantine=False` (readers such as `kumoclient queue`, which may run beside the
        daemon) unreadable entries are only counted in `self.unreadable`.
        """
        for message, _ in self.scan(quarantine=quarantine):
            yield message

    def scan(self, *, quarantine: bool = True) -> Iterator[tuple[SpooledMessage, bytes | None]]:
        """`enumerate`, with the checked content of every message small enough to be read
        whole by the same read that gets its header (None for the others)."""
        self.unreadable = 0
        yield from self.load_listed(self.listing(quarantine=quarantine), quarantine=quarantine)

    def listing(self, *, quarantine: bool = True) -> list[str]:
        """The ids in `data/`, oldest first (ids are time-ordered). With `quarantine` (the
        daemon's own scan) metadata files whose message is gone are removed as stale."""
        with os.scandir(self.data) as entries:
            names = sorted(e.name for e in entries if not e.name.startswith("."))
        with os.scandir(self.meta) as entries:
            states = {e.name[:-5] for e in entries if e.name.endswith(".json")}
        if quarantine:
            for orphan in states.difference(names):
                with contextlib.suppress(OSError):
                    os.unlink(f"{self._meta_prefix}{orphan}.json")
        self._stated = states.intersection(names)
        return names

    def load_listed(
        self, names: list[str], *, quarantine: bool = True
    ) -> Iterator[tuple[SpooledMessage, bytes | None]]:
        """Read the entries `listing()` named (see `scan`); an unreadable one is counted in
        `self.unreadable` and, with `quarantine`, moved to quarantine/."""
        stated = self._stated
        for name in names:
            try:
                message, content = self._load(name, name in stated)
            except FileNotFoundError:
                continue  # delivered and removed while we were reading
            except Exception as exc:  # any malformed entry, whatever it breaks: never stop
                self.unreadable += 1
                if quarantine:
                    self.quarantine_entry(name, f"{type(exc).__name__}: {exc}")
                continue
            yield message, content

    def load(self, message_id: str) -> SpooledMessage:
        """One message with its current state; raises SpoolError when it is unreadable."""
        return self._load(message_id, None)[0]

    def _load(self, message_id: str, has_state: bool | None) -> tuple[SpooledMessage, bytes | None]:
        if not msgid.is_message_id(message_id):
            raise SpoolError(f"unexpected file name {message_id!r}")
        # a plain descriptor: open() would add fstat and ioctl calls
        fd = os.open(f"{self._data_prefix}{message_id}", os.O_RDONLY)
        try:
            blob = os.read(fd, _WHOLE_READ)
            size = len(blob) if len(blob) < _WHOLE_READ else os.fstat(fd).st_size
            if size > len(blob) and blob.startswith(MAGIC) and b"\n" in blob:
                needed = int(blob[len(MAGIC) : blob.index(b"\n")] or 0) + blob.index(b"\n") + 2
                if needed > len(blob):
                    blob += os.pread(fd, min(needed, _HEADER_LIMIT) - len(blob), len(blob))
        finally:
            os.close(fd)
        header, start = decode_header(blob, size)
        content: bytes | None = None
        if size == len(blob):  # the whole entry is here: check it once, keep the content
            content = blob[start:]
            if "crc32" in header and zlib.crc32(content) != header["crc32"]:
                raise SpoolError(f"{message_id}: content checksum mismatch")
        message = SpooledMessage(
            id=header["id"],
            sender=header["sender"],
            recipient=header["recipient"],
            meta=dict(header.get("meta") or {}),
            created=float(header.get("created", 0)),
            size=int(header["size"]),
            due=float(header.get("created", 0)),
            reception_protocol=str(header.get("reception_protocol", "ESMTP")),
        )
        if message.id != message_id:
            raise SpoolError(f"header id {message.id} does not match the file name")
        meta_path = self.meta / f"{message_id}.json"
        if has_state or (has_state is None and meta_path.exists()):
            try:
                state = json.loads(meta_path.read_bytes())
                message = replace(
                    message,
                    attempts=int(state["attempts"]),
                    due=float(state["due"]),
                    last_response=state.get("last_response"),
                    meta=dict(state.get("meta", message.meta)),
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise SpoolError(f"corrupt metadata file: {exc}") from exc
        return message, content

    def quarantine_entry(self, name: str, reason: str) -> None:
        """Move an unreadable entry (and its metadata) to quarantine/, with the reason."""
        log.error("spool entry quarantined", id=name, reason=reason)
        for source in (self.data / name, self.meta / f"{name}.json"):
            if source.exists():
                with contextlib.suppress(OSError):
                    os.replace(source, self.quarantine / source.name)
        with contextlib.suppress(OSError):
            (self.quarantine / f"{name}.reason").write_text(reason + "\n")

    def ids(self) -> list[str]:
        """The ids currently in `data/`."""
        return sorted(p.name for p in self.data.iterdir() if not p.name.startswith("."))

    # --- incoming/ drop folder -------------------------------------------------------------

    def drop(self, submission: Submission) -> list[str]:
        """Write a submission into `incoming/` atomically (works with no daemon running)."""
        created = time.time()
        base = msgid.submission_base(created, secrets.randbits(64))
        header = json.dumps(
            {
                "sender": submission.sender,
                "recipients": list(submission.recipients),
                "meta": list(submission.meta) or None,
                "created": created,
                "reception_protocol": submission.reception_protocol,
            },
            separators=(",", ":"),
        ).encode()
        tmp = self.incoming / f".{base}.tmp"
        try:
            _write_synced(tmp, header + b"\n" + submission.content)
            os.rename(tmp, self.incoming / f"{base}.msg")
            _fsync_dir(self.incoming)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise SpoolError(f"cannot write to {self.incoming}: {exc.strerror or exc}") from exc
        return [msgid.message_id(base, i) for i in range(len(submission.recipients))]

    def pending_drops(self) -> list[Path]:
        """Completed files waiting in `incoming/`, oldest first."""
        return sorted(p for p in self.incoming.glob("*.msg"))

    def read_drop(self, path: Path) -> tuple[Submission, float]:
        """A dropped submission and its creation time; SpoolError when it is malformed."""
        if not re.fullmatch(r"[0-9a-f]{28}", path.stem):
            raise SpoolError(f"{path.name}: not a name `kumoclient inject` writes")
        try:
            blob = path.read_bytes()
        except FileNotFoundError as exc:
            raise SpoolEntryMissing(f"{path.name}: not in incoming/") from exc
        newline = blob.find(b"\n")
        try:
            header = json.loads(blob[:newline])
            sender, recipients = header["sender"], header["recipients"]
            meta = tuple(header["meta"]) if header.get("meta") else ()
            if (
                not isinstance(sender, str)
                or not isinstance(recipients, list)
                or not all(isinstance(r, str) and "@" in r for r in recipients)
            ):
                raise ValueError("sender or recipients are not addresses")
            if not 0 < len(recipients) <= msgid.MAX_RECIPIENTS:
                raise ValueError("bad number of recipients")
            if meta and (
                len(meta) != len(recipients)
                or not all(
                    isinstance(m, dict) and all(isinstance(v, str) for v in m.values())
                    for m in meta
                )
            ):
                raise ValueError("meta does not match the recipients")
            submission = Submission(
                sender=sender,
                recipients=tuple(recipients),
                content=blob[newline + 1 :],
                meta=meta,
                base=path.stem,
                reception_protocol=str(header.get("reception_protocol", "Inject")),
            )
            return submission, float(header["created"])
        except (ValueError, KeyError, TypeError) as exc:
            raise SpoolError(f"{path.name}: corrupt incoming file: {exc}") from exc

    def finish_drop(self, path: Path) -> None:
        """Forget a picked-up drop file (its messages are durable in `data/`)."""
        path.unlink(missing_ok=True)
        _fsync_dir(self.incoming)

    def quarantine_drop(self, path: Path, reason: str) -> None:
        """Move an unreadable drop file to quarantine/."""
        log.error("incoming file quarantined", file=path.name, reason=reason)
        with contextlib.suppress(OSError):
            os.replace(path, self.quarantine / path.name)
            (self.quarantine / f"{path.name}.reason").write_text(reason + "\n")


def _state_blob(message: SpooledMessage) -> bytes:
    return json.dumps(
        {
            "attempts": message.attempts,
            "due": message.due,
            "last_response": message.last_response,
            "meta": message.meta,
        },
        separators=(",", ":"),
    ).encode()


def _write_file(path: Path | str, blob: bytes, *, sync: bool = True) -> None:
    _write_fd(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640), blob, sync=sync)


def _write_fd(fd: int, blob: bytes, *, sync: bool, cut: bool = False) -> None:
    """Write all of `blob` to `fd` (fsynced when `sync`) and close it; `cut`: the file held
    something before, cut it to the new length."""
    try:
        view = memoryview(blob)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        if cut:
            os.ftruncate(fd, len(blob))
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _write_synced(path: Path, blob: bytes) -> None:
    _write_file(path, blob, sync=True)


POOL_LIMIT = 4096  # recycled files kept in free/
POOL_FILE_LIMIT = 64 * 1024  # larger files are unlinked, not kept
_POOL_RECOUNT = 1.0  # seconds between two counts of a full free/
_POOL_RELIST = 0.5  # seconds before an empty free/ is listed again


class _FilePool:
    """The files of free/, shared by every process of a spool (see the module's text).

    Blocking; called from the spool's commit and update threads. Counts are per process and
    only estimates (other processes take files): a full pool is counted again before it is
    trusted, an empty one is listed again after a pause.
    """

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._lock = threading.Lock()  # commits may run in several threads at once
        self._names: list[str] = []
        self._listed = -_POOL_RELIST
        self._size = -1  # unknown until counted
        self._counted = -_POOL_RECOUNT

    def take(self, path: str) -> bool:
        """Rename a free file to `path`; False when there is none."""
        with self._lock:
            return self._take(path)

    def _take(self, path: str) -> bool:
        while True:
            if not self._names:
                now = time.monotonic()
                if now - self._listed < _POOL_RELIST:
                    return False
                self._listed = now
                with os.scandir(self.prefix) as entries:
                    self._names = [e.name for e in entries]
                random.shuffle(self._names)  # other processes list the same names
                if not self._names:
                    return False
            try:
                os.rename(f"{self.prefix}{self._names.pop()}", path)
            except FileNotFoundError:
                continue  # taken by another process
            return True

    def give(self, path: str, name: str) -> None:
        """Keep the file at `path` for a later message, or unlink it (pool full, too large);
        FileNotFoundError when there is no such file."""
        with self._lock:
            self._give(path, name)

    def _give(self, path: str, name: str) -> None:
        now = time.monotonic()
        if (self._size < 0 or self._size >= POOL_LIMIT) and now - self._counted > _POOL_RECOUNT:
            self._counted = now
            with os.scandir(self.prefix) as entries:
                self._size = sum(1 for _ in entries)
        if 0 <= self._size < POOL_LIMIT and os.stat(path).st_size <= POOL_FILE_LIMIT:
            os.rename(path, f"{self.prefix}{name}")
            self._size += 1
            if len(self._names) < POOL_LIMIT:  # (stale when other processes take them)
                self._names.append(name)  # this process's next take needs no listing
        else:
            os.unlink(path)


def _load_syncfs() -> Callable[[int], int] | None:
    """libc's syncfs(2), when this is Linux with a C library that has it."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        function: Callable[[int], int] = libc.syncfs
    except (OSError, AttributeError):
        return None
    return function


_SYNCFS = _load_syncfs()


def _syncfs(fd: int) -> None:
    """Flush every file and directory entry of the filesystem holding `fd` to disk."""
    assert _SYNCFS is not None
    if _SYNCFS(fd) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
