"""Batched spool changes after attempts: metadata updates and removals, log records first.

Every change of a batch waits for one fsync of the delivery log (so a message leaves the
spool only after its final record is durable, SPEC 1 invariant 2), then one thread call
writes the updates, unlinks the removed messages and makes it all durable with one sync.
Nobody waits for a batch: a removal that a crash prevents means a second delivery (the
at-least-once window of invariant 3); a lost update means an earlier retry.

While the delivery log cannot be written (logs.LogHealth down), the batch waits for it,
however long (changes handed in meanwhile make the next batch). Closed while it waits, the writer
applies the updates and keeps the removals' messages spooled: their records are not durable,
so they are delivered again after the next start (logged with their number).
"""

from __future__ import annotations

import asyncio

from kumoclient import logs
from kumoclient.errors import LogUnavailable, SpoolError
from kumoclient.logs import RecordLog
from kumoclient.records import SpooledMessage
from kumoclient.spool import Spool

log = logs.get_logger(__name__)

_LOG_RETRY = 0.5  # seconds between looks at `closing` while the delivery log is down


class StateWriter:
    """Collects updates and removals; `run` applies them in batches until `close`."""

    def __init__(self, spool: Spool, records: RecordLog) -> None:
        self._spool = spool
        self._records = records
        self._updates: dict[str, SpooledMessage] = {}
        self._removals: list[str] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._flush_soon = False
        self.batches = 0

    def update(self, message: SpooledMessage) -> None:
        """Persist a message's new attempts, due time and last response."""
        self._updates[message.id] = message
        self._kick()

    def remove(self, message_id: str) -> None:
        """Take a message out of the spool once its final record is durable. The record goes
        to the OS at the loop's next turn (one write for all the removals of a turn): a
        process killed before the removal leaves it in the log, where the next start finds
        it (engine/recovery.py) instead of delivering the message again."""
        self._removals.append(message_id)
        if not self._flush_soon:
            self._flush_soon = True
            asyncio.get_running_loop().call_soon(self._flush_records)
        self._kick()

    def _flush_records(self) -> None:
        self._flush_soon = False
        self._records.flush()  # never raises: a failure takes the log's health down

    def _kick(self) -> None:
        self._idle.clear()
        self._wake.set()

    async def flush(self) -> None:
        """Wait until every change handed in so far is applied."""
        await self._idle.wait()

    async def close(self) -> None:
        """Apply what is pending, then end `run`."""
        self._closing = True
        self._wake.set()
        await self.flush()

    async def run(self) -> None:
        """Apply batches until closed."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._updates or self._removals:
                updates, self._updates = list(self._updates.values()), {}
                removals, self._removals = self._removals, []
                if not await self._records_durable():
                    removals = _kept_spooled(removals)
                try:
                    await asyncio.to_thread(self._spool.apply, updates, removals)
                except (SpoolError, OSError) as exc:
                    # the messages stay spooled (a removal retried later would be a re-delivery)
                    log.error(
                        "spool update failed",
                        error=str(exc),
                        updates=len(updates),
                        removals=len(removals),
                    )
                self.batches += 1
            self._idle.set()
            if self._closing:
                return

    async def _records_durable(self) -> bool:
        """Wait until every record written so far is durable, through a log fault; False
        when the writer is closed while the log is down."""
        while True:
            try:
                await self._records.sync()
                return True
            except LogUnavailable:
                if self._closing:
                    return False
                await self._records.health.wait_ok(_LOG_RETRY)


def _kept_spooled(removals: list[str]) -> list[str]:
    """At close with the log down: the removals wait for records that are not durable."""
    if removals:
        log.error(
            "delivery log down at stop: messages whose final record is not durable stay "
            "spooled and are delivered again after the next start",
            messages=len(removals),
        )
    return []
