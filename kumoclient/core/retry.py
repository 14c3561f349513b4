"""Retry schedule and expiry (SPEC 2.4): the delay after a transient failure, and when to stop.

After the n-th transient failure (n = attempts before it, from 0):

    delay = min(retry_interval * 2**n, max_retry_interval) + jitter
    jitter uniform in [-span/2, +span/2], span = min(retry_interval / 20, 60 s)

The message is not requeued when `age + delay > max_age`: it expires instead. `unit` is a
number in [0, 1) (a random draw); 0.5 means no jitter, which is what schedules are tested with.
"""

from __future__ import annotations

MAX_JITTER_SPAN = 60.0
_MAX_EXPONENT = 64  # 2**64 intervals outlast any max_age; keeps the float finite


def base_delay(attempts: int, retry_interval: float, max_retry_interval: float | None) -> float:
    """The delay before the jitter: the interval doubled per earlier failure, capped."""
    delay = retry_interval * 2.0 ** min(attempts, _MAX_EXPONENT)
    if max_retry_interval is not None:
        delay = min(delay, max_retry_interval)
    return delay


def jitter_span(retry_interval: float) -> float:
    """The width of the jitter window around the delay."""
    return min(retry_interval / 20.0, MAX_JITTER_SPAN)


def next_delay(
    attempts: int,
    retry_interval: float,
    max_retry_interval: float | None,
    unit: float = 0.5,
) -> float:
    """Seconds until the next attempt after the failure of attempt number `attempts`."""
    delay = base_delay(attempts, retry_interval, max_retry_interval)
    return max(0.0, delay + (unit - 0.5) * jitter_span(retry_interval))


def expires(age: float, delay: float, max_age: float) -> bool:
    """True when waiting `delay` more would take a message of `age` seconds past `max_age`."""
    return age + delay > max_age


def schedule(
    retry_interval: float,
    max_retry_interval: float | None,
    max_age: float,
    attempt_duration: float = 0.0,
) -> list[float]:
    """The whole retry schedule (no jitter) of a message that always fails transiently.

    Each attempt is assumed to take `attempt_duration` seconds. The list holds the delays
    that are waited; the message expires after the last one.
    """
    delays: list[float] = []
    age = 0.0
    while True:
        age += attempt_duration
        delay = next_delay(len(delays), retry_interval, max_retry_interval)
        if expires(age, delay, max_age):
            return delays
        delays.append(delay)
        age += delay


def expired(created: float, max_age: float, now: float, own_expiry: float | None = None) -> bool:
    """True when a message created at `created` has reached `max_age`, or its own expiry time
    (`msg:set_scheduling{expires}`, which replaces max_age) when it has one: it expires when
    next taken for an attempt, without one."""
    if own_expiry is not None:
        return now >= own_expiry
    return now - created >= max_age
