"""The inject API's handler (`POST /api/inject/v1`): request → messages → the receiver.

It validates the request (inject_request.py) and builds every message (inject_message.py)
before anything is stored, so a bad request leaves nothing behind; then the receiver (the
daemon's Reception) runs `http_message_generated` per message and spools the ones the policy
did not refuse. The messages carry meta `http_auth` (the user, or the client's address),
`reception_protocol` (`HTTP`) and `received_from` (the client's address), as in KumoMTA.
Answer: `{success_count, fail_count, failed_recipients, errors}` (KumoMTA's);
400 for a bad request, 500 when the policy fails, 503 when the spool cannot take the messages
or kumoclient takes none now (its delivery log cannot be written).

With `kumo.set_httpinject_recipient_rate_limit`, a valid request first waits until the limit
admits as many recipients as it has (`admit`), as KumoMTA puts it to sleep; a client that
gives up meanwhile takes nothing from it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from kumoclient import logs
from kumoclient.core.template import RenderClock
from kumoclient.errors import BadInjectRequest, HttpError, ReceptionPaused, SubmissionRefused
from kumoclient.http.inject_message import generate
from kumoclient.http.inject_request import parse_request
from kumoclient.http.server import Client
from kumoclient.records import AuthInfo

log = logs.get_logger(__name__)


class Accepted(Protocol):
    """What the receiver took: the new message ids, and (recipient, reason) per refusal."""

    @property
    def ids(self) -> Sequence[str]: ...

    @property
    def refused(self) -> Sequence[tuple[str, str]]: ...


class Receiver(Protocol):
    """Where built messages go (the daemon's Reception)."""

    async def accept_http(
        self,
        sender: str,
        messages: Sequence[tuple[str, bytes]],
        meta: Mapping[str, Any],
        auth: AuthInfo | None = None,
    ) -> Accepted:
        """Run the policy per `(recipient, content)` (`http_message_generated(msg, auth)`),
        spool what it accepts durably; raise SubmissionRefused (452: the spool cannot take
        them; ReceptionPaused: no mail is taken now; else the policy failed) with nothing
        spooled."""
        ...


# waits until the recipient rate limit admits this many recipients
Admit = Callable[[int], Awaitable[None]]


class InjectService:
    """`POST /api/inject/v1` on a Receiver: parse, wait for the recipient rate limit (when
    `admit` is given), build all, then run policy and spool."""

    def __init__(self, receiver: Receiver, *, admit: Admit | None = None) -> None:
        self.receiver = receiver
        self.admit = admit

    async def handle(self, body: object, client: Client) -> dict[str, object]:
        """The response object, or HttpError: 400 for a bad request, 500 when the policy
        fails, 503 when the spool cannot take the messages or no mail is taken now (nothing
        spooled in each case)."""
        try:
            request = parse_request(body)
            if self.admit is not None:
                await self.admit(len(request.recipients))
            # rendering and MIME building are CPU work: off the event loop; given up (the
            # client gone, the daemon stopping), the templates stop at their next step
            clock = RenderClock()
            try:
                messages = await asyncio.to_thread(generate, request, clock)
            except asyncio.CancelledError:
                clock.cancel()
                raise
        except BadInjectRequest as exc:
            log.info("inject request refused", peer=client.address, error=str(exc))
            raise HttpError(400, str(exc)) from exc
        meta = {
            "http_auth": http_auth(client.auth),
            "reception_protocol": "HTTP",
            "received_from": client.address,
        }
        try:
            accepted = await self.receiver.accept_http(
                request.envelope_sender,
                [(m.recipient, m.content) for m in messages],
                meta,
                client.auth,
            )
        except ReceptionPaused as exc:
            raise HttpError(
                503, f"no messages are taken now ({exc.code} {exc.text}); nothing was spooled"
            ) from exc
        except SubmissionRefused as exc:
            if exc.code == 452:
                raise HttpError(
                    503,
                    f"the spool cannot take the messages ({exc.text}); nothing was spooled",
                ) from exc
            raise HttpError(
                500,
                f"http_message_generated failed ({exc.text}); nothing was spooled",
            ) from exc
        return {
            "success_count": len(accepted.ids),
            "fail_count": len(accepted.refused),
            "failed_recipients": [recipient for recipient, _ in accepted.refused],
            "errors": [f"{recipient}: {reason}" for recipient, reason in accepted.refused],
        }


def http_auth(auth: AuthInfo) -> str:
    """Meta `http_auth` (KumoMTA's): the Basic-auth user, else the first identity, else the
    client's IP address."""
    for identity, context in auth.identities:
        if context == "HttpBasicAuth":
            return identity
    if auth.identities:
        return auth.identities[0][0]
    return auth.peer_address or ""
