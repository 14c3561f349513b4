"""The spool's system calls: durable writes, syncs, and the one translation of their OSErrors.

No call here follows a symbolic link inside the spool's folders: files are opened with
O_NOFOLLOW (and O_NONBLOCK, so a planted FIFO cannot block a read), a file to be created is
never written through a link left at its name (`create`), sizes come from lstat or fstat,
and rename and unlink act on a link itself. The folders themselves may be links an operator
made (`data -> /mnt/spool/data`).

Every OSError of the spool becomes a SpoolError subclass here, at the boundary (`oserrors`):

| situation                                              | raised                         |
| ------------------------------------------------------ | ------------------------------ |
| reading an entry or drop file that is not there        | SpoolEntryMissing              |
| reading an "entry" that is a directory or a symlink    | SpoolEntryCorrupt              |
| anything else: ENOSPC, EIO, EACCES, EROFS, EMFILE, ... | SpoolUnavailable (with errno)  |

Writes never raise SpoolEntryMissing: a missing directory while writing is the spool being
unavailable, not an entry being gone.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from kumoclient import logs
from kumoclient.errors import SpoolEntryCorrupt, SpoolEntryMissing, SpoolError, SpoolUnavailable

log = logs.get_logger(__name__)


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
    if entry and exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symbolic link
        return SpoolEntryCorrupt(f"{doing}: a symbolic link", message_id=message_id)
    return SpoolUnavailable(text, message_id=message_id, errno=exc.errno)


@contextlib.contextmanager
def oserrors(doing: str, *, message_id: str | None = None, entry: bool = False) -> Iterator[None]:
    """Translate the OSErrors of the block (`translate`)."""
    try:
        yield
    except OSError as exc:
        raise translate(exc, doing, message_id=message_id, entry=entry) from exc


_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW


def open_read(path: Path | str) -> int:
    """A descriptor to read the file at `path` (ELOOP when it is a symbolic link)."""
    return os.open(path, _READ)


def create(path: Path | str) -> int:
    """A descriptor of `path` created or truncated for writing; a symbolic link at that name
    is unlinked first (its target is never opened)."""
    try:
        return os.open(path, _CREATE, 0o640)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
    os.unlink(path)
    return os.open(path, _CREATE | os.O_EXCL, 0o640)


def open_recycled(path: Path | str) -> int | None:
    """A descriptor to write over the recycled file at `path`; None, with whatever is there
    unlinked, when it is not a plain file of its own (a symbolic link, a hard link to another
    name, a FIFO): a file of free/ is written over only when nothing else can see it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
            raise
        fd = -1
    if fd >= 0:
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode) and info.st_nlink == 1:
            return fd
        os.close(fd)
    with contextlib.suppress(IsADirectoryError):  # a directory stays: remove_stale's work
        os.unlink(path)
    return None


def write_file(path: Path | str, blob: bytes, *, sync: bool = True) -> None:
    """Create (or truncate) `path` and write `blob` to it, fsynced when `sync`; never
    through a symbolic link (`create`)."""
    write_fd(create(path), blob, sync=sync)


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


def write_replacing(tmp: Path | str, path: Path | str, blob: bytes, *, sync: bool) -> None:
    """Write `blob` to `tmp` (`write_file`) and rename it to `path`: a link at `path` is
    replaced, never followed. `tmp` is removed again when anything fails."""
    try:
        write_file(tmp, blob, sync=sync)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def unlink(*paths: str) -> None:
    """Unlink each of `paths` that is there (a link itself, never its target)."""
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def remove_temporary(folders: Iterable[Path], quarantine: Path) -> None:
    """Unlink the hidden `.tmp` files of `folders` (links themselves, never their targets);
    a directory at such a name is set aside into `quarantine`."""
    for folder in folders:
        for stale in folder.glob(".*.tmp"):
            try:
                stale.unlink(missing_ok=True)
            except IsADirectoryError:
                set_aside(stale, quarantine, "a directory, not a file")


def set_aside(path: Path, quarantine: Path, reason: str) -> bool:
    """Rename `path` (a link itself, never its target) into `quarantine` and write
    `<name>.reason` beside it; False when it could not be moved (never raises)."""
    try:
        os.replace(path, quarantine / path.name)
    except OSError:
        return False
    reason_path = quarantine / f"{path.name}.reason"
    tmp = quarantine / f".{reason_path.name}.{os.getpid()}.tmp"
    with contextlib.suppress(OSError):
        write_replacing(tmp, reason_path, (reason + "\n").encode(errors="replace"), sync=False)
    return True


def read_whole(path: Path | str) -> bytes:
    """The bytes of a file, read by the calling thread (what bench/files.py measures); ELOOP
    when it is a symbolic link."""
    fd = open_read(path)
    try:
        return read_fd(fd)
    finally:
        os.close(fd)


def read_fd(fd: int) -> bytes:
    """The bytes of the file open at `fd`, from its offset (`fd` stays open)."""
    with open(fd, "rb", closefd=False) as file:
        return file.read()


def fsync_dir(path: Path | str) -> None:
    """Make the entries of directory `path` (creations, renames, removals) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_each(files: Iterable[str], folders: Iterable[Path | str]) -> None:
    """Make `files` (their data) and `folders` (their entries) durable one by one."""
    for path in files:
        fd = open_read(path)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    for folder in folders:
        fsync_dir(folder)


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

    def sync(self, files: Iterable[str], folders: Iterable[Path | str]) -> None:
        """Make what was written so far durable: the new `files` and the entries of
        `folders` (creations, renames, removals). With syncfs, one call; without, an fsync of
        each folder (the files were fsynced when written).

        When syncfs fails, nothing it covered can be trusted, yet the error may be another
        file's on the same filesystem: `files` and `folders` are then fsynced one by one (a
        new descriptor's fsync still reports a write-back error of its file that no fsync
        has seen: Linux's errseq since 4.16), and only if that fails too is OSError raised
        (the caller undoes what it can and makes the undoing durable, `fsync_dir`)."""
        if self._fd is None:
            for folder in folders:
                fsync_dir(folder)
            return
        assert _SYNCFS is not None
        if _SYNCFS(self._fd) == 0:
            return
        number = ctypes.get_errno()
        log.warning(
            "syncfs failed: syncing each file instead", error=os.strerror(number), errno=number
        )
        fsync_each(files, folders)
