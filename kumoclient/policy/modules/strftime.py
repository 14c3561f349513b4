"""`Time:format`: the strftime syntax of Rust's chrono crate (which is not C's or Python's:
`%.3f`, `%:z`, `%-d`, `%e`, `%P`, `%+`, ...), for UTC times with nanoseconds. An unknown
specifier is copied as it is (chrono's lenient parsing)."""

from __future__ import annotations

import datetime
import re

_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
# spec → the spec it stands for, as chrono expands them
_COMPOSITE = {
    "D": "%m/%d/%y",
    "x": "%m/%d/%y",
    "F": "%Y-%m-%d",
    "v": "%e-%b-%Y",
    "R": "%H:%M",
    "T": "%H:%M:%S",
    "X": "%H:%M:%S",
    "r": "%I:%M:%S %p",
    "c": "%a %b %e %H:%M:%S %Y",
    "+": "%Y-%m-%dT%H:%M:%S%.f%:z",
}
_SPEC = re.compile(
    r"%(?:(\.?[369]?f)|(:{1,3}z|#z)|([-_0])?([YCymdeHkIlMSjUWGgVuwsbhBaApPZzDxFvRTXrc+tn%]))"
)


def _fraction(nanos: int, spec: str) -> str:
    dot = spec.startswith(".")
    digits = spec.strip(".f")
    if digits:
        text = f"{nanos:09d}"[: int(digits)]
    elif dot:  # %.f: as many digits as needed, in groups of three
        if nanos == 0:
            return ""
        text = f"{nanos:09d}"
        text = text[:3] if nanos % 1_000_000 == 0 else text[:6] if nanos % 1000 == 0 else text
    else:  # %f: nanoseconds, 9 digits
        text = f"{nanos:09d}"
    return f".{text}" if dot else text


def _numbers(when: datetime.datetime, unix: int) -> dict[str, tuple[int, int, str]]:
    """spec → (value, width, default padding)."""
    iso = when.isocalendar()
    hour12 = when.hour % 12 or 12
    yday = when.timetuple().tm_yday
    return {
        "Y": (when.year, 4, "0"),
        "C": (when.year // 100, 2, "0"),
        "y": (when.year % 100, 2, "0"),
        "m": (when.month, 2, "0"),
        "d": (when.day, 2, "0"),
        "e": (when.day, 2, " "),
        "H": (when.hour, 2, "0"),
        "k": (when.hour, 2, " "),
        "I": (hour12, 2, "0"),
        "l": (hour12, 2, " "),
        "M": (when.minute, 2, "0"),
        "S": (when.second, 2, "0"),
        "j": (yday, 3, "0"),
        "U": ((yday + 6 - (when.weekday() + 1) % 7) // 7, 2, "0"),
        "W": ((yday + 6 - when.weekday()) // 7, 2, "0"),
        "G": (iso[0], 4, "0"),
        "g": (iso[0] % 100, 2, "0"),
        "V": (iso[1], 2, "0"),
        "u": (when.isoweekday(), 1, "0"),
        "w": (when.isoweekday() % 7, 1, "0"),
        "s": (unix, 1, "0"),
    }


def _names(when: datetime.datetime) -> dict[str, str]:
    return {
        "b": _MONTHS[when.month - 1][:3],
        "h": _MONTHS[when.month - 1][:3],
        "B": _MONTHS[when.month - 1],
        "a": _DAYS[when.weekday()][:3],
        "A": _DAYS[when.weekday()],
        "p": "AM" if when.hour < 12 else "PM",
        "P": "am" if when.hour < 12 else "pm",
        "Z": "UTC",
        "t": "\t",
        "n": "\n",
        "%": "%",
    }


_ZONES = {":z": "+00:00", "::z": "+00:00:00", ":::z": "+00", "#z": "+00"}


def format_time(when: datetime.datetime, nanos: int, unix: int, spec: str) -> str:
    """`spec` applied to the UTC time `when` (whole seconds) with `nanos` past the second."""
    numbers, names = _numbers(when, unix), _names(when)

    def one(match: re.Match[str]) -> str:
        fraction, zone, pad, letter = match.groups()
        if fraction is not None:
            return _fraction(nanos, fraction)
        if zone is not None:
            return _ZONES[zone]
        if letter == "z":
            return "+0000"
        if letter in _COMPOSITE:
            return format_time(when, nanos, unix, _COMPOSITE[letter])
        if letter in names:
            return names[letter]
        value, width, default = numbers[letter]
        fill = {"-": "", "_": " ", "0": "0"}.get(pad or "", default)
        text = str(abs(value))
        if fill:
            text = text.rjust(width, fill)
        return f"-{text}" if value < 0 else text

    return _SPEC.sub(one, spec)
