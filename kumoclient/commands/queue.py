"""`kumoclient queue summary|list`: the spooled messages, per queue or one by one.

Read-only, safe beside a running daemon.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO

from kumoclient.core.queue_name import queue_name_for
from kumoclient.engine.engine import DEFAULT_DATA_DIR
from kumoclient.errors import ConfigError
from kumoclient.records import SpooledMessage
from kumoclient.spool import Spool

EX_OK = 0


@dataclass(frozen=True, slots=True)
class QueueOptions:
    """`queue summary|list [--data-dir DIR]`."""

    view: Literal["summary", "list"]
    data_dir: Path = DEFAULT_DATA_DIR


@dataclass(slots=True)
class _QueueState:
    count: int = 0
    oldest: float = 0.0
    next_due: float = 0.0
    last_response: str | None = None


def queue(options: QueueOptions, out: TextIO) -> int:
    """Print the spool's messages (`list`) or its queues (`summary`)."""
    root = options.data_dir / "spool"
    if not (root / "data").is_dir():
        raise ConfigError(f"no spool at {root} (use --data-dir)")
    spool = Spool(root)
    now = time.time()
    messages = list(spool.enumerate(quarantine=False))
    if options.view == "list":
        _list(messages, now, out)
    else:
        _summary(messages, now, out)
    if spool.unreadable:
        out.write(f"{spool.unreadable} unreadable entries (quarantined at the daemon's start)\n")
    return EX_OK


def _when(stamp: float, now: float) -> str:
    moment = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))
    delta = stamp - now
    rel = "now" if abs(delta) < 1 else (f"in {delta:.0f}s" if delta > 0 else f"{-delta:.0f}s ago")
    return f"{moment} ({rel})"


def _list(messages: list[SpooledMessage], now: float, out: TextIO) -> None:
    for m in messages:
        out.write(
            f"{m.id} {queue_name_for(m.recipient, m.meta)} <{m.sender}> -> <{m.recipient}> "
            f"attempts={m.attempts} due={_when(m.due, now)}"
            f"{' last=' + repr(m.last_response) if m.last_response else ''}\n"
        )
    out.write(f"{len(messages)} messages\n")


def _summary(messages: list[SpooledMessage], now: float, out: TextIO) -> None:
    queues: dict[str, _QueueState] = defaultdict(_QueueState)
    for m in messages:
        state = queues[queue_name_for(m.recipient, m.meta)]
        state.count += 1
        state.oldest = m.created if not state.oldest else min(state.oldest, m.created)
        state.next_due = m.due if not state.next_due else min(state.next_due, m.due)
        state.last_response = m.last_response or state.last_response
    out.write(f"{'queue':<40} {'count':>6}  oldest / next due / last response\n")
    for name in sorted(queues):
        q = queues[name]
        out.write(
            f"{name:<40} {q.count:>6}  {_when(q.oldest, now)} / {_when(q.next_due, now)}"
            f" / {q.last_response or '-'}\n"
        )
    out.write(f"{len(messages)} messages in {len(queues)} queues\n")
