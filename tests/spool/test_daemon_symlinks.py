"""Symbolic links planted in every spool folder of a running daemon (issue 15, item 4).

Before a first start, links are planted in data/ (to a valid entry of another spool), meta/
(to a valid state, at an orphan's name, and at the temporary name of a message that will be
retried), incoming/ (to a valid drop file, and at a temporary name), quarantine/ (at the
names that entry and drop file will be quarantined under, `.reason` files included) and
free/; every link points at a file outside the spool. `kumoclient run` then receives over
SMTP and delivers to a local sink; while it runs, the files of delivered messages waiting in
free/ are replaced by links at the same names (the names its pool already listed); it is
restarted with more links planted, and receives and delivers again. Afterwards every outside
file is byte-identical, every acknowledged and every spooled message was delivered, the
entry and drop file behind the links never were, and no link is left outside quarantine/.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kumoclient.spool import Spool, Submission
from tests.daemon_process import DaemonProcess
from tests.spool.common import Outside
from tests.spool.daemon_sink import (
    Sink,
    content,
    delivery_policy,
    prefill,
    running_sink,
    submit,
)
from tests.test_daemon import wait_for

pytestmark = pytest.mark.slow
ORPHAN = f"{'0' * 31}1"


def plant(links: dict[Path, Path]) -> None:
    for link, target in links.items():
        link.symlink_to(target)


def elsewhere(tmp_path: Path, outside: Outside) -> tuple[str, str, Path, Path]:
    """A valid entry (token 900) and drop file (token 901) of another spool, copied outside:
    their id and file name, and the copies."""
    other = tmp_path / "other"
    (message,) = prefill(other, {"elsewhere@example.net": 900})
    Spool(other).drops.drop(Submission("a@example.com", ("dropped@example.net",), content(901)))
    (dropped,) = Spool(other).drops.pending()
    entry = outside.file("entry", (other / "data" / message.id).read_bytes())
    return message.id, dropped.name, entry, outside.file("drop", dropped.read_bytes())


def run(daemon: DaemonProcess, sink: Sink, tokens: range, expected: set[int]) -> dict[int, str]:
    """Start, submit a message per token, wait until `expected` and those are delivered."""
    daemon.start()
    acked = {token: submit(daemon.port, f"r{token}@example.net", token) for token in tokens}
    wait_for(lambda: sink.has_all(expected | set(tokens)), timeout=60)
    return acked


def links_to_freed_files(spool: Spool, outside: Outside, tag: str) -> None:
    """Replace each file of free/ by a link at its name (atomically)."""
    for index, path in enumerate(sorted(spool.free.iterdir())):
        target = outside.file(f"free-{tag}-{index}", b"not yours " * 20)
        os.symlink(target, spool.free / ".link")
        os.replace(spool.free / ".link", path)


def test_planted_symlinks_are_never_followed_and_no_acknowledged_message_is_lost(
    tmp_path: Path,
) -> None:
    outside = Outside(tmp_path / "outside")
    data = tmp_path / "data"
    with running_sink() as sink:
        entry_id, drop_name, entry, drop = elsewhere(tmp_path, outside)
        spooled = prefill(data / "spool", {f"s{t}@example.net": t for t in (1, 2, 3)})
        sink.defer_once.add(spooled[0].recipient)  # retried: its metadata file is written
        spool = Spool(data / "spool")
        victim = outside.file
        plant(
            {
                spool.data / entry_id: entry,
                spool.data / f".{ORPHAN}.tmp": victim("v1", b"1"),
                spool.meta / f"{entry_id}.json": victim("state", b'{"attempts":0,"due":0}'),
                spool.meta / f"{ORPHAN}.json": victim("v2", b"2"),
                spool.meta / f".{spooled[0].id}.json.tmp": victim("v3", b"3"),
                spool.incoming / drop_name: drop,
                spool.incoming / f".{'1' * 28}.tmp": victim("v4", b"4"),
                spool.quarantine / entry_id: victim("v5", b"5"),
                spool.quarantine / f"{entry_id}.reason": victim("v6", b"6"),
                spool.quarantine / drop_name: victim("v7", b"7"),
                spool.quarantine / f"{drop_name}.reason": victim("v8", b"8"),
                **{spool.free / f"planted{i}": victim(f"free-{i}", b"f" * 90) for i in range(4)},
            }
        )
        daemon = DaemonProcess(data, delivery_policy(tmp_path, sink.port))
        try:
            acked = run(daemon, sink, range(10, 16), {1, 2, 3})
            wait_for(lambda: any(spool.free.iterdir()), timeout=30)  # delivered files, kept
            links_to_freed_files(spool, outside, "running")
            acked |= {t: submit(daemon.port, f"r{t}@example.net", t) for t in range(20, 26)}
            wait_for(lambda: sink.has_all(set(range(20, 26))), timeout=60)
            assert daemon.stop() == 0
            plant({spool.data / entry_id: entry, spool.incoming / drop_name: drop})
            links_to_freed_files(spool, outside, "stopped")
            acked |= run(daemon, sink, range(30, 36), set())
            assert daemon.stop() == 0
        finally:
            daemon.kill()
    assert outside.unchanged()
    assert set(sink.received()) == {1, 2, 3} | set(acked)  # never 900 or 901
    assert Spool(data / "spool").ids() == []
    for folder in (spool.data, spool.meta, spool.incoming, spool.free):
        assert [p.name for p in folder.iterdir() if p.is_symlink()] == [], folder
    for name in (entry_id, drop_name):
        assert (spool.quarantine / name).is_symlink()
        reason = spool.quarantine / f"{name}.reason"
        assert not reason.is_symlink()
        assert "a symbolic link" in reason.read_text()
