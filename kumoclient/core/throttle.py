"""Rate limits (`max_message_rate`, `max_connection_rate`) as a generic cell rate algorithm.

A `Rate` of `limit` per `period` lets `limit` events through at once (the burst, as KumoMTA's
throttles do; its `max_burst` sets another), then one every `period / limit` seconds. Over any
span of `t` seconds from the first event, at most `burst + t * limit / period` events pass.
`reserve()` books the next slot (or the next `quantity` slots: an HTTP request's recipients)
and says how long to wait for it, so callers waiting concurrently queue up in order.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from kumoclient.configs import Rate

_EPSILON = 1e-9  # float rounding of summed intervals is not a wait


class Throttle:
    """One rate limit; `clock` is monotonic seconds."""

    def __init__(self, rate: Rate, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._interval = rate.period / rate.limit
        self._tolerance = tolerance(rate)
        self._clock = clock
        self._tat = float("-inf")  # theoretical arrival time of the next event

    def reserve(self, quantity: int = 1) -> float:
        """Book the next `quantity` events; seconds to wait before the last of them may
        happen (0.0: now)."""
        now = self._clock()
        tat = max(self._tat, now)
        self._tat = tat + self._interval * quantity
        wait = tat + self._interval * (quantity - 1) - self._tolerance - now
        return wait if wait > _EPSILON else 0.0


def tolerance(rate: Rate) -> float:
    """How far ahead of its time an event may pass: a burst of `rate.burst` events (by default
    `rate.limit`)."""
    interval = rate.period / rate.limit
    if rate.burst is None:
        return rate.period - interval
    return (rate.burst - 1) * interval
