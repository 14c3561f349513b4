"""Poison spool entries through a real daemon (issue 15, item 2): the reported bugs, exactly.

`"due": NaN` in a metadata file made the scheduler spin at 100% CPU on every start, never
serving SMTP; `"recipient": 12345` in a header made every start exit with AttributeError; a
drop file's `"created": NaN` became messages due at NaN. Here each is planted beside a good
spooled message; `kumoclient run` must start, answer an SMTP transaction with 250, deliver
the good message and the new one to a local sink, quarantine the poison with a reason naming
the field, and stop cleanly with SIGTERM.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from kumoclient.records import SpooledMessage
from kumoclient.spool import Spool, Submission
from tests.daemon_process import DaemonProcess
from tests.spool.common import rewrite_header
from tests.spool.daemon_sink import content, delivery_policy, prefill, running_sink, submit
from tests.test_daemon import wait_for

pytestmark = pytest.mark.slow


def nan_due(spool: Spool, bad: SpooledMessage) -> str:
    (spool.meta / f"{bad.id}.json").write_text(
        '{"attempts":1,"due":NaN,"last_response":"451 4.3.0 later","meta":{}}'
    )
    return bad.id


def integer_recipient(spool: Spool, bad: SpooledMessage) -> str:
    rewrite_header(spool.data / bad.id, recipient=12345)
    return bad.id


def drop_created_nan(spool: Spool, bad: SpooledMessage) -> str:
    """The bad message is taken out of data/ and comes as a drop file instead."""
    spool.drops.drop(Submission("a@example.com", (bad.recipient,), content(2)))
    (path,) = spool.drops.pending()
    line, body = path.read_bytes().split(b"\n", 1)
    path.write_bytes(
        json.dumps({**json.loads(line), "created": float("nan")}).encode() + b"\n" + body
    )
    (spool.data / bad.id).unlink()
    return path.name


@pytest.mark.parametrize(
    ("plant", "reason"),
    [
        (nan_due, "corrupt metadata file: due nan is not a time from 1970 to 9999"),
        (integer_recipient, "corrupt header: recipient is an integer, not a string"),
        (drop_created_nan, "corrupt incoming file: created nan is not a time"),
    ],
    ids=["meta-due-NaN", "header-recipient-12345", "drop-created-NaN"],
)
def test_a_poison_entry_is_quarantined_and_the_daemon_serves_and_delivers(
    tmp_path: Path, plant: Callable[[Spool, SpooledMessage], str], reason: str
) -> None:
    data = tmp_path / "data"
    spool_dir = data / "spool"
    with running_sink() as sink:
        _good, bad = prefill(spool_dir, {"good@example.net": 1, "bad@example.net": 2})
        name = plant(Spool(spool_dir), bad)
        daemon = DaemonProcess(data, delivery_policy(tmp_path, sink.port)).start()
        try:
            submit(daemon.port, "new@example.net", 3)  # SMTP is served: the loop is free
            wait_for(lambda: sink.has_all({1, 3}), timeout=60)
            assert daemon.stop() == 0
        finally:
            daemon.kill()
    assert 2 not in sink.received()
    assert reason in (spool_dir / "quarantine" / f"{name}.reason").read_text()
    assert (spool_dir / "quarantine" / name).exists()
    assert "spool entry quarantined" in daemon.stderr() or "incoming file quarantined" in (
        daemon.stderr()
    )
    assert Spool(spool_dir).ids() == []  # the good ones were delivered and removed
