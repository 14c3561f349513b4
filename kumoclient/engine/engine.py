"""The delivery engine: spool → scheduled queue → site ready queue → dispatcher → disposition.

`Engine` owns the spool, the delivery log, the policy and every task (one TaskGroup): the
scheduler, the batched state writer and one dispatcher per open connection. A dispatcher
takes ready messages of its site, opens a session when it has none, sends, and applies the
outcome: Delivery and Bounce write their record and leave the spool; a TransientFailure
writes its record and is requeued by the retry schedule, or expires (SPEC 2.4). A message
that waits past `max_age` in a ready queue expires when it is taken.

Operations: `metrics_text()` (Prometheus, see `engine.metrics`), and queue administration —
`suspend`, `resume`, `list_suspensions`, `bounce`, `retry_now`, `queue_states` (see
`engine.control`); call them on the engine's event loop. Library use:

    async with Engine("policy.lua", data_dir=Path("data")) as engine:
        ids = await engine.submit("me@example.com", ["you@example.net"], content)
        record = await engine.outcome(ids[0])   # the final log record (a dict)
"""

from __future__ import annotations

import asyncio
import datetime
import random
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from kumoclient import logs
from kumoclient.core.dsn import build_dsn, should_generate
from kumoclient.core.queue_name import parse_queue_name, queue_name_for
from kumoclient.core.reply import single_line
from kumoclient.core.retry import expires, next_delay
from kumoclient.core.selector import Selector
from kumoclient.engine.attempt import Outcome, failed_outcome, judge, open_session
from kumoclient.engine.control import Control, QueueState, SuspensionInfo
from kumoclient.engine.metrics import EngineMetrics
from kumoclient.engine.queues import Item, Scheduler, Site, Stage
from kumoclient.engine.reception import Reception
from kumoclient.engine.route import EGRESS_SOURCE, Route, dns_route, route_for, routing_domain
from kumoclient.engine.state import StateWriter
from kumoclient.errors import KumoClientError, PolicyError, SubmissionRefused
from kumoclient.logs import RecordLog, RecordType, build_record
from kumoclient.mx import DnsLookupError, MxResolver, NullMx
from kumoclient.policies import default_policy_path
from kumoclient.policy.runtime import PolicyHolder
from kumoclient.records import (
    EnhancedCode,
    QueueConfig,
    RedisThrottleConfig,
    Reply,
    SpooledMessage,
)
from kumoclient.smtp import Session
from kumoclient.spool import Spool, SpoolError
from kumoclient.throttles import AsyncThrottle, Lease, SharedThrottles

log = logs.get_logger(__name__)

STOP_GRACE = 10.0
DEFAULT_DATA_DIR = Path("kumoclient-data")  # spool/ and logs/ below it
FINAL = frozenset({"Delivery", "Bounce", "Expiration", "AdminBounce"})
_LEASE_RETRY = 0.2  # seconds between tries for a shared connection slot
_NOTIFIED = (RecordType.BOUNCE, RecordType.EXPIRATION)  # with generate_dsn (SPEC 2.5)
_INLINE_READ = 256 * 1024  # smaller contents are read on the loop (page cache, ~µs)
# contents kept in memory between reception (or start-up) and the first attempt, so that a
# message is not read back from disk; beyond this many bytes they are read when delivered
CONTENT_BUDGET = 64 * 1024 * 1024
SCAN_BATCH = 256  # spooled messages read at start between two turns of the event loop
Record = dict[str, object]


class EngineStopped(KumoClientError):
    """The engine stopped before the awaited message reached a final disposition."""


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
    ) -> None:
        if not isinstance(policy, PolicyHolder):
            policy = PolicyHolder(policy or default_policy_path())
        self.policy = policy
        base = data_dir or DEFAULT_DATA_DIR
        self.spool = Spool(spool_dir or base / "spool")
        self.records = RecordLog(log_dir or base / "logs", max_segment_duration)
        self.metrics = EngineMetrics()
        self.records.listeners.append(self._on_record)
        self.reception = Reception(policy, self.spool, self.records, on_stored=self._on_stored)
        self.scheduler = Scheduler(self._on_due)
        self._state = StateWriter(self.spool, self.records)
        self._sites: dict[str, Site] = {}
        self._queue_configs: dict[str, tuple[int, QueueConfig]] = {}
        self._waiters: dict[str, asyncio.Future[Record]] = {}
        self._dispatchers: set[asyncio.Task[None]] = set()
        self._resolving: dict[str, list[Item]] = {}  # routing domain -> items awaiting its MX
        self._lookups: set[asyncio.Task[None]] = set()
        self._notices: set[asyncio.Task[None]] = set()  # DSNs being spooled
        # the messages queued in memory, by id: a message is never queued twice
        self._live: dict[str, Item] = {}
        self._sessions: dict[Session, str] = {}  # open sessions -> their site's name
        self._cached = 0  # bytes of content held by items
        self._tg: asyncio.TaskGroup | None = None
        self._stopping = False
        self.scanned = asyncio.Event()  # every spooled message is scheduled (see start())
        self._hostname = socket.getfqdn()  # as make_egress_path's default
        self.dns = resolver if resolver is not None else MxResolver()
        # rate limits and connection limits, shared with other nodes through Redis when
        # kumo.configure_redis_throttles asked for it, else local
        self.throttles = SharedThrottles(redis_throttles)
        self._leases: dict[Session, Lease] = {}
        self.counts: dict[str, int] = {}
        self.control = Control(
            scheduler=self.scheduler,
            sites=self._sites,
            resolving=self._resolving,
            live=self._live,
            release=self._on_due,
            admin_bounce=self._admin_bounce,
        )

    # --- lifecycle -----------------------------------------------------------------------

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self, *, clean_spool: bool = True, background_scan: bool = False) -> int:
        """Open spool and log, schedule every spooled message; returns how many there are.
        `clean_spool=False`: the caller removed the spool's stale files already (before
        reception workers began writing to it). `background_scan`: return once the spool is
        listed, and read and schedule its messages in batches while the engine already
        delivers (the oldest first); `scanned` is set, and "spool enumerated" logged, when
        all are read. Otherwise every message is scheduled before start() returns.
        """
        await self.spool.start(clean=clean_spool)
        await self.records.open()
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        names = self.spool.listing()
        self.spool.unreadable = 0
        self.metrics.spooled.set(len(names))
        self._tg.create_task(self.scheduler.run(), name="scheduler")
        self._tg.create_task(self._state.run(), name="spool-state")
        if background_scan:
            self._tg.create_task(self._scan(names), name="spool-scan")
            return len(names)
        for message, content in self.spool.load_listed(names):
            self.enqueue([message], content)
        self.scanned.set()
        return len(names) - self.spool.unreadable

    async def _scan(self, names: list[str]) -> None:
        """Read and schedule the listed messages, SCAN_BATCH at a time, letting deliveries
        and receptions run between batches."""
        started = time.monotonic()
        scheduled = 0
        for first in range(0, len(names), SCAN_BATCH):
            if self._stopping:
                return
            for message, content in self.spool.load_listed(names[first : first + SCAN_BATCH]):
                self.enqueue([message], content)
                scheduled += 1
            await asyncio.sleep(0)
        self.scanned.set()
        log.info(
            "spool enumerated",
            messages=scheduled,
            quarantined=self.spool.unreadable,
            seconds=round(time.monotonic() - started, 3),
            spool=str(self.spool.root),
        )

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Stop taking messages, let transactions in flight finish for `grace` seconds,
        abandon the rest (they stay spooled), and close."""
        if self._tg is None:
            return
        self._stopping = True
        self.scheduler.stop()
        self.control.close()
        for lookup in self._lookups:
            lookup.cancel()  # their messages stay spooled
        for site in self._sites.values():
            site.release_waiters()
        running = [task for task in self._dispatchers if not task.done()]
        if running:
            _, pending = await asyncio.wait(running, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                log.warning("abandoned transactions in flight at stop", count=len(pending))
            await asyncio.gather(*pending, return_exceptions=True)
        # a DSN being spooled removes its original afterwards: before the state writer closes
        await asyncio.gather(*self._notices, return_exceptions=True)
        await self._state.close()
        tg, self._tg = self._tg, None
        await tg.__aexit__(None, None, None)
        await self.spool.close()
        await self.records.close()
        await self.throttles.aclose()
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(EngineStopped("the engine stopped"))
                waiter.exception()  # retrieved: nobody may be waiting
        self._waiters.clear()

    # --- library API ---------------------------------------------------------------------

    async def submit(
        self,
        sender: str,
        recipients: list[str],
        content: bytes,
        meta: dict[str, str] | None = None,
    ) -> list[str]:
        """Spool a message for each recipient (durably) and queue it; returns the ids."""
        ids = await self.reception.accept_library(sender, recipients, content, meta or {})
        for message_id in ids:
            self._waiters.setdefault(message_id, asyncio.get_running_loop().create_future())
        return ids

    async def outcome(self, message_id: str) -> Record:
        """The final log record (Delivery, Bounce, Expiration) of a submitted message."""
        waiter = self._waiters.get(message_id)
        if waiter is None:
            raise KeyError(f"{message_id} was not submitted through this engine")
        try:
            return await waiter
        finally:
            self._waiters.pop(message_id, None)

    def subscribe(self, callback: Callable[[Record], None]) -> None:
        """Call `callback` with every log record the engine writes."""
        self.records.listeners.append(callback)

    def _on_record(self, record: Record) -> None:
        kind = str(record["type"])
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.metrics.record(record)
        if kind in FINAL:
            waiter = self._waiters.get(str(record["id"]))
            if waiter is not None and not waiter.done():
                waiter.set_result(record)

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

    # --- scheduling ----------------------------------------------------------------------

    def enqueue(self, messages: list[SpooledMessage], content: bytes | None = None) -> None:
        """Schedule durable messages by their due time (`content`: theirs, when known)."""
        self._enqueue(messages, content, received=False)

    def _on_stored(self, messages: list[SpooledMessage], content: bytes | None) -> None:
        """Reception spooled new messages."""
        self._enqueue(messages, content, received=True)

    def _enqueue(
        self, messages: list[SpooledMessage], content: bytes | None, *, received: bool
    ) -> None:
        for message in messages:
            if message.id in self._live:
                continue  # e.g. an incoming/ file picked up again after a crash
            queue = queue_name_for(message.recipient, message.meta)
            item = Item(message, queue, parse_queue_name(queue))
            self._live[message.id] = item
            if received:
                self.metrics.received_message(queue)
            if content is not None and self._cached + len(content) <= CONTENT_BUDGET:
                item.content = content
                self._cached += len(content)
            self.scheduler.add(item)

    def _queue_config(self, item: Item) -> QueueConfig:
        generation = self.policy.generation
        cached = self._queue_configs.get(item.queue)
        if cached is not None and cached[0] == generation:
            return cached[1]
        config = self.policy.current.get_queue_config(item.name)
        self._queue_configs[item.queue] = (generation, config)
        return config

    def _site(self, route: Route) -> Site:
        generation = self.policy.generation
        site = self._sites.get(route.site)
        if site is not None and site.generation == generation:
            return site
        egress = self.policy.current.get_egress_path_config(
            route.routing_domain, EGRESS_SOURCE, route.site_name
        )
        if site is None:
            site = self._sites[route.site] = Site(route, egress, generation, self.throttles)
        else:
            site.configure(egress, generation)
        site.route = route  # the latest order of the MX hosts
        return site

    def _on_due(self, item: Item) -> None:
        """A message came due: into its site's ready queue (or expired, failed or held)."""
        if self._stopping:
            return
        if self.control.hold(item):
            self._release(item)
            return
        try:
            item.config = self._queue_config(item)
            if item.config.mx_list is None:
                self._route_by_dns(item)
                return
            site = self._site(route_for(item.name, item.config))
        except PolicyError as exc:
            self._policy_failed(item, exc)
            return
        self._ready(item, site)

    def _ready(self, item: Item, site: Site) -> None:
        if self._expired(item, time.time()):
            self._expire(item, site.name, item.message.attempts)
            return
        if self.control.hold(item):  # suspended while its MX was looked up
            self._release(item)
            return
        if site.put(item):
            self._spawn(site)

    def _policy_failed(self, item: Item, exc: PolicyError) -> None:
        log.error("policy failed while routing; retrying later", id=item.message.id, error=str(exc))
        text = f"KumoMTA internal: policy error while routing: {exc}"
        self._transient(item, failed_outcome(Reply(451, EnhancedCode(4, 3, 0), text)), "")

    def _route_by_dns(self, item: Item) -> None:
        """Queue the item behind its routing domain's MX lookup (one lookup per domain)."""
        domain = routing_domain(item.name)
        item.stage = Stage.ROUTING
        waiting = self._resolving.get(domain)
        if waiting is not None:
            waiting.append(item)
            return
        self._resolving[domain] = [item]
        assert self._tg is not None
        task = self._tg.create_task(self._resolve(domain), name=f"mx {domain}")
        self._lookups.add(task)
        task.add_done_callback(self._lookups.discard)

    async def _resolve(self, domain: str) -> None:
        result: Route | DnsLookupError
        try:
            result = await dns_route(domain, self.dns)
        except DnsLookupError as exc:
            result = exc
        items = self._resolving.pop(domain, [])
        if self._stopping:
            return
        for item in items:
            if isinstance(result, DnsLookupError):  # null MX: Bounce; else TransientFailure
                reply = result.reply()
                if not isinstance(result, NullMx):
                    text = f"KumoMTA internal: failed to resolve queue {item.queue}: {result.text}"
                    reply = Reply(result.code, result.enhanced_code, text)
                self._apply(item, failed_outcome(reply), "")
            else:
                try:
                    site = self._site(result)
                except PolicyError as exc:
                    self._policy_failed(item, exc)
                    continue
                self._ready(item, site)

    def _spawn(self, site: Site) -> None:
        assert self._tg is not None
        site.active += 1
        task = self._tg.create_task(self._dispatcher(site), name=f"dispatch {site.name}")
        self._dispatchers.add(task)
        task.add_done_callback(self._dispatchers.discard)

    # --- dispatching ---------------------------------------------------------------------

    async def _dispatcher(self, site: Site) -> None:
        session: Session | None = None
        try:
            while not self._stopping:
                idle = site.egress.idle_timeout if session is not None else 0.0
                item = await site.take(idle)
                if item is None:
                    break
                session = await self._guarded_attempt(site, item, session)
        finally:
            site.active -= 1
            if session is not None:
                await self._close_session(session)
            if site.ready and not self._stopping and site.active < site.egress.connection_limit:
                self._spawn(site)

    async def _guarded_attempt(
        self, site: Site, item: Item, session: Session | None
    ) -> Session | None:
        try:
            return await self._attempt(site, item, session)
        except Exception as exc:  # a bug of ours: never lose the message or stop the engine
            log.exception("delivery attempt failed", id=item.message.id, site=site.name)
            if session is not None:
                self._abort_session(session)
            text = f"KumoMTA internal: delivery attempt failed: {type(exc).__name__}: {exc}"
            self._transient(item, failed_outcome(Reply(400, None, text)), site.name)
            return None

    async def _attempt(self, site: Site, item: Item, session: Session | None) -> Session | None:
        if self._expired(item, time.time()):
            self._expire(item, site.name, item.message.attempts)
            return session
        if self._diverted(item):
            return session
        if session is not None and session.usable:
            return await self._transact(site, item, session)
        if session is not None:
            self._abort_session(session)
        ehlo = site.egress.ehlo_domain or self._hostname
        lease = await self._connection_lease(site)
        if self._stopping:  # stopped while waiting for a shared slot: the message stays spooled
            self._let_go(lease)
            return None
        try:
            await _throttled(site.connection_throttle)
            opened = await open_session(site.route, site.egress, ehlo, site, dns=self.dns)
        except BaseException:
            self._let_go(lease)
            raise
        if isinstance(opened, Outcome):  # every target failed: so does the ready queue
            if lease is not None:
                await self.throttles.release(lease)
            for each in [item, *site.drain()]:
                self._apply(each, opened, site.name)
            return None
        if lease is not None:
            self._leases[opened] = lease
        self._sessions[opened] = site.name
        self.metrics.connection_opened(site.name)
        try:
            return await self._transact(site, item, opened)
        except BaseException:  # the caller only knows the session it passed in
            self._abort_session(opened)
            raise

    async def _transact(self, site: Site, item: Item, session: Session) -> Session | None:
        content = await self._content(item)
        if content is None:
            return session
        message = item.message
        await _throttled(site.message_throttle)
        if self._diverted(item):  # bounced or suspended while it waited for its slot
            return session
        exchange = await session.send(message.sender, message.recipient, content)
        outcome = judge(
            exchange, session.target, item.name, self.policy.current, site.egress, tls=session.tls
        )
        if outcome.hook_seconds is not None and outcome.rewrite is not None:
            self.metrics.hook(item.queue, outcome.hook_seconds, outcome.rewrite.rewritten)
        if exchange.kind == "transport":  # try the other hosts first for a while
            site.penalize(session.target.address, session.target.port, time.monotonic())
        self._apply(item, outcome, site.name)
        if not session.usable or session.deliveries >= site.egress.max_deliveries_per_connection:
            await self._close_session(session)
            return None
        return session

    def _diverted(self, item: Item) -> bool:
        """An item taken for an attempt was bounced or suspended meanwhile: handle that."""
        reply = self.control.doomed(item.message.id)
        if reply is not None:
            self._admin_bounce(item, reply)
            return True
        if self.control.hold(item):
            self._release(item)
            return True
        return False

    def _abort_session(self, session: Session) -> None:
        site = self._sessions.pop(session, None)
        if site is not None:
            self.metrics.connection_closed(site)
        session.abort()
        self._let_go(self._leases.pop(session, None))

    def _let_go(self, lease: Lease | None) -> None:
        """Give a shared connection slot back without waiting (it expires anyway)."""
        if lease is not None and self._tg is not None:
            self._tg.create_task(self.throttles.release(lease), name="release lease")

    async def _close_session(self, session: Session) -> None:
        site = self._sessions.pop(session, None)
        if site is not None:
            self.metrics.connection_closed(site)
        await session.close()
        lease = self._leases.pop(session, None)
        if lease is not None:
            await self.throttles.release(lease)

    async def _connection_lease(self, site: Site) -> Lease | None:
        """With Redis, a slot of the site's `connection_limit` shared by every node (waiting
        while all are taken); without, None: the dispatcher count is the local limit."""
        if not self.throttles.configured:
            return None
        key = f"connections:{site.name}"
        while (lease := await self.throttles.acquire(key, site.egress.connection_limit)) is None:
            if self._stopping:
                return None
            await asyncio.sleep(_LEASE_RETRY)
        return lease

    async def _content(self, item: Item) -> bytes | None:
        if item.content is not None:  # used once: a retry reads it again
            content = item.content
            self._release(item)
            return content
        message_id = item.message.id
        try:
            if item.message.size < _INLINE_READ:
                return self.spool.content(message_id)
            return await self.spool.read_content(message_id)
        except FileNotFoundError:
            log.warning("message left the spool before delivery", id=message_id)
        except (SpoolError, OSError) as exc:
            self.spool.quarantine_entry(message_id, f"{type(exc).__name__}: {exc}")
        self._forget(message_id)
        self.metrics.left_spool()
        return None

    # --- dispositions ----------------------------------------------------------------------

    def _apply(self, item: Item, outcome: Outcome, site: str) -> None:
        if outcome.kind is RecordType.TRANSIENT_FAILURE:
            self._transient(item, outcome, site)
        else:
            self._final(
                item, outcome.kind, outcome.reply, site, peer=outcome.peer_address, tls=outcome.tls
            )

    def _final(
        self,
        item: Item,
        kind: RecordType,
        reply: Reply,
        site: str,
        *,
        peer: tuple[str, str] | None = None,
        message: SpooledMessage | None = None,
        tls: tuple[str, str] | None = None,
    ) -> None:
        content = item.content
        self._release(item)
        message = message or item.message
        record = build_record(
            kind, message, item.queue, response=reply, site=site, peer=peer, tls=tls
        )
        self.records.write(record)
        self._forget(message.id)
        if kind in _NOTIFIED and item.config.generate_dsn and should_generate(message.sender):
            assert self._tg is not None
            notice = self._notify(message, kind, reply, peer, content)
            task = self._tg.create_task(notice, name=f"dsn {message.id}")
            self._notices.add(task)
            task.add_done_callback(self._notices.discard)
            return
        self._leave(message.id)

    def _admin_bounce(self, item: Item, reply: Reply) -> None:
        self._final(item, RecordType.ADMIN_BOUNCE, reply, item.site)

    def _forget(self, message_id: str) -> None:
        """The message is no longer queued in memory."""
        self._live.pop(message_id, None)
        self.control.forget(message_id)

    def _leave(self, message_id: str) -> None:
        """Remove a message from the spool once its final record is durable."""
        self._state.remove(message_id)
        self.metrics.left_spool()

    async def _notify(
        self,
        message: SpooledMessage,
        kind: RecordType,
        reply: Reply,
        peer: tuple[str, str] | None,
        content: bytes | None,
    ) -> None:
        """Spool a delivery status notification to the sender, then let the message go.

        The DSN is durable before the original leaves the spool, so a crash in between
        repeats the attempt (and its record) rather than losing the notice."""
        try:
            if content is None:
                content = await self.spool.read_content(message.id)
            dsn = build_dsn(
                original=content,
                sender=message.sender,
                recipient=message.recipient,
                kind="Expiration" if kind is RecordType.EXPIRATION else "Bounce",
                reply=reply,
                reporting_mta=self._hostname,
                arrival=datetime.datetime.fromtimestamp(message.created, datetime.UTC),
                remote_mta=peer[0] if peer is not None else None,
            )
            await self.reception.accept_library("", [message.sender], dsn, {}, protocol="DSN")
        except (SpoolError, OSError, SubmissionRefused) as exc:
            log.error("could not spool a DSN; the record stays", id=message.id, error=str(exc))
        self._leave(message.id)

    def _release(self, item: Item) -> None:
        if item.content is not None:
            self._cached -= len(item.content)
            item.content = None

    def _transient(self, item: Item, outcome: Outcome, site: str) -> None:
        self._release(item)
        message, config = item.message, item.config
        self.records.write(
            build_record(
                RecordType.TRANSIENT_FAILURE,
                message,
                item.queue,
                response=outcome.reply,
                site=site,
                peer=outcome.peer_address,
                tls=outcome.tls,
            )
        )
        now = time.time()
        attempts = message.attempts + 1
        doomed = self.control.doomed(message.id)
        if doomed is not None:  # administratively bounced during this attempt
            after = replace(message, attempts=attempts)
            self._final(item, RecordType.ADMIN_BOUNCE, doomed, item.site or site, message=after)
            return
        delay = next_delay(
            message.attempts, config.retry_interval, config.max_retry_interval, random.random()
        )
        if expires(now - message.created, delay, config.max_age):
            self._expire(item, site, attempts, now + delay)
            return
        updated = replace(
            message,
            attempts=attempts,
            due=now + delay,
            last_response=single_line(outcome.reply, " "),
        )
        self._state.update(updated)
        if not self._stopping:
            requeued = Item(updated, item.queue, item.name, config, site=item.site)
            self._live[message.id] = requeued
            self.scheduler.add(requeued)

    def _expired(self, item: Item, now: float) -> bool:
        return now - item.message.created >= item.config.max_age

    def _expire(self, item: Item, site: str, attempts: int, next_due: float | None = None) -> None:
        limit = item.message.created + item.config.max_age
        if next_due is None:
            text = f"Message is older than the expiry time {_iso(limit)} configured via max_age"
        else:
            text = (
                f"Next delivery time would be at {_iso(next_due)} which exceeds the expiry "
                f"time {_iso(limit)} configured via max_age"
            )
        reply = Reply(551, EnhancedCode(5, 4, 7), text)
        message = replace(item.message, attempts=attempts)
        self._final(item, RecordType.EXPIRATION, reply, site, message=message)


async def _throttled(throttle: AsyncThrottle | None) -> None:
    """Wait for the next slot of a rate limit (none: go)."""
    if throttle is not None:
        wait = await throttle.reserve()
        if wait > 0:
            await asyncio.sleep(wait)


def _iso(when: float) -> str:
    return datetime.datetime.fromtimestamp(when, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
