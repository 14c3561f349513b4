"""`kumoclient send`: one delivery attempt through the engine's own code, in the foreground.

The policy decides the queue config and egress path exactly as in the daemon; `--mx`
replaces the queue's `mx_list` (and, since the operator named the host, lifts
`prohibited_hosts`). The SMTP conversation is printed as it happens, then the disposition.
Nothing is spooled and no log record is written. Exit 0 delivered, 75 transient, 69 bounced;
a bad address or message is BadInput (65), a missing message file NoInput (66), an `--mx`
that is not a host UsageError (64).
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, TextIO

from kumoclient.commands.inputs import read_message
from kumoclient.configs import InitConfig, MxHost
from kumoclient.core.address import check_mailbox, check_sender
from kumoclient.core.disposition import (
    Attempt,
    Decision,
    HookAnswer,
    Result,
    decide,
    failed,
)
from kumoclient.core.queue_name import parse_queue_name, queue_name_for
from kumoclient.core.reply import single_line
from kumoclient.core.synthesized import Synthesized, synthesize
from kumoclient.engine.queues import Site
from kumoclient.engine.routing import (
    EGRESS_SOURCE,
    dns_route,
    resolver_for,
    route_for,
    routing_domain,
)
from kumoclient.engine.sessions import attempt_of, open_session
from kumoclient.errors import ConfigError, DnsLookupError, NullMx, UsageError
from kumoclient.mx import MxResolver
from kumoclient.policies import default_policy_path
from kumoclient.policy.config import parse_mx_entry
from kumoclient.policy.runtime import PolicyRuntime
from kumoclient.records import QueueName, RecordType
from kumoclient.smtp import Session

EXIT_CODES = {
    RecordType.DELIVERY: 0,
    RecordType.TRANSIENT_FAILURE: 75,
    RecordType.BOUNCE: 69,
}


@dataclass(frozen=True, slots=True)
class SendOptions:
    """`send --from ADDR --to ADDR [--policy FILE] [--mx HOST:PORT] FILE|-`."""

    sender: str
    recipient: str
    file: str  # a path, or "-" for stdin
    policy: Path | None = None
    mx: str | None = None


def send(options: SendOptions, stdin: BinaryIO, out: TextIO) -> int:
    """Run one attempt; print the conversation and the disposition; the exit code."""
    mx = _mx_host(options.mx)
    sender = check_sender(options.sender)
    recipient = check_mailbox(options.recipient)
    content = read_message(options.file, stdin)
    runtime = PolicyRuntime(options.policy or default_policy_path())
    decision = asyncio.run(
        _send(runtime, sender=sender, recipient=recipient, content=content, mx=mx, out=out)
    )
    first = decision.records[0]
    out.write(f"disposition: {first.type.value}\n")
    out.write(f"response: {single_line(first.reply, ' ')}\n")
    if decision.rewrite is not None and decision.rewrite.rewritten:
        out.write(f"rewritten by the policy from {decision.rewrite.original_code}\n")
    return EXIT_CODES.get(first.type, 75)


def _mx_host(mx: str | None) -> MxHost | None:
    if mx is None:
        return None
    try:
        return parse_mx_entry(mx)
    except ConfigError as exc:
        raise UsageError(f"--mx: {exc}") from exc  # the message names the value


async def _send(
    runtime: PolicyRuntime,
    *,
    sender: str,
    recipient: str,
    content: bytes,
    mx: MxHost | None,
    out: TextIO,
) -> Decision:
    """`pre_init` and `init` (for the resolver), then the attempt."""
    init = await runtime.start()
    return await _attempt(
        runtime, init, sender=sender, recipient=recipient, content=content, mx=mx, out=out
    )


async def _attempt(
    runtime: PolicyRuntime,
    init: InitConfig,
    *,
    sender: str,
    recipient: str,
    content: bytes,
    mx: MxHost | None,
    out: TextIO,
) -> Decision:
    envelope = (sender, recipient, content)
    queue = queue_name_for(recipient, {})
    name = parse_queue_name(queue)
    config = await runtime.get_queue_config(name)
    now = time.time()

    def decided(attempt: Attempt, hook: HookAnswer | None = None) -> Decision:
        return decide(attempt, attempts=0, created=now, config=config, now=now, hook=hook)

    if mx is not None:
        config = replace(config, mx_list=(mx,))
    dns = resolver_for(init.resolver)
    if config.mx_list is not None:
        route = route_for(name, config)
    else:
        try:
            route = await dns_route(routing_domain(name), dns)
        except NullMx:
            return decided(failed(synthesize(Synthesized.NULL_MX)))
        except DnsLookupError as exc:
            reply = synthesize(Synthesized.DNS_FAILURE, queue=queue, reason=exc.text)
            return decided(failed(reply))
    egress = await runtime.get_egress_path_config(
        route.routing_domain, EGRESS_SOURCE, route.site_name
    )
    if mx is not None:
        egress = replace(egress, prohibited_hosts=())
    out.write(f"queue: {queue}\nsite: {route.site}\n")
    attempt, hook = await _transact(
        runtime, Site(route, egress, 0), name, dns, out=out, envelope=envelope
    )
    return decided(attempt, hook)


async def _transact(
    runtime: PolicyRuntime,
    site: Site,
    name: QueueName,
    dns: MxResolver,
    *,
    out: TextIO,
    envelope: tuple[str, str, bytes],
) -> tuple[Attempt, HookAnswer | None]:
    """Open a session to the site and send; what happened, and the rewrite hook's answer."""

    def transcript(direction: str, line: str) -> None:
        out.write(f"{direction} {line}\n")
        out.flush()

    ehlo = site.egress.ehlo_domain or socket.getfqdn()
    session = await open_session(site, ehlo, dns, transcript=transcript, penalize=False)
    if not isinstance(session, Session):
        return session, None
    try:
        attempt = attempt_of(await session.send(*envelope), session.target)
        if attempt.result is not Result.REJECTED or attempt.reply is None:
            return attempt, None
        line_break = site.egress.response_line_break
        return attempt, await runtime.rewrite_hook(attempt.reply, name, line_break)
    finally:
        await session.close()
