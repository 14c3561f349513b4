"""Operational logging (structlog): JSON lines on stderr by default, console rendering on request.

Modules call `get_logger(__name__)`; only the command line calls `configure_logging`.
Delivery log records (the JSONL segments of SPEC 6) are written elsewhere, not here.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Literal

import structlog

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
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
