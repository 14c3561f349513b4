"""`kumo.fs.*` (and the older `kumo.glob`, `kumo.uncached_glob`, `kumo.read_dir`): globbing,
directory listing, file metadata and files opened for reading and writing. Relative paths are
relative to the calling policy file's directory."""

from __future__ import annotations

import contextlib
import functools
import glob as globbing
import os
import stat
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

from kumoclient.errors import ConfigError
from kumoclient.policy.api import LuaObject, kumo_function
from kumoclient.policy.modules import args
from kumoclient.policy.modules.times import Time

GLOB_CACHE_CAPACITY = 32  # as KumoMTA's glob cache
DEFAULT_GLOB_TTL = 60.0


def _utf8(what: str, name: str) -> str:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:  # os gives undecodable bytes as surrogates
        raise ConfigError(f"{what}: path entry {name!r} is not representable as UTF-8") from exc
    return name


def expand_braces(pattern: str) -> list[str]:
    """`{a,b}` alternatives, nested allowed (`a{b,c{d,e}}`); an unbalanced brace is literal."""
    depth, start = 0, -1
    for i, c in enumerate(pattern):
        if c == "{":
            depth += 1
            start = i if depth == 1 else start
        elif c == "}" and depth:
            depth -= 1
            if depth == 0:
                options, level, last = [], 0, start + 1
                for j in range(start + 1, i):
                    level += {"{": 1, "}": -1}.get(pattern[j], 0)
                    if pattern[j] == "," and level == 0:
                        options.append(pattern[last:j])
                        last = j + 1
                options.append(pattern[last:i])
                head, tail = pattern[:start], pattern[i + 1 :]
                return [e for o in options for e in expand_braces(head + o + tail)]
    return [pattern]


def glob_paths(what: str, base: str, pattern: str, relative_to: str | None) -> list[str]:
    """Matching paths, sorted: absolute for an absolute pattern, else relative to `relative_to`
    (itself relative to `base`). Missing or unreadable directories give no results."""
    root = Path(base, relative_to or ".")
    found: set[str] = set()
    for one in expand_braces(pattern):
        if os.path.isabs(one):
            found.update(globbing.glob(one, recursive=True))
        else:
            found.update(globbing.glob(one, root_dir=root, recursive=True))
    return sorted(_utf8(what, name) for name in found)


_CACHE: OrderedDict[tuple[str, str, str | None], tuple[float, list[str]]] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def _cached_glob(
    what: str, base: str, pattern: Any, relative_to: Any = None, ttl: Any = None
) -> list[str]:
    text = args.text(what, pattern, name="pattern")
    where = None if relative_to is None else args.text(what, relative_to, name="relative_to")
    seconds = DEFAULT_GLOB_TTL if ttl is None else ttl
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
        raise ConfigError(f"{what}: ttl_seconds must be a number of seconds")
    key, now = (base, text, where), time.monotonic()
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is not None and cached[0] > now:
            _CACHE.move_to_end(key)
            return list(cached[1])
    result = glob_paths(what, base, text, where)
    with _CACHE_LOCK:
        _CACHE[key] = (now + seconds, result)
        _CACHE.move_to_end(key)
        while len(_CACHE) > GLOB_CACHE_CAPACITY:
            _CACHE.popitem(last=False)
    return list(result)


def _uncached_glob(what: str, base: str, pattern: Any, relative_to: Any = None) -> list[str]:
    text = args.text(what, pattern, name="pattern")
    where = None if relative_to is None else args.text(what, relative_to, name="relative_to")
    return glob_paths(what, base, text, where)


def _read_dir(what: str, base: str, path: Any) -> list[str]:
    directory = Path(base, args.text(what, path, name="path"))
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        raise ConfigError(f"{what}: {directory}: {exc.strerror}") from exc
    return [_utf8(what, str(directory / name)) for name in names]


for _prefix in ("fs.", ""):
    for _name, _fn in (
        ("glob", _cached_glob),
        ("uncached_glob", _uncached_glob),
        ("read_dir", _read_dir),
    ):
        kumo_function(f"{_prefix}{_name}", source=True)(
            functools.partial(_fn, f"kumo.{_prefix}{_name}")
        )


# --- metadata ----------------------------------------------------------------------------------


def _metadata(what: str, path: Path, shown: str, *, follow: bool) -> dict[str, Any]:
    try:
        info = os.stat(path) if follow else os.lstat(path)
    except OSError as exc:
        raise ConfigError(f"{what}: {shown}: {exc.strerror}") from exc
    return {
        "path": shown,
        "is_file": stat.S_ISREG(info.st_mode),
        "is_dir": stat.S_ISDIR(info.st_mode),
        "is_symlink": stat.S_ISLNK(info.st_mode),
        "len": info.st_size,
        "readonly": not info.st_mode & 0o222,
        "dev": info.st_dev,
        "ino": info.st_ino,
        "mode": info.st_mode,
        "nlink": info.st_nlink,
        "uid": info.st_uid,
        "gid": info.st_gid,
        "rdev": info.st_rdev,
        "size": info.st_size,
        "blksize": info.st_blksize,
        "blocks": info.st_blocks,
        "mtime": Time(info.st_mtime_ns),
        "atime": Time(info.st_atime_ns),
        "ctime": Time(info.st_ctime_ns),  # the inode change time, as KumoMTA's
    }


@kumo_function("fs.metadata_for_path", source=True)
def metadata_for_path(base: str, path: Any) -> dict[str, Any]:
    """The attributes of PATH (symbolic links followed)."""
    what = "kumo.fs.metadata_for_path"
    shown = args.text(what, path, name="path")
    return _metadata(what, Path(base, shown), shown, follow=True)


@kumo_function("fs.symlink_metadata_for_path", source=True)
def symlink_metadata_for_path(base: str, path: Any) -> dict[str, Any]:
    """The attributes of PATH itself, a symbolic link not followed."""
    what = "kumo.fs.symlink_metadata_for_path"
    shown = args.text(what, path, name="path")
    return _metadata(what, Path(base, shown), shown, follow=False)


# --- files -------------------------------------------------------------------------------------

# mode → os.open flags; every file is binary (read and write take and give bytes)
_MODES = {
    "r": os.O_RDONLY,
    "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
    "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND,
    "r+": os.O_RDWR | os.O_CREAT,
    "w+": os.O_RDWR | os.O_CREAT | os.O_TRUNC,
    "a+": os.O_RDWR | os.O_CREAT | os.O_APPEND,
}
_WHENCE = {"set": os.SEEK_SET, "cur": os.SEEK_CUR, "end": os.SEEK_END}


class File(LuaObject):
    """`kumo.fs.open`'s file: `read`, `write`, `seek`, `flush`, `close`."""

    lua_name: ClassVar[str] = "async-file"
    lua_methods: ClassVar[frozenset[str]] = frozenset({"read", "write", "seek", "flush", "close"})

    def __init__(self, handle: BinaryIO, name: str) -> None:
        self._handle: BinaryIO | None = handle
        self.name = name

    def _open(self) -> BinaryIO:
        if self._handle is None:
            raise ConfigError(f"{self.name}: the file is closed")
        return self._handle

    def read(self, size: Any = None) -> bytes:
        """The rest of the file, or at most `size` bytes."""
        count = -1 if size is None else args.integer("file:read", size, name="size", minimum=0)
        return self._open().read(count)

    def write(self, data: Any) -> None:
        self._open().write(args.data("file:write", data))

    def seek(self, whence: Any = None, position: Any = None) -> int:
        """The new position; `whence` is `set`, `cur` (default) or `end`."""
        where = args.optional_text("file:seek", whence, "cur", name="whence")
        if where not in _WHENCE:
            raise ConfigError(f"file:seek: whence must be 'set', 'cur' or 'end', got {where!r}")
        offset = 0 if position is None else args.integer("file:seek", position, name="position")
        try:
            return self._open().seek(offset, _WHENCE[where])
        except OSError as exc:
            raise ConfigError(f"file:seek: {exc.strerror}") from exc

    def flush(self) -> None:
        self._open().flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __del__(self) -> None:
        """A file the policy left open closes when Lua lets go of it, as in KumoMTA."""
        with contextlib.suppress(OSError):
            self.close()


@kumo_function("fs.open", source=True)
def open_file(base: str, filename: Any, mode: Any = None) -> File:
    """FILENAME opened in MODE (`r` default; `w`, `a`, `r+`, `w+`, `a+`, each with `b` or not)."""
    what = "kumo.fs.open"
    name = args.text(what, filename, name="filename")
    wanted = args.optional_text(what, mode, "r", name="mode")
    flags = _MODES.get(wanted.replace("b", "", 1) if wanted.endswith("b") else wanted)
    if flags is None:
        raise ConfigError(f"{what}: unknown mode {wanted!r}")
    path = Path(base, name)
    try:
        descriptor = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), 0o666)
    except OSError as exc:
        raise ConfigError(f"{what}: {path}: {exc.strerror}") from exc
    readable = flags & os.O_ACCMODE != os.O_WRONLY
    writable = flags & os.O_ACCMODE != os.O_RDONLY
    file_mode = "r+b" if readable and writable else "rb" if readable else "wb"
    # O_APPEND (a, a+) keeps writes at the end
    handle: BinaryIO = os.fdopen(descriptor, file_mode)  # type: ignore[assignment]
    return File(handle, str(path))
