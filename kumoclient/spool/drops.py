"""The `incoming/` drop folder: `kumoclient inject` writes there, the daemon picks files up.

A drop file is written to a hidden temporary name, fsynced, renamed to `<base>.msg` and the
folder fsynced, so it works with no daemon running and the daemon never sees half a file.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import aiofiles

from kumoclient import logs
from kumoclient.core import msgid
from kumoclient.errors import SpoolEntryCorrupt
from kumoclient.spool import disk
from kumoclient.spool.entry import Submission, check_drop_name, decode_drop, drop_name, encode_drop

log = logs.get_logger(__name__)

# Drop files up to this size are read on the loop, where the read costs about what one
# hand-off to a thread does (bench/files.py, loop time per read: 2 KB 6 µs against 20-27 µs
# with asyncio.to_thread and 31-70 µs with aiofiles; 256 KB 30-37 µs against 17-34 and 40-78).
# Larger ones are read with aiofiles: at 20 MB its throughput ties with one asyncio.to_thread
# (0.86-1.05x; 1 MB 0.61-0.91x) and the loop's share is a tenth of reading on it (166-307 µs
# against 2,250-2,830; 1 MB 49-93 against 106-128), tens of µs above to_thread's (141-268;
# 21-63), once per dropped file.
READ_ON_LOOP = 256 * 1024


class DropFolder:
    """The spool's `incoming/` folder (and where its unreadable files go)."""

    def __init__(self, incoming: Path, quarantine: Path) -> None:
        self.incoming = incoming
        self.quarantine = quarantine

    def drop(self, submission: Submission) -> list[str]:
        """Write a submission atomically; the ids its messages will have."""
        created = time.time()
        base = msgid.submission_base(created, secrets.randbits(64))
        blob = encode_drop(submission, created)
        tmp = self.incoming / f".{base}.tmp"
        with disk.oserrors(f"cannot write to {self.incoming}"):
            disk.write_replacing(tmp, self.incoming / drop_name(base), blob, sync=True)
            disk.fsync_dir(self.incoming)
        return [msgid.message_id(base, i) for i in range(len(submission.recipients))]

    def pending(self) -> list[Path]:
        """Completed files waiting, oldest first."""
        with disk.oserrors(f"cannot list {self.incoming}"), os.scandir(self.incoming) as entries:
            names = [e.name for e in entries if e.name.endswith(".msg")]
        return [self.incoming / name for name in sorted(names)]

    async def read(self, path: Path) -> tuple[Submission, float]:
        """A dropped submission and its creation time (SpoolEntryCorrupt when the file is a
        symbolic link: its target is never read)."""
        check_drop_name(path.name)
        with disk.oserrors(f"cannot read {path.name}", entry=True):
            fd = disk.open_read(path)
            try:
                if os.fstat(fd).st_size <= READ_ON_LOOP:
                    line, newline, content = disk.read_fd(fd).partition(b"\n")
                else:
                    line, newline, content = await _read_off_loop(fd)
            finally:
                os.close(fd)
        if not newline:
            raise SpoolEntryCorrupt(f"{path.name}: corrupt incoming file: no header line")
        return decode_drop(path.name, line, content)

    def finish(self, path: Path) -> None:
        """Forget a picked-up drop file (its messages are durable in `data/`)."""
        with disk.oserrors(f"cannot remove {path.name}"):
            path.unlink(missing_ok=True)
            disk.fsync_dir(self.incoming)

    def set_aside(self, path: Path, reason: str) -> None:
        """Move an unreadable drop file to quarantine/, with the reason (never raises)."""
        log.error("incoming file quarantined", file=path.name, reason=reason)
        disk.set_aside(path, self.quarantine, reason)


async def _read_off_loop(fd: int) -> tuple[bytes, bytes, bytes]:
    """The header line, its newline and the content of the file open at `fd` (left open),
    as `bytes.partition` gives them."""
    async with aiofiles.open(fd, "rb", closefd=False) as file:
        line = await file.readline()
        # after a seek, read() returns the kernel's bytes with no copy of a buffered part
        await file.seek(len(line))
        content = await file.read()
    if line.endswith(b"\n"):
        return line[:-1], b"\n", content
    return line, b"", content
