"""`Spool`, the local-disk spool: its lifecycle, reads, updates, removals and enumeration.

Storing is group commit's work (commit.py), reading one entry reading.py's, the drop folder
drops.py's; this module gives them one face. Every OSError is translated once (disk.py), so
that each public method raises only SpoolError subclasses: SpoolEntryMissing,
SpoolEntryCorrupt, SpoolUnavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

from kumoclient import logs
from kumoclient.core import msgid
from kumoclient.errors import SpoolEntryMissing, SpoolError
from kumoclient.records import SpooledMessage
from kumoclient.spool import disk, entry, reading
from kumoclient.spool.commit import GroupCommit
from kumoclient.spool.drops import DropFolder
from kumoclient.spool.entry import Submission
from kumoclient.spool.pool import FilePool
from kumoclient.spool.space import SpaceCheck, SpaceLimits

log = logs.get_logger(__name__)


class Spool:
    """A spool directory; `start()` before storing, `close()` when done."""

    def __init__(
        self, root: Path, *, group_commit: bool = True, min_free: SpaceLimits | None = None
    ) -> None:
        self.root = root
        self.data = root / "data"
        self.meta = root / "meta"
        self.incoming = root / "incoming"
        self.quarantine = root / "quarantine"
        self.free = root / "free"
        self.unreadable = 0
        self._data_prefix = f"{self.data}{os.sep}"  # plain strings: no pathlib per message
        self._meta_prefix = f"{self.meta}{os.sep}"
        # ids with a metadata file (from the scan and from updates): a removal unlinks only
        # the files that exist, one system call per message saved on this hot path
        self._stated: set[str] = set()
        self._pool = FilePool(f"{self.free}{os.sep}")
        self._syncer = disk.Syncer(self.data)
        self._commit = GroupCommit(self.data, self._pool, self._syncer, enabled=group_commit)
        self._drops = DropFolder(self.incoming, self.quarantine)
        # the least free space the policy asked for (kumo.define_spool); None: no least
        self.space = SpaceCheck(root, min_free) if min_free is not None else None
        with disk.oserrors(f"cannot create the spool at {root}"):
            for folder in (self.data, self.meta, self.incoming, self.quarantine, self.free):
                folder.mkdir(parents=True, exist_ok=True)

    def low_space(self) -> str | None:
        """Why the spool's disk takes no mail now (too little free space or inodes, as the
        policy's `min_free_space` / `min_free_inodes` say), or None."""
        return self.space.problem() if self.space is not None else None

    @property
    def group_commit(self) -> bool:
        """Whether concurrent submissions share one sync (see commit.py); set at creation."""
        return self._commit.enabled

    # --- lifecycle ---------------------------------------------------------------------

    def remove_stale(self) -> None:
        """Remove the temporary files a crash left behind. A `.tmp` file was never
        acknowledged (acknowledgement comes after the rename), so deleting it loses nothing;
        but only while no other process is writing to this spool. What cannot be unlinked
        (a directory someone made there) is moved to quarantine/."""
        with disk.oserrors("cannot remove the spool's temporary files"):
            disk.remove_temporary((self.data, self.meta, self.incoming), self.quarantine)

    async def start(self, *, clean: bool = True) -> None:
        """Start the group-commit worker; first `remove_stale()` unless `clean` is False
        (a reception worker: the main process owns the spool and cleaned it before)."""
        if clean:
            self.remove_stale()
        with disk.oserrors(f"cannot open {self.data}"):
            self._syncer.open()
        self._commit.start()

    async def close(self) -> None:
        """Commit what is queued, then stop the worker (never in the middle of a group)."""
        await self._commit.close()
        with contextlib.suppress(OSError):  # a directory descriptor: nothing left to lose
            self._syncer.close()

    # --- storing -----------------------------------------------------------------------

    def prepare(self, submission: Submission, now: float | None = None) -> list[SpooledMessage]:
        """The per-recipient messages of a submission (ids assigned, nothing written)."""
        entry.check_submission(submission)
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
        after a crash); those are left as they are when intact. SpoolUnavailable when they
        cannot be written (then none of them is in the spool); SpoolError, before anything
        is written, for a message that reading it back would quarantine (fields.py).

        A caller that is cancelled while waiting (the client hung up) does not cancel the
        commit: its messages are written anyway, as after any unacknowledged submission.
        """
        for message in messages:
            entry.check_message(message)
        await self._commit.store([(m, content) for m in messages], fresh)

    # --- updating and removing ------------------------------------------------------------

    async def update(self, message: SpooledMessage) -> None:
        """Persist attempts, next due time and last response without touching the content."""
        await asyncio.to_thread(self.apply, [message], [])

    async def remove(self, message_id: str) -> None:
        """Take a message out of the spool (after its final log record is durable)."""
        await asyncio.to_thread(self._remove, message_id)

    def _remove(self, message_id: str) -> None:
        with disk.oserrors(f"cannot remove {message_id}", message_id=message_id):
            disk.unlink(f"{self._meta_prefix}{message_id}.json", f"{self._data_prefix}{message_id}")
            disk.fsync_dir(self.data)

    def apply(self, updates: list[SpooledMessage], removals: list[str]) -> None:
        """Write many metadata updates and removals, then make them durable at once (with
        syncfs; when it fails, each file written and the folders are fsynced instead).

        Blocking (run it in a thread). Callers make the final log records of `removals`
        durable first (SPEC 1, invariant 2). A failure leaves no temporary file behind.
        """
        removed = set(removals)
        written: list[str] = []
        with disk.oserrors("cannot update the spool"):
            for message in updates:
                if message.id not in removed:
                    final = f"{self._meta_prefix}{message.id}.json"
                    tmp = f"{self._meta_prefix}.{message.id}.json.tmp"
                    blob = entry.encode_state(message)
                    disk.write_replacing(tmp, final, blob, sync=not self._syncer.batched)
                    self._stated.add(message.id)
                    written.append(final)
            for message_id in removals:
                if message_id in self._stated:
                    self._stated.discard(message_id)
                    disk.unlink(f"{self._meta_prefix}{message_id}.json")
                with contextlib.suppress(FileNotFoundError):
                    self._pool.give(f"{self._data_prefix}{message_id}", message_id)
            self._syncer.sync(written, (self.meta, self.data))

    # --- reading ---------------------------------------------------------------------------

    def content(self, message_id: str) -> bytes:
        """`read_content` on the calling thread, for small messages already in the page
        cache: there the loop pays less for the read than for handing it to a thread
        (bench/files.py, 2 KB read and checked: 7 µs of loop time against 10-27 µs with
        asyncio.to_thread and 32-70 µs with aiofiles). The two cross near 64 KB (25 µs
        against 11-41); at 256 KB the loop pays 78-82 µs here against 16-36 in a thread."""
        return reading.read_content(self._data_prefix, message_id)

    async def read_content(self, message_id: str) -> bytes:
        """The content bytes of a message, checked against its recorded size and CRC.

        One asyncio.to_thread, not aiofiles: the checksum must run somewhere, and in the
        reading thread it leaves the loop nothing to do, while aiofiles hands the bytes back
        to the loop (bench/files.py, 1 MB read and checked, loop time per read: 23-50 µs
        with to_thread; 300-465 µs with aiofiles and the CRC on the loop; 69-132 µs with the
        CRC in a further hand-off; 20 MB: 95-120 µs, 9,200-9,600 µs, 546 µs; throughput
        0.40-0.94x of to_thread's)."""
        return await asyncio.to_thread(reading.read_content, self._data_prefix, message_id)

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
        with disk.oserrors("cannot list the spool"):
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
        """Read the entries `listing()` named (see `scan`); an unreadable one (corrupt, or
        failing to read) is counted in `self.unreadable` and, with `quarantine`, moved to
        quarantine/ (SPEC 1, invariant 4)."""
        stated = self._stated
        for name in names:
            try:
                message, content = self._load(name, name in stated)
            except SpoolEntryMissing:
                continue  # delivered and removed while we were reading
            except SpoolError as exc:
                self.unreadable += 1
                if quarantine:
                    self.quarantine_entry(name, f"{type(exc).__name__}: {exc}")
                continue
            yield message, content

    def load(self, message_id: str) -> SpooledMessage:
        """One message with its current state."""
        return self._load(message_id, None)[0]

    def _load(self, message_id: str, has_state: bool | None) -> tuple[SpooledMessage, bytes | None]:
        return reading.read_message(self._data_prefix, self._meta_prefix, message_id, has_state)

    def quarantine_entry(self, name: str, reason: str) -> None:
        """Move an unreadable entry (and its metadata) to quarantine/, with the reason; never
        raises (what cannot be moved stays, and is met again at the next start). `name` is
        a file name in data/ (a path or `..` is refused: nothing outside the spool moves)."""
        log.error("spool entry quarantined", id=name, reason=reason)
        if not name or os.sep in name or name in (".", ".."):
            return
        if disk.set_aside(self.data / name, self.quarantine, reason):
            with contextlib.suppress(OSError):  # FileNotFoundError: it has no metadata file
                os.replace(self.meta / f"{name}.json", self.quarantine / f"{name}.json")

    def ids(self) -> list[str]:
        """The ids currently in `data/`."""
        with disk.oserrors("cannot list the spool"), os.scandir(self.data) as entries:
            return sorted(e.name for e in entries if not e.name.startswith("."))

    # --- incoming/ drop folder (drops.py) ----------------------------------------------------

    def drop(self, submission: Submission) -> list[str]:
        """Write a submission into `incoming/` atomically (works with no daemon running)."""
        return self._drops.drop(submission)

    def pending_drops(self) -> list[Path]:
        """Completed files waiting in `incoming/`, oldest first."""
        return self._drops.pending()

    async def read_drop(self, path: Path) -> tuple[Submission, float]:
        """A dropped submission and its creation time; large files are read off the loop."""
        return await self._drops.read(path)

    def finish_drop(self, path: Path) -> None:
        """Forget a picked-up drop file (its messages are durable in `data/`)."""
        self._drops.finish(path)

    def quarantine_drop(self, path: Path, reason: str) -> None:
        """Move an unreadable drop file to quarantine/ (never raises)."""
        self._drops.set_aside(path, reason)
