"""The accounting database: how many messages this node received and delivered, per calendar
month, in an sqlite file (`kumo.configure_accounting_db_path`; KumoMTA's table and meaning).

Table `accounting(event_time DATETIME PRIMARY KEY, received int, delivered int)`: one row per
month, `event_time` its first day (`2026-08-01 00:00:00`, UTC). A Reception record counts one
received, a Delivery record one delivered (records of hook-made `LogRecord` messages are not
counted, as in KumoMTA). Counting is two additions on the records' path (`count`); the counts
are added to the file every `interval` seconds (KumoMTA: 5 minutes) and at stop, in a thread,
by one transaction. A write that fails keeps its counts for the next one (one error line).
"""

from __future__ import annotations

import asyncio
import datetime
import sqlite3
from collections.abc import Callable
from pathlib import Path

from kumoclient import logs
from kumoclient.records import RecordType

log = logs.get_logger(__name__)

FLUSH_INTERVAL = 300.0
BUSY_TIMEOUT = 30.0  # seconds sqlite waits for another writer of the file
_NOT_COUNTED = "LogRecord"
_SCHEMA = """CREATE TABLE IF NOT EXISTS accounting (
    event_time DATETIME NOT NULL PRIMARY KEY,
    received int NOT NULL,
    delivered int NOT NULL
)"""
_ADD = """INSERT INTO accounting (event_time, received, delivered) VALUES (?, ?, ?)
ON CONFLICT (event_time) DO UPDATE SET
    received = received + excluded.received, delivered = delivered + excluded.delivered"""


def month_of(moment: datetime.datetime) -> str:
    """The `event_time` of the month `moment` falls in."""
    return moment.strftime("%Y-%m-01 00:00:00")


def add_counts(path: Path, month: str, received: int, delivered: int) -> None:
    """Add the counts to the row of `month` (made with the table when missing)."""
    connection = sqlite3.connect(path, timeout=BUSY_TIMEOUT)
    try:
        with connection:
            connection.execute(_SCHEMA)
            connection.execute(_ADD, (month, received, delivered))
    finally:
        connection.close()


class Accounting:
    """The counts not yet in the file, and the task that adds them (see the module)."""

    def __init__(
        self,
        path: Path,
        *,
        interval: float = FLUSH_INTERVAL,
        now: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self.path = path
        self.interval = interval
        self._now = now
        self.received = 0
        self.delivered = 0
        self._failing = False
        self._stop = asyncio.Event()

    def count(self, kind: RecordType, protocol: str) -> None:
        """One record written (the one writer of records calls this)."""
        if kind is RecordType.RECEPTION:
            if protocol != _NOT_COUNTED:
                self.received += 1
        elif kind is RecordType.DELIVERY and protocol != _NOT_COUNTED:
            self.delivered += 1

    async def run(self) -> None:
        """Add the counts every `interval` seconds until `close`."""
        while True:
            try:
                await asyncio.wait_for(self._stop.wait(), self.interval)
            except TimeoutError:
                await self.flush()
            else:
                return

    async def flush(self) -> bool:
        """Add what was counted since the last flush; False when the file could not take it
        (the counts stay for the next flush)."""
        received, delivered = self.received, self.delivered
        if not received and not delivered:
            return True
        self.received, self.delivered = 0, 0
        month = month_of(self._now())
        try:
            await asyncio.to_thread(add_counts, self.path, month, received, delivered)
        except (sqlite3.Error, OSError) as exc:
            self.received += received
            self.delivered += delivered
            if not self._failing:
                log.error(
                    "cannot write the accounting database; the counts are kept for later",
                    path=str(self.path),
                    error=str(exc),
                    received=self.received,
                    delivered=self.delivered,
                )
            self._failing = True
            return False
        if self._failing:
            log.info("accounting database written again", path=str(self.path))
        self._failing = False
        return True

    async def close(self) -> None:
        """Stop the periodic task and add what is left."""
        self._stop.set()
        await self.flush()
