"""The spool's system calls: durable writes, syncs, and the one translation of their OSErrors.

Every OSError of the spool becomes a SpoolError subclass here, at the boundary (`oserrors`):

| situation                                              | raised                         |
| ------------------------------------------------------ | ------------------------------ |
| reading an entry or drop file that is not there        | SpoolEntryMissing              |
| reading an "entry" that is a directory                  | SpoolEntryCorrupt              |
| anything else: ENOSPC, EIO, EACCES, EROFS, EMFILE, ... | SpoolUnavailable (with errno)  |

Writes never raise SpoolEntryMissing: a missing directory while writing is the spool being
unavailable, not an entry being gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from kumoclient.errors import SpoolEntryCorrupt, SpoolEntryMissing, SpoolError, SpoolUnavailable


def translate(
    exc: OSError, doing: str, *, message_id: str | None = None, entry: bool = False
) -> SpoolError:
    """The SpoolError for `exc`, raised while `doing` (`cannot read 0190...`); `entry`: the
    call read one entry or drop file, so its absence means it is gone (see the table above)."""
    text = f"{doing}: {exc.strerror or exc}"
    if entry and exc.errno == errno.ENOENT:
        return SpoolEntryMissing(text, message_id=message_id)
    if entry and exc.errno == errno.EISDIR:
        return SpoolEntryCorrupt(text, message_id=message_id)
    return SpoolUnavailable(text, message_id=message_id, errno=exc.errno)


@contextlib.contextmanager
def oserrors(doing: str, *, message_id: str | None = None, entry: bool = False) -> Iterator[None]:
    """Translate the OSErrors of the block (`translate`)."""
    try:
        yield
    except OSError as exc:
        raise translate(exc, doing, message_id=message_id, entry=entry) from exc


def write_file(path: Path | str, blob: bytes, *, sync: bool = True) -> None:
    """Create (or truncate) `path` and write `blob` to it, fsynced when `sync`."""
    write_fd(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640), blob, sync=sync)


def write_fd(fd: int, blob: bytes, *, sync: bool, cut: bool = False) -> None:
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


def read_whole(path: Path | str) -> bytes:
    """The bytes of a file, read by the calling thread (what bench/files.py measures)."""
    with open(path, "rb") as file:
        return file.read()


def fsync_dir(path: Path | str) -> None:
    """Make the entries of directory `path` (creations, renames, removals) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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


class Syncer:
    """How the spool makes its writes durable: one `syncfs(2)` of its filesystem when the
    system has it (`batched`: files are then written without their own fsync), else an
    fsync of each file and of the directories concerned."""

    def __init__(self, data: Path) -> None:
        self._data = data
        self._fd: int | None = None

    @property
    def batched(self) -> bool:
        """True once `open()` found syncfs: one sync covers files and directory entries."""
        return self._fd is not None

    def open(self) -> None:
        """Keep one descriptor for the spool's life: write-back errors are reported per open
        descriptor from when it was opened, so a fresh one per sync could miss them."""
        if _SYNCFS is not None and self._fd is None:
            self._fd = os.open(self._data, os.O_RDONLY | os.O_DIRECTORY)

    def close(self) -> None:
        """Release the descriptor; later syncs fsync directories one by one."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def sync(self, *folders: Path | str) -> None:
        """Make everything written so far durable: syncfs, or an fsync of each folder (the
        files were fsynced when written)."""
        if self._fd is None:
            for folder in folders:
                fsync_dir(folder)
            return
        assert _SYNCFS is not None
        if _SYNCFS(self._fd) != 0:
            number = ctypes.get_errno()
            raise OSError(number, os.strerror(number))
