"""Durations: every unit, spaces, fractions, combinations, and the errors."""

from __future__ import annotations

import pytest

from kumoclient.core.duration import format_duration, parse_duration
from kumoclient.errors import DurationError

DAY = 86400.0

VALID = [
    (0, 0.0),
    (5, 5.0),
    (2.5, 2.5),
    ("5 minutes", 300.0),
    ("5minutes", 300.0),
    ("1h 30m", 5400.0),
    ("1h30m", 5400.0),
    ("4.2s", 4.2),
    ("20m", 1200.0),
    ("  7 days ", 7 * DAY),
    ("100ns", 100e-9),
    ("3us", 3e-6),
    ("250ms", 0.25),
    ("1s", 1.0),
    ("2 sec", 2.0),
    ("2 secs", 2.0),
    ("1 second", 1.0),
    ("3 seconds", 3.0),
    ("1m", 60.0),
    ("2 min", 120.0),
    ("2 mins", 120.0),
    ("1 minute", 60.0),
    ("1h", 3600.0),
    ("1 hr", 3600.0),
    ("2 hrs", 7200.0),
    ("1 hour", 3600.0),
    ("2 hours", 7200.0),
    ("1d", DAY),
    ("1 day", DAY),
    ("2 days", 2 * DAY),
    ("1w", 7 * DAY),
    ("1 wk", 7 * DAY),
    ("2 wks", 14 * DAY),
    ("1 week", 7 * DAY),
    ("2 weeks", 14 * DAY),
    ("1M", 30.44 * DAY),
    ("1 month", 30.44 * DAY),
    ("2 months", 60.88 * DAY),
    ("1y", 365.25 * DAY),
    ("1 yr", 365.25 * DAY),
    ("2 yrs", 730.5 * DAY),
    ("1 year", 365.25 * DAY),
    ("2 years", 730.5 * DAY),
    ("1d 2h 3m 4s", DAY + 7200 + 180 + 4),
    ("1.5h", 5400.0),
]


@pytest.mark.parametrize(("text", "seconds"), VALID)
def test_parses_to_seconds(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def test_units_are_case_sensitive_month_versus_minute() -> None:
    assert parse_duration("1M") == pytest.approx(30.44 * DAY)
    assert parse_duration("1m") == 60.0


INVALID = [
    ("300", "has no unit"),
    ("0", "has no unit"),
    ("5 fortnights", "unknown unit 'fortnights'"),
    ("5 Minutes", "unknown unit 'Minutes'"),
    ("1H", "unknown unit 'H'"),
    ("", "empty"),
    ("   ", "empty"),
    ("m", "expected <number><unit>"),
    ("-5s", "expected <number><unit>"),
    ("5m 10", "has no unit"),
    ("1.2.3s", "has no unit"),
    (-1, "cannot be -1"),
    (True, "boolean"),
    (None, "got NoneType"),
    ({"a": 1}, "got dict"),
]


@pytest.mark.parametrize(("value", "message"), INVALID)
def test_rejects_with_a_clear_message(value: object, message: str) -> None:
    with pytest.raises(DurationError, match=message.replace("(", r"\(")) as info:
        parse_duration(value, what="retry_interval")
    assert str(info.value).startswith("retry_interval: ")


@pytest.mark.parametrize("seconds", [0.25, 1.0, 59.0, 60.0, 5400.0, 90061.0, 4.2])
def test_format_round_trips(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)
