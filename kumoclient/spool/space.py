"""The spool disk's free space and inodes against the policy's least (`min_free_space`,
`min_free_inodes` of `kumo.define_spool`): while either is short, no mail is taken, as KumoMTA
turns SMTP and HTTP injections away then.

The filesystem is asked (statvfs) at most every CHECK_INTERVAL seconds, by whoever asks
`problem()`; one error line is logged when the space runs short and one when it is back.
Percentages are of the blocks (inodes) available to unprivileged users, rounded down, as
KumoMTA counts them; a filesystem that reports no inodes at all (btrfs) has no inode limit.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from kumoclient import logs
from kumoclient.configs import MinFree

log = logs.get_logger(__name__)

CHECK_INTERVAL = 5.0


@dataclass(frozen=True, slots=True)
class SpaceLimits:
    """The least free space and inodes the spool's disk must keep."""

    space: MinFree
    inodes: MinFree

    def stricter(self, other: SpaceLimits) -> SpaceLimits:
        """Both limits in force at once (the data and the meta spool, kept on one disk here):
        the one of each kind that asks more, for the percentage and the amount apart."""
        return SpaceLimits(_both(self.space, other.space), _both(self.inodes, other.inodes))


def _both(a: MinFree, b: MinFree) -> MinFree:
    percent = max((p for p in (a.percent, b.percent) if p is not None), default=None)
    amount = max((n for n in (a.amount, b.amount) if n is not None), default=None)
    return MinFree(percent, amount)


def _short(what: str, available: int, total: int, least: MinFree) -> str | None:
    if total <= 0:
        return None
    percent = available * 100 // total
    if least.percent is not None and percent < least.percent:
        return f"{percent}% {what} available but minimum is {least.percent}%"
    if least.amount is not None and available < least.amount:
        return f"{available:,} {what} available but minimum is {least.amount:,}"
    return None


class SpaceCheck:
    """`problem()`: why the spool's disk cannot take mail now, or None (see the module)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        limits: SpaceLimits,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.limits = limits
        self._clock = clock
        self._checked = float("-inf")
        self._problem: str | None = None

    def problem(self) -> str | None:
        """What is short (`'4% space available but minimum is 10%'`), or None."""
        now = self._clock()
        if now - self._checked >= CHECK_INTERVAL:
            self._checked = now
            self._update(self.measure())
        return self._problem

    def measure(self) -> str | None:
        """Ask the filesystem now; what is short, or None (an unanswered statvfs: None, the
        writes themselves will fail if the disk does)."""
        try:
            info = os.statvfs(self.path)
        except OSError as exc:
            log.warning("cannot measure the spool's free space", path=str(self.path), error=exc)
            return None
        space = (info.f_bavail * info.f_frsize, info.f_blocks * info.f_frsize)
        problems = [
            _short("space", *space, self.limits.space),
            _short("inodes", info.f_favail, info.f_files, self.limits.inodes),
        ]
        found = [p for p in problems if p is not None]
        return f"spool {self.path} has issue(s): {', '.join(found)}" if found else None

    def _update(self, problem: str | None) -> None:
        if problem is not None and self._problem is None:
            log.error("spool disk too full: no mail is taken", problem=problem)
        elif problem is None and self._problem is not None:
            log.info("spool disk has recovered: mail is taken again", path=str(self.path))
        self._problem = problem
