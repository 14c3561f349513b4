"""Connections to a site: opening a session on the first target that works, the shared
connection slots (Redis leases) that go with sessions, and what a transaction came to.

The dispatcher (engine/dispatch.py) asks for a session and gives it back; `kumoclient send`
uses `open_session` and `attempt_of` for its one-off transaction. Egress sources and pools will
choose the source address and proxy here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from kumoclient.core import disposition
from kumoclient.core.disposition import Attempt
from kumoclient.core.reply import SPACE, single_line
from kumoclient.core.synthesized import Synthesized, synthesize
from kumoclient.engine.metrics import EngineMetrics
from kumoclient.engine.queues import Site
from kumoclient.engine.routing import candidates
from kumoclient.errors import ConnectFailure
from kumoclient.mx import MxResolver
from kumoclient.smtp import Exchange, Session, Target, Transcript
from kumoclient.throttles import AsyncThrottle, Lease, SharedThrottles

_LEASE_RETRY = 0.2  # seconds between tries for a shared connection slot
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


class Connections:
    """The open sessions of every site, with their shared connection slots."""

    def __init__(
        self,
        *,
        metrics: EngineMetrics,
        throttles: SharedThrottles,
        dns: MxResolver,
        hostname: str,
        spawn: Spawn,
    ) -> None:
        self.metrics = metrics
        self.throttles = throttles
        self.dns = dns
        self.hostname = hostname
        self._spawn_task = spawn
        self._sessions: dict[Session, str] = {}  # open sessions -> their site's name
        self._leases: dict[Session, Lease] = {}

    async def open(self, site: Site, stopping: Callable[[], bool]) -> Session | Attempt | None:
        """A session to `site` (holding a shared slot when Redis throttles are configured),
        the Attempt of the whole ready queue when every target failed, or None when the
        engine stopped while waiting for a slot."""
        lease = await self._connection_lease(site, stopping)
        if stopping():  # stopped while waiting for a shared slot: the message stays spooled
            self._let_go(lease)
            return None
        try:
            await throttled(site.connection_throttle)
            ehlo = site.egress.ehlo_domain or self.hostname
            opened = await open_session(site, ehlo, self.dns)
        except BaseException:
            self._let_go(lease)
            raise
        if not isinstance(opened, Session):
            if lease is not None:
                await self.throttles.release(lease)
            return opened
        if lease is not None:
            self._leases[opened] = lease
        self._sessions[opened] = site.name
        self.metrics.connection_opened(site.name)
        return opened

    def abort(self, session: Session) -> None:
        """Drop a session at once (its slot is given back in the background)."""
        site = self._sessions.pop(session, None)
        if site is not None:
            self.metrics.connection_closed(site)
        session.abort()
        self._let_go(self._leases.pop(session, None))

    async def close(self, session: Session) -> None:
        """End a session politely (QUIT) and give its slot back."""
        site = self._sessions.pop(session, None)
        if site is not None:
            self.metrics.connection_closed(site)
        await session.close()
        lease = self._leases.pop(session, None)
        if lease is not None:
            await self.throttles.release(lease)

    def _let_go(self, lease: Lease | None) -> None:
        """Give a shared connection slot back without waiting (it expires anyway)."""
        if lease is not None:
            self._spawn_task(self.throttles.release(lease), "release lease")

    async def _connection_lease(self, site: Site, stopping: Callable[[], bool]) -> Lease | None:
        """With Redis, a slot of the site's `connection_limit` shared by every node (waiting
        while all are taken); without, None: the dispatcher count is the local limit."""
        if not self.throttles.configured:
            return None
        key = f"connections:{site.name}"
        while (lease := await self.throttles.acquire(key, site.egress.connection_limit)) is None:
            if stopping():
                return None
            await asyncio.sleep(_LEASE_RETRY)
        return lease


async def throttled(throttle: AsyncThrottle | None) -> None:
    """Wait for the next slot of a rate limit (none: go)."""
    if throttle is not None:
        wait = await throttle.reserve()
        if wait > 0:
            await asyncio.sleep(wait)
