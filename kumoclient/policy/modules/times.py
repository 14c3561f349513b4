"""`kumo.time.*` (except `sleep`): Time and TimeDelta objects with nanosecond precision, their
constructors, fields, formats and arithmetic, and `start_timer`."""

from __future__ import annotations

import datetime
import re
import time
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

from prometheus_client import CollectorRegistry, Histogram

from kumoclient.core.duration import parse_duration as parse_duration_text
from kumoclient.errors import ConfigError
from kumoclient.policy.api import LuaObject, kumo_function
from kumoclient.policy.modules import args
from kumoclient.policy.modules.strftime import format_time

NANOS = 1_000_000_000
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_I64 = 2**63


def _fraction(nanos: int) -> str:
    """chrono's `%.f`: nothing, or 3, 6 or 9 digits, as the value needs."""
    if nanos == 0:
        return ""
    text = f"{nanos:09d}"
    return "." + (text[:3] if nanos % 1_000_000 == 0 else text[:6] if nanos % 1000 == 0 else text)


class TimeDelta(LuaObject):
    """A signed interval in nanoseconds."""

    lua_name: ClassVar[str] = "TimeDelta"

    def __init__(self, nanos: int) -> None:
        self.nanos = nanos

    def human(self) -> str:
        """humantime's form (`5m`, `1h 30m`, `1s 500ms`, `2days`); negative is an error."""
        if self.nanos < 0:
            raise ConfigError("TimeDelta: a negative duration has no human form")
        seconds, nanos = divmod(self.nanos, NANOS)
        if seconds == 0 and nanos == 0:
            return "0s"
        years, rest = divmod(seconds, 31_557_600)
        months, rest = divmod(rest, 2_630_016)
        days, rest = divmod(rest, 86_400)
        parts = [
            *(f"{n}{unit}{'s' if n > 1 else ''}" for n, unit in
              ((years, "year"), (months, "month"), (days, "day")) if n),
            *(f"{n}{unit}" for n, unit in (
                (rest // 3600, "h"), (rest % 3600 // 60, "m"), (rest % 60, "s"),
                (nanos // 1_000_000, "ms"), (nanos // 1000 % 1000, "us"), (nanos % 1000, "ns"),
            ) if n),
        ]  # fmt: skip
        return " ".join(parts)

    def lua_index(self, key: Any) -> Any:
        if key == "seconds":
            return self.nanos / NANOS
        if key == "human":
            return self.human()
        divisor = {"nanoseconds": 1, "microseconds": 1000, "milliseconds": 1_000_000}.get(key)
        if divisor is None:
            return None
        value = int(self.nanos / divisor) if divisor > 1 else self.nanos
        return value if -_I64 <= value < _I64 else None

    def lua_tostring(self) -> str:
        return self.human()

    def lua_eq(self, other: Any) -> bool:
        return isinstance(other, TimeDelta) and other.nanos == self.nanos

    def lua_add(self, other: Any) -> TimeDelta:
        return TimeDelta(self.nanos + _delta("TimeDelta +", other).nanos)

    def lua_sub(self, other: Any) -> TimeDelta:
        return TimeDelta(self.nanos - _delta("TimeDelta -", other).nanos)


def _delta(what: str, value: Any) -> TimeDelta:
    if not isinstance(value, TimeDelta):
        raise ConfigError(f"{what}: expected a TimeDelta")
    return value


class Time(LuaObject):
    """A UTC instant in nanoseconds since the Unix epoch."""

    lua_name: ClassVar[str] = "Time"
    lua_methods: ClassVar[frozenset[str]] = frozenset({"format"})

    def __init__(self, nanos: int) -> None:
        seconds = nanos // NANOS
        try:
            self.when = _EPOCH + datetime.timedelta(seconds=seconds)
        except OverflowError as exc:
            raise ConfigError("invalid timestamp: out of the years 1 to 9999") from exc
        self.nanos = nanos

    @property
    def seconds(self) -> int:
        return self.nanos // NANOS

    @property
    def subsecond(self) -> int:
        return self.nanos % NANOS

    def format(self, spec: Any) -> str:
        """chrono's strftime (see strftime.py)."""
        text = args.text("Time:format", spec)
        return format_time(self.when.replace(tzinfo=None), self.subsecond, self.seconds, text)

    def lua_index(self, key: Any) -> Any:
        when = self.when
        fields = {
            "year": when.year,
            "month": when.month,
            "day": when.day,
            "hour": when.hour,
            "minute": when.minute,
            "second": when.second,
            "unix_timestamp": self.seconds,
            "unix_timestamp_millis": self.nanos // 1_000_000,
        }
        if key in fields:
            return fields[key]
        if key == "rfc2822":
            return f"{when:%a}, {when.day} {when:%b %Y %H:%M:%S} +0000"
        if key == "rfc3339":
            return f"{when:%Y-%m-%dT%H:%M:%S}{_fraction(self.subsecond)}+00:00"
        if key == "elapsed":
            return TimeDelta(time.time_ns() - self.nanos)
        return None

    def lua_tostring(self) -> str:
        return f"{self.when:%Y-%m-%d %H:%M:%S}{_fraction(self.subsecond)} UTC"

    def lua_eq(self, other: Any) -> bool:
        return isinstance(other, Time) and other.nanos == self.nanos

    def lua_add(self, other: Any) -> Time:
        return Time(self.nanos + _delta("Time +", other).nanos)

    def lua_sub(self, other: Any) -> Time | TimeDelta:
        if isinstance(other, Time):
            return TimeDelta(self.nanos - other.nanos)
        if isinstance(other, TimeDelta):
            return Time(self.nanos - other.nanos)
        raise ConfigError("Time -: expected a Time or a TimeDelta")


@kumo_function("time.now")
def now() -> Time:
    return Time(time.time_ns())


@kumo_function("time.from_unix_timestamp")
def from_unix_timestamp(seconds: Any) -> Time:
    """Whole seconds (an integer) or fractional seconds (a float) since the epoch."""
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ConfigError(
            "kumo.time.from_unix_timestamp: timestamp must be either an integer or "
            "floating point number of seconds"
        )
    if isinstance(seconds, int):
        return Time(seconds * NANOS)
    whole = int(seconds)  # toward zero, as Rust's trunc; a negative fraction is dropped
    fraction = seconds - whole
    return Time(whole * NANOS + (int(fraction * NANOS) if fraction > 0 else 0))


@kumo_function("time.with_ymd_hms")
def with_ymd_hms(*fields: Any) -> Time:
    """(year, month, day, hour, minute, second) in UTC; an impossible date (month 13,
    February 30) is an error."""
    what = "kumo.time.with_ymd_hms"
    if len(fields) != 6:
        raise ConfigError(f"{what}: expected year, month, day, hour, minute, second")
    parts = [args.integer(what, v) for v in fields]
    try:
        year, month, day, hour, minute, second = parts
        when = datetime.datetime(year, month, day, hour, minute, second, tzinfo=datetime.UTC)
    except ValueError as exc:
        raise ConfigError(f"{what}: {exc}") from exc
    return _from_datetime(when, 0)


def _from_datetime(when: datetime.datetime, nanos: int) -> Time:
    delta = when - _EPOCH
    return Time((delta.days * 86_400 + delta.seconds) * NANOS + nanos)


_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)


@kumo_function("time.parse_rfc3339")
def parse_rfc3339(value: Any) -> Time:
    """`2000-01-02T03:04:05+00:00`, `...Z`, with an optional fraction."""
    what = "kumo.time.parse_rfc3339"
    text = args.text(what, value)
    match = _RFC3339.fullmatch(text)
    if match is None:
        raise ConfigError(f"{what}: {text!r} is not an RFC 3339 timestamp")
    year, month, day, hour, minute, second, fraction, zulu, sign, zh, zm = match.groups()
    try:
        when = datetime.datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second),
            tzinfo=datetime.UTC,
        )  # fmt: skip
    except ValueError as exc:
        raise ConfigError(f"{what}: {text!r}: {exc}") from exc
    if not zulu:
        offset = datetime.timedelta(hours=int(zh), minutes=int(zm))
        when = when - offset if sign == "+" else when + offset
    nanos = int((fraction or "0")[:9].ljust(9, "0"))
    return _from_datetime(when, nanos)


@kumo_function("time.parse_rfc2822")
def parse_rfc2822(value: Any) -> Time:
    """`Sun, 2 Jan 2000 03:04:05 +0000` (a message Date header)."""
    what = "kumo.time.parse_rfc2822"
    text = args.text(what, value)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError) as exc:
        raise ConfigError(f"{what}: {text!r} is not an RFC 2822 date") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return _from_datetime(when.astimezone(datetime.UTC), 0)


@kumo_function("time.parse_duration")
def parse_duration(value: Any) -> TimeDelta:
    """Signed integer seconds, float seconds (not negative), or a string like `5 minutes`."""
    what = "kumo.time.parse_duration"
    if isinstance(value, int) and not isinstance(value, bool):
        return TimeDelta(value * NANOS)
    seconds = parse_duration_text(value, what=what)
    return TimeDelta(round(seconds * NANOS))


# user_lua_latency{label}: the histogram `start_timer` feeds (KumoMTA's metric and buckets)
TIMER_REGISTRY = CollectorRegistry(auto_describe=True)
USER_LUA_LATENCY = Histogram(
    "user_lua_latency",
    "how long something user-defined took to run in your lua policy",
    ["label"],
    registry=TIMER_REGISTRY,
)


class Timer(LuaObject):
    """`kumo.time.start_timer(label)`: `:done()` (or the end of a `<close>` scope) records the
    seconds since the start once and returns them; later calls return nil."""

    lua_name: ClassVar[str] = "Timer"
    lua_methods: ClassVar[frozenset[str]] = frozenset({"done"})

    def __init__(self, label: str) -> None:
        self.label = label
        self.started: float | None = time.perf_counter()

    def done(self) -> float | None:
        if self.started is None:
            return None
        elapsed = time.perf_counter() - self.started
        self.started = None
        USER_LUA_LATENCY.labels(self.label).observe(elapsed)
        return elapsed

    def lua_close(self) -> None:
        self.done()


@kumo_function("time.start_timer")
def start_timer(label: Any) -> Timer:
    return Timer(args.text("kumo.time.start_timer", label, name="label"))
