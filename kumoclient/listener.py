"""The SMTP submission listener (aiosmtpd): ESMTP in, `accept` callback out.

Rules (SPEC 3, 8):
- RCPT from a client outside `relay_hosts` → `550 5.7.1 relaying denied` (never an open relay);
- addresses with CR, LF or NUL → `553 5.1.7` (MAIL) / `553 5.1.3` (RCPT);
- more than `max_recipients_per_message` → `452 4.5.3`;
- content over `max_message_size` → `552 5.3.4`; a line over 1,000 octets → `500 5.5.2`;
- NUL bytes in the content → `554 5.6.0`; a bare LF → `554 5.6.11` (SMTP smuggling defence);
- non-ASCII header bytes without SMTPUTF8, or invalid UTF-8 headers with it → `554 5.6.7`;
- `250` only when `accept` returns (the messages are durable); `accept` raises
  SubmissionRefused for any other answer (policy rejection, `452 4.3.1` spool trouble).
Nothing is stored unless the whole transaction is accepted.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from kumoclient import logs
from kumoclient.errors import SubmissionRefused
from kumoclient.records import EsmtpListenerConfig

log = logs.get_logger(__name__)

Accept = Callable[[str, list[str], bytes, str, bool], Awaitable[str]]

_BAD_ADDRESS = re.compile(r"[\r\n\x00]")
_BARE_LF = re.compile(rb"(?<!\r)\n")
_HEADER_END = re.compile(rb"\r\n\r\n")

# aiosmtpd's own texts, given the enhanced codes of RFC 3463
_TRANSLATIONS = {
    "552 Error: Too much mail data": "552 5.3.4 Message too big",
    "500 Line too long (see RFC5321 4.5.3.1.6)": "500 5.5.2 Line too long (RFC 5321 4.5.3.1.6)",
    "500 Error: line too long": "500 5.5.2 Line too long",
    "500 Command line too long": "500 5.5.2 Command line too long",
}


# greeting, closing, 354 and 421 go out at once: after them the client waits, or is gone
_NEVER_HELD = frozenset({"220", "221", "354", "421"})


class _Server(SMTP):
    """aiosmtpd's SMTP with enhanced status codes on its built-in replies and fewer writes.

    Writes are the expensive part of a session, so replies are batched: the lines of a
    multi-line reply go out together, and while the client's next pipelined command is
    already waiting in the read buffer, the reply is held and sent with the next one. A reply
    is never held when nothing more is buffered, so a client never waits for it.
    """

    _held: list[bytes] | None = None

    def __dir__(self) -> list[str]:
        # aiosmtpd's __init__ looks up its smtp_* and auth_* methods with dir() and
        # inspect.getmembers() on every connection, touching every attribute; naming only
        # those methods makes a connection's set-up several times cheaper
        return _SERVER_METHODS

    async def push(self, status: str | bytes) -> None:
        text = status.decode() if isinstance(status, bytes) else status
        for prefix, better in _TRANSLATIONS.items():
            if text.startswith(prefix):
                text = better
                break
        if self._held is None:
            self._held = []
        self._held.append(text.encode("utf-8") + b"\r\n")
        continuation = len(text) > 3 and text[3] == "-"
        if continuation or (text[:3] not in _NEVER_HELD and self._client_has_more()):
            return
        self._writer.write(b"".join(self._held))
        self._held.clear()
        await self._writer.drain()

    def _client_has_more(self) -> bool:
        # StreamReader keeps unread bytes in `_buffer`; there is no public way to peek
        buffered = getattr(self._reader, "_buffer", b"")
        return bool(buffered) and b"\r\n" in buffered


_SERVER_METHODS = [name for name in dir(_Server) if name.startswith(("smtp_", "auth_"))]


class _Handler:
    def __dir__(self) -> list[str]:
        return _HANDLER_METHODS  # see _Server.__dir__

    def __init__(self, config: EsmtpListenerConfig, accept: Accept) -> None:
        self.config = config
        self.accept = accept
        self.relay = [ipaddress.ip_network(h, strict=False) for h in config.relay_hosts]

    def _may_relay(self, peer: Any) -> bool:
        host = peer[0] if isinstance(peer, tuple) else str(peer)
        try:
            address = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in self.relay)

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        options: list[str],
    ) -> str:
        if _BAD_ADDRESS.search(address):
            return "553 5.1.7 Sender address contains CR, LF or NUL"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        options: list[str],
    ) -> str:
        if not self._may_relay(session.peer):
            log.warning("relaying denied", peer=str(session.peer), recipient=address)
            return "550 5.7.1 relaying denied"
        if _BAD_ADDRESS.search(address) or "@" not in address:
            return "553 5.1.3 Recipient address is not a valid mailbox"
        if len(envelope.rcpt_tos) >= self.config.max_recipients_per_message:
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        problem = content_problem(content, envelope.smtp_utf8)
        if problem:
            return problem
        peer = session.peer[0] if isinstance(session.peer, tuple) else str(session.peer)
        try:
            return await self.accept(
                envelope.mail_from or "",
                list(envelope.rcpt_tos),
                content,
                peer,
                envelope.smtp_utf8,
            )
        except SubmissionRefused as refused:
            return f"{refused.code} {refused.text}"


_HANDLER_METHODS = [name for name in dir(_Handler) if name.startswith(("handle_", "auth_"))]


def content_problem(content: bytes, smtputf8: bool) -> str | None:
    """The reply for content that must be refused, or None."""
    if b"\x00" in content:
        return "554 5.6.0 Message contains NUL bytes"
    if _BARE_LF.search(content):
        return "554 5.6.11 Message contains a bare LF (lines must end with CRLF)"
    end = _HEADER_END.search(content)
    headers = content[: end.start()] if end else content
    if not headers.isascii():
        if not smtputf8:
            return "554 5.6.7 Non-ASCII header requires SMTPUTF8"
        try:
            headers.decode("utf-8")
        except UnicodeDecodeError:
            return "554 5.6.7 Header is not valid UTF-8"
    return None


def _tls_context(config: EsmtpListenerConfig) -> ssl.SSLContext | None:
    if not config.tls_certificate:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.tls_certificate, config.tls_private_key)
    return context


def bind_listener(config: EsmtpListenerConfig) -> socket.socket:
    """A listening socket on `config.listen` (OSError when the address cannot be had), to
    share between the processes that accept on it."""
    host, _, port = config.listen.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, int(port)), family=family, backlog=1024)
    sock.setblocking(False)
    return sock


async def start_listener(
    config: EsmtpListenerConfig, accept: Accept, sock: socket.socket | None = None
) -> asyncio.Server:
    """Listen on `config.listen`, or accept on `sock` (from bind_listener); every connection
    gets its own aiosmtpd session."""
    host, _, port = config.listen.rpartition(":")
    host = host.strip("[]")
    handler = _Handler(config, accept)
    context = _tls_context(config)
    hostname = config.hostname or socket.getfqdn()  # once, not per session as aiosmtpd would

    def factory() -> SMTP:
        return _Server(
            handler,
            data_size_limit=config.max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname=hostname,
            ident=config.banner or "kumoclient ESMTP",
            tls_context=context,
            timeout=config.client_timeout,
        )

    loop = asyncio.get_running_loop()
    if sock is not None:
        server = await loop.create_server(factory, sock=sock)
    else:
        server = await loop.create_server(factory, host, int(port))
    log.info("esmtp listener started", listen=config.listen, relay_hosts=config.relay_hosts)
    return server
