"""At start: spooled messages that the previous run delivered and logged, but was stopped (killed)
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

import json
import os
import re
from pathlib import Path

from kumoclient import logs

log = logs.get_logger(__name__)

SEGMENTS = 2  # the killed run's segment, and the one before it (rotated in the window)
TAIL = 8 * 1024 * 1024  # bytes read from the end of each: seconds of records at full rate
_ID = re.compile(rb'"id":"([0-9a-f]{32})"')  # as logs.encode_record writes it (compact)


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
    found: set[str] = set()
    for match in _ID.finditer(data):
        message_id = match[1].decode()
        if message_id not in spooled or message_id in found:
            continue
        start = data.rfind(b"\n", 0, match.start()) + 1
        end = data.find(b"\n", match.end())
        if end < 0:  # the last line, without its newline: cut off by the kill
            continue
        try:
            record = json.loads(data[start:end])
        except ValueError:  # the first line of the tail starts mid-record
            continue
        if isinstance(record, dict) and (record.get("type"), record.get("id")) == (
            "Delivery",
            message_id,
        ):
            found.add(message_id)
    return found
