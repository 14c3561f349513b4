"""core.schedule: the JSON form of scheduling constraints and the next allowed time (KumoMTA's
own cases among them)."""

from __future__ import annotations

import datetime

import pytest

from kumoclient.core.schedule import (
    allowed,
    expiry,
    next_allowed,
    parse_rfc3339,
    parse_schedule,
    schedule_json,
    utc_text,
)

PHOENIX = {"dow": "Mon,Wed", "tz": "America/Phoenix", "start": "09:00:00", "end": "17:00:00"}


def at(text: str) -> float:
    return datetime.datetime.fromisoformat(text).timestamp()


def phoenix(when: float) -> str:
    zone = datetime.timezone(datetime.timedelta(hours=-7))  # Arizona keeps MST all year
    return datetime.datetime.fromtimestamp(when, zone).strftime("%a %Y-%m-%d %H:%M:%S")


def test_the_json_form_round_trips() -> None:
    value = {**PHOENIX, "first_attempt": "1996-12-19T16:39:57-08:00"}
    assert schedule_json(parse_schedule(value)) == value
    reordered = {**PHOENIX, "dow": "wednesday,MON"}
    assert schedule_json(parse_schedule(reordered)) == PHOENIX
    assert schedule_json(parse_schedule({"expires": "2025-03-14T21:10:49Z"})) == {
        "expires": "2025-03-14T21:10:49+00:00"
    }


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ({"first_attempt": "09:00:00"}, "first_attempt: '09:00:00' is not an RFC 3339"),
        (  # the first example of KumoMTA's set_scheduling page has a stray `:00`
            {"first_attempt": "2023-03-01T17:00:00:00-08:00"},
            "is not an RFC 3339 date and time",
        ),
        (
            {"tz": "America/Phoenix", "end": "17:00:00", "start": "09:00:00"},
            "scheduling restrictions requires all restriction fields to be present. dow is missing",
        ),
        (
            {"tz": "America/Phoenix", "start": "09:00:00"},
            "requires all restriction fields to be present. dow, end are missing",
        ),
        (
            {
                "dow": "Mon,Tue,Wed,Thu,Fri,Sat,Sun",
                "tz": "Etc/UTC",
                "end": "20:57:49",
                "start": "21:10:49",
                "first_attempt": "2025-03-14T21:10:49Z",
            },
            "'start' must be before 'end' and define a time window within a given day. "
            "start=21:10:49, end=20:57:49",
        ),
        ({**PHOENIX, "dow": "Wed,Sumday"}, "invalid day 'Sumday'"),
        ({**PHOENIX, "dow": "Mon, Wed"}, "invalid day ' Wed'"),
        ({**PHOENIX, "tz": "PST"}, "tz: 'PST' is not an IANA time zone name"),
        ({**PHOENIX, "start": "9am"}, "start: expected a time of day as HH:MM:SS"),
        ({**PHOENIX, "colour": "red"}, "invalid field name colour"),
        ("Mon", "expected a table of scheduling parameters"),
    ],
)
def test_bad_schedules_are_refused_with_kumomtas_reasons(value: object, error: str) -> None:
    with pytest.raises(ValueError, match=error.replace("(", r"\(").replace(")", r"\)")):
        parse_schedule(value)


def test_first_attempt_delays_an_earlier_time() -> None:
    schedule = parse_schedule({"first_attempt": "2023-03-20T16:39:57-08:00"})
    first = at("2023-03-20T16:39:57-08:00")
    assert next_allowed(schedule, at("2023-03-20T08:00:00-08:00")) == first
    assert next_allowed(schedule, first + 5) == first + 5
    assert not allowed(schedule, first - 1)
    assert allowed(schedule, first)


@pytest.mark.parametrize(
    ("dow", "now", "expected"),
    [
        # KumoMTA's cases: a Tuesday morning rounds into Wednesday 09:00 ...
        ("Mon,Wed", "2023-03-28T08:00:00-08:00", "Wed 2023-03-29 09:00:00"),
        # ... a Monday after hours into Friday, later that week
        ("Mon,Fri", "2023-03-27T18:00:00-08:00", "Fri 2023-03-31 09:00:00"),
        # inside the window: unchanged; before it: its start, the same day
        ("Mon,Wed", "2023-03-27T10:30:00-07:00", "Mon 2023-03-27 10:30:00"),
        ("Mon,Wed", "2023-03-27T06:00:00-07:00", "Mon 2023-03-27 09:00:00"),
        # the end itself is outside; the next window is a week away
        ("Mon", "2023-03-27T17:00:00-07:00", "Mon 2023-04-03 09:00:00"),
    ],
)
def test_a_time_outside_the_window_moves_to_the_next_start(
    dow: str, now: str, expected: str
) -> None:
    schedule = parse_schedule({**PHOENIX, "dow": dow})
    moved = next_allowed(schedule, at(now))
    assert phoenix(moved) == expected
    assert allowed(schedule, moved)


def test_a_window_on_a_day_of_a_dst_change() -> None:
    """Europe/Berlin skips 02:00-03:00 on 2024-03-31: a window starting then is skipped on
    that day; the next day's start counts."""
    schedule = parse_schedule(
        {"dow": "Sun,Mon", "tz": "Europe/Berlin", "start": "02:30:00", "end": "04:00:00"}
    )
    moved = next_allowed(schedule, at("2024-03-30T23:00:00+00:00"))
    assert utc_text(moved) == "2024-04-01T00:30:00Z"  # Monday 02:30 CEST (+02:00)


def test_no_schedule_changes_nothing() -> None:
    assert next_allowed(None, 12.5) == 12.5
    assert allowed(None, 12.5)
    assert expiry(None) is None
    assert expiry(parse_schedule(PHOENIX)) is None
    assert expiry(parse_schedule({"expires": "2030-01-01T00:00:00Z"})) == at(
        "2030-01-01T00:00:00+00:00"
    )


def test_rfc3339_times() -> None:
    assert parse_rfc3339("2024-03-08T17:51:42.481711Z").timestamp() == pytest.approx(
        1709920302.481711
    )
    assert utc_text(at("2024-03-08T17:51:42+00:00")) == "2024-03-08T17:51:42Z"
    with pytest.raises(ValueError, match="not an RFC 3339"):
        parse_rfc3339("2024-03-08 17:51")
    with pytest.raises(ValueError, match="not a valid date"):
        parse_rfc3339("2024-02-30T00:00:00Z")
