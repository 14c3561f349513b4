"""One delivery attempt's decisions: opening a session to a site, and judging an exchange.

`open_session` tries the site's targets in order (penalized ones last); connection-phase
failures move on to the next target and, when every target failed, become one
TransientFailure `400 failed to connect to any candidate hosts: ...`; a prohibited address
becomes a Bounce `550 5.4.4`. None of these reach the rewrite hook (SPEC 2.1).

`judge` turns an Exchange into an Outcome: an accepted message is a Delivery; a transport
failure is a TransientFailure as synthesized; a rejection goes through
`smtp_client_rewrite_delivery_status` (SPEC 2.3) and its (possibly rewritten) code decides.
When the policy has a handler, the Outcome carries how long the hook took (`hook_seconds`)
for the engine's metrics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from kumoclient.core.classify import classify
from kumoclient.engine.queues import Site
from kumoclient.engine.route import Prohibited, Route, candidates
from kumoclient.logs import RecordType
from kumoclient.mx import MxResolver
from kumoclient.policy.runtime import REWRITE_EVENT, PolicyRuntime
from kumoclient.records import Disposition, EgressPathConfig, QueueName, Reply, RewriteOutcome
from kumoclient.smtp import ConnectFailure, Exchange, Session, Target, Transcript

_KIND = {
    Disposition.DELIVERY: RecordType.DELIVERY,
    Disposition.TRANSIENT_FAILURE: RecordType.TRANSIENT_FAILURE,
    Disposition.BOUNCE: RecordType.BOUNCE,
}


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an attempt came to: the record type, the reply to log, and who answered."""

    kind: RecordType
    reply: Reply
    peer: Target | None = None
    rewrite: RewriteOutcome | None = None
    phase: str | None = None
    tls: tuple[str, str] | None = None  # (protocol version, cipher) when the session had TLS
    hook_seconds: float | None = None  # time in the rewrite handler, when one ran

    @property
    def peer_address(self) -> tuple[str, str] | None:
        """`(name, addr)` for the record's `peer_address`."""
        if self.peer is None:
            return None
        return (self.peer.name, f"{self.peer.address}:{self.peer.port}")


async def open_session(
    route: Route,
    egress: EgressPathConfig,
    ehlo_domain: str,
    site: Site | None = None,
    *,
    transcript: Transcript | None = None,
    dns: MxResolver | None = None,
) -> Session | Outcome:
    """A session to the first target that works, or the Outcome for the whole ready queue."""
    try:
        targets, failures = await candidates(route, egress, dns)
    except Prohibited as prohibited:
        return Outcome(RecordType.BOUNCE, prohibited.reply, phase="connect")
    if site is not None:
        now = time.monotonic()
        targets.sort(key=lambda t: site.penalized(t.address, t.port, now))
    for target in targets:
        if transcript is not None:
            transcript("*", f"connecting to {target.where}")
        try:
            return await Session.open(target, egress, ehlo_domain, transcript)
        except ConnectFailure as failure:
            failures.append(str(failure))
            if transcript is not None:
                transcript("*", str(failure))
            if site is not None:
                site.penalize(target.address, target.port, time.monotonic())
    if not failures:
        failures.append(f"{route.site_name}: no addresses")
    text = "failed to connect to any candidate hosts: " + "; ".join(failures)
    return Outcome(RecordType.TRANSIENT_FAILURE, Reply(400, None, text), phase="connect")


def judge(
    exchange: Exchange,
    target: Target,
    queue: QueueName,
    policy: PolicyRuntime,
    egress: EgressPathConfig,
    *,
    tls: tuple[str, str] | None = None,
) -> Outcome:
    """The Outcome of one transaction (the rewrite hook runs for rejections only)."""
    if exchange.kind == "accepted":
        return Outcome(RecordType.DELIVERY, exchange.reply, target, phase=exchange.phase, tls=tls)
    if exchange.kind == "transport":
        reply = exchange.reply
        return Outcome(RecordType.TRANSIENT_FAILURE, reply, target, phase=exchange.phase, tls=tls)
    hooked = policy.has_handler(REWRITE_EVENT)
    started = time.perf_counter()
    rewrite = policy.rewrite_delivery_status(exchange.reply, queue, egress.response_line_break)
    seconds = time.perf_counter() - started if hooked else None
    kind = _KIND[rewrite.disposition]
    return Outcome(kind, rewrite.reply, target, rewrite, exchange.phase, tls, seconds)


def failed_outcome(reply: Reply) -> Outcome:
    """An Outcome decided without a server (a synthesized reply), by its code."""
    return Outcome(_KIND[classify(reply.code)], reply)
