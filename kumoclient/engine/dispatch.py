"""The per-site dispatcher: ready queues to SMTP sessions, one attempt per message.

A site runs up to `connection_limit` dispatcher tasks. Each takes ready messages of its site,
opens a session when it has none (the site's targets in order, penalized ones last; with Redis
throttles, a slot of the limit shared by every node), sends, and hands what happened to
`core.disposition.decide` (through the rewrite hook for a rejection) and the decision to the
Dispositions writer. Connection-phase failures never reach the rewrite hook (SPEC 2.1): when
every target of a site fails, the whole ready queue gets the same TransientFailure; a
prohibited address bounces it. A message that waited past `max_age` (or its own expiry time)
expires when it is taken; one bounced or suspended by an operator meanwhile is diverted; one
whose schedule (`msg:set_scheduling`) allows no attempt now goes back to the scheduler, to the
next time it allows, so no attempt starts outside a message's delivery window. The session is
reused for the site's next message up to `max_deliveries_per_connection`, and closed after
`idle_timeout`.
While the delivery log cannot be written (logs.LogHealth down), no attempt starts: a task that
took a message closes its session and waits, the message in hand, until the log is back.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from kumoclient import logs
from kumoclient.core import disposition
from kumoclient.core.disposition import EXPIRED, OUT_OF_SCHEDULE, Attempt, HookAnswer, decide
from kumoclient.core.reply import SPACE, single_line
from kumoclient.core.retry import expired
from kumoclient.core.schedule import allowed, expiry
from kumoclient.core.synthesized import Synthesized, synthesize
from kumoclient.engine.control import Control
from kumoclient.engine.dispositions import Dispositions
from kumoclient.engine.metrics import EngineMetrics
from kumoclient.engine.queues import Item, Site
from kumoclient.engine.routing import candidates
from kumoclient.engine.table import MessageTable
from kumoclient.errors import ConnectFailure, SpoolEntryCorrupt, SpoolEntryMissing, SpoolError
from kumoclient.logs import LogHealth
from kumoclient.mx import MxResolver
from kumoclient.policy.runtime import PolicyHolder
from kumoclient.smtp import Exchange, Session, Target, Transcript
from kumoclient.spool import Spool
from kumoclient.throttles import AsyncThrottle, Lease, SharedThrottles

log = logs.get_logger(__name__)

_LEASE_RETRY = 0.2  # seconds between tries for a shared connection slot
_LOG_WAIT = 0.5  # seconds between looks at `stopping` while the delivery log is down
# smaller contents are read on the loop: below ~64 KB a read from the page cache costs the loop
# less than handing it to a thread (bench/files.py: 25 µs on the loop, 11-41 in a thread at 64 KB)
_INLINE_READ = 64 * 1024
Spawn = Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]]


def attempt_of(exchange: Exchange, target: Target) -> Attempt:
    """What a transaction came to, for `core.disposition.decide`."""
    if exchange.kind == "accepted":
        assert exchange.reply is not None
        return disposition.accepted(exchange.reply)
    if exchange.kind == "rejected":
        assert exchange.reply is not None
        return disposition.rejected(exchange.reply)
    if exchange.kind == "smtputf8":  # refused before MAIL, judged like a rejection
        return disposition.rejected(synthesize(Synthesized.SMTPUTF8_MISSING))
    if exchange.kind == "out_of_turn":  # the transaction did not happen (SPEC 2.3 amended)
        assert exchange.reply is not None
        unexpected = single_line(exchange.reply, SPACE)
        return disposition.failed(
            synthesize(Synthesized.OUT_OF_TURN, phase=exchange.phase, reply=unexpected)
        )
    failure = exchange.failure
    assert failure is not None
    if failure.timeout is not None:
        reply = synthesize(
            Synthesized.TIMEOUT,
            target=target.where,
            timeout=f"{failure.timeout:g}",
            command=failure.command,
            phase=failure.phase,
        )
    else:
        reply = synthesize(Synthesized.TRANSPORT, phase=failure.phase, reason=failure.reason)
    return disposition.failed(reply)


async def open_session(
    site: Site,
    ehlo_domain: str,
    dns: MxResolver | None,
    *,
    transcript: Transcript | None = None,
    penalize: bool = True,
) -> Session | Attempt:
    """A session to the first target of `site` that works, or the Attempt of the whole ready
    queue (every target failed: TransientFailure 400; a prohibited address: Bounce 550)."""
    found = await candidates(site.route, site.egress, dns)
    if found.prohibited is not None:
        return disposition.failed(synthesize(Synthesized.PROHIBITED, address=found.prohibited))
    now = time.monotonic()
    targets = sorted(found.targets, key=lambda t: site.penalized(t.address, t.port, now))
    failures = found.failures
    for target in targets:
        if transcript is not None:
            transcript("*", f"connecting to {target.where}")
        try:
            return await Session.open(target, site.egress, ehlo_domain, transcript)
        except ConnectFailure as failure:
            failures.append(str(failure))
            if transcript is not None:
                transcript("*", str(failure))
            if penalize:
                site.penalize(target.address, target.port, time.monotonic())
    if not failures:
        failures.append(f"{site.route.site_name}: no addresses")
    reply = synthesize(Synthesized.CONNECT_FAILED, failures="; ".join(failures))
    return disposition.failed(reply)


class Dispatcher:
    """Runs the dispatcher tasks of every site (see the module's text)."""

    def __init__(
        self,
        *,
        table: MessageTable,
        policy: PolicyHolder,
        dispositions: Dispositions,
        control: Control,
        spool: Spool,
        metrics: EngineMetrics,
        throttles: SharedThrottles,
        dns: MxResolver,
        hostname: str,
        spawn: Spawn,
        log_health: LogHealth,
    ) -> None:
        self.table = table
        self.log_health = log_health  # no attempt starts while it is down
        self.policy = policy
        self.dispositions = dispositions
        self.control = control
        self.spool = spool
        self.metrics = metrics
        self.throttles = throttles
        self.dns = dns
        self.hostname = hostname
        self._spawn_task = spawn
        self._tasks: set[asyncio.Task[None]] = set()
        self._sessions: dict[Session, str] = {}  # open sessions -> their site's name
        self._leases: dict[Session, Lease] = {}
        self.stopping = False

    # --- entering a ready queue ------------------------------------------------------------

    def ready(self, item: Item, site: Site) -> None:
        """A routed message: into its site's ready queue (or expired, or held)."""
        if self._expired(item, site):
            return
        if self.control.hold(item):  # suspended while it was routed
            self.table.drop_content(item)
            return
        if site.put(item):
            self._spawn(site)

    def _expired(self, item: Item, site: Site) -> bool:
        message = item.message
        own = expiry(message.schedule)
        if not expired(message.created, item.config.max_age, time.time(), own):
            return False
        self.settle(item, EXPIRED, site.name)
        return True

    def _out_of_schedule(self, item: Item, site: Site) -> bool:
        """A message whose schedule allows no attempt now (it waited in the ready queue past
        its window's end): back to the scheduler, to the next time it allows."""
        if allowed(item.message.schedule, time.time()):
            return False
        self.settle(item, OUT_OF_SCHEDULE, site.name)
        return True

    def settle(
        self,
        item: Item,
        attempt: Attempt,
        site: str = "",
        *,
        hook: HookAnswer | None = None,
        peer: tuple[str, str] | None = None,
        tls: tuple[str, str] | None = None,
    ) -> None:
        """Decide what becomes of `item` after `attempt` and have it carried out."""
        message = item.message
        decision = decide(
            attempt,
            attempts=message.attempts,
            created=message.created,
            config=item.config,
            now=time.time(),
            jitter=random.random(),
            hook=hook,
            doomed=self.control.doomed(message.id),
            schedule=message.schedule,
        )
        self.dispositions.apply(item, decision, site=site, peer=peer, tls=tls)

    def _spawn(self, site: Site) -> None:
        site.active += 1
        task = self._spawn_task(self._run(site), f"dispatch {site.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the dispatcher task ---------------------------------------------------------------

    async def _run(self, site: Site) -> None:
        structlog.contextvars.bind_contextvars(site=site.name)
        session: Session | None = None
        try:
            while not self.stopping:
                idle = site.egress.idle_timeout if session is not None else 0.0
                item = await site.take(idle)
                if item is None:
                    break
                if not self.log_health.ok:
                    await self._wait_for_log(session)
                    session = None
                    if self.stopping:
                        break
                with structlog.contextvars.bound_contextvars(id=item.message.id, queue=item.queue):
                    session = await self._guarded(site, item, session)
        finally:
            site.active -= 1
            if session is not None:
                await self._close_session(session)
            if site.ready and not self.stopping and site.active < site.egress.connection_limit:
                self._spawn(site)

    async def _wait_for_log(self, session: Session | None) -> None:
        """The delivery log cannot take the record of an attempt: close the session and wait
        until it can, or the engine stops (the message in hand stays spooled)."""
        if session is not None:
            await self._close_session(session)
        while not self.stopping and not await self.log_health.wait_ok(_LOG_WAIT):
            pass

    async def _guarded(self, site: Site, item: Item, session: Session | None) -> Session | None:
        before = item.message  # a settled item has a new message state, or left the table
        try:
            return await self._attempt(site, item, session)
        except Exception as exc:  # a bug of ours: never lose the message or stop the engine
            log.exception("delivery attempt failed")
            if session is not None:
                self._abort_session(session)
            if self.table.is_live(item) and item.message is before:  # not settled yet
                error = f"{type(exc).__name__}: {exc}"
                failure = synthesize(Synthesized.INTERNAL_ERROR, error=error)
                self.settle(item, disposition.failed(failure), site.name)
            return None

    async def _attempt(self, site: Site, item: Item, session: Session | None) -> Session | None:
        if self._expired(item, site) or self._diverted(item) or self._out_of_schedule(item, site):
            return session
        if session is not None and session.usable:
            return await self._transact(site, item, session)
        if session is not None:
            self._abort_session(session)
        lease = await self._connection_lease(site)
        if self.stopping:  # stopped while waiting for a shared slot: the message stays spooled
            self._let_go(lease)
            return None
        try:
            await _throttled(site.connection_throttle)
            ehlo = site.egress.ehlo_domain or self.hostname
            opened = await open_session(site, ehlo, self.dns)
        except BaseException:
            self._let_go(lease)
            raise
        if not isinstance(opened, Session):  # every target failed: so does the ready queue
            if lease is not None:
                await self.throttles.release(lease)
            for each in [item, *site.drain()]:
                self.settle(each, opened, site.name)
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
        attempt = attempt_of(exchange, session.target)
        hook = None
        if attempt.result is disposition.Result.REJECTED:
            hook = await self._rewrite_hook(item, attempt, site)
        if exchange.kind == "transport":  # try the other hosts first for a while
            site.penalize(session.target.address, session.target.port, time.monotonic())
        target = session.target
        peer = (target.name, f"{target.address}:{target.port}")
        self.settle(item, attempt, site.name, hook=hook, peer=peer, tls=session.tls)
        if not session.usable or session.deliveries >= site.egress.max_deliveries_per_connection:
            await self._close_session(session)
            return None
        return session

    async def _rewrite_hook(self, item: Item, attempt: Attempt, site: Site) -> HookAnswer | None:
        assert attempt.reply is not None
        runtime = self.policy.current
        started = time.perf_counter()
        answer = await runtime.rewrite_hook(
            attempt.reply, item.name, site.egress.response_line_break
        )
        if answer is not None:
            rewritten = answer.code is not None and answer.code != attempt.reply.code
            rewritten = rewritten and answer.error is None
            self.metrics.hook(item.queue, time.perf_counter() - started, rewritten)
        return answer

    def _diverted(self, item: Item) -> bool:
        """An item taken for an attempt was bounced or suspended meanwhile: handle that."""
        reply = self.control.doomed(item.message.id)
        if reply is not None:
            self.settle(item, disposition.admin_bounced(reply), item.site)
            return True
        if self.control.hold(item):
            self.table.drop_content(item)
            return True
        return False

    async def _content(self, item: Item) -> bytes | None:
        content = self.table.take_content(item)
        if content is not None:  # used once: a retry reads it again
            return content
        message_id = item.message.id
        try:
            if item.message.size < _INLINE_READ:
                return self.spool.content(message_id)
            return await self.spool.read_content(message_id)
        except SpoolEntryMissing:
            log.warning("message left the spool before delivery")
        except SpoolEntryCorrupt as exc:
            self.spool.quarantine_entry(message_id, f"{type(exc).__name__}: {exc}")
        except SpoolError as exc:  # unavailable (descriptors, I/O): the entry may be fine
            error = f"{type(exc).__name__}: {exc}"
            self.settle(
                item, disposition.failed(synthesize(Synthesized.INTERNAL_ERROR, error=error))
            )
            return None
        self.dispositions.lost(item)
        return None

    # --- sessions and leases ---------------------------------------------------------------

    def _abort_session(self, session: Session) -> None:
        site = self._sessions.pop(session, None)
        if site is not None:
            self.metrics.connection_closed(site)
        session.abort()
        self._let_go(self._leases.pop(session, None))

    def _let_go(self, lease: Lease | None) -> None:
        """Give a shared connection slot back without waiting (it expires anyway)."""
        if lease is not None:
            self._spawn_task(self.throttles.release(lease), "release lease")

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
            if self.stopping:
                return None
            await asyncio.sleep(_LEASE_RETRY)
        return lease

    async def stop(self, grace: float) -> None:
        """Let transactions in flight finish for `grace` seconds, abandon the rest (they stay
        spooled)."""
        self.stopping = True
        running = [task for task in self._tasks if not task.done()]
        if not running:
            return
        _, pending = await asyncio.wait(running, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("abandoned transactions in flight at stop", count=len(pending))
        await asyncio.gather(*pending, return_exceptions=True)


async def _throttled(throttle: AsyncThrottle | None) -> None:
    """Wait for the next slot of a rate limit (none: go)."""
    if throttle is not None:
        wait = await throttle.reserve()
        if wait > 0:
            await asyncio.sleep(wait)
