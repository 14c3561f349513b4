"""An SMTP transaction made into the messages to keep, by KumoMTA's steps after DATA:

1. the connection metadata, every key with its JSON value, is copied into the meta of the
   messages (KumoMTA's message starts with the whole connection metadata);
2. `smtp_server_data(msg, conn_meta)` on the whole transaction, one message with every
   recipient: its content, meta and recipient list (`msg:set_recipient`, such as alias
   expansion) carry over to the recipients' messages (a sender change does not, as in
   KumoMTA). A recipient the handler added is relayed or logged as the transaction's first
   recipient is (KumoMTA's rule for a batch), one given at RCPT as decided then;
3. per recipient, a message (one per recipient, as ever) with the `Received:` header
   (`trace_headers.received_header`), then `smtp_server_message_received(msg, conn_meta)`,
   then the supplemental header (`trace_headers.supplemental_header`);
4. each message's fate (core/listener_domain.py: `after_data`): relayed (stored), logged as a
   report, or both. The content is read as a complaint, then as a bounce report, only when a
   recipient's listener domain logs that kind, and once. OOB records are written for the first
   message logged as a bounce only: one incoming report, one set of OOB records.
A refusal anywhere refuses the whole transaction: `kumo.reject` with its reply (CommandError,
which keeps `kumo.disconnect`'s mode), a failing handler `451 4.3.0`, steps 2 and 3 running
past `data_processing_timeout` `451 4.4.5`, nothing relayed nor logged `550 5.7.1`.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kumoclient import logs
from kumoclient.core import msgid, trace_headers
from kumoclient.core.arf_report import parse_arf
from kumoclient.core.dsn_report import parse_dsn
from kumoclient.core.listener_domain import AfterData, RelayDisposition, Report, after_data
from kumoclient.engine.smtp_policy import conn_meta
from kumoclient.errors import (
    CommandError,
    PolicyError,
    PolicyReject,
    ReportError,
    SubmissionRefused,
)
from kumoclient.listener import Transaction
from kumoclient.policy.message import MessageView
from kumoclient.policy.runtime import PolicyRuntime
from kumoclient.records import Arrival

log = logs.get_logger(__name__)

DATA = "smtp_server_data"
RECEIVED = "smtp_server_message_received"
TIMED_OUT = "4.4.5 data_processing_timeout exceeded (rx)"


@dataclass(slots=True)
class Intake:
    """The messages of a transaction: all of them (`views`), those logged but not kept
    (`dropped`, LogThenDrop), the report each one is logged as, and how they arrived."""

    views: list[MessageView]
    arrival: Arrival
    dropped: frozenset[str] = frozenset()
    reports: dict[str, Report] = field(default_factory=dict)


def message_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """A message's own copy of metadata (tables copied: one message's edits stay its own)."""
    return {
        key: value if isinstance(value, str) else copy.deepcopy(value)
        for key, value in meta.items()
    }


def arrival(txn: Transaction) -> Arrival:
    conn = txn.connection
    return Arrival((conn.helo or "", conn.peer), conn.tls)


async def take(runtime: PolicyRuntime, txn: Transaction, base: str, now: float) -> Intake:
    """The messages of `txn` (see the module's text); SubmissionRefused or CommandError when
    the transaction is refused."""
    if runtime.has_handler(DATA) or runtime.has_handler(RECEIVED):
        try:
            async with asyncio.timeout(txn.keys.data_processing_timeout):
                views, content, decided = await _views(runtime, txn, base, now)
        except TimeoutError:
            raise SubmissionRefused(451, TIMED_OUT) from None
    else:  # no policy runs: nothing to time (an asyncio.timeout costs 10 µs a message)
        views, content, decided = await _views(runtime, txn, base, now)
    fates = _fates(content, decided)
    intake = Intake(views, arrival(txn))
    dropped, oob = set(), False
    for view, fate in zip(views, fates, strict=True):
        if not fate.relay:
            dropped.add(view.message_id)
        if fate.report is Report.FEEDBACK or (fate.report is Report.OOB and not oob):
            intake.reports[view.message_id] = fate.report
            oob = oob or fate.report is Report.OOB
    if len(dropped) == len(views) and not any(fate.report for fate in fates):
        raise SubmissionRefused(550, "5.7.1 relaying denied")
    intake.dropped = frozenset(dropped)
    return intake


async def _views(
    runtime: PolicyRuntime, txn: Transaction, base: str, now: float
) -> tuple[list[MessageView], bytes, list[RelayDisposition]]:
    """Steps 1 to 3: the messages, the transaction's content after `smtp_server_data`, and
    the relay disposition of each message's recipient."""
    conn, trace = txn.connection, txn.keys.trace_headers
    content, meta, recipients = txn.content, conn.meta, txn.recipients  # each view copies it
    if runtime.has_handler(DATA):
        whole = MessageView(
            msgid.message_id(base, 0), txn.sender, recipients, content, message_meta(meta)
        )
        await _event(runtime, DATA, whole, txn)
        content, meta, recipients = whole.content, whole.meta, whole.recipients
    decided = _decided(txn, recipients)
    hop = None
    if trace.received_header:
        hop = trace_headers.Hop(
            conn.helo, conn.extended, conn.peer, conn.hostname, conn.local.rpartition(":")[0],
            conn.tls, conn.authenticated is not None,
        )  # fmt: skip
    views = []
    for index, recipient in enumerate(recipients):
        message_id = msgid.message_id(base, index)
        body = content
        if hop is not None:
            body = trace_headers.received(hop, message_id, recipient, now) + content
        views.append(MessageView(message_id, txn.sender, recipient, body, message_meta(meta)))
    if runtime.has_handler(RECEIVED):
        for view in views:
            await _event(runtime, RECEIVED, view, txn)
    if trace.supplemental_header:
        for view in views:
            header = trace_headers.supplemental(
                trace.header_name, view.recipients, view.meta, trace.include_meta_names
            )
            view.content = header + view.content
    return views, content, decided


def _decided(txn: Transaction, recipients: list[str]) -> list[RelayDisposition]:
    """Each recipient's disposition: decided at its RCPT, else the first recipient's."""
    at_rcpt = dict(zip(txn.recipients, txn.dispositions, strict=True))
    first = txn.dispositions[0]
    return [at_rcpt.get(recipient, first) for recipient in recipients]


async def _event(runtime: PolicyRuntime, event: str, view: MessageView, txn: Transaction) -> None:
    try:
        await message_event(runtime, event, view, conn_meta(txn.connection))
    except PolicyReject as reject:
        raise CommandError(f"{reject.code} {reject.text}", reject.disconnect) from reject


async def message_event(runtime: PolicyRuntime, event: str, view: MessageView, *args: Any) -> None:
    """Run a reception event on one message (every reception path's): PolicyReject when the
    policy refuses it, SubmissionRefused (451) when the policy fails."""
    try:
        await runtime.message_event(event, view, *args)
    except PolicyError as exc:
        log.error(
            "reception policy failed; asking the client to retry",
            policy_event=event,
            error=str(exc),
            policy_location=exc.location,
        )
        raise SubmissionRefused(451, "4.3.0 Local policy error, try again later") from exc


def _fates(content: bytes, dispositions: list[RelayDisposition]) -> list[AfterData]:
    """Step 4 for each recipient's message."""
    is_arf = any(d.log_arf.logs for d in dispositions) and _reads(parse_arf, content)
    is_dsn = any(d.log_oob.logs for d in dispositions) and _reads(parse_dsn, content)
    return [after_data(disposition, is_arf, is_dsn) for disposition in dispositions]


def _reads(parse: Callable[[bytes], object], content: bytes) -> bool:
    """The content is a report of `parse`'s kind (a malformed one is not: plain mail)."""
    try:
        return parse(content) is not None
    except ReportError as exc:
        log.info("an inbound report cannot be read; taken as plain mail", error=str(exc))
        return False
