"""Logging: operational logs (structlog) here; the delivery log records (SPEC 6) in
`record_log` (the JSONL segment writer) and `health` (whether records can be written now).

Operational logs are JSON lines on stderr by default, console rendering on request; modules
call `get_logger(__name__)` and only the command line calls `configure_logging`. Which lines
are written is the diagnostic log filter's (`filter.py`): every module at the command line's
level, until the policy calls `kumo.set_diagnostic_log_filter` (`set_diagnostic_filter`). The record
writer's names are re-exported here (`logs.RecordLog`, `logs.LogHealth`, `logs.NODE_ID`,
`logs.encode_record`).
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from typing import Any, Literal, TextIO, cast

import structlog

from kumoclient.logs.filter import (
    STATE,
    LogFilter,
    NamedWriteLoggerFactory,
    drop_filtered,
    everything_at,
    parse_filter,
)
from kumoclient.logs.health import LogHealth
from kumoclient.logs.record_log import NODE_ID, RecordLog, encode_record

__all__ = [
    "NODE_ID",
    "LineSink",
    "LogFormat",
    "LogHealth",
    "RecordLog",
    "configure_logging",
    "encode_record",
    "get_logger",
    "level_number",
    "set_diagnostic_filter",
]


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


class LineSink(io.TextIOBase):
    """Where operational log lines go (stderr): a line that cannot be written (stderr is a
    file on a full disk, a closed pipe) is dropped, never raised into the code that logs it,
    which may be handling that very fault."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except (OSError, ValueError):  # ValueError: the stream was closed
            return 0

    def flush(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._stream.flush()


def configure_logging(fmt: LogFormat = "json", level: str = "info") -> None:
    """Set up structlog for the process: JSON or console lines on stderr, every module at
    `level` (until `set_diagnostic_filter`)."""
    renderer: Any
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    else:
        renderer = structlog.processors.JSONRenderer()
    STATE.install(everything_at(level))
    structlog.configure(
        processors=[
            drop_filtered,
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(STATE.active.minimum),
        # one write per line (print() writes the line and its newline apart, which with an
        # unbuffered stderr, PYTHONUNBUFFERED, lets the lines of reception workers and the
        # main process sharing one stderr run into each other)
        logger_factory=NamedWriteLoggerFactory(file=cast(TextIO, LineSink(sys.stderr))),
        cache_logger_on_first_use=False,
    )


def set_diagnostic_filter(text: str) -> LogFilter:
    """Put the filter `text` in force now (`kumo.set_diagnostic_log_filter`; ConfigError when
    it does not parse). Sets up the logging first when the command line did not."""
    active = parse_filter(text)
    if drop_filtered not in structlog.get_config()["processors"]:
        configure_logging()
    STATE.install(active)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(active.minimum))
    return active
