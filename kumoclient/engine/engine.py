"""The delivery engine's lifecycle and library API: spool → scheduled queue → site ready queue →
dispatcher → disposition, built from its rooms.

- `table.MessageTable`: every live message and where it waits (due-time heap, MX lookups,
  ready queues, holds);
- `routing.Router`: queue config, `mx_list` or MX, egress path, site;
- `dispatch.Dispatcher`: ready queues, one attempt per message (its sessions and connection
  leases in `sessions.Connections`);
- `dispositions.Dispositions`: the one writer of records, spool changes, DSNs, outcome
  metrics and waiters; the decisions are `core.disposition`'s;
- `control.Control`: suspend, resume, bounce, retry now, queue states;
- `reception.Reception`: submissions into the spool;
- `recovery`: loading the spool at start, without sending again what was delivered;
- `accounting.Accounting` (when given a database): received and delivered counts, in sqlite.

`Engine` owns the spool, the delivery log, the policy and every task (one TaskGroup). Call
the operations on the engine's event loop. The delivery log's health (`records.health`, owned
by logs.RecordLog) is asked by the dispatcher before each attempt and by reception before
storing: while records cannot be written, no attempt starts and no new mail is taken. Library use:

    async with Engine("policy.lua", data_dir=Path("data")) as engine:
        ids = await engine.submit("me@example.com", ["you@example.net"], content)
        record = await engine.outcome(ids[0])   # the final log record (a dict)
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from kumoclient import logs
from kumoclient.configs import RedisThrottleConfig
from kumoclient.core.disposition import Attempt
from kumoclient.core.queue_name import parse_queue_name, queue_name_for
from kumoclient.core.selector import Selector
from kumoclient.engine.accounting import Accounting
from kumoclient.engine.control import Control, QueueState, SuspensionInfo
from kumoclient.engine.dispatch import Dispatcher
from kumoclient.engine.dispositions import Dispositions, Record
from kumoclient.engine.metrics import EngineMetrics
from kumoclient.engine.queues import Item
from kumoclient.engine.reception import Reception
from kumoclient.engine.recovery import delivered_before, leave_delivered, load_in_batches
from kumoclient.engine.routing import Router
from kumoclient.engine.table import MessageTable
from kumoclient.logs import RecordLog
from kumoclient.mx import MxResolver, forget_resolver, use_resolver
from kumoclient.policies import default_policy_path
from kumoclient.policy.runtime import PolicyHolder
from kumoclient.records import SpooledMessage
from kumoclient.spool import Spool
from kumoclient.spool.space import SpaceLimits
from kumoclient.throttles import SharedThrottles

log = logs.get_logger(__name__)

STOP_GRACE = 10.0
DEFAULT_DATA_DIR = Path("kumoclient-data")  # spool/ and logs/ below it


class Engine:
    """A running delivery engine; `start()`/`stop()` or `async with`."""

    def __init__(
        self,
        policy: PolicyHolder | str | Path | None = None,
        *,
        data_dir: Path | None = None,
        spool_dir: Path | None = None,
        log_dir: Path | None = None,
        max_segment_duration: float = 3600.0,
        resolver: MxResolver | None = None,
        redis_throttles: RedisThrottleConfig | None = None,
        min_free: SpaceLimits | None = None,
        accounting_db: Path | None = None,
    ) -> None:
        if not isinstance(policy, PolicyHolder):
            policy = PolicyHolder(policy or default_policy_path())
        self.policy = policy
        base = data_dir or DEFAULT_DATA_DIR
        # min_free: no mail is taken while the spool's disk is shorter (spool/space.py)
        self.spool = Spool(spool_dir or base / "spool", min_free=min_free)
        self.records = RecordLog(log_dir or base / "logs", max_segment_duration)
        self.metrics = EngineMetrics()
        self.metrics.watch_log(self.records)
        self.dns = resolver if resolver is not None else MxResolver()
        # the policy's kumo.dns asks this resolver too, in this process and in the reception
        # workers forked from it (mx.current_resolver)
        use_resolver(self.dns)
        # rate limits and connection limits, shared with other nodes through Redis when
        # kumo.configure_redis_throttles asked for it, else local
        self.throttles = SharedThrottles(redis_throttles)
        self._build_rooms(policy, socket.getfqdn())  # the host name: make_egress_path's default
        # received and delivered counts in an sqlite file (engine/accounting.py)
        self.accounting = Accounting(accounting_db) if accounting_db is not None else None
        self.dispositions.accounting = self.accounting
        self._tg: asyncio.TaskGroup | None = None
        self._stopping = False
        self.scanned = asyncio.Event()  # every spooled message is scheduled (see start())

    def _build_rooms(self, policy: PolicyHolder, hostname: str) -> None:
        """The table, the one writer, reception, control, dispatcher and router, wired."""
        self.table = MessageTable(self._on_due)
        self.dispositions = Dispositions(
            self.spool, self.records, self.table, self.metrics, hostname=hostname
        )
        self.reception = Reception(
            policy,
            self.spool,
            self.dispositions,
            on_stored=self._stored,
            log_health=self.records.health,
        )
        self.dispositions.notify = self._spool_notice
        self.dispositions.spawn = self._spawn
        self.control = Control(self.table, self.dispositions, release=self._on_due)
        self.dispatcher = Dispatcher(
            table=self.table,
            policy=policy,
            dispositions=self.dispositions,
            control=self.control,
            spool=self.spool,
            metrics=self.metrics,
            throttles=self.throttles,
            dns=self.dns,
            hostname=hostname,
            spawn=self._spawn,
            log_health=self.records.health,
        )
        self.router = Router(
            policy,
            self.dns,
            self.throttles,
            self.table,
            ready=self.dispatcher.ready,
            failed=self._failed,
            spawn=self._spawn,
        )

    @property
    def counts(self) -> dict[str, int]:
        """Records written so far, by type."""
        return self.dispositions.counts

    # --- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _spawn(self, coroutine: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        assert self._tg is not None
        return self._tg.create_task(coroutine, name=name)

    async def start(self, *, clean_spool: bool = True, background_scan: bool = False) -> int:
        """Open spool and log, schedule every spooled message; returns how many there are.
        `clean_spool=False`: the caller removed the spool's stale files already (before
        reception workers began writing to it). `background_scan`: return once the spool is
        listed, and read and schedule its messages in batches while the engine already
        delivers (the oldest first); `scanned` is set, and "spool enumerated" logged, when
        all are read. Otherwise every message is scheduled before start() returns.
        """
        await self.spool.start(clean=clean_spool)
        names = self.spool.listing()
        delivered = delivered_before(self.records.log_dir, set(names))  # before a new segment
        await self.records.open()
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        self.spool.unreadable = 0
        self._spawn(self.table.scheduler.run(), "scheduler")
        self._spawn(self.dispositions.state.run(), "spool-state")
        if self.accounting is not None:
            self._spawn(self.accounting.run(), "accounting")
        if delivered:
            names = leave_delivered(names, delivered, self.dispositions.state.remove)
        self.metrics.spooled.set(len(names))
        self.policy.attach(self._spawn)  # the policy's kumo.spawn_task tasks
        if background_scan:
            scan = load_in_batches(
                self.spool, names, self.enqueue, lambda: self._stopping, self.scanned
            )
            self._spawn(scan, "spool-scan")
            return len(names)
        for message, content in self.spool.load_listed(names):
            self.enqueue([message], content)
        self.scanned.set()
        return len(names) - self.spool.unreadable

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop taking messages, let transactions in flight finish for `grace` seconds,
        abandon the rest (they stay spooled), and close."""
        if self._tg is None:
            return
        self._stopping = True
        self.table.stop()
        self.control.close()
        self.router.stop()
        await self.policy.detach()
        await self.dispatcher.stop(grace)
        # a DSN being spooled removes its original afterwards: before the state writer closes
        await self.dispositions.close()
        if self.accounting is not None:
            await self.accounting.close()
        tg, self._tg = self._tg, None
        await tg.__aexit__(None, None, None)
        await self.spool.close()
        await self.records.close()
        await self.throttles.aclose()
        forget_resolver(self.dns)

    # --- library API ---------------------------------------------------------------------

    async def submit(
        self,
        sender: str,
        recipients: list[str],
        content: bytes,
        meta: dict[str, Any] | None = None,
    ) -> list[str]:
        """Spool a message for each recipient (durably) and queue it; returns the ids. `meta`
        holds JSON values (core.meta); SubmissionRefused when it names no queue (451) or the
        spool cannot take the messages."""
        ids = await self.reception.accept_library(sender, recipients, content, meta or {})
        for message_id in ids:
            self.dispositions.expect(message_id)
        return ids

    async def outcome(self, message_id: str) -> Record:
        """The final log record (Delivery, Bounce, Expiration) of a submitted message."""
        return await self.dispositions.outcome(message_id)

    def subscribe(self, callback: Callable[[Record], None]) -> None:
        """Call `callback` with every log record the engine writes."""
        self.dispositions.subscribe(callback)

    async def flush(self) -> None:
        """Wait until every spool change decided so far (removals, new retry times) is on
        disk."""
        await self.dispositions.state.flush()

    def unsubscribe(self, callback: Callable[[Record], None]) -> None:
        """Stop calling a subscribed `callback`."""
        self.dispositions.unsubscribe(callback)

    # --- operations ----------------------------------------------------------------------

    def metrics_text(self) -> tuple[bytes, str]:
        """The Prometheus text exposition of this engine's metrics, and its content type."""
        return self.metrics.text()

    def suspend(
        self, selector: Selector, reason: str, duration: float | None = None
    ) -> SuspensionInfo:
        """Hold the selected messages (in memory) until `resume` or `duration` seconds."""
        return self.control.suspend(selector, reason, duration)

    def resume(self, selector: Selector | None = None, *, suspension_id: str | None = None) -> int:
        """Lift suspensions (by id, by equal selector, or all); returns how many."""
        return self.control.resume(selector, suspension_id=suspension_id)

    def list_suspensions(self) -> list[SuspensionInfo]:
        """The active suspensions."""
        return self.control.list_suspensions()

    def bounce(self, selector: Selector, reason: str) -> int:
        """AdminBounce the selected messages; returns how many."""
        return self.control.bounce(selector, reason)

    def retry_now(self, selector: Selector) -> int:
        """Make the selected scheduled messages due now; returns how many."""
        return self.control.retry_now(selector)

    def queue_states(self) -> list[QueueState]:
        """Per queue: counts by stage, suspension, oldest, next due, last response."""
        return self.control.queue_states()

    # --- queueing ------------------------------------------------------------------------

    def enqueue(self, messages: list[SpooledMessage], content: bytes | None = None) -> None:
        """Schedule durable messages by their due time (`content`: theirs, when known)."""
        for message in messages:
            queue = queue_name_for(message.recipient, message.meta)
            item = self.table.add(message, queue, parse_queue_name(queue), content)
            if item is not None:
                self.table.schedule(item)

    def _stored(self, messages: list[SpooledMessage], content: bytes | None) -> None:
        """Reception spooled new messages."""
        self.enqueue(messages, content)

    def _on_due(self, item: Item) -> None:
        """A message came due (or was released): held, or on to routing."""
        if self._stopping:
            return
        if self.control.hold(item):
            self.table.drop_content(item)
            return
        self.router.route(item)

    def _failed(self, item: Item, attempt: Attempt) -> None:
        """Routing failed for `item` (null MX, DNS, policy)."""
        self.dispatcher.settle(item, attempt)

    async def _spool_notice(self, recipient: str, content: bytes) -> None:
        await self.reception.accept_library("", [recipient], content, {}, protocol="DSN")
