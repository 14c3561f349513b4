"""The rate limiter, counted on a fake clock: a burst of `limit`, then one per interval."""

from __future__ import annotations

import pytest

from kumoclient.configs import Rate
from kumoclient.core.throttle import Throttle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def passed_by(throttle: Throttle, clock: Clock, until: float) -> int:
    """Events a greedy sender gets through within `until` seconds, taking each slot as soon
    as it opens (the first event at 0)."""
    sent = 0
    start = clock.now
    while True:
        clock.now += throttle.reserve()
        if clock.now - start > until:
            return sent
        sent += 1


@pytest.mark.parametrize(
    ("limit", "period", "span", "expected"),
    [
        (10, 1.0, 0.0, 10),  # the burst
        (10, 1.0, 0.95, 19),  # the burst, then one every 0.1 s
        (10, 1.0, 4.95, 59),
        (100, 1.0, 1.995, 299),
        (5000, 3600.0, 7.19, 5009),  # '5000/h': the burst, then one every 0.72 s
    ],
)
def test_a_greedy_sender_gets_the_burst_then_the_rate(
    limit: int, period: float, span: float, expected: int
) -> None:
    clock = Clock()
    throttle = Throttle(Rate(limit, period, f"{limit}/{period}"), clock)
    assert passed_by(throttle, clock, span) == expected


def test_concurrent_reservations_queue_up_in_order() -> None:
    clock = Clock()
    throttle = Throttle(Rate(2, 1.0, "2/s"), clock)
    waits = [throttle.reserve() for _ in range(5)]
    assert waits == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.5])


def test_an_idle_throttle_refills_its_burst_but_never_more() -> None:
    clock = Clock()
    throttle = Throttle(Rate(3, 1.0, "3/s"), clock)
    assert [throttle.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    clock.now += 60  # a long idle time does not bank more than one burst
    waits = [throttle.reserve() for _ in range(4)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3] == pytest.approx(1 / 3)


def test_a_quantity_waits_for_its_last_event() -> None:
    """3 per hour: a request for three passes at once; one more waits the 20 minutes of one
    interval; then two more wait for the second of them (the HTTP inject recipient limit)."""
    clock = Clock()
    throttle = Throttle(Rate(3, 3600.0, "3/h"), clock)
    assert throttle.reserve(3) == 0.0
    assert throttle.reserve(1) == pytest.approx(1200.0)
    assert throttle.reserve(2) == pytest.approx(3600.0)


def test_max_burst_lets_fewer_through_at_once() -> None:
    """`10/s,max_burst=2`: two at once, then one every 0.1 s."""
    clock = Clock()
    throttle = Throttle(Rate(10, 1.0, "10/s,max_burst=2", burst=2), clock)
    assert [throttle.reserve() for _ in range(4)] == pytest.approx([0.0, 0.0, 0.1, 0.2])
