"""A small disk of a test's own: a real tmpfs mounted on a directory (root), filled to ENOSPC on
demand, its files and directories made immutable with chattr (root ignores chmod)."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from pathlib import Path
from types import TracebackType

import pytest

_CHUNK = b"\0" * 65536


class SmallDisk:
    """`with SmallDisk(path, "1m") as disk:` mounts a tmpfs of that size on `path` (created),
    unmounted at the end. Without root the test is skipped (scripts/test says the suite needs
    root); as root, a mount that fails fails the test."""

    def __init__(self, path: Path, size: str = "1m") -> None:
        self.path = path
        self.size = size
        self.filler = path / ".filler"
        self._immutable: set[Path] = set()

    def __enter__(self) -> SmallDisk:
        self.path.mkdir(parents=True, exist_ok=True)
        mount = ["mount", "-t", "tmpfs", "-o", f"size={self.size}", "tmpfs", str(self.path)]
        done = subprocess.run(mount, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            if os.geteuid() != 0:
                pytest.skip("mounting a tmpfs needs root (the whole suite runs as root)")
            pytest.fail(f"cannot mount a tmpfs on {self.path}: {done.stderr.strip()}")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for path in list(self._immutable):
            self.immutable(path, on=False)
        subprocess.run(["umount", "-l", str(self.path)], check=True)

    def fill(self) -> int:
        """Write a filler file until the disk is full (ENOSPC); its size."""
        written = 0
        with self.filler.open("ab", buffering=0) as filler:
            while True:
                try:
                    count = filler.write(_CHUNK)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    return written
                written += count or 0

    def free(self) -> None:
        """Remove the filler: the disk has room again."""
        with contextlib.suppress(FileNotFoundError):
            self.filler.unlink()

    def immutable(self, path: Path, *, on: bool = True) -> None:
        """chattr +i (or -i) on a file or directory of this disk."""
        subprocess.run(["chattr", "+i" if on else "-i", str(path)], check=True)
        if on:
            self._immutable.add(path)
        else:
            self._immutable.discard(path)
