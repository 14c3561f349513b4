"""Issue 15 item 8, SPEC 1 invariant 3: a daemon killed with SIGKILL again and again while it
delivers sends a message twice only when the sink had answered its final dot with 250 before
the kill, and not even then once its Delivery record had reached the log; every message
arrives (tests/duplicates.py has the sink, the loop and the checks; bench/duplicates.py
reports the figures)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from tests.duplicates import Acceptance, Run, judge, kill_loop, running_sink, summary


@pytest.mark.slow
def test_only_messages_whose_final_250_came_before_a_kill_are_delivered_twice(
    tmp_path: Path,
) -> None:
    with running_sink() as (sink, port):
        run = kill_loop(
            tmp_path / "data", sink, port, messages=2000, kills=10, rng=random.Random(15)
        )
    judgement = judge(run)
    assert judgement.violations == [], summary(judgement)
    assert {a.recipient for a in run.accepted} == set(run.recipients)  # nothing lost
    # a message whose Delivery record had reached the log before the kill left the spool at
    # the next start instead of going out again (engine/recovery.py)
    assert judgement.record_survived == 0, summary(judgement)
    lives = {a.life for a in run.accepted}
    assert lives == set(range(len(run.kills) + 1)), "every life delivered: kills mid-drain"


def test_the_judge_reports_each_kind_of_violation(tmp_path: Path) -> None:
    """The checks can fail: a lost message, a message twice in one life, a message twice
    though its first copy came in the last life (no kill cut it off)."""
    accepted = [
        Acceptance("twice-in-life-0", 0, 1.0),
        Acceptance("twice-in-life-0", 0, 1.1),
        Acceptance("after-the-last-kill", 3, 5.0),  # life 3, the last, was never killed
        Acceptance("after-the-last-kill", 3, 5.1),
        Acceptance("in-three-lives", 1, 3.0),
        Acceptance("in-three-lives", 2, 4.0),
        Acceptance("in-three-lives", 3, 5.0),  # two kills, two honest duplicates
        Acceptance("cut-off", 0, 1.9),
        Acceptance("cut-off", 1, 2.5),  # accepted in life 0, cut off by the first kill
    ]
    run = Run(
        ["twice-in-life-0", "after-the-last-kill", "in-three-lives", "cut-off", "lost"],
        accepted,
        [2.0, 3.5, 4.5],
        tmp_path,
    )
    judgement = judge(run)
    assert sorted(judgement.violations) == [
        "after-the-last-kill: accepted twice in one life: [3, 3]",
        "after-the-last-kill: copies in lives [3, 3] (3 kills)",
        "lost: never delivered",
        "twice-in-life-0: accepted twice in one life: [0, 0]",
    ]
    assert judgement.duplicates_per_kill == [2, 1, 1]
