"""The spool disk's least free space (`min_free_space`, `min_free_inodes`), measured on the
real filesystem of the test's directory."""

from __future__ import annotations

import os
from pathlib import Path

from kumoclient.configs import MinFree
from kumoclient.spool import Spool
from kumoclient.spool.space import SpaceCheck, SpaceLimits

NONE = MinFree(percent=0)


def test_a_limit_above_what_the_disk_has_is_a_problem_naming_it(tmp_path: Path) -> None:
    info = os.statvfs(tmp_path)
    available = info.f_bavail * info.f_frsize
    short = SpaceCheck(tmp_path, SpaceLimits(MinFree(amount=available * 2 + 2**30), NONE))
    problem = short.problem()
    assert problem is not None
    assert "space available but minimum is" in problem
    assert SpaceCheck(tmp_path, SpaceLimits(NONE, NONE)).problem() is None
    every = SpaceCheck(tmp_path, SpaceLimits(NONE, MinFree(percent=100)))
    if info.f_files:  # (a filesystem without inode counts has no inode limit)
        assert "inodes available but minimum is 100%" in (every.problem() or "")


def test_the_filesystem_is_asked_at_most_every_few_seconds(tmp_path: Path) -> None:
    clock = [0.0]
    check = SpaceCheck(tmp_path, SpaceLimits(NONE, NONE), clock=lambda: clock[0])
    assert check.problem() is None
    check.limits = SpaceLimits(MinFree(amount=2**62), NONE)  # (not seen before the next look)
    assert check.problem() is None
    clock[0] = 5.0
    assert check.problem() is not None


def test_the_stricter_of_two_spools_holds(tmp_path: Path) -> None:
    data = SpaceLimits(MinFree(percent=10), MinFree(amount=100))
    meta = SpaceLimits(MinFree(percent=20, amount=None), MinFree(percent=5))
    assert data.stricter(meta) == SpaceLimits(MinFree(percent=20), MinFree(5, 100))
    assert Spool(tmp_path / "spool").low_space() is None  # no least without define_spool
