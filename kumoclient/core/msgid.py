"""Message ids: 32 lower-case hex characters, time-ordered, unique across restarts.

Layout: 12 hex digits of milliseconds since the Unix epoch (so ids sort by creation time and
the time is recoverable), 16 hex digits of randomness per submission, and 4 hex digits of the
recipient's index within its submission. Re-processing the same submission (say, an
`incoming/` file picked up again after a crash) therefore gives the same ids, which makes the
pick-up idempotent.
"""

from __future__ import annotations

import re

MAX_RECIPIENTS = 0x10000
_ID = re.compile(r"[0-9a-f]{32}")


def submission_base(now: float, random_bits: int) -> str:
    """The first 28 hex digits shared by a submission's messages."""
    millis = int(now * 1000) & 0xFFFF_FFFF_FFFF
    return f"{millis:012x}{random_bits & 0xFFFF_FFFF_FFFF_FFFF:016x}"


def message_id(base: str, index: int) -> str:
    """The id of the `index`-th recipient's message of a submission."""
    if not 0 <= index < MAX_RECIPIENTS:
        raise ValueError(f"recipient index {index} out of range")
    return f"{base}{index:04x}"


def is_message_id(text: str) -> bool:
    """True for a well-formed id."""
    return _ID.fullmatch(text) is not None


def created_at(message: str) -> float:
    """The creation time (Unix seconds) recorded in an id."""
    return int(message[:12], 16) / 1000
