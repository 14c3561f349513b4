"""The accounting database (engine/accounting.py) on a real sqlite file: KumoMTA's table, one
row a month, counts added by batches; a write that fails keeps its counts for the next one."""

from __future__ import annotations

import datetime
import sqlite3
from pathlib import Path

from kumoclient.engine.accounting import Accounting
from kumoclient.records import RecordType


def rows(path: Path) -> list[tuple[str, int, int]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT * FROM accounting ORDER BY event_time").fetchall()


def at(year: int, month: int, day: int) -> datetime.datetime:
    return datetime.datetime(year, month, day, 12, tzinfo=datetime.UTC)


async def test_counts_go_to_the_row_of_the_month_and_add_up(tmp_path: Path) -> None:
    """Receptions and Deliveries count (not a LogRecord message's, nor other records); each
    flush adds to the row of the month it runs in."""
    clock = [at(2026, 8, 4)]
    accounting = Accounting(tmp_path / "acct.db", now=lambda: clock[0])
    for kind, protocol in [
        (RecordType.RECEPTION, "ESMTP"),
        (RecordType.RECEPTION, "HTTP"),
        (RecordType.RECEPTION, "LogRecord"),
        (RecordType.DELIVERY, "ESMTP"),
        (RecordType.DELIVERY, "LogRecord"),
        (RecordType.BOUNCE, "ESMTP"),
        (RecordType.TRANSIENT_FAILURE, "ESMTP"),
    ]:
        accounting.count(kind, protocol)
    assert await accounting.flush()
    accounting.count(RecordType.RECEPTION, "ESMTP")
    assert await accounting.flush()
    clock[0] = at(2026, 9, 1)
    accounting.count(RecordType.DELIVERY, "ESMTP")
    await accounting.close()
    assert rows(tmp_path / "acct.db") == [
        ("2026-08-01 00:00:00", 3, 1),
        ("2026-09-01 00:00:00", 0, 1),
    ]
    with sqlite3.connect(tmp_path / "acct.db") as db:
        [(schema,)] = db.execute("SELECT sql FROM sqlite_master WHERE name = 'accounting'")
    assert "event_time DATETIME NOT NULL PRIMARY KEY" in schema


async def test_a_failed_write_keeps_its_counts_for_the_next(tmp_path: Path) -> None:
    """The database's directory is missing (sqlite cannot open the file): the counts stay;
    once it is there, the next flush writes them all."""
    path = tmp_path / "missing" / "acct.db"
    accounting = Accounting(path, now=lambda: at(2026, 8, 4))
    accounting.count(RecordType.RECEPTION, "ESMTP")
    accounting.count(RecordType.DELIVERY, "ESMTP")
    assert not await accounting.flush()
    assert (accounting.received, accounting.delivered) == (1, 1)
    accounting.count(RecordType.RECEPTION, "ESMTP")
    path.parent.mkdir()
    assert await accounting.flush()
    assert rows(path) == [("2026-08-01 00:00:00", 2, 1)]
    assert (accounting.received, accounting.delivered) == (0, 0)
