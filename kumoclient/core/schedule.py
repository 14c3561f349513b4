"""A message's scheduling constraints (`msg:set_scheduling`): their JSON form, and the next time
the constraints allow an attempt.

The JSON form is KumoMTA's, the same object a policy gives and gets back and the spool stores:
`{"dow": "Mon,Wed", "tz": "America/Phoenix", "start": "09:00:00", "end": "17:00:00",
"first_attempt": RFC 3339, "expires": RFC 3339}`, every field optional, but `dow`, `tz`,
`start` and `end` all or none. Rules (KumoMTA's, with its error texts):
- `dow`: days separated by `,` (no spaces), each a full English name or its first three
  letters, any case;
- `tz`: an IANA zone name (`America/Phoenix`; short forms like `PST` are not zone names);
- `start`, `end`: `HH:MM:SS` (or `HH:MM`, a fraction of a second allowed), local times in
  `tz`, `start` not after `end` (a window lies within one day);
- `first_attempt`, `expires`: RFC 3339 date and time with an offset (`Z` or `+01:00`).

`next_allowed(schedule, when)`: `when`, moved to `first_attempt` if earlier, then, with a
window, to the start of the next window when it falls outside one (the current day first, then
the following days, up to a week: the window's day, its start and end are taken on each local
day; a day whose start or end does not exist or is ambiguous in `tz`, at a DST change, is
skipped). `allowed(schedule, when)` tells whether `when` is inside the constraints. The
scheduler moves every due time (reception, retry, admin retry) through `next_allowed`; a
message with `expires` expires when its next due time would be at or after it (instead of the
queue's `max_age`).
"""

from __future__ import annotations

import datetime
import re
import zoneinfo
from typing import Any

from kumoclient.records import DeliveryWindow, Schedule

DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_WINDOW_FIELDS = ("dow", "tz", "start", "end")
_FIELDS = frozenset({*_WINDOW_FIELDS, "first_attempt", "expires"})
_RFC3339 = re.compile(
    r"(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)
_TIME = re.compile(r"(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?", re.ASCII)
_ONE_DAY = datetime.timedelta(days=1)
_SEARCH_DAYS = 8  # a window on any day of the week is found within a week


def parse_schedule(value: Any) -> Schedule:
    """The Schedule of its JSON form (a dict); ValueError saying what is wrong."""
    if not isinstance(value, dict):
        raise ValueError("expected a table of scheduling parameters")
    for key in value:
        if key not in _FIELDS:
            raise ValueError(f"invalid field name {key}")
    window = _window(value)
    return Schedule(
        window=window,
        first_attempt=_optional_rfc3339(value, "first_attempt"),
        expires=_optional_rfc3339(value, "expires"),
    )


def schedule_json(schedule: Schedule) -> dict[str, str]:
    """The JSON form of a schedule (absent fields left out)."""
    out: dict[str, str] = {}
    window = schedule.window
    if window is not None:
        out["dow"] = ",".join(DAYS[day][:3] for day in sorted(window.days))
        out["tz"] = window.tz
        out["start"] = _time_text(window.start)
        out["end"] = _time_text(window.end)
    if schedule.first_attempt is not None:
        out["first_attempt"] = schedule.first_attempt.isoformat()
    if schedule.expires is not None:
        out["expires"] = schedule.expires.isoformat()
    return out


def parse_rfc3339(text: str) -> datetime.datetime:
    """An RFC 3339 date and time with its offset; ValueError when `text` is not one."""
    match = _RFC3339.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(
            f"{text!r} is not an RFC 3339 date and time (such as 2024-03-08T17:51:42Z)"
        )
    date, clock, fraction, offset = match.groups()
    fraction = (fraction or "")[:7]  # Python keeps microseconds
    offset = "+00:00" if offset in ("Z", "z") else offset
    try:
        return datetime.datetime.fromisoformat(f"{date}T{clock}{fraction}{offset}")
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a valid date and time: {exc}") from None


def utc_text(when: float) -> str:
    """A time as KumoMTA shows a due time: RFC 3339 in UTC with `Z`."""
    stamp = datetime.datetime.fromtimestamp(when, datetime.UTC)
    return stamp.isoformat().replace("+00:00", "Z")


def next_allowed(schedule: Schedule | None, when: float) -> float:
    """The first time at or after `when` that the schedule allows (see the module's text)."""
    if schedule is None:
        return when
    first = schedule.first_attempt
    if first is not None and when < first.timestamp():
        when = first.timestamp()
    window = schedule.window
    if window is None:
        return when
    zone = _zone(window.tz)
    local = datetime.datetime.fromtimestamp(when, zone)
    for _ in range(_SEARCH_DAYS):
        bounds = _bounds(window, zone, local.date())
        if bounds is None:
            local += _ONE_DAY
            continue
        start, end = bounds
        if local.weekday() in window.days:
            if local < start:
                local = start
                break
            if local < end:
                break
        local = start + _ONE_DAY
    return local.timestamp()


def allowed(schedule: Schedule | None, when: float) -> bool:
    """True when the schedule allows an attempt at `when`."""
    if schedule is None:
        return True
    first = schedule.first_attempt
    if first is not None and when < first.timestamp():
        return False
    window = schedule.window
    if window is None:
        return True
    zone = _zone(window.tz)
    local = datetime.datetime.fromtimestamp(when, zone)
    bounds = _bounds(window, zone, local.date())
    if local.weekday() not in window.days or bounds is None:
        return False
    return bounds[0] <= local < bounds[1]


def expiry(schedule: Schedule | None) -> float | None:
    """The message's own expiry time (Unix seconds), None when the queue's max_age rules."""
    if schedule is None or schedule.expires is None:
        return None
    return schedule.expires.timestamp()


# --- parsing ---------------------------------------------------------------------------------


def _window(value: dict[str, Any]) -> DeliveryWindow | None:
    present = [name for name in _WINDOW_FIELDS if name in value]
    if not present:
        return None
    missing = [name for name in _WINDOW_FIELDS if name not in value]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise ValueError(
            "scheduling restrictions requires all restriction fields to be present. "
            f"{', '.join(missing)} {verb} missing"
        )
    days = _days(value["dow"])
    tz = _tz(value["tz"])
    start, end = _time(value, "start"), _time(value, "end")
    if start > end:
        raise ValueError(
            "'start' must be before 'end' and define a time window within a given day. "
            f"start={_time_text(start)}, end={_time_text(end)}"
        )
    return DeliveryWindow(days, tz, start, end)


def _days(value: Any) -> frozenset[int]:
    if not isinstance(value, str):
        raise ValueError("dow: expected a comma separated list of days of the week like 'Mon,Tue'")
    days: set[int] = set()
    for name in value.split(","):
        for number, label in enumerate(DAYS):
            if name.lower() in (label.lower(), label[:3].lower()):
                days.add(number)
                break
        else:
            raise ValueError(f"dow: invalid day '{name}'")
    return frozenset(days)


def _tz(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("tz: expected the name of an IANA time zone such as 'America/Phoenix'")
    _zone(value)
    return value


def _zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(
            f"tz: '{name}' is not an IANA time zone name (such as 'America/Phoenix')"
        ) from None


def _time(value: dict[str, Any], name: str) -> datetime.time:
    text = value[name]
    match = _TIME.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{name}: expected a time of day as HH:MM:SS, got {text!r}")
    hours, minutes, seconds, fraction = match.groups()
    micro = round(float(fraction) * 1_000_000) if fraction else 0
    try:
        return datetime.time(int(hours), int(minutes), int(seconds or 0), min(micro, 999_999))
    except ValueError as exc:
        raise ValueError(f"{name}: {text!r} is not a time of day: {exc}") from None


def _time_text(when: datetime.time) -> str:
    return when.isoformat()


def _optional_rfc3339(value: dict[str, Any], name: str) -> datetime.datetime | None:
    text = value.get(name)
    if text is None:
        return None
    try:
        return parse_rfc3339(text)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


# --- local days ------------------------------------------------------------------------------


def _bounds(
    window: DeliveryWindow, zone: zoneinfo.ZoneInfo, day: datetime.date
) -> tuple[datetime.datetime, datetime.datetime] | None:
    """The window's start and end on a local day; None when either is not one exact instant
    there (skipped or repeated by a DST change)."""
    start = _exact(zone, datetime.datetime.combine(day, window.start))
    end = _exact(zone, datetime.datetime.combine(day, window.end))
    if start is None or end is None:
        return None
    return start, end


def _exact(zone: zoneinfo.ZoneInfo, naive: datetime.datetime) -> datetime.datetime | None:
    """`naive` in `zone` when that local time names exactly one instant."""
    early = naive.replace(tzinfo=zone, fold=0)
    late = naive.replace(tzinfo=zone, fold=1)
    if early.utcoffset() != late.utcoffset():
        return None  # repeated (the clock went back)
    back = early.astimezone(datetime.UTC).astimezone(zone)
    if back.replace(tzinfo=None) != naive:
        return None  # skipped (the clock went forward)
    return early
