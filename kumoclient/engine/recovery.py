"""At start: loading the spool (all at once, or in batches while the engine already delivers),
and spooled messages that the previous run delivered and logged, but was stopped (killed)
before it could remove, leave the spool instead of being delivered a second time.

A Delivery record is written right after the server's final 250; the message leaves the
spool once that record is durable, in a batch (engine/state.py). A process killed in between
leaves both the record and the message. Such records are among the last the killed run
wrote, so only the tails of the newest segments are read: `TAIL` bytes of each of the
`SEGMENTS` newest `*.jsonl` files (which makes them durable first: fsync). A message is
taken as delivered only by a well-formed Delivery record naming its id; anything else
(Bounce, Expiration: a DSN may still be owed; a half-written last line; a log directory that
cannot be read) leaves the message to be delivered as before, so the worst a miss costs is
the duplicate it would have been anyway (SPEC 1 invariant 3).
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

from kumoclient import logs
from kumoclient.records import SpooledMessage
from kumoclient.spool import Spool

log = logs.get_logger(__name__)

SEGMENTS = 2  # the killed run's segment, and the one before it (rotated in the window)
TAIL = 8 * 1024 * 1024  # bytes read from the end of each: seconds of records at full rate
# how logs.encode_record begins a Delivery line (compact JSON, `type` then `id`)
_DELIVERY = b'{"type":"Delivery","id":"'
SCAN_BATCH = 256  # spooled messages read at start between two turns of the event loop
Enqueue = Callable[[list[SpooledMessage], bytes | None], None]


def leave_delivered(
    names: list[str], delivered: set[str], remove: Callable[[str], None]
) -> list[str]:
    """Messages delivered and logged by the previous run, which it could not remove: they
    leave the spool now (`remove`); returns the others, to be scheduled."""
    for message_id in delivered:
        remove(message_id)
    log.info("messages delivered before the restart left the spool", messages=len(delivered))
    return [name for name in names if name not in delivered]


async def load_in_batches(
    spool: Spool,
    names: list[str],
    enqueue: Enqueue,
    stopping: Callable[[], bool],
    scanned: asyncio.Event,
) -> None:
    """Read and schedule the listed messages, SCAN_BATCH at a time, letting deliveries and
    receptions run between batches; set `scanned` and log "spool enumerated" when done."""
    started = time.monotonic()
    scheduled = 0
    for first in range(0, len(names), SCAN_BATCH):
        if stopping():
            return
        for message, content in spool.load_listed(names[first : first + SCAN_BATCH]):
            enqueue([message], content)
            scheduled += 1
        await asyncio.sleep(0)
    scanned.set()
    log.info(
        "spool enumerated",
        messages=scheduled,
        quarantined=spool.unreadable,
        seconds=round(time.monotonic() - started, 3),
        spool=str(spool.root),
    )


def delivered_before(log_dir: Path, spooled: set[str]) -> set[str]:
    """The ids in `spooled` that have a Delivery record near the end of the log."""
    found: set[str] = set()
    try:
        segments = sorted(log_dir.glob("*.jsonl"))[-SEGMENTS:]
        for segment in segments:
            found |= _delivered_in(_tail(segment), spooled)
    except OSError as exc:  # no reading, no recovery: the messages are delivered again
        log.warning("cannot read the delivery log at start", error=str(exc), dir=str(log_dir))
        return set()
    return found


def _tail(segment: Path) -> bytes:
    """The last TAIL bytes of `segment`, made durable first (read-only fsync: Linux's
    fsync works on any descriptor of the file)."""
    with segment.open("rb") as file:
        os.fsync(file.fileno())
        size = os.fstat(file.fileno()).st_size
        file.seek(max(0, size - TAIL))
        return file.read()


def _delivered_in(data: bytes, spooled: set[str]) -> set[str]:
    """The spooled ids of the complete Delivery lines in `data` (the first line may be the
    end of a record, the last one a record the kill cut short: neither parses)."""
    found: set[str] = set()
    lines = data.split(b"\n")
    for line in lines[:-1]:  # the last piece has no newline: cut short, or empty
        if not line.startswith(_DELIVERY):
            continue
        message_id = line[len(_DELIVERY) : len(_DELIVERY) + 32].decode("ascii", "replace")
        if message_id not in spooled:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("id") == message_id:
            found.add(message_id)
    return found
