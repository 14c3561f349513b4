"""kumo.time.*: the reference examples, chrono's formats, arithmetic, the timer."""

from __future__ import annotations

import datetime

import pytest

from kumoclient.errors import ConfigError, PolicyLoadError
from kumoclient.policy.modules import times
from kumoclient.policy.modules.strftime import format_time
from tests.policy.conftest import LoadPolicy


def test_reference_example_of_with_ymd_hms(load_policy: LoadPolicy) -> None:
    load_policy(
        """
        local t = kumo.time.with_ymd_hms(2000, 01, 02, 03, 04, 05)
        assert(tostring(t) == '2000-01-02 03:04:05 UTC')
        assert(t.year == 2000)
        assert(t.month == 1)
        assert(t.day == 2)
        assert(t.hour == 3)
        assert(t.minute == 4)
        assert(t.second == 5)
        assert(t.unix_timestamp == 946782245)
        assert(t.rfc2822 == 'Sun, 2 Jan 2000 03:04:05 +0000')
        assert(t.rfc3339 == '2000-01-02T03:04:05+00:00')
        """
    )


def test_reference_examples_of_parsing_and_deltas(load_policy: LoadPolicy) -> None:
    load_policy(
        """
        local a = kumo.time.parse_rfc2822 'Sun, 2 Jan 2000 03:04:05 +0000'
        local b = kumo.time.parse_rfc3339 '2000-01-02T03:04:05+00:00'
        assert(a == b)
        assert(a.unix_timestamp == 946782245)
        local delta1 = kumo.time.parse_duration(20)
        local delta2 = kumo.time.parse_duration '10 seconds'
        assert((delta2 - delta1).seconds == -10)
        assert((delta1 - delta2).seconds == 10)
        local delta = kumo.time.parse_duration '5m'
        assert(tostring(delta) == '5m' and delta.human == '5m')
        local now = kumo.time.now()
        assert(now.year >= 2024)
        assert(type(now.unix_timestamp) == 'number')
        local s = now:format '%H:%M:%S'
        assert(#s == 8)
        """
    )


def test_time_arithmetic_and_fields(load_policy: LoadPolicy) -> None:
    load_policy(
        """
        local t = kumo.time.from_unix_timestamp(1.5)
        assert(tostring(t) == '1970-01-01 00:00:01.500 UTC', tostring(t))
        assert(t.unix_timestamp_millis == 1500)
        local later = t + kumo.time.parse_duration '1h 30m'
        assert(later.rfc3339 == '1970-01-01T01:30:01.500+00:00', later.rfc3339)
        assert((later - t).human == '1h 30m')
        assert((later - kumo.time.parse_duration(1)).second == 0)
        assert(kumo.time.parse_duration(1.25).milliseconds == 1250)
        assert(kumo.time.parse_duration('1ms').nanoseconds == 1000000)
        assert(t.elapsed.seconds > 0)
        local x = kumo.time.parse_rfc3339 '2000-01-02T05:04:05.123456+02:00'
        assert(tostring(x) == '2000-01-02 03:04:05.123456 UTC', tostring(x))
        """
    )


def test_start_timer_records_once_and_closes(load_policy: LoadPolicy) -> None:
    before = times.TIMER_REGISTRY.get_sample_value("user_lua_latency_count", {"label": "t1"}) or 0
    runtime = load_policy(
        """
        local timer = kumo.time.start_timer 't1'
        FIRST = timer:done()
        SECOND = timer:done()
        do
          local auto <close> = kumo.time.start_timer 't1'
        end
        """
    )
    g = runtime._lua.globals()
    assert g.FIRST >= 0
    assert g.SECOND is None
    after = times.TIMER_REGISTRY.get_sample_value("user_lua_latency_count", {"label": "t1"})
    assert after == before + 2


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("%Y-%m-%d %H:%M:%S", "2001-07-08 00:34:05"),
        ("%e|%-d|%_m|%k|%l|%I|%P|%p", " 8|8| 7| 0|12|12|am|AM"),
        ("%a %A %b %B %h", "Sun Sunday Jul July Jul"),
        ("%j %U %W %G %g %V %u %w", "189 27 27 2001 01 27 7 0"),
        (
            "%.f|%.3f|%.6f|%.9f|%3f|%6f|%9f|%f",
            ".026490|.026|.026490|.026490000|026|026490|026490000|026490000",
        ),
        ("%z|%:z|%::z|%:::z|%Z", "+0000|+00:00|+00:00:00|+00|UTC"),
        ("%D|%F|%T|%R|%r|%v", "07/08/01|2001-07-08|00:34:05|00:34|12:34:05 AM| 8-Jul-2001"),
        ("%c", "Sun Jul  8 00:34:05 2001"),
        ("%+", "2001-07-08T00:34:05.026490+00:00"),
        ("%s|%%|%t|%n|%Q", "994552445|%|\t|\n|%Q"),
    ],
)
def test_chrono_strftime(spec: str, expected: str) -> None:
    when = datetime.datetime(2001, 7, 8, 0, 34, 5)
    assert format_time(when, 26_490_000, 994552445, spec) == expected


@pytest.mark.parametrize(
    ("nanos", "human"),
    [
        (0, "0s"),
        (9420 * 10**9 + 10**6, "2h 37m 1ms"),
        (86_400 * 10**9, "1day"),
        (2 * 86_400 * 10**9 + 1, "2days 1ns"),
        (31_557_600 * 10**9, "1year"),
        (1_500_000_000, "1s 500ms"),
    ],
)
def test_human_form_is_humantimes(nanos: int, human: str) -> None:
    assert times.TimeDelta(nanos).human() == human


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("kumo.time.parse_rfc3339('2000-01-02 nope')", r"is not an RFC 3339 timestamp"),
        ("kumo.time.parse_rfc2822('yesterday')", r"is not an RFC 2822 date"),
        ("kumo.time.with_ymd_hms(2000, 13, 1, 0, 0, 0)", r"with_ymd_hms: month must be in 1\.\.12"),
        ("kumo.time.parse_duration('5 lightyears')", r"unknown unit 'lightyears'"),
        ("kumo.time.from_unix_timestamp('1')", r"timestamp must be either an integer"),
        (
            "local _ = tostring(kumo.time.parse_duration(-1))",
            r"negative duration has no human form",
        ),
        ("local _ = kumo.time.now() + 1", r"Time \+: expected a TimeDelta"),
    ],
)
def test_errors_name_the_policy_line(load_policy: LoadPolicy, code: str, message: str) -> None:
    with pytest.raises(PolicyLoadError, match=message) as info:
        load_policy(f"-- line 1\n{code}\n")
    assert "policy.lua:2: " in str(info.value)


def test_out_of_range_timestamp_is_an_error() -> None:
    with pytest.raises(ConfigError, match="invalid timestamp"):
        times.from_unix_timestamp(10**12)
