"""The incoming/ drop folder: atomic drops, pick-up reads small and large files alike."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kumoclient.core import msgid
from kumoclient.spool import Spool, SpoolEntryCorrupt, SpoolError, Submission, drops
from tests.spool.common import submission


async def test_drop_is_atomic_and_idempotent_to_pick_up(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    ids = spool.drop(submission("a@x.com", "b@x.com"))
    (path,) = spool.pending_drops()
    sub, _created = await spool.read_drop(path)
    assert [msgid.message_id(sub.base, i) for i in range(2)] == ids
    assert not list(spool.incoming.glob(".*"))
    again, _ = await spool.read_drop(path)
    assert again == sub


@pytest.mark.parametrize("size", [0, drops.READ_ON_LOOP - 200, drops.READ_ON_LOOP * 3])
async def test_a_drop_file_reads_back_as_dropped_whatever_its_size(
    tmp_path: Path, size: int
) -> None:
    """Small files are read on the loop, larger ones with aiofiles: the same submission."""
    spool = Spool(tmp_path / "spool")
    content = b"Subject: x\r\n\r\n" + os.urandom(size)
    dropped = Submission(
        "s@example.com",
        ("a@x.com", "b@y.com"),
        content,
        ({"tenant": "t"}, {}),
        reception_protocol="Inject",
    )
    spool.drop(dropped)
    (path,) = spool.pending_drops()
    read, created = await spool.read_drop(path)
    assert read == Submission(
        dropped.sender, dropped.recipients, content, dropped.meta, path.stem, "Inject"
    )
    assert created == pytest.approx(msgid.created_at(msgid.message_id(path.stem, 0)), abs=0.001)


@pytest.mark.parametrize("padding", [0, drops.READ_ON_LOOP * 2])
async def test_corrupt_drop_raises(tmp_path: Path, padding: int) -> None:
    spool = Spool(tmp_path / "spool")
    path = spool.incoming / f"{'a' * 28}.msg"
    path.write_bytes(b"not json" + b" " * padding + b"\nbody")
    with pytest.raises(SpoolEntryCorrupt, match="corrupt incoming file"):
        await spool.read_drop(path)


@pytest.mark.parametrize(
    "header",
    [
        {"sender": 1, "recipients": ["a@x.com"], "created": 1.0},
        {"sender": "s@x.com", "recipients": ["no-at-sign"], "created": 1.0},
        {"sender": "s@x.com", "recipients": [], "created": 1.0},
        {"sender": "s@x.com", "recipients": ["a@x.com"], "meta": [{"tenant": 1}], "created": 1.0},
        {"sender": "s@x.com", "recipients": ["a@x.com"], "meta": 5, "created": 1.0},
        {"sender": "s@x.com", "recipients": ["a@x.com"], "created": "yesterday"},
        {"sender": "s@x.com", "recipients": ["a@x.com"]},
        ["s@x.com"],
    ],
)
async def test_drop_headers_of_the_wrong_shape_are_corrupt(tmp_path: Path, header: object) -> None:
    spool = Spool(tmp_path / "spool")
    path = spool.incoming / f"{'b' * 28}.msg"
    path.write_bytes(json.dumps(header).encode() + b"\nbody")
    with pytest.raises(SpoolEntryCorrupt, match="corrupt incoming file"):
        await spool.read_drop(path)


async def test_a_drop_file_without_a_header_line_is_corrupt(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    path = spool.incoming / f"{'c' * 28}.msg"
    path.write_bytes(b'{"sender": "s@x.com"}')
    with pytest.raises(SpoolEntryCorrupt, match="no header line"):
        await spool.read_drop(path)


async def test_a_file_inject_does_not_write_is_corrupt(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    path = spool.incoming / "mine.msg"
    path.write_bytes(b"{}\n")
    assert spool.pending_drops() == [path]
    with pytest.raises(SpoolEntryCorrupt, match="not a name `kumoclient inject` writes"):
        await spool.read_drop(path)


def test_a_submission_the_pick_up_would_refuse_is_not_dropped(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    with pytest.raises(SpoolError, match="recipient is not an address"):
        spool.drop(Submission("s@example.com", ("nobody",), b"x\r\n"))
    with pytest.raises(SpoolError, match="bad number of recipients"):
        spool.drop(Submission("s@example.com", (), b"x\r\n"))
    assert list(spool.incoming.iterdir()) == []


def test_finished_and_quarantined_drops_leave_incoming(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.drop(submission("a@x.com"))
    spool.drop(submission("b@x.com"))
    done, bad = spool.pending_drops()
    spool.finish_drop(done)
    spool.finish_drop(done)  # again: already gone
    spool.quarantine_drop(bad, "SpoolEntryCorrupt: test")
    assert spool.pending_drops() == []
    assert (spool.quarantine / bad.name).exists()
    assert (spool.quarantine / f"{bad.name}.reason").read_text() == "SpoolEntryCorrupt: test\n"
