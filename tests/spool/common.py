"""What the spool's tests share: a submission, storing it, real spool directories, a full disk,
entries with chosen headers, files outside the spool that must stay untouched."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kumoclient.records import SpooledMessage
from kumoclient.spool import Spool, Submission

CONTENT = b"Subject: t\r\n\r\nbody\r\n"


def submission(*recipients: str, content: bytes = CONTENT) -> Submission:
    return Submission("s@example.com", recipients, content)


async def stored(spool: Spool, *recipients: str, content: bytes = CONTENT) -> list[SpooledMessage]:
    messages = spool.prepare(submission(*recipients, content=content))
    await spool.store(messages, content)
    return messages


@contextlib.contextmanager
def small_tmpfs(mount: Path, size: str = "64k") -> Iterator[Path]:
    """A real tmpfs of `size` at `mount` (root only: skips the test otherwise)."""
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
        stderr=subprocess.DEVNULL,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> Path:
    """Write a file in `folder` until its filesystem is full; the file's path."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                os.write(fd, b"\0" * 4096)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return filler
    finally:
        os.close(fd)


@contextlib.contextmanager
def immutable(folder: Path) -> Iterator[Path]:
    """`chattr +i folder`: no entry can be added, renamed or removed, even by root (skips
    the test where the filesystem has no such attribute)."""
    done = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"chattr +i not supported here: {done.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def write_header(path: Path, header: dict[str, object], content: bytes) -> None:
    """Write an entry with exactly this header (JSON as Python writes it: NaN and Infinity
    included) and content: what a damaged or hand-made file can hold."""
    encoded = json.dumps(header).encode()
    path.write_bytes(b"KCSPOOL1 " + str(len(encoded)).encode() + b"\n" + encoded + b"\n" + content)


def rewrite_header(path: Path, **changes: object) -> None:
    """Change fields of an entry's header in place, its content kept."""
    _magic, raw, content = path.read_bytes().split(b"\n", 2)
    write_header(path, {**json.loads(raw), **changes}, content)


class Outside:
    """Files outside the spool, with the bytes each held when made."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir()
        self.files: dict[Path, bytes] = {}

    def file(self, name: str, blob: bytes) -> Path:
        path = self.folder / name
        path.write_bytes(blob)
        self.files[path] = blob
        return path

    def unchanged(self) -> bool:
        return all(
            not path.is_symlink() and path.read_bytes() == blob for path, blob in self.files.items()
        )
