"""SPEC 2.4 retry schedules, as whole lists."""

from __future__ import annotations

import pytest

from kumoclient.core.retry import expires, jitter_span, next_delay, schedule

MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0


def test_the_default_schedule_doubles_from_20_minutes_until_seven_days() -> None:
    delays = schedule(20 * MINUTE, None, 7 * DAY)
    assert delays == [1200, 2400, 4800, 9600, 19200, 38400, 76800, 153600]
    assert sum(delays) <= 7 * DAY < sum(delays) + 307200  # the next wait would pass it


def test_max_retry_interval_caps_the_doubling() -> None:
    assert schedule(20 * MINUTE, 2 * HOUR, 12 * HOUR) == [1200, 2400, 4800, 7200, 7200, 7200, 7200]


def test_the_one_second_schedule_of_the_expiry_test() -> None:
    # retry_interval 1s, max_age 6s: failures at 0, 1, 3; the next wait (4s) would pass 6s
    assert schedule(1.0, None, 6.0) == [1.0, 2.0]


def test_each_attempt_duration_counts_toward_the_age() -> None:
    assert schedule(10.0, None, 100.0, attempt_duration=5.0) == [10.0, 20.0, 40.0]


@pytest.mark.parametrize(
    ("interval", "span"), [(1.0, 0.05), (20 * MINUTE, 60.0), (10 * MINUTE, 30.0), (HOUR, 60.0)]
)
def test_jitter_is_a_twentieth_of_the_interval_up_to_a_minute(interval: float, span: float) -> None:
    assert jitter_span(interval) == span
    assert next_delay(0, interval, None, 0.0) == interval - span / 2
    assert next_delay(0, interval, None, 0.5) == interval
    assert next_delay(0, interval, None, 0.999999) == pytest.approx(interval + span / 2, abs=1e-3)


def test_expiry_is_strictly_past_max_age() -> None:
    assert not expires(age=3.0, delay=3.0, max_age=6.0)
    assert expires(age=3.0, delay=3.1, max_age=6.0)


def test_huge_attempt_counts_stay_finite() -> None:
    assert next_delay(10_000, 1.0, None) > 1e18
    assert next_delay(10_000, 1.0, 60.0) == 60.0
