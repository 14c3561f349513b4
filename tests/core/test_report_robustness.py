"""Damaged reports: whatever the bytes, the parsers answer a report, None or ReportError, never
another exception (a seeded, repeatable set of truncations and byte changes of every sample;
another exception fails the test by escaping it)."""

from __future__ import annotations

import random

import pytest

from kumoclient.core.arf_report import parse_arf
from kumoclient.core.dsn_report import parse_dsn
from kumoclient.errors import ReportError
from tests.core.reports import SAMPLES, sample

JUNK = [b"\x00", b"\xff", b"\r", b"\n", b"\n\n", b":", b";", b" ", b"=?utf-8?b?#?=", b"--"]


def damaged(data: bytes, seed: int) -> list[bytes]:
    """Truncations at 40 places, and 150 copies with a few bytes replaced, dropped or added."""
    chance = random.Random(seed)
    versions = [data[: len(data) * n // 40] for n in range(40)]
    for _ in range(150):
        copy = bytearray(data)
        for _ in range(chance.randint(1, 4)):
            at = chance.randrange(len(copy))
            action = chance.randrange(3)
            if action == 0:
                copy[at : at + 1] = chance.choice(JUNK)
            elif action == 1:
                del copy[at : at + chance.randint(1, 20)]
            else:
                copy[at:at] = chance.choice(JUNK)
        versions.append(bytes(copy))
    return versions


@pytest.mark.parametrize("name", SAMPLES)
def test_a_damaged_report_gives_a_report_none_or_report_error(name: str) -> None:
    outcomes = set()
    for version in damaged(sample(name), seed=len(name)):
        for parse in (parse_dsn, parse_arf):
            try:
                outcomes.add("report" if parse(version) is not None else "none")
            except ReportError:
                outcomes.add("error")
    # the damage reaches every path: reports that survive it, reports it breaks, and messages
    # it cut before they said what they are
    expected = (
        {"none"} if name == "constructed-yahoo-plain-notice.eml" else {"report", "none", "error"}
    )
    assert outcomes == expected
