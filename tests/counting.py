"""Counting events in time, for rate-limit tests (counts, not timed assertions)."""

from __future__ import annotations


def most_in_any_window(times: list[float], window: float) -> int:
    """The largest number of events inside any span of `window` seconds."""
    ordered = sorted(times)
    best = start = 0
    for end, moment in enumerate(ordered):
        while moment - ordered[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best
