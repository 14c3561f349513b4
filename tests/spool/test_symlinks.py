"""Symbolic links planted in the spool (issue 15, item 4): never followed, never written through.

Every test plants real symlinks in one spool folder, pointing at real files outside the
spool (valid entries, drop files and metadata among them, so that following a link would
"work"), runs the spool's real operations, and checks the outside files are byte-identical
afterwards and the links were quarantined (data/, meta/, incoming/) or discarded (free/,
temporary names). tests/spool/test_daemon_symlinks.py does the same through a running daemon.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path

import pytest

from kumoclient.spool import Spool, SpoolEntryCorrupt, SpoolEntryMissing
from kumoclient.spool.pool import FilePool
from tests.spool.common import CONTENT, Outside, stored, submission


@pytest.fixture
def outside(tmp_path: Path) -> Outside:
    return Outside(tmp_path / "outside")


async def entry_elsewhere(tmp_path: Path, outside: Outside) -> tuple[str, Path]:
    """A valid entry of another spool, copied outside: (its id, the copy)."""
    other = Spool(tmp_path / "other")
    (message,) = await stored(other, "elsewhere@x.com")
    return message.id, outside.file("entry", (other.data / message.id).read_bytes())


async def test_a_data_symlink_to_a_valid_entry_is_quarantined_never_read(
    spool: Spool, tmp_path: Path, outside: Outside
) -> None:
    message_id, target = await entry_elsewhere(tmp_path, outside)
    (spool.data / message_id).symlink_to(target)
    (good,) = await stored(spool, "good@x.com")
    for read in (spool.load, spool.content):
        with pytest.raises(SpoolEntryCorrupt, match="a symbolic link"):
            read(message_id)
    with pytest.raises(SpoolEntryCorrupt, match="a symbolic link"):
        await spool.read_content(message_id)
    assert [m.id for m in spool.enumerate()] == [good.id]
    assert (spool.quarantine / message_id).is_symlink()  # the link moved, not its target
    assert "a symbolic link" in (spool.quarantine / f"{message_id}.reason").read_text()
    assert outside.unchanged()


async def test_a_metadata_symlink_quarantines_its_message_and_an_orphan_one_is_unlinked(
    spool: Spool, outside: Outside
) -> None:
    good, linked = await stored(spool, "good@x.com", "linked@x.com")
    state = outside.file("state", b'{"attempts":3,"due":0,"last_response":null,"meta":{}}')
    (spool.meta / f"{linked.id}.json").symlink_to(state)
    orphan = spool.meta / f"{'0' * 31}1.json"
    orphan.symlink_to(outside.file("victim", b"keep me"))
    assert [m.id for m in spool.enumerate()] == [good.id]
    assert "a symbolic link" in (spool.quarantine / f"{linked.id}.reason").read_text()
    assert (spool.quarantine / f"{linked.id}.json").is_symlink()
    assert not orphan.is_symlink()
    assert outside.unchanged()


async def test_an_incoming_symlink_to_a_valid_drop_file_is_quarantined(
    tmp_path: Path, outside: Outside
) -> None:
    other = Spool(tmp_path / "other")
    other.drops.drop(submission("elsewhere@x.com"))
    (dropped,) = other.drops.pending()
    spool = Spool(tmp_path / "spool")
    link = spool.incoming / dropped.name
    link.symlink_to(outside.file("drop", dropped.read_bytes()))
    with pytest.raises(SpoolEntryCorrupt, match="a symbolic link"):
        await spool.drops.read(link)
    spool.drops.set_aside(link, "SpoolEntryCorrupt: a symbolic link")
    assert (spool.quarantine / dropped.name).is_symlink()
    assert spool.drops.pending() == []
    assert outside.unchanged()


async def test_quarantine_replaces_planted_links_at_its_names_and_writes_no_reason_through(
    spool: Spool, outside: Outside
) -> None:
    (bad,) = await stored(spool, "bad@x.com")
    (spool.data / bad.id).write_bytes(b"garbage")
    (spool.quarantine / bad.id).symlink_to(outside.file("victim1", b"one"))
    (spool.quarantine / f"{bad.id}.reason").symlink_to(outside.file("victim2", b"two"))
    spool.drops.drop(submission("a@x.com"))
    (dropped,) = spool.drops.pending()
    reason = spool.quarantine / f"{dropped.name}.reason"
    reason.symlink_to(outside.file("victim3", b"three"))
    assert list(spool.enumerate()) == []
    spool.drops.set_aside(dropped, "SpoolEntryCorrupt: test")
    assert (spool.quarantine / bad.id).read_bytes() == b"garbage"
    for written in (spool.quarantine / f"{bad.id}.reason", reason):
        assert not written.is_symlink()
        assert written.read_text().startswith("SpoolEntryCorrupt: ")
    assert [p.name for p in spool.quarantine.iterdir() if p.name.startswith(".")] == []
    assert outside.unchanged()


async def test_symlinks_in_free_are_discarded_and_never_written_over(
    spool: Spool, outside: Outside
) -> None:
    for index in range(5):
        (spool.free / f"planted{index}").symlink_to(outside.file(f"victim{index}", b"v" * 100))
    messages = await stored(spool, *(f"r{i}@x.com" for i in range(5)))
    assert list(spool.free.iterdir()) == []
    for message in messages:
        path = spool.data / message.id
        assert not path.is_symlink()
        assert await spool.read_content(message.id) == CONTENT
    assert outside.unchanged()


async def test_a_link_put_at_a_listed_free_name_is_discarded_when_taken(
    tmp_path: Path, outside: Outside
) -> None:
    """The pool lists free/ once and takes the names it listed later: a link put at one of
    those names meanwhile is met by open_recycled (O_NOFOLLOW, fstat) and discarded."""
    spool = Spool(tmp_path / "spool")
    await spool.start()
    try:
        first, second = await stored(spool, "a@x.com", "b@x.com")
        spool.apply([], [first.id, second.id])  # both files to free/, their names kept
        for name in (first.id, second.id):
            os.unlink(spool.free / name)
            (spool.free / name).symlink_to(outside.file(name, b"outside " + name.encode()))
        messages = await stored(spool, "c@x.com", "d@x.com")
        for message in messages:
            assert await spool.read_content(message.id) == CONTENT
        assert sorted(spool.free.iterdir()) == []
        assert outside.unchanged()
    finally:
        await spool.close()


async def test_a_free_file_with_another_hard_link_is_not_written_over(
    tmp_path: Path, outside: Outside
) -> None:
    spool = Spool(tmp_path / "spool")
    victim = outside.file("victim", b"a file of someone else's" * 10)
    os.link(victim, spool.free / "linked")
    (message,) = await stored(spool, "a@x.com")
    assert await spool.read_content(message.id) == CONTENT
    assert not (spool.free / "linked").exists()
    # and a message file with a second name is unlinked when it leaves, never kept in free/
    os.link(spool.data / message.id, outside.folder / "second-name")
    outside.files[outside.folder / "second-name"] = (spool.data / message.id).read_bytes()
    spool.apply([], [message.id])
    assert list(spool.free.iterdir()) == []
    assert outside.unchanged()


async def test_links_at_temporary_names_are_replaced_not_written_through(
    spool: Spool, outside: Outside
) -> None:
    messages = spool.prepare(submission("a@x.com"))
    (message,) = messages
    (spool.data / f".{message.id}.tmp").symlink_to(outside.file("victim1", b"one"))
    await spool.store(messages, CONTENT)
    (spool.meta / f".{message.id}.json.tmp").symlink_to(outside.file("victim2", b"two"))
    await spool.update(replace(message, attempts=1, due=5.0, last_response="451 later"))
    loaded = spool.load(message.id)
    assert (loaded.attempts, loaded.last_response) == (1, "451 later")
    assert not (spool.meta / f"{message.id}.json").is_symlink()
    assert await spool.read_content(message.id) == CONTENT
    assert outside.unchanged()


async def test_a_message_swapped_for_a_link_after_loading_leaves_as_a_link(
    spool: Spool, outside: Outside
) -> None:
    (message,) = await stored(spool, "a@x.com")
    target = outside.file("entry", (spool.data / message.id).read_bytes())
    os.unlink(spool.data / message.id)
    (spool.data / message.id).symlink_to(target)
    spool.apply([], [message.id])  # delivered: the "file" leaves the spool
    assert list(spool.free.iterdir()) == []
    assert not (spool.data / message.id).is_symlink()
    assert outside.unchanged()


async def test_stale_temporary_links_and_directories_do_not_stop_a_start(
    tmp_path: Path, outside: Outside
) -> None:
    spool = Spool(tmp_path / "spool")
    for folder in (spool.data, spool.meta, spool.incoming):
        (folder / ".planted.tmp").symlink_to(outside.file(f"victim-{folder.name}", b"x"))
    (spool.data / ".adir.tmp").mkdir()
    await spool.start()
    try:
        for folder in (spool.data, spool.meta, spool.incoming):
            assert not (folder / ".planted.tmp").is_symlink()
        assert (spool.quarantine / ".adir.tmp").is_dir()
        (message,) = await stored(spool, "a@x.com")
        assert await spool.read_content(message.id) == CONTENT
    finally:
        await spool.close()
    assert outside.unchanged()


async def test_names_that_are_not_message_ids_reach_nothing_outside(
    spool: Spool, outside: Outside
) -> None:
    victim = outside.file("victim", b"x")
    name = os.path.relpath(victim, spool.data)
    with pytest.raises(SpoolEntryMissing, match="not a message id"):
        spool.content(name)
    with pytest.raises(SpoolEntryMissing, match="not a message id"):
        await spool.read_content(name)
    spool.quarantine_entry(name, "test")
    spool.quarantine_entry("..", "test")
    assert list(spool.quarantine.iterdir()) == []
    assert outside.unchanged()


async def test_a_fifo_in_data_is_quarantined_without_blocking_the_scan(spool: Spool) -> None:
    name = f"{'1' * 31}0"
    os.mkfifo(spool.data / name)
    (good,) = await stored(spool, "a@x.com")
    loaded = await asyncio.wait_for(asyncio.to_thread(lambda: list(spool.enumerate())), 10)
    assert [m.id for m in loaded] == [good.id]
    assert (spool.quarantine / f"{name}.reason").exists()


def test_the_pool_lists_only_plain_files(tmp_path: Path, outside: Outside) -> None:
    free = tmp_path / "free"
    free.mkdir()
    (free / "plain").write_bytes(b"x")
    (free / "link").symlink_to(outside.file("victim", b"y"))
    (free / "dir").mkdir()
    pool = FilePool(f"{free}{os.sep}")
    taken = tmp_path / "taken"
    assert pool.take(str(taken))
    assert taken.read_bytes() == b"x"
    assert sorted(p.name for p in free.iterdir()) == ["dir"]
    assert outside.unchanged()
