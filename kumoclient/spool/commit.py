"""Group commit: a submission is acknowledged only once durable, and many share one sync.

Durability (SPEC 1): nothing is acknowledged before its file and its directory entry are on
disk. Concurrent submissions are grouped: one worker task takes every submission that arrived
while the previous group was being written, and a thread writes each message to a temporary
name (a recycled file of `free/` when there is one), renames it into `data/`, and then makes
the whole group durable with one `syncfs(2)` of the spool's filesystem (the "equivalent group
commit" of SPEC 1; on systems without syncfs, each file is fsynced and `data/` once). When
syncfs fails, each file of the group and `data/` are fsynced instead before anything is
acknowledged; if that fails too, the files are unlinked and the unlinks made durable. Without
group commit every submission is written, fsynced, renamed and its directory fsynced on its
own; `bench/spool.py` measures both. A submission is all or nothing: if any of its messages
cannot be written, the others are removed again and SpoolUnavailable is raised to the
submitter. A drop file picked up again (`fresh=False`) keeps an existing entry only when
its size and CRC check out (`_intact`): a power loss can leave a renamed file without its data.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from kumoclient import logs
from kumoclient.errors import SpoolError, SpoolUnavailable
from kumoclient.records import SpooledMessage
from kumoclient.spool import disk
from kumoclient.spool.disk import Syncer
from kumoclient.spool.entry import encode_entry
from kumoclient.spool.pool import FilePool
from kumoclient.spool.reading import read_content

log = logs.get_logger(__name__)

Entries = list[tuple[SpooledMessage, bytes]]


@dataclass(slots=True)
class _Pending:
    messages: Entries
    fresh: bool
    future: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


def _drain(queue: asyncio.Queue[_Pending | None]) -> list[_Pending | None]:
    items: list[_Pending | None] = []
    while not queue.empty():
        items.append(queue.get_nowait())
    return items


class GroupCommit:
    """Writes submissions into `data/` durably; `start()` runs the grouping worker."""

    def __init__(self, data: Path, pool: FilePool, syncer: Syncer, *, enabled: bool) -> None:
        self.data = data
        self.enabled = enabled
        self._prefix = f"{data}{os.sep}"  # plain strings: no pathlib per message
        self._pool = pool
        self._syncer = syncer
        self._closed = False
        self._queue: asyncio.Queue[_Pending | None] | None = None
        self._worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the grouping worker (on the running loop)."""
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._commit_loop(self._queue), name="spool-commit")

    async def close(self) -> None:
        """Commit what is queued, then stop the worker (never in the middle of a group)."""
        if self._worker is not None and self._queue is not None:
            queue, self._queue = self._queue, None
            self._closed = True  # later store() calls fail fast
            await queue.put(None)
            await self._worker
            self._worker = None

    async def store(self, entries: Entries, fresh: bool) -> None:
        """Write the entries durably (see Spool.store)."""
        if self._closed:
            raise SpoolUnavailable("the spool is closed")
        if not self.enabled or self._queue is None:  # per message, or not started
            await asyncio.to_thread(self.commit, [(entries, fresh)])
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
                errors = await asyncio.to_thread(
                    self.commit, [(p.messages, p.fresh) for p in group], collect_errors=True
                )
            except Exception as exc:  # a bug of ours: fail this group, keep serving
                log.exception("spool commit failed")
                errors = [SpoolUnavailable(f"spool commit failed: {exc}") for _ in group]
            for pending, error in zip(group, errors, strict=True):
                if pending.future.done():  # its waiter is gone
                    continue
                if error is None:
                    pending.future.set_result(None)
                else:
                    pending.future.set_exception(error)

    def commit(
        self, group: list[tuple[Entries, bool]], collect_errors: bool = False
    ) -> list[SpoolError | None]:
        """Write every submission of the group, then make the whole group durable at once.

        Blocking. With `syncfs` (Linux), files are written and renamed without their own
        fsync and one `syncfs` of the spool's filesystem flushes the data and the directory
        entries of the whole group (when it fails, each file and `data/` are fsynced instead,
        disk.Syncer); otherwise each file is fsynced and the directory once. A group that
        cannot be made durable is unlinked again, and the unlinks made durable.
        Raises the first submission's error unless `collect_errors` (then one per submission).
        """
        batched = self.enabled and self._syncer.batched
        errors: list[SpoolError | None] = []
        paths: list[str] = []  # the files renamed into data/ (not those found intact)
        for entries, fresh in group:
            try:
                paths += self._write_submission(entries, sync_each=not batched, fresh=fresh)
                errors.append(None)
            except SpoolError as exc:
                if not collect_errors:
                    raise
                errors.append(exc)
        if not paths:
            return errors
        try:
            if batched:
                self._syncer.sync(paths, (self.data,))
            else:
                disk.fsync_dir(self.data)
        except OSError as exc:
            failure = disk.translate(exc, "cannot sync the spool")
            self._undo(paths)
            if not collect_errors:
                raise failure from exc
            errors = [failure if e is None else e for e in errors]
        return errors

    def _undo(self, paths: list[str]) -> None:
        """Unlink the files of a group that could not be made durable, and make that durable:
        none of them was acknowledged, so none may come back after a power loss."""
        for path in paths:
            with contextlib.suppress(OSError):
                os.unlink(path)
        try:
            disk.fsync_dir(self.data)
        except OSError as exc:  # they may come back: delivered, though the client got a 451
            log.error("cannot make the removal of unacknowledged messages durable", error=str(exc))

    def _write_submission(self, entries: Entries, *, sync_each: bool, fresh: bool) -> list[str]:
        """Write one submission's entries (all or none); the paths renamed into data/."""
        written: list[str] = []  # plain strings: no pathlib objects per message
        renamed: list[str] = []
        renames: list[tuple[str, str, SpooledMessage, bytes]] = []
        message_id = None
        try:
            for message, content in entries:
                message_id = message.id
                tmp = f"{self._prefix}.{message.id}.tmp"
                fd = disk.open_recycled(tmp) if self._pool.take(tmp) else None
                recycled = fd is not None
                if fd is None:
                    fd = disk.create(tmp)
                written.append(tmp)
                disk.write_fd(fd, encode_entry(message, content), sync=sync_each, cut=recycled)
                renames.append((tmp, f"{self._prefix}{message.id}", message, content))
            for tmp, final, message, content in renames:
                if not fresh and self._intact(message.id, content):  # picked up again
                    os.unlink(tmp)
                    continue
                os.rename(tmp, final)
                renamed.append(final)
        except OSError as exc:
            for path in written + renamed:
                with contextlib.suppress(OSError):
                    os.unlink(path)
            raise disk.translate(exc, "cannot write to the spool", message_id=message_id) from exc
        return renamed

    def _intact(self, message_id: str, content: bytes) -> bool:
        """True when `data/<id>` holds this content, whole (size and CRC checked): a drop file
        picked up again after a crash finds the entries it wrote durable, or torn by a power
        loss (then they are written again from the drop file)."""
        try:
            return read_content(self._prefix, message_id) == content
        except SpoolError:  # missing, torn, a link, unreadable: the drop file's copy wins
            return False
