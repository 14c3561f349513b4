"""Enumeration at start: every readable entry loaded, every unreadable one quarantined."""

from __future__ import annotations

import json

import pytest

from kumoclient.core import msgid
from kumoclient.spool import Spool, SpoolEntryCorrupt
from tests.spool.common import stored


async def test_corrupt_meta_and_truncated_content_are_quarantined_the_rest_load(
    spool: Spool,
) -> None:
    good, bad_meta, truncated = await stored(spool, "a@x.com", "b@x.com", "c@x.com")
    (spool.meta / f"{bad_meta.id}.json").write_text("{not json")
    path = spool.data / truncated.id
    path.write_bytes(path.read_bytes()[:-5])
    loaded = [m.id for m in spool.enumerate()]
    assert loaded == [good.id]
    quarantined = sorted(p.name for p in spool.quarantine.iterdir())
    assert f"{bad_meta.id}.reason" in quarantined
    assert f"{truncated.id}.reason" in quarantined
    assert "corrupt metadata" in (spool.quarantine / f"{bad_meta.id}.reason").read_text()
    assert "truncated content" in (spool.quarantine / f"{truncated.id}.reason").read_text()
    assert spool.ids() == [good.id]


async def test_garbage_file_in_data_is_quarantined(spool: Spool) -> None:
    (spool.data / ("f" * 32)).write_bytes(b"\x00\x01garbage")
    (message,) = await stored(spool, "a@x.com")
    assert [m.id for m in spool.enumerate()] == [message.id]
    reason = (spool.quarantine / f"{'f' * 32}.reason").read_text()
    assert reason.startswith("SpoolEntryCorrupt: ")
    assert "bad magic" in reason


async def test_stray_names_and_directories_in_data_are_quarantined(spool: Spool) -> None:
    (spool.data / "notes.txt").write_text("not a message")
    (spool.data / ("d" * 32)).mkdir()
    (message,) = await stored(spool, "a@x.com")
    assert [m.id for m in spool.enumerate()] == [message.id]
    assert spool.unreadable == 2
    assert "unexpected file name" in (spool.quarantine / "notes.txt.reason").read_text()
    assert (spool.quarantine / ("d" * 32)).is_dir()


async def test_read_only_enumeration_counts_but_does_not_move(spool: Spool) -> None:
    (spool.data / ("e" * 32)).write_bytes(b"junk")
    assert list(spool.enumerate(quarantine=False)) == []
    assert spool.unreadable == 1
    assert (spool.data / ("e" * 32)).exists()


async def test_checksum_mismatch_is_detected_on_read(spool: Spool) -> None:
    (message,) = await stored(spool, "a@x.com")
    path = spool.data / message.id
    blob = bytearray(path.read_bytes())
    blob[-3] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(SpoolEntryCorrupt, match="checksum mismatch"):
        await spool.read_content(message.id)


@pytest.mark.parametrize(
    "header",
    [
        {"size": None},
        {"size": "many"},
        {"size": 1e400},
        {"created": [1]},
        {"meta": [1, 2]},
        {"sender": {"deep": [[[[1]]]]}, "meta": "x"},
    ],
)
async def test_headers_of_the_wrong_types_are_quarantined(
    spool: Spool, header: dict[str, object]
) -> None:
    (good,) = await stored(spool, "a@x.com")
    (bad,) = await stored(spool, "b@x.com")
    path = spool.data / bad.id
    _magic, raw, rest = path.read_bytes().split(b"\n", 2)
    fields = {**json.loads(raw), **header}
    encoded = json.dumps(fields).encode()
    path.write_bytes(b"KCSPOOL1 " + str(len(encoded)).encode() + b"\n" + encoded + b"\n" + rest)
    with pytest.raises(SpoolEntryCorrupt):
        spool.load(bad.id)
    assert [m.id for m in spool.enumerate()] == [good.id]
    assert (spool.quarantine / f"{bad.id}.reason").exists()


@pytest.mark.parametrize(
    "state",
    [b'{"attempts": "two", "due": 0}', b"[1, 2]", b'"text"', b'{"due": 0}', b"[" * 100_000],
)
async def test_metadata_of_the_wrong_shape_is_quarantined(spool: Spool, state: bytes) -> None:
    (good, bad) = await stored(spool, "a@x.com", "b@x.com")
    (spool.meta / f"{bad.id}.json").write_bytes(state)
    with pytest.raises(SpoolEntryCorrupt, match="corrupt metadata file"):
        spool.load(bad.id)
    assert [m.id for m in spool.enumerate()] == [good.id]
    assert (spool.quarantine / f"{bad.id}.json").read_bytes() == state


async def test_the_daemon_scan_removes_metadata_whose_message_is_gone(spool: Spool) -> None:
    orphan = spool.meta / f"{msgid.message_id(msgid.submission_base(1.0, 7), 0)}.json"
    orphan.write_text('{"attempts": 1, "due": 0}')
    list(spool.scan(quarantine=False))
    assert orphan.exists()  # a reader beside the daemon changes nothing
    list(spool.scan())
    assert not orphan.exists()
