"""Reception's incoming/ pick-up: malformed drop files are quarantined, the rest go on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kumoclient.engine.reception import Reception
from kumoclient.logs import RecordLog
from kumoclient.policy.memoize import MemoRegistry
from kumoclient.policy.runtime import PolicyHolder
from kumoclient.spool import Spool, Submission
from tests.conftest import record_writer

BAD_HEADERS = [
    {"sender": "a@x.com", "recipients": ["b@x.com", "c@x.com"], "meta": [{}], "created": 1},
    {"sender": "a@x.com", "recipients": [42], "created": 1},
    {"sender": "a@x.com", "recipients": ["b@x.com"], "meta": ["nope"], "created": 1},
    {"sender": "a@x.com", "recipients": [], "created": 1},
]


@pytest.mark.parametrize("header", BAD_HEADERS)
async def test_bad_drop_is_quarantined_and_good_ones_are_taken(
    tmp_path: Path, header: dict[str, object]
) -> None:
    policy = tmp_path / "policy.lua"
    policy.write_text("")
    spool = Spool(tmp_path / "spool")
    await spool.start()
    records = RecordLog(tmp_path / "logs")
    await records.open()
    try:
        reception = Reception(
            PolicyHolder(policy, memo=MemoRegistry()), spool, record_writer(spool, records)
        )
        bad = spool.incoming / f"{'0' * 28}.msg"
        bad.write_bytes(json.dumps(header).encode() + b"\nSubject: x\r\n\r\nbody\r\n")
        ids = spool.drops.drop(Submission("a@x.com", ("ok@x.com",), b"Subject: y\r\n\r\nfine\r\n"))
        assert await reception.pick_up_drops() == 1
        assert spool.ids() == ids
        assert (spool.quarantine / bad.name).exists()
        assert list(spool.incoming.iterdir()) == []
    finally:
        await spool.close()
        await records.close()
