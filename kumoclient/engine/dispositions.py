"""The one writer of what happens to messages: log records, spool removals and updates, DSNs,
outcome metrics, counts, subscribers and the waiters of `Engine.outcome` (as KumoMTA's
`log_disposition` is its one writer).

The decision itself is `core.disposition.decide`'s; `apply` carries it out: each record is
written, then a message that is requeued gets its new state persisted and goes back to the
due-time heap, and a message whose life ended leaves the table and, once its final record is
durable (the state writer fsyncs the log before it touches the spool, SPEC 1 invariant 2), the
spool. With `generate_dsn`, a Bounce or Expiration first spools a DSN to the sender (never for
`<>`): a crash in between repeats the attempt rather than losing the notice.

Reception records (`received`) name the client and the session's TLS; an inbound report that
a listener domain logs (core/listener_domain.py) gets a Feedback record instead of its
Reception record, or OOB records after it (core/report_records.py); one that cannot be read
after all gets its plain Reception record.

Every Reception and Delivery record is also counted for the accounting database, when the
daemon keeps one (`accounting`, engine/accounting.py: two additions here, the writes batched).

While the log is down its records are held (logs.RecordLog) and the removal waits for them.
A final record the log could not even hold (past its hold limit) keeps the message spooled:
it is delivered again after the next start rather than leave without its record.
"""

from __future__ import annotations

import asyncio
import datetime
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from kumoclient import logs
from kumoclient.core import log_record
from kumoclient.core.arf_report import parse_arf
from kumoclient.core.disposition import Decision
from kumoclient.core.dsn import build_dsn, should_generate
from kumoclient.core.dsn_report import parse_dsn
from kumoclient.core.listener_domain import Report
from kumoclient.core.queue_name import queue_name_for
from kumoclient.core.report_records import feedback_record, oob_records
from kumoclient.engine.accounting import Accounting
from kumoclient.engine.metrics import EngineMetrics
from kumoclient.engine.queues import Item
from kumoclient.engine.state import StateWriter
from kumoclient.engine.table import MessageTable
from kumoclient.errors import EngineStopped, ReportError, SpoolError, SubmissionRefused
from kumoclient.logs import NODE_ID, RecordLog
from kumoclient.records import FINAL_TYPES, Arrival, LogRecord, RecordType, Reply, SpooledMessage
from kumoclient.spool import Spool

log = logs.get_logger(__name__)

Record = dict[str, object]
_NOTIFIED = (RecordType.BOUNCE, RecordType.EXPIRATION)  # with generate_dsn (SPEC 2.5)
# spools a DSN: (recipient, content) -> done; raises SubmissionRefused when it cannot
Notify = Callable[[str, bytes], Awaitable[None]]
Spawn = Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]]


@dataclass(frozen=True, slots=True)
class Received:
    """What the Reception records of a submission say beyond its messages: how it arrived,
    the report each message is logged as (by id), and the messages logged but not stored."""

    arrival: Arrival | None = None
    reports: Mapping[str, Report] = field(default_factory=dict)
    dropped: frozenset[str] = frozenset()


class Dispositions:
    """Carries out decisions; see the module's text."""

    def __init__(
        self,
        spool: Spool,
        records: RecordLog,
        table: MessageTable,
        metrics: EngineMetrics,
        *,
        hostname: str,
    ) -> None:
        self.spool = spool
        self.records = records
        self.table = table
        self.metrics = metrics
        self.hostname = hostname
        self.state = StateWriter(spool, records)
        self.counts: dict[str, int] = {}
        self.notify: Notify | None = None  # set by the engine: spools a DSN
        self.spawn: Spawn | None = None  # set by the engine: a task in its group
        self.accounting: Accounting | None = None  # set by the engine when it keeps one
        self.stopping = False  # requeued messages stay spooled, not scheduled
        self._subscribers: list[Callable[[Record], None]] = []
        self._waiters: dict[str, asyncio.Future[Record]] = {}
        self._notices: set[asyncio.Task[None]] = set()  # DSNs being spooled

    # --- subscribers and waiters ---------------------------------------------------------

    def subscribe(self, callback: Callable[[Record], None]) -> None:
        """Call `callback` with every record written (its JSON object)."""
        self._subscribers.append(callback)

    def unsubscribe(self, callback: Callable[[Record], None]) -> None:
        """Stop calling `callback`."""
        self._subscribers.remove(callback)

    def expect(self, message_id: str) -> None:
        """Keep the final record of `message_id` for `outcome`."""
        self._waiters.setdefault(message_id, asyncio.get_running_loop().create_future())

    async def outcome(self, message_id: str) -> Record:
        """The final record of an expected message."""
        waiter = self._waiters.get(message_id)
        if waiter is None:
            raise KeyError(f"{message_id} was not submitted through this engine")
        try:
            return await waiter
        finally:
            self._waiters.pop(message_id, None)

    # --- writing ------------------------------------------------------------------------

    def received(
        self,
        messages: list[SpooledMessage],
        now: float,
        received: Received | None = None,
        content: bytes | None = None,
    ) -> None:
        """Reception records of new messages (`content`: theirs, read for reports)."""
        arrival = received.arrival if received is not None else None
        reports = received.reports if received is not None else {}
        for message in messages:
            queue = queue_name_for(message.recipient, message.meta)
            record = LogRecord(
                RecordType.RECEPTION,
                **_envelope(message, queue, now),
                num_attempts=message.attempts,
                peer_address=arrival.peer_address if arrival is not None else None,
                tls=arrival.tls if arrival is not None else None,
            )
            report = reports.get(message.id)
            if report is None or content is None:
                self._write(record)
            else:
                self._report(record, report, content, now)
            self.metrics.received_message(queue)

    def _report(self, reception: LogRecord, report: Report, content: bytes, now: float) -> None:
        """The records of an inbound report: Feedback instead of Reception, or Reception
        then OOB (the plain Reception record when it cannot be read after all)."""
        try:
            if report is Report.FEEDBACK:
                complaint = parse_arf(content)
                if complaint is not None:
                    self._write(feedback_record(reception, complaint))
                    return
            bounce = parse_dsn(content) if report is Report.OOB else None
        except ReportError:
            bounce = None
        self._write(reception)
        if bounce is not None:
            for record in oob_records(reception, bounce, now):
                self._write(record)

    def apply(
        self,
        item: Item,
        decision: Decision,
        *,
        site: str = "",
        peer: tuple[str, str] | None = None,
        tls: tuple[str, str] | None = None,
    ) -> None:
        """Carry out a decision about `item` (see the module's text)."""
        message, now = item.message, time.time()
        content = self.table.take_content(item)
        kept = True
        for logged in decision.records:
            record = LogRecord(
                logged.type,
                **_envelope(message, item.queue, now),
                site=site,
                response=logged.reply,
                peer_address=peer,
                num_attempts=logged.num_attempts,
                tls=tls,
            )
            kept = self._write(record) and kept
        if decision.due is not None:
            message = replace(
                message,
                attempts=decision.attempts,
                due=decision.due,
                # None: no new response (a message sent back to wait for its schedule)
                last_response=decision.last_response or message.last_response,
            )
            self.state.update(message)
            item.message = message
            if not self.stopping:
                self.table.schedule(item)
            return
        self.table.forget(item)
        if not kept:  # its final record may never be written: it must not leave the spool
            return  # (counted in the log's `dropped`, reported when the fault ends)
        final = decision.records[-1]
        if final.type in _NOTIFIED and item.config.generate_dsn and should_generate(message.sender):
            self._notice(message, final.type, final.reply, peer, content)
            return
        self._leave(message.id)

    def _write(self, record: LogRecord) -> bool:
        """Write one record; False when the delivery log could not keep it (logs.RecordLog)."""
        kept = self.records.write(record)
        kind = record.type
        self.counts[kind.value] = self.counts.get(kind.value, 0) + 1
        if self.accounting is not None:
            self.accounting.count(kind, record.reception_protocol)
        self.metrics.count(kind, record.queue, record.site)
        waiter = self._waiters.get(record.id) if kind in FINAL_TYPES else None
        if not self._subscribers and waiter is None:
            return kept
        fields = log_record.encode(record)
        if waiter is not None and not waiter.done():
            waiter.set_result(fields)
        for callback in self._subscribers:
            try:
                callback(fields)
            except Exception:  # a subscriber's bug must not undo the disposition it reports
                log.exception("log record listener failed", listener=repr(callback))
        return kept

    def _leave(self, message_id: str) -> None:
        """Remove a message from the spool once its final record is durable."""
        self.state.remove(message_id)
        self.metrics.left_spool()

    def lost(self, item: Item) -> None:
        """A message left the spool without a disposition (removed or quarantined meanwhile)."""
        self.table.forget(item)
        self.metrics.left_spool()

    # --- DSNs ---------------------------------------------------------------------------

    def _notice(
        self,
        message: SpooledMessage,
        kind: RecordType,
        reply: Reply,
        peer: tuple[str, str] | None,
        content: bytes | None,
    ) -> None:
        assert self.spawn is not None
        task = self.spawn(self._notify(message, kind, reply, peer, content), f"dsn {message.id}")
        self._notices.add(task)
        task.add_done_callback(self._notices.discard)

    async def _notify(
        self,
        message: SpooledMessage,
        kind: RecordType,
        reply: Reply,
        peer: tuple[str, str] | None,
        content: bytes | None,
    ) -> None:
        """Spool a delivery status notification to the sender, then let the message go."""
        try:
            if content is None:
                content = await self.spool.read_content(message.id)
            dsn = build_dsn(
                original=content,
                sender=message.sender,
                recipient=message.recipient,
                kind="Expiration" if kind is RecordType.EXPIRATION else "Bounce",
                reply=reply,
                reporting_mta=self.hostname,
                arrival=datetime.datetime.fromtimestamp(message.created, datetime.UTC),
                remote_mta=peer[0] if peer is not None else None,
            )
            assert self.notify is not None
            await self.notify(message.sender, dsn)
        except (SpoolError, SubmissionRefused) as exc:
            log.error("could not spool a DSN; the record stays", id=message.id, error=str(exc))
        self._leave(message.id)

    # --- stopping -----------------------------------------------------------------------

    async def close(self) -> None:
        """At stop: wait for DSNs being spooled, apply the pending spool changes, and fail
        the waiters of messages that did not finish."""
        self.stopping = True
        await asyncio.gather(*self._notices, return_exceptions=True)
        await self.state.close()
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(EngineStopped("the engine stopped"))
                waiter.exception()  # retrieved: nobody may be waiting
        self._waiters.clear()


def _envelope(message: SpooledMessage, queue: str, now: float) -> dict[str, Any]:
    """The fields every record of a message shares."""
    return {
        "id": message.id,
        "sender": message.sender,
        "recipient": message.recipient,
        "queue": queue,
        "when": now,
        "created": message.created,
        "size": message.size,
        "meta": message.meta,
        "reception_protocol": message.reception_protocol,
        "nodeid": NODE_ID,
    }
