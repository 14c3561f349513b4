"""The files of delivered messages kept in `free/` and written over by new ones.

Allocating and freeing an inode per message costs more than the rest of the spool's work
together, and on an ext4 without a journal the allocator skips every inode freed in the last
30 s, which made each new file cost up to half a millisecond of kernel time at 1,000
messages/s (docs/performance.md). So a message that leaves the spool is renamed into `free/`
(up to POOL_LIMIT files of at most POOL_FILE_LIMIT bytes; the rest are unlinked), and a new
message takes one of those files (an atomic rename, so processes sharing the spool never take
the same one), writes over it and cuts it to length. What `free/` holds is never read: a
recycled file counts only once it is renamed into `data/` and synced like any other.

Only plain files of the spool's own are recycled: a symbolic link (or anything not a regular
file) met when listing free/ is unlinked, never followed; a file with another hard link is
not kept when freed, and disk.open_recycled checks again once a file is taken (a link may
have been put at a listed name meanwhile).
"""

from __future__ import annotations

import contextlib
import os
import random
import stat
import threading
import time

POOL_LIMIT = 4096  # recycled files kept in free/
POOL_FILE_LIMIT = 64 * 1024  # larger files are unlinked, not kept
_POOL_RECOUNT = 1.0  # seconds between two counts of a full free/
_POOL_RELIST = 0.5  # seconds before an empty free/ is listed again


class FilePool:
    """The files of free/, shared by every process of a spool.

    Blocking; called from the spool's commit and update threads; raises OSError (the spool
    translates it). Counts are per process and only estimates (other processes take files):
    a full pool is counted again before it is trusted, an empty one is listed again after a
    pause.
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
                self._names = self._list()
                random.shuffle(self._names)  # other processes list the same names
                if not self._names:
                    return False
            try:
                os.rename(f"{self.prefix}{self._names.pop()}", path)
            except FileNotFoundError:
                continue  # taken by another process
            return True

    def _list(self) -> list[str]:
        """The names of the plain files of free/; symbolic links are unlinked."""
        names: list[str] = []
        with os.scandir(self.prefix) as entries:
            for entry in entries:
                if entry.is_file(follow_symlinks=False):
                    names.append(entry.name)
                elif entry.is_symlink():
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(entry.path)
        return names

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
        if 0 <= self._size < POOL_LIMIT and _recyclable(os.lstat(path)):
            os.rename(path, f"{self.prefix}{name}")
            self._size += 1
            if len(self._names) < POOL_LIMIT:  # (stale when other processes take them)
                self._names.append(name)  # this process's next take needs no listing
        else:
            os.unlink(path)


def _recyclable(info: os.stat_result) -> bool:
    """A freed file worth keeping: a plain file, small, with no other name."""
    return stat.S_ISREG(info.st_mode) and info.st_nlink == 1 and info.st_size <= POOL_FILE_LIMIT
