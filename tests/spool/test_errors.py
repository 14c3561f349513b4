"""The spool's boundary: every failure comes out as one of three SpoolError classes.

An entry that is not there → SpoolEntryMissing; one that is there but unusable →
SpoolEntryCorrupt; a disk or spool that cannot do the work (full, immutable, closed) →
SpoolUnavailable with the errno. Never OSError, ValueError, KeyError, TypeError or a JSON error.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from kumoclient.core import msgid
from kumoclient.errors import KumoClientError
from kumoclient.spool import (
    Spool,
    SpoolEntryCorrupt,
    SpoolEntryMissing,
    SpoolError,
    SpoolUnavailable,
    Submission,
)
from tests.spool.common import CONTENT, fill, immutable, small_tmpfs, stored, submission


def test_the_spool_errors_are_kumoclient_errors_and_not_os_errors() -> None:
    for cls in (SpoolEntryMissing, SpoolEntryCorrupt, SpoolUnavailable):
        assert issubclass(cls, SpoolError)
        assert issubclass(cls, KumoClientError)
        assert not issubclass(cls, (OSError, ValueError, KeyError, TypeError))


# --- missing ---------------------------------------------------------------------------------


async def test_reading_a_removed_message_raises_entry_missing_naming_it(spool: Spool) -> None:
    (message,) = await stored(spool, "a@x.com")
    await spool.remove(message.id)
    for read in (spool.content, spool.load):
        with pytest.raises(SpoolEntryMissing, match=message.id) as raised:
            read(message.id)
        assert raised.value.message_id == message.id
    with pytest.raises(SpoolEntryMissing, match="No such file"):
        await spool.read_content(message.id)


async def test_a_large_message_removed_before_delivery_is_missing_too(spool: Spool) -> None:
    content = b"Subject: big\r\n\r\n" + b"z" * 200_000
    (message,) = await stored(spool, "a@x.com", content=content)
    await spool.remove(message.id)
    with pytest.raises(SpoolEntryMissing):
        await spool.read_content(message.id)


async def test_a_picked_up_drop_file_read_again_is_missing(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.drops.drop(submission("a@x.com"))
    (path,) = spool.drops.pending()
    spool.drops.finish(path)
    with pytest.raises(SpoolEntryMissing, match=path.name):
        await spool.drops.read(path)


async def test_removing_what_is_already_gone_is_no_error(spool: Spool) -> None:
    (message,) = await stored(spool, "a@x.com")
    await spool.remove(message.id)
    await spool.remove(message.id)
    spool.apply([], [message.id])
    assert spool.ids() == []


# --- corrupt ---------------------------------------------------------------------------------


async def test_damaged_entries_raise_entry_corrupt_on_every_read(spool: Spool) -> None:
    small, large = (
        await stored(spool, "a@x.com"),
        await stored(spool, "b@x.com", content=b"Subject: big\r\n\r\n" + b"q" * 300_000),
    )
    for (message,) in (small, large):
        path = spool.data / message.id
        blob = bytearray(path.read_bytes())
        blob[-1] ^= 0xFF
        path.write_bytes(bytes(blob))
        with pytest.raises(SpoolEntryCorrupt, match="checksum mismatch") as raised:
            await spool.read_content(message.id)
        assert raised.value.message_id == message.id
        with pytest.raises(SpoolEntryCorrupt, match="checksum mismatch"):
            spool.content(message.id)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda blob: b"", "bad magic"),
        (lambda blob: blob[:12], "truncated header line"),
        (lambda blob: b"KCSPOOL1 x1\n" + blob, "bad header length"),
        (lambda blob: blob[:40], "truncated header"),
        (lambda blob: blob + b"more", "truncated content"),
        (lambda blob: blob.replace(b'"sender"', b'"Sender"'), "lacks id, sender"),
        (lambda blob: blob.replace(b'{"id"', b'["id"').replace(b'"}\n', b'"]\n', 1), "corrupt"),
    ],
)
async def test_each_kind_of_damage_is_named(
    spool: Spool, damage: Callable[[bytes], bytes], reason: str
) -> None:
    (message,) = await stored(spool, "a@x.com")
    path = spool.data / message.id
    path.write_bytes(damage(path.read_bytes()))
    for read in (spool.content, spool.load):
        with pytest.raises(SpoolEntryCorrupt, match=reason):
            read(message.id)


async def test_an_entry_whose_header_names_another_id_is_corrupt(spool: Spool) -> None:
    first, second = await stored(spool, "a@x.com", "b@x.com")
    os.replace(spool.data / first.id, spool.data / second.id)
    with pytest.raises(SpoolEntryCorrupt, match="does not match the file name"):
        spool.load(second.id)


async def test_a_directory_where_an_entry_should_be_is_corrupt(spool: Spool) -> None:
    name = msgid.message_id(msgid.submission_base(1.0, 3), 0)
    (spool.data / name).mkdir()
    with pytest.raises(SpoolEntryCorrupt, match="Is a directory"):
        await spool.read_content(name)
    with pytest.raises(SpoolEntryCorrupt):
        spool.load(name)


def test_a_submission_for_more_recipients_than_ids_can_number_is_refused(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path / "spool")
    too_many = ("r@x.com",) * (msgid.MAX_RECIPIENTS + 1)
    with pytest.raises(SpoolError, match="at most 65536 recipients"):
        spool.prepare(Submission("s@x.com", too_many, CONTENT))
    with pytest.raises(SpoolError, match="bad number of recipients"):
        spool.drops.drop(Submission("s@x.com", too_many, CONTENT))


def test_a_submission_with_meta_for_fewer_recipients_is_refused(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    uneven = Submission("s@x.com", ("a@x.com", "b@x.com"), CONTENT, ({"tenant": "t"},))
    with pytest.raises(SpoolError, match="one mapping per recipient"):
        spool.prepare(uneven)
    with pytest.raises(SpoolError, match="meta does not match the recipients"):
        spool.drops.drop(uneven)
    assert list(spool.incoming.iterdir()) == []


# --- unavailable -----------------------------------------------------------------------------


async def test_a_full_disk_makes_the_spool_unavailable_and_it_recovers(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "small") as mount:
        spool = Spool(mount / "spool")
        await spool.start()
        try:
            (kept,) = await stored(spool, "kept@x.com")
            big = CONTENT + b"x" * 8000  # more than the last free pages hold
            filler = fill(mount)
            with pytest.raises(SpoolUnavailable, match="No space left") as raised:
                await stored(spool, "a@x.com", content=big)
            assert raised.value.errno == errno.ENOSPC
            assert spool.ids() == [kept.id]
            with pytest.raises(SpoolUnavailable) as raised:
                spool.drops.drop(submission("b@x.com", content=big))
            assert raised.value.errno == errno.ENOSPC
            assert spool.drops.pending() == []
            assert await spool.read_content(kept.id) == CONTENT  # reading needs no space
            filler.unlink()
            (later,) = await stored(spool, "a@x.com", content=big)
            assert await spool.read_content(later.id) == big
        finally:
            await spool.close()


async def test_a_full_disk_fails_metadata_updates_with_unavailable(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "small") as mount:
        spool = Spool(mount / "spool")
        await spool.start()
        try:
            (message,) = await stored(spool, "a@x.com")
            fill(mount)
            long = replace(message, attempts=1, last_response="451 " + "x" * 20_000)
            with pytest.raises(SpoolUnavailable, match="cannot update the spool") as raised:
                await spool.update(long)
            assert raised.value.errno == errno.ENOSPC
            assert spool.load(message.id).attempts == 0
        finally:
            await spool.close()


async def test_an_immutable_spool_directory_makes_writes_unavailable(spool: Spool) -> None:
    (message,) = await stored(spool, "a@x.com")
    with immutable(spool.data):
        with pytest.raises(SpoolUnavailable, match="cannot write to the spool") as raised:
            await stored(spool, "b@x.com")
        assert raised.value.errno == errno.EPERM
        with pytest.raises(SpoolUnavailable, match="cannot update the spool"):
            spool.apply([], [message.id])
        with pytest.raises(SpoolUnavailable, match="cannot remove") as removal:
            await spool.remove(message.id)
        assert removal.value.errno == errno.EPERM
        assert await spool.read_content(message.id) == CONTENT
    assert spool.ids() == [message.id]


def test_an_immutable_incoming_folder_makes_drops_unavailable(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool.drops.drop(submission("a@x.com"))
    (path,) = spool.drops.pending()
    with immutable(spool.incoming):
        with pytest.raises(SpoolUnavailable, match="cannot write to") as raised:
            spool.drops.drop(submission("b@x.com"))
        assert raised.value.errno == errno.EPERM
        with pytest.raises(SpoolUnavailable, match="cannot remove"):
            spool.drops.finish(path)
    assert spool.drops.pending() == [path]


def test_a_spool_where_a_file_is_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(SpoolUnavailable, match="cannot create the spool") as raised:
        Spool(tmp_path / "file" / "spool")
    assert raised.value.errno == errno.ENOTDIR


async def test_a_spool_whose_folders_were_removed_is_unavailable(spool: Spool) -> None:
    (spool.data).rename(spool.root / "elsewhere")
    for call in (spool.ids, spool.listing, lambda: list(spool.enumerate())):
        with pytest.raises(SpoolUnavailable, match="cannot list the spool") as raised:
            call()
        assert raised.value.errno == errno.ENOENT
    spool.incoming.rmdir()
    with pytest.raises(SpoolUnavailable, match="cannot list"):
        spool.drops.pending()
