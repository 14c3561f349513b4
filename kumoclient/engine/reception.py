"""Taking mail in: policy reception events, durable spooling, Reception records.

One submission becomes one message per recipient. Each message goes through the policy's
reception event with the `msg` object (policy.message: it may set meta, edit the message, change
the envelope, set a schedule, or `kumo.reject`), then all of them are written durably; only
then is the submitter told. An SMTP transaction goes through KumoMTA's steps after DATA first
(smtp_intake.py: `smtp_server_data`, trace headers, listener domains and inbound reports): a
report logged and not relayed (`LogThenDrop`) gets its records and is not stored. A message
the policy left with several recipients is spooled as one message per recipient; its due time
is the one the policy set (`msg:set_due`, now by default) moved into its schedule
(`msg:set_scheduling`); one whose meta names no queue is refused (451). All or nothing: a
refusal or a spool error
for one recipient refuses the whole submission and leaves nothing behind. The one exception
is HTTP injection (`accept_http`), which answers per recipient as KumoMTA does: a
`kumo.reject` refuses that recipient only; a policy error or a spool error still refuses the
whole request.

While the delivery log cannot be written (logs.LogHealth down), every submission is refused
with `451 4.3.0` before its policy event runs, and nothing is stored: the sender keeps it and
tries again (a drop file stays in `incoming/`). Only DSNs are still spooled: they come from
dispositions already made, and their Reception records are held like every other record.
The same `451 4.3.1` refusal holds while the spool's disk has less free space or inodes than
the policy's `kumo.define_spool` asks (`min_free_space`, `min_free_inodes`; spool/space.py).
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kumoclient import logs
from kumoclient.core import msgid
from kumoclient.core.listener_domain import Report
from kumoclient.core.queue_name import queue_name_for
from kumoclient.core.schedule import next_allowed
from kumoclient.engine import smtp_intake
from kumoclient.engine.dispositions import Dispositions, Received
from kumoclient.errors import (
    PolicyReject,
    QueueNameError,
    ReceptionPaused,
    SpoolEntryCorrupt,
    SpoolEntryMissing,
    SpoolError,
    SpoolUnavailable,
    SubmissionRefused,
)
from kumoclient.listener import Transaction
from kumoclient.logs import LogHealth
from kumoclient.policy.message import MessageView
from kumoclient.policy.runtime import PolicyHolder
from kumoclient.records import AuthInfo, SpooledMessage
from kumoclient.spool import Spool, Submission

log = logs.get_logger(__name__)

LOG_DOWN = "4.3.0 Delivery log unavailable, try again later"  # with 451
LOW_SPACE = "4.3.1 Spool disk is too full, try again later"  # with 451


def _random_bits() -> int:
    """64 random bits for a submission's ids: the `random` module's generator, seeded from
    the OS at start and re-seeded in every forked process (reception workers), since
    `secrets` would cost a system call per submission. Ids need to be unique, not secret."""
    return random.getrandbits(64)


# {content: its messages}, what their records say -> handed to the main process
Announce = Callable[[dict[bytes, list[SpooledMessage]], Received], Awaitable[None]]
NOTHING = Received()


@dataclass(frozen=True, slots=True)
class HttpAccepted:
    """What `accept_http` did: the ids spooled, and the recipients the policy refused with
    the reply it gave (`"550 5.7.1 text"`)."""

    ids: list[str] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)


class Reception:
    """The path from a submission to durable spooled messages."""

    def __init__(
        self,
        policy: PolicyHolder,
        spool: Spool,
        dispositions: Dispositions | None,
        *,
        on_stored: Callable[[list[SpooledMessage], bytes | None], None] | None = None,
        announce: Announce | None = None,
        log_health: LogHealth | None = None,
    ) -> None:
        self.policy = policy
        self.log_health = log_health  # None: nothing to ask (records are not written here)
        self.spool = spool
        self.dispositions = dispositions  # None in a reception worker (it announces)
        self.on_stored = on_stored  # the engine's queue, told of each durable message
        # in a reception worker: hands durable messages to the main process instead of
        # writing records and queueing them here (returns once they are on their way)
        self.announce = announce
        self.accepted = 0

    async def accept_transaction(self, txn: Transaction) -> str:
        """The listener's callback: returns the 250 text or raises SubmissionRefused (the
        policy's own refusal: CommandError, with its disconnect mode)."""
        self._check_log()
        now = time.time()
        base = msgid.submission_base(now, _random_bits())
        intake = await smtp_intake.take(self.policy.current, txn, base, now)
        received = Received(intake.arrival, intake.reports, intake.dropped)
        ids = await self._store(intake.views, "ESMTP", received=received)
        suffix = f" and {len(ids) - 1} more" if len(ids) > 1 else ""
        return f"250 2.0.0 OK queued as {ids[0]}{suffix}"

    async def accept_smtp(
        self, sender: str, recipients: list[str], content: bytes, peer: str, smtputf8: bool
    ) -> str:
        """A submission as SMTP makes it, without a session (the testing plugin): returns
        the 250 text or raises SubmissionRefused."""
        self._check_log()
        base = msgid.submission_base(time.time(), _random_bits())
        views = [
            MessageView(msgid.message_id(base, i), sender, rcpt, content, {})
            for i, rcpt in enumerate(recipients)
        ]
        await self._run_policy("smtp_server_message_received", views)
        ids = await self._store(views, "ESMTP")
        suffix = f" and {len(ids) - 1} more" if len(ids) > 1 else ""
        return f"250 2.0.0 OK queued as {ids[0]}{suffix}"

    async def accept_library(
        self,
        sender: str,
        recipients: list[str],
        content: bytes,
        meta: dict[str, Any],
        *,
        protocol: str = "Library",
    ) -> list[str]:
        """`Engine.submit` and generated DSNs: spool the messages as given (no reception
        event); their ids. Raises SubmissionRefused when the spool cannot take them (or
        the delivery log is down: not for a DSN).
        """
        if protocol != "DSN":
            self._check_log()
        base = msgid.submission_base(time.time(), _random_bits())
        views = [
            MessageView(msgid.message_id(base, i), sender, rcpt, content, dict(meta))
            for i, rcpt in enumerate(recipients)
        ]
        return await self._store(views, protocol)

    async def accept_http(
        self,
        sender: str,
        messages: Sequence[tuple[str, bytes]],
        meta: Mapping[str, Any],
        auth: AuthInfo | None = None,
    ) -> HttpAccepted:
        """The inject API: `(recipient, content)` per message, each already built. Runs
        `http_message_generated(msg, auth_info)` per message, as KumoMTA calls it (`auth`:
        who the HTTP client is); spools (protocol "HTTP") those it did not refuse, durably
        before returning. Raises SubmissionRefused, with nothing spooled, when the policy
        fails (451) or the spool cannot take them (452); ReceptionPaused while the delivery
        log is down.
        """
        self._check_log()
        base = msgid.submission_base(time.time(), _random_bits())
        views = [
            MessageView(msgid.message_id(base, i), sender, rcpt, content, dict(meta))
            for i, (rcpt, content) in enumerate(messages)
        ]
        auth_info = (auth or AuthInfo()).as_data()
        refused: list[tuple[str, str]] = []
        kept: list[MessageView] = []
        for view in views:
            try:
                await self._policy_event("http_message_generated", view, auth_info)
            except PolicyReject as reject:
                refused.append((view.recipients[0], f"{reject.code} {reject.text}"))
                continue
            kept.append(view)
        ids = await self._store(kept, "HTTP") if kept else []
        return HttpAccepted(ids, refused)

    def adopt(
        self,
        messages: list[SpooledMessage],
        content: bytes | None,
        now: float,
        received: Received = NOTHING,
    ) -> None:
        """New messages: their Reception records, the count, and the engine's queue for those
        stored (all but `received.dropped`). Also called by the main process for messages
        its reception workers took."""
        if self.dispositions is not None:
            self.dispositions.received(messages, now, received, content)
        if received.dropped:
            messages = [m for m in messages if m.id not in received.dropped]
        self.accepted += len(messages)
        if self.on_stored is not None and messages:
            self.on_stored(messages, content)

    def _check_log(self) -> None:
        """Refuse a submission while the delivery log cannot be written, or the spool's disk
        is short of space (see the module)."""
        if self._log_down():
            raise ReceptionPaused(451, LOG_DOWN)
        if self.spool.low_space() is not None:
            raise ReceptionPaused(451, LOW_SPACE)

    def _log_down(self) -> bool:
        return self.log_health is not None and not self.log_health.ok

    async def _run_policy(self, event: str, views: list[MessageView]) -> None:
        for view in views:
            try:
                await self._policy_event(event, view)
            except PolicyReject as reject:
                raise SubmissionRefused(reject.code, reject.text) from reject

    async def _policy_event(self, event: str, view: MessageView, *args: Any) -> None:
        """Run a reception event on one message: PolicyReject when the policy refuses it,
        SubmissionRefused (451) when the policy fails."""
        await smtp_intake.message_event(self.policy.current, event, view, *args)

    async def _store(
        self,
        views: list[MessageView],
        protocol: str,
        created: float | None = None,
        *,
        fresh: bool = True,
        received: Received = NOTHING,
    ) -> list[str]:
        """Store `views` (all but `received.dropped`), then hand them on; their ids."""
        now = time.time() if created is None else created
        groups: dict[bytes, list[SpooledMessage]] = {}
        for view in views:
            spooled = _spooled(view, protocol, now)
            groups.setdefault(view.content, []).extend(spooled)
            if len(spooled) > 1:
                received = _covering(received, view.message_id, [m.id for m in spooled[1:]])
        stored: list[SpooledMessage] = []
        try:
            for content, messages in groups.items():
                kept = [m for m in messages if m.id not in received.dropped]
                if kept:
                    await self.spool.store(kept, content, fresh=fresh)
                    stored.extend(kept)
        except SpoolError as exc:
            log.error("spool cannot take a submission", error=str(exc))
            for message in stored:
                await self.spool.remove(message.id)
            raise SubmissionRefused(
                452, "4.3.1 Insufficient system storage, try again later"
            ) from exc
        if self.announce is not None:
            # a reception worker: the main process writes the records and queues them
            await self.announce(groups, received)
            self.accepted += len(stored)
        else:
            for content, messages in groups.items():
                self.adopt(messages, content, now, received)
        return [view.message_id for view in views]

    async def pick_up_drops(self) -> int:
        """Move completed `incoming/` files into the spool; returns how many were taken
        (none while the delivery log is down: the files wait).

        A file that cannot be taken now (out of descriptors, the disk or the log failing)
        stays and is tried again at the next call; once the others were tried, the first
        such failure is raised (SpoolError, SubmissionRefused), as is a folder that cannot
        be listed, so that the caller knows the pick-up is failing."""
        taken = 0
        failure: SpoolUnavailable | SubmissionRefused | None = None
        for path in self.spool.drops.pending():
            if self._log_down():
                break
            try:
                if await self._pick_up(path):
                    taken += 1
            except (SpoolUnavailable, SubmissionRefused) as exc:
                failure = failure or exc
        if failure is not None:
            raise failure
        return taken

    async def _pick_up(self, path: Path) -> bool:
        try:
            submission, created = await self.spool.drops.read(path)
        except SpoolEntryMissing:
            return False  # gone
        except SpoolEntryCorrupt as exc:  # it must not stop the pick-up
            self.spool.drops.set_aside(path, f"{type(exc).__name__}: {exc}")
            return False
        views = self._views(submission)
        await self._store(views, submission.reception_protocol, created, fresh=False)
        self.spool.drops.finish(path)
        return True

    @staticmethod
    def _views(submission: Submission) -> list[MessageView]:
        metas = submission.meta or tuple({} for _ in submission.recipients)
        return [
            MessageView(
                msgid.message_id(submission.base, i),
                submission.sender,
                rcpt,
                submission.content,
                dict(metas[i]),
            )
            for i, rcpt in enumerate(submission.recipients)
        ]


def _covering(received: Received, view_id: str, more: list[str]) -> Received:
    """`received` with a view's drop and complaint also for the messages it was split into
    (a policy's `msg:set_recipient{...}`); a bounce report's OOB records stay written once."""
    reports = received.reports
    if reports.get(view_id) is Report.FEEDBACK:
        reports = {**reports, **dict.fromkeys(more, Report.FEEDBACK)}
    dropped = received.dropped | set(more) if view_id in received.dropped else received.dropped
    return Received(received.arrival, reports, dropped)


def _spooled(view: MessageView, protocol: str, now: float) -> list[SpooledMessage]:
    """The spooled messages of a view after its events: one per recipient (the first keeps
    the view's id), due when the policy set (`msg:set_due`, else now) moved into its schedule
    (`msg:set_scheduling`). SubmissionRefused (451, nothing spooled) when its meta cannot
    name a queue: a reserved key holding something other than a string, which KumoMTA also
    refuses at reception (core.queue_name)."""
    ids = [view.message_id]
    if len(view.recipients) > 1:
        base = msgid.submission_base(now, _random_bits())
        ids += [msgid.message_id(base, i) for i in range(len(view.recipients) - 1)]
    due = next_allowed(view.schedule, now if view.due is None else view.due)
    messages = []
    for message_id, recipient in zip(ids, view.recipients, strict=True):
        try:
            queue_name_for(recipient, view.meta)
        except QueueNameError as exc:
            log.error(
                "reception policy set meta that names no queue", id=message_id, error=str(exc)
            )
            raise SubmissionRefused(451, "4.3.0 Local policy error, try again later") from exc
        messages.append(
            SpooledMessage(
                id=message_id,
                sender=view.envelope_sender,
                recipient=recipient,
                meta=dict(view.meta),
                created=now,
                size=len(view.content),
                attempts=view.attempts,
                due=due,
                reception_protocol=protocol,
                schedule=view.schedule,
            )
        )
    return messages
