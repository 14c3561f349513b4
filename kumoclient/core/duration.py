"""Durations as KumoMTA writes them: `'5 minutes'`, `'1h 30m'`, `'4.2s'`, or a number of seconds.

Rules (SPEC 4.3, humantime's grammar):
- a number (int or float, not bool) is seconds and must not be negative;
- a string is one or more `<number><unit>` spans; spaces may separate a number from its
  unit and one span from the next; numbers may have a fraction (`4.2s`);
- units are case-sensitive (`M` is a month, `m` a minute);
- a string without a unit (`'300'`) is an error, and so is an unknown unit.
"""

from __future__ import annotations

import math
import re

from kumoclient.errors import DurationError

_DAY = 86400.0

# unit → seconds; the table is the whole grammar of units.
UNITS: dict[str, float] = {
    **dict.fromkeys(("ns", "nsec", "nanos"), 1e-9),
    **dict.fromkeys(("us", "usec", "µs"), 1e-6),
    **dict.fromkeys(("ms", "msec", "millis"), 1e-3),
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1.0),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60.0),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), 3600.0),
    **dict.fromkeys(("d", "day", "days"), _DAY),
    **dict.fromkeys(("w", "wk", "wks", "week", "weeks"), 7 * _DAY),
    **dict.fromkeys(("M", "month", "months"), 30.44 * _DAY),
    **dict.fromkeys(("y", "yr", "yrs", "year", "years"), 365.25 * _DAY),
}

_SPAN = re.compile(r"\s*(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>[^\d\s.]*)\s*")


def parse_duration(value: object, *, what: str = "duration") -> float:
    """Return `value` in seconds, or raise DurationError naming `what` and the value."""
    if isinstance(value, bool):
        raise DurationError(f"{what}: expected a duration, got boolean {value!r}", value=value)
    if isinstance(value, int | float):
        if value < 0 or math.isnan(value):
            raise DurationError(f"{what}: a duration cannot be {value!r}", value=value)
        return float(value)
    if not isinstance(value, str):
        raise DurationError(
            f"{what}: expected a number of seconds or a string like '5 minutes', "
            f"got {type(value).__name__}",
            value=value,
        )
    return _parse_text(value, what)


def _parse_text(text: str, what: str) -> float:
    if not text.strip():
        raise DurationError(f"{what}: empty duration string", value=text)
    total = 0.0
    pos = 0
    while pos < len(text):
        match = _SPAN.match(text, pos)
        if match is None or match.end() == pos:
            raise DurationError(
                f"{what}: invalid duration {text!r}: expected <number><unit> at {text[pos:]!r}",
                value=text,
            )
        unit = match["unit"]
        if not unit:
            raise DurationError(
                f"{what}: invalid duration {text!r}: number {match['num']} has no unit "
                "(write e.g. '300s' or '5 minutes')",
                value=text,
            )
        if unit not in UNITS:
            raise DurationError(
                f"{what}: invalid duration {text!r}: unknown unit {unit!r}", value=text
            )
        total += float(match["num"]) * UNITS[unit]
        pos = match.end()
    return total


def format_duration(seconds: float) -> str:
    """A short human form (`'1h 30m'`, `'4.2s'`) that `parse_duration` reads back."""
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    parts: list[str] = []
    rest = seconds
    for unit, size in (("d", _DAY), ("h", 3600.0), ("m", 60.0)):
        if rest >= size:
            count = int(rest // size)
            parts.append(f"{count}{unit}")
            rest -= count * size
    if rest or not parts:
        parts.append(f"{round(rest, 3):g}s")
    return " ".join(parts)
