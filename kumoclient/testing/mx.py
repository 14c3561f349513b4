"""The scripted MX of the policy-testing plugin: an SMTP server in the running event loop that
answers each address as a test says, and records what it received and how."""

from __future__ import annotations

import asyncio
import time
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_email_policy
from typing import NamedTuple

from aiosmtpd.smtp import SMTP, Envelope, Session

PHASES = ("MAIL", "RCPT", "DATA", "DOT")
_STOP_GRACE = 2.0


class Received(NamedTuple):
    """One message the scripted MX accepted (its final `.` was answered 250)."""

    sender: str
    recipients: list[str]
    content: bytes

    @property
    def message(self) -> EmailMessage:
        """The content parsed as an email message (headers, body)."""
        parsed = BytesParser(policy=default_email_policy).parsebytes(self.content)
        assert isinstance(parsed, EmailMessage)
        return parsed


class ScriptedMX:
    """An SMTP server on 127.0.0.1 (a free port) in the running event loop, answering per address.

    Every command is accepted (`250`, `354`) unless a reply is scripted for it:

        mx.reply("full@example.com", "452 4.2.2 The mailbox is over quota.")   # RCPT TO
        mx.reply("*", "421 4.3.2 System not accepting network messages")      # any recipient
        mx.reply("sender@example.com", "550 5.7.1 Sender refused", phase="MAIL")
        mx.reply("big@example.com", "552 5.3.4 Message too big", phase="DOT")

    Phases: `MAIL` (keyed by the sender), `RCPT`, `DATA` (the reply to the DATA command) and
    `DOT` (the reply to the final dot), keyed by recipient. `"*"` applies to every address that
    has no reply of its own. Accepted messages are appended to `received`. With `pipelining`,
    EHLO offers PIPELINING. Use as the `scripted_mx` fixture, or `async with ScriptedMX() as mx`.
    """

    def __init__(
        self, *, pipelining: bool = False, hostname: str = "mx.test", eight_bit: bool = True
    ) -> None:
        self.pipelining = pipelining
        self.hostname = hostname
        self.eight_bit = eight_bit  # False: EHLO does not offer 8BITMIME
        self.replies: dict[tuple[str, str], str] = {}
        self.received: list[Received] = []
        self.received_at: list[float] = []  # monotonic time of each accepted message
        self.peers: list[str] = []  # the client address of each transaction
        self.ehlo_names: list[str] = []  # the name each EHLO gave
        self.mail_options: list[list[str]] = []  # the parameters of each accepted MAIL
        self.chunks: list[bytes] = []  # every read from the network, as it came
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._clients: set[_ScriptedSMTP] = set()
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        """`127.0.0.1:<port>`: an `mx_list` entry for this server."""
        if self._server is None:
            raise RuntimeError("the scripted MX is not started")
        return f"127.0.0.1:{self.port}"

    def reply(self, address: str, reply: str, *, phase: str = "RCPT") -> None:
        """Answer `reply` (e.g. `"452 4.2.2 Over quota"`) to `address` in `phase`."""
        phase = phase.upper()
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {', '.join(PHASES)}, got {phase!r}")
        code = reply[:3]
        if not (code.isdigit() and 200 <= int(code) <= 599 and reply[3:4] in ("", " ", "-")):
            raise ValueError(f"a reply starts with a status code 200-599, got {reply!r}")
        self.replies[(phase, address.lower())] = reply

    def scripted(self, phase: str, address: str) -> str | None:
        """The reply scripted for `address` in `phase` (or for `"*"`), if any."""
        found = self.replies.get((phase, address.lower()))
        return found if found is not None else self.replies.get((phase, "*"))

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _ScriptedSMTP(self), "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening, drop open connections and wait for their handlers to end."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        for client in list(self._clients):
            if client.transport is not None:
                client.transport.close()
        await server.wait_closed()
        if self._handlers:
            await asyncio.wait(list(self._handlers), timeout=_STOP_GRACE)

    async def __aenter__(self) -> ScriptedMX:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # aiosmtpd handler hooks

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        self.ehlo_names.append(hostname)
        if not self.eight_bit:
            responses = [line for line in responses if "8BITMIME" not in line]
        if self.pipelining:
            return [*responses[:-1], "250-PIPELINING", responses[-1]]
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        peer = session.peer
        self.peers.append(str(peer[0]) if isinstance(peer, tuple) else str(peer))
        reply = self.scripted("MAIL", address)
        if reply is not None and not reply.startswith("2"):
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        self.mail_options.append(list(options))
        return reply or "250 2.1.0 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self.scripted("RCPT", address)
        if reply is not None and not reply.startswith("2"):
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return reply or "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        replies = [self.scripted("DOT", rcpt) for rcpt in envelope.rcpt_tos]
        reply = next((r for r in replies if r is not None), None)
        if reply is not None and not reply.startswith("250"):
            return reply
        content = envelope.original_content or b""
        self.received.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), content))
        self.received_at.append(time.monotonic())
        return reply or "250 2.0.0 OK queued"


class _ScriptedSMTP(SMTP):
    def __init__(self, script: ScriptedMX) -> None:
        super().__init__(script, hostname=script.hostname, decode_data=False, enable_SMTPUTF8=True)
        self.script = script

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.script.connections += 1
        self.script._clients.add(self)
        super().connection_made(transport)
        handler = self._handler_coroutine
        if handler is not None:
            self.script._handlers.add(handler)
            handler.add_done_callback(self.script._handlers.discard)

    def data_received(self, data: bytes) -> None:
        self.script.chunks.append(data)
        super().data_received(data)

    def connection_lost(self, error: Exception | None) -> None:
        self.script._clients.discard(self)
        super().connection_lost(error)

    async def smtp_DATA(self, arg: str) -> None:
        for rcpt in self.envelope.rcpt_tos if self.envelope is not None else []:
            reply = self.script.scripted("DATA", rcpt)
            if reply is not None and not reply.startswith("354"):
                await self.push(reply)
                return
        await super().smtp_DATA(arg)
