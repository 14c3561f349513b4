"""Logging: operational logs (structlog) and the writer of delivery log records (JSONL segments,
SPEC 6; their JSON form is `core.log_record`'s).

Operational logs are JSON lines on stderr by default, console rendering on request; modules
call `get_logger(__name__)` and only the command line calls `configure_logging`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any, BinaryIO, Literal

import orjson
import structlog

from kumoclient.core import log_record
from kumoclient.records import LogRecord

LogFormat = Literal["json", "console"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def level_number(name: str) -> int:
    """The `logging` level for 'debug', 'info', 'warning' or 'error'."""
    return _LEVELS.get(name, logging.INFO)


def get_logger(name: str) -> Any:
    """A structlog logger bound to the module `name`."""
    return structlog.get_logger(name)


def configure_logging(fmt: LogFormat = "json", level: str = "info") -> None:
    """Set up structlog for the process: JSON or console lines on stderr."""
    renderer: Any
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    else:
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        # one write per line (print() writes the line and its newline apart, which with an
        # unbuffered stderr, PYTHONUNBUFFERED, lets the lines of reception workers and the
        # main process sharing one stderr run into each other)
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


# --- delivery log records (SPEC 6) -----------------------------------------------------------


NODE_ID = str(uuid.uuid1())  # this process's `nodeid` in log records


def encode_record(record: LogRecord) -> bytes:
    """One JSON line (core.log_record's object). orjson, 40 times faster than json on these
    records; json for what orjson refuses (text that is not valid UTF-8, e.g. a server's reply
    decoded with surrogate escapes), escaped so the line stays valid UTF-8."""
    fields = log_record.encode(record)
    try:
        return orjson.dumps(fields, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:
        return json.dumps(fields, separators=(",", ":")).encode() + b"\n"


_log = structlog.get_logger(__name__)


class RecordLog:
    """JSONL segment files `<log_dir>/<UTC %Y%m%d-%H%M%S>.jsonl`.

    A new segment starts at open and every `max_segment_duration`. Lines are buffered and
    flushed within `FLUSH_INTERVAL`; `sync()` flushes and fsyncs, and is what callers await
    before a message leaves the spool. Concurrent `sync()` calls share one fsync.
    """

    FLUSH_INTERVAL = 0.5

    def __init__(self, log_dir: Path, max_segment_duration: float = 3600.0) -> None:
        self.log_dir = log_dir
        self.max_segment_duration = max_segment_duration
        self._file: BinaryIO | None = None
        self._segment_start = 0.0
        self._written = 0
        self._synced = 0
        self._lock = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None
        self.path: Path | None = None

    async def open(self) -> None:
        """Start a segment and the periodic flush."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._rotate(time.time())
        self._flusher = asyncio.create_task(self._flush_loop(), name="log-flush")

    def _rotate(self, now: float) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
        stamp = datetime.datetime.fromtimestamp(now, datetime.UTC).strftime("%Y%m%d-%H%M%S")
        path = self.log_dir / f"{stamp}.jsonl"
        # a large buffer: records are flushed by the flush loop and by sync(), not per write
        self._file = path.open("ab", buffering=256 * 1024)
        self._segment_start = now
        self.path = path

    def write(self, record: LogRecord) -> None:
        """Append one record (buffered; flushed within FLUSH_INTERVAL)."""
        now = time.time()
        if self._file is None or now - self._segment_start >= self.max_segment_duration:
            self._rotate(now)
        assert self._file is not None
        self._file.write(encode_record(record))
        self._written += 1

    def flush(self) -> None:
        """Hand the records written so far to the OS (a killed process keeps them; durable
        only after `sync`)."""
        if self._file is not None:
            self._file.flush()

    async def sync(self) -> None:
        """Make every record written so far durable."""
        target = self._written
        async with self._lock:
            if self._synced >= target or self._file is None:
                return
            upto = self._written
            self._file.flush()
            await asyncio.to_thread(os.fsync, self._file.fileno())
            self._synced = upto

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.FLUSH_INTERVAL)
            if self._file is not None:
                self._file.flush()

    async def close(self) -> None:
        """Flush, fsync and close."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        await self.sync()
        if self._file is not None:
            self._file.close()
            self._file = None
