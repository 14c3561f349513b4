"""Code → disposition, the rule table of SPEC 2.3 step 4."""

from __future__ import annotations

import pytest

from kumoclient.core.classify import classify
from kumoclient.records import Disposition

D, T, B = Disposition.DELIVERY, Disposition.TRANSIENT_FAILURE, Disposition.BOUNCE

TABLE = [
    (200, D),
    (250, D),
    (251, D),
    (299, D),
    (300, T),
    (354, T),
    (400, T),
    (421, T),
    (451, T),
    (452, T),
    (499, T),
    (503, T),
    (500, B),
    (502, B),
    (504, B),
    (550, B),
    (552, B),
    (554, B),
    (599, B),
    (0, B),
    (199, B),
    (600, B),
    (999, B),
    (65535, B),
]


@pytest.mark.parametrize(("code", "disposition"), TABLE)
def test_rule_table(code: int, disposition: Disposition) -> None:
    assert classify(code) is disposition
