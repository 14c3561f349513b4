"""The SMTP submission listener: ESMTP in, whole transactions handed to an `accept` callback.

Rules (SPEC 3, 8; the decisions are in core/smtp_server.py):
- RCPT from a client outside `relay_hosts` → `550 5.7.1 relaying denied` (never an open relay);
- addresses that are not mailboxes (core/address.py: CR, LF, NUL, spaces, no domain ...) →
  `553 5.1.7` (MAIL) / `553 5.1.3` (RCPT);
- more than `max_recipients_per_message` → `452 4.5.3`;
- content over `max_message_size` → `552 5.3.4`; a line over 1,000 octets → `500 5.5.2`;
- NUL bytes in the content → `554 5.6.0`; a bare LF → `554 5.6.11` (SMTP smuggling defence);
- non-ASCII header bytes without SMTPUTF8, or invalid UTF-8 headers with it → `554 5.6.7`;
- `250` only when `accept` returns (the messages are durable); `accept` raises
  SubmissionRefused for any other answer (policy rejection, `452 4.3.1` spool trouble).
Nothing is stored unless the whole transaction is accepted.

Each connection is an asyncio.Protocol driven by the bytes that arrive: no task and no stream
per session, every complete command handled as it is read, and the replies to pipelined
commands written together. Commands that arrive while a message is being stored wait in the
buffer (reading pauses when it grows) and are answered, in order, after its reply. aiosmtpd,
which this listener ran on before, spent 0.8 ms of CPU per session on this machine, more than
the spool and the policy together (docs/performance.md); this costs about a tenth of that.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, cast

from kumoclient import logs
from kumoclient.core.listen import show_address, split_listen
from kumoclient.core.networks import address_in
from kumoclient.core.smtp_server import (
    MAX_LINE,
    MailFrom,
    content_problem,
    has_long_line,
    parse_mail,
    parse_rcpt,
    split_command,
    unstuff,
)
from kumoclient.errors import CommandError, SubmissionRefused
from kumoclient.records import EsmtpListenerConfig

log = logs.get_logger(__name__)

# sender, recipients, content, peer address, SMTPUTF8 → the 250 reply
Accept = Callable[[str, list[str], bytes, str, bool], Awaitable[str]]

# messages being stored (and TLS handshakes) of every listener in this process
_IN_FLIGHT: set[asyncio.Task[None]] = set()
_PAUSE_AT = 256 * 1024  # buffered bytes (pipelined while a message is stored) that pause reading
_END = b"\r\n.\r\n"


class _Listener:
    """What the sessions of one listener share: configuration, replies made once, tasks."""

    def __init__(self, config: EsmtpListenerConfig, accept: Accept) -> None:
        self.config = config
        self.accept = accept
        self.relay = [ipaddress.ip_network(h, strict=False) for h in config.relay_hosts]
        self.tls = _tls_context(config)
        self.hostname = config.hostname or socket.getfqdn()  # once, not per session
        ident = config.banner or "kumoclient ESMTP"
        self.greeting = f"220 {self.hostname} {ident}\r\n".encode()
        self.size_limit = config.max_message_size
        # stuffed data may be a little larger than the message: past this it is dropped
        # (dot-stuffing adds at most a third: a line of ".\r\n" travels as "..\r\n")
        self.data_limit = self.size_limit * 4 // 3 + 8192
        self.relay_known: dict[str, bool] = {}  # client address -> may relay (parsed once)
        self.ehlo_reply = self._ehlo(offer_tls=False)
        self.ehlo_reply_tls = self._ehlo(offer_tls=self.tls is not None)

    def _ehlo(self, *, offer_tls: bool) -> str:
        lines = [
            self.hostname,
            f"SIZE {self.size_limit}",
            "8BITMIME",
            "SMTPUTF8",
            "PIPELINING",
            "ENHANCEDSTATUSCODES",
            *(["STARTTLS"] if offer_tls else []),
            "HELP",
        ]
        return "\r\n".join(f"250-{line}" for line in lines[:-1]) + f"\r\n250 {lines[-1]}"

    def may_relay(self, peer: Any) -> bool:
        host = peer[0] if isinstance(peer, tuple) else str(peer)
        known = self.relay_known.get(host)
        if known is None:
            if len(self.relay_known) >= 4096:  # a bound against many distinct clients
                self.relay_known.clear()
            known = self.relay_known[host] = address_in(host, self.relay)
        return known


class _Session(asyncio.Protocol):
    """One SMTP connection."""

    def __init__(self, listener: _Listener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.relay = False
        self.buffer = bytearray()
        self.out: list[str] = []
        self.helo: str | None = None
        self.extended = False
        self.secure = False
        self.mail: MailFrom | None = None
        self.rcpts: list[str] = []
        self.in_data = False
        self.scanned = 0  # how far the data was searched for its end
        self.data_error: str | None = None  # the data is being dropped, with this reply
        self.busy = False  # a message is being stored, or TLS being set up
        self.skipping = False  # an over-long command line is being dropped
        self.paused = False  # reading paused (see _hold_reading)
        self.write_paused = False  # the client is not reading its replies
        self.eof = False  # the client will send nothing more
        self.before_tls = False  # STARTTLS answered, the handshake not begun: bytes are plaintext
        self.closed = False
        self.last_seen = 0.0
        self.timer: asyncio.TimerHandle | None = None

    # --- transport events ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio.Transport subclasses, but behave as one)
        transport = self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) else str(peer)
        self.relay = self.listener.may_relay(peer)
        transport.write(self.listener.greeting)
        loop = asyncio.get_running_loop()
        self.last_seen = loop.time()
        self.timer = loop.call_at(self.last_seen + self.listener.config.client_timeout, self._idle)

    def data_received(self, data: bytes) -> None:
        if self.before_tls:
            return  # RFC 3207: nothing sent before the handshake counts
        self.buffer += data
        self.last_seen = asyncio.get_running_loop().time()
        if self.busy or self.write_paused:
            if len(self.buffer) > _PAUSE_AT:
                self._hold_reading()
            return
        self._run()

    def eof_received(self) -> bool:
        # answer what was sent before the end (a message being stored gets its 250), then
        # close: see _run
        self.eof = True
        if not self.busy and not self.write_paused:
            self._run()
        return True

    def pause_writing(self) -> None:
        # the client does not read its replies: read no more commands from it until it does
        self.write_paused = True
        self._hold_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._continue()

    def _hold_reading(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
        self.buffer.clear()

    def _idle(self) -> None:
        loop = asyncio.get_running_loop()
        remaining = self.last_seen + self.listener.config.client_timeout - loop.time()
        if self.busy or remaining > 0:
            self.timer = loop.call_at(loop.time() + max(remaining, 1.0), self._idle)
            return
        if self.write_paused and self.transport is not None:  # it reads nothing: no goodbye
            self.closed = True
            self.transport.abort()
            return
        self.out.append(f"421 4.4.2 {self.listener.hostname} Error: timeout exceeded")
        self._close()

    # --- the command loop --------------------------------------------------------------

    def _run(self) -> None:
        """Handle every complete command (or data section) in the buffer, then reply."""
        while not self.busy and not self.closed and not self.write_paused:
            if not (self._data_step() if self.in_data else self._line_step()):
                break
            if len(self.out) >= 64:  # a long pipeline: let the transport push back
                self._flush()
        self._flush()
        if self.eof and not self.busy and not self.write_paused and not self.closed:
            self._close()  # everything sent before the end is answered

    def _flush(self) -> None:
        if self.out and self.transport is not None and not self.closed:
            self.transport.write(("\r\n".join(self.out) + "\r\n").encode())
        self.out.clear()

    def _close(self) -> None:
        self._flush()
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _line_step(self) -> bool:
        buffer = self.buffer
        end = buffer.find(b"\n")
        if end < 0:
            if len(buffer) > MAX_LINE:  # drop it as it comes; answer at its end
                self.skipping = True
                buffer.clear()
            return False
        if self.skipping or end >= MAX_LINE:
            self.skipping = False
            del buffer[: end + 1]
            self.out.append("500 5.5.2 Command line too long")
            return True
        line = bytes(buffer[:end])
        del buffer[: end + 1]
        try:
            text = line.rstrip(b"\r").decode("utf-8")
        except UnicodeDecodeError:
            self.out.append("500 5.5.2 Command is not valid UTF-8")
            return True
        verb, arg = split_command(text)
        command = _COMMANDS.get(verb)
        if command is None:
            shown = "".join(c if c.isprintable() else "?" for c in verb[:32])
            self.out.append(f'500 5.5.1 Error: command "{shown}" not recognized')
            return True
        try:
            command(self, arg)
        except CommandError as error:
            self.out.append(error.reply)
        return True

    def _reset(self) -> None:
        self.mail = None
        self.rcpts = []

    # --- commands ----------------------------------------------------------------------

    def _helo(self, arg: str, *, extended: bool) -> None:
        verb = "EHLO" if extended else "HELO"
        if not arg:
            raise CommandError(f"501 5.5.4 Syntax: {verb} hostname")
        self._reset()
        self.helo, self.extended = arg, extended
        if extended:
            listener = self.listener
            self.out.append(listener.ehlo_reply if self.secure else listener.ehlo_reply_tls)
        else:
            self.out.append(f"250 {self.listener.hostname}")

    def smtp_helo(self, arg: str) -> None:
        self._helo(arg, extended=False)

    def smtp_ehlo(self, arg: str) -> None:
        self._helo(arg, extended=True)

    def smtp_mail(self, arg: str) -> None:
        if self.helo is None:
            raise CommandError("503 5.5.1 Error: send HELO first")
        if self.mail is not None:
            raise CommandError("503 5.5.1 Error: nested MAIL command")
        self.mail = parse_mail(arg, extended=self.extended, size_limit=self.listener.size_limit)
        self.out.append("250 2.1.0 OK")

    def _transaction(self) -> MailFrom:
        """The open transaction's MAIL FROM (CommandError 503 when there is none)."""
        if self.helo is None:
            raise CommandError("503 5.5.1 Error: send HELO first")
        if self.mail is None:
            raise CommandError("503 5.5.1 Error: need MAIL command")
        return self.mail

    def smtp_rcpt(self, arg: str) -> None:
        mail = self._transaction()
        if not self.relay:
            log.warning("relaying denied", peer=self.peer, recipient=arg)
            raise CommandError("550 5.7.1 relaying denied")
        address = parse_rcpt(arg, smtputf8=mail.smtputf8)
        if len(self.rcpts) >= self.listener.config.max_recipients_per_message:
            raise CommandError("452 4.5.3 Too many recipients")
        self.rcpts.append(address)
        self.out.append("250 2.1.5 OK")

    def smtp_data(self, arg: str) -> None:
        self._transaction()
        if not self.rcpts:
            raise CommandError("503 5.5.1 Error: need RCPT command")
        if arg:
            raise CommandError("501 5.5.4 Syntax: DATA")
        self.in_data, self.scanned, self.data_error = True, 0, None
        self.out.append("354 End data with <CR><LF>.<CR><LF>")

    def smtp_rset(self, arg: str) -> None:
        if arg:
            raise CommandError("501 5.5.4 Syntax: RSET")
        self._reset()
        self.out.append("250 2.0.0 OK")

    def smtp_noop(self, arg: str) -> None:
        self.out.append("250 2.0.0 OK")

    def smtp_vrfy(self, arg: str) -> None:
        if not arg:
            raise CommandError("501 5.5.4 Syntax: VRFY <address>")
        self.out.append("252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery")

    def smtp_help(self, arg: str) -> None:
        self.out.append("250 2.0.0 Supported commands: " + " ".join(sorted(_COMMANDS)))

    def smtp_quit(self, arg: str) -> None:
        self.out.append("221 2.0.0 Bye")
        self._close()

    def smtp_starttls(self, arg: str) -> None:
        context = self.listener.tls
        if context is None:
            raise CommandError("454 4.7.0 TLS not available")
        if self.secure:
            raise CommandError("503 5.5.1 Error: TLS already active")
        if arg:
            raise CommandError("501 5.5.4 Syntax: STARTTLS")
        self.out.append("220 2.0.0 Ready to start TLS")
        self._flush()
        self.buffer.clear()  # RFC 3207: nothing sent before the handshake counts
        self.before_tls = True
        self.busy = True
        self._spawn(self._start_tls(context))

    async def _start_tls(self, context: ssl.SSLContext) -> None:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        # start_tls hands the raw transport to its TLS protocol before its first await: from
        # here on, what reaches data_received came through TLS
        self.before_tls = False
        try:
            transport = await loop.start_tls(
                self.transport,
                self,
                context,
                server_side=True,
                ssl_handshake_timeout=self.listener.config.client_timeout,
            )
        except (OSError, ssl.SSLError, ConnectionError, TimeoutError) as exc:
            log.info("STARTTLS handshake failed", peer=self.peer, error=str(exc))
            self._close()
            return
        if transport is None:
            self._close()
            return
        self.transport = transport
        self.secure, self.helo, self.extended = True, None, False
        self._reset()
        self._resume()

    # --- the data section ----------------------------------------------------------------

    def _data_step(self) -> bool:
        """Take the data section once its end is in the buffer; False while it is not."""
        buffer = self.buffer
        if self.data_error is None and buffer.startswith(b".\r\n"):
            end = -2  # the empty message (the buffer starts where the data does)
        else:
            end = buffer.find(_END, max(0, self.scanned - 4))
        if end == -1:
            self.scanned = len(buffer)
            if len(buffer) > self.listener.data_limit:  # drop it; keep what may start the end
                if self.data_error is None:
                    long_line = has_long_line(buffer)
                    self.data_error = (
                        "500 5.5.2 Line too long" if long_line else "552 5.3.4 Message too big"
                    )
                del buffer[:-4]
                self.scanned = len(buffer)
            return False
        data = bytes(buffer[: end + 2])
        del buffer[: end + 5]
        self.in_data = False
        mail, rcpts, error = self.mail, self.rcpts, self.data_error
        self._reset()
        assert mail is not None
        content = unstuff(data)
        if error is None:
            if has_long_line(content):
                error = "500 5.5.2 Line too long"
            elif len(content) > self.listener.size_limit:
                error = "552 5.3.4 Message too big"
            else:
                error = content_problem(content, mail.smtputf8)
        if error is not None:
            self.out.append(error)
            return True
        self.busy = True
        self._spawn(self._store(mail, rcpts, content))
        return True

    async def _store(self, mail: MailFrom, rcpts: list[str], content: bytes) -> None:
        try:
            reply = await self.listener.accept(
                mail.address, rcpts, content, self.peer, mail.smtputf8
            )
        except SubmissionRefused as refused:
            reply = f"{refused.code} {refused.text}"
        except Exception:  # a bug of ours: the client keeps its copy and tries again
            log.exception("accepting a message failed", peer=self.peer)
            reply = "451 4.3.0 Local error in processing, try again later"
        self.out.append(reply)
        self._resume()

    def _resume(self) -> None:
        self.busy = False
        self._continue()

    def _continue(self) -> None:
        """Read and answer again, unless a message is being stored or replies wait."""
        if self.closed or self.busy or self.write_paused:
            return
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        self._run()

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        _IN_FLIGHT.add(task)
        task.add_done_callback(_IN_FLIGHT.discard)


_COMMANDS: dict[str, Callable[[_Session, str], None]] = {
    name.removeprefix("smtp_").upper(): method
    for name, method in vars(_Session).items()
    if name.startswith("smtp_")
}


def _tls_context(config: EsmtpListenerConfig) -> ssl.SSLContext | None:
    if not config.tls_certificate:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(config.tls_certificate, config.tls_private_key)
    return context


def bind_listener(config: EsmtpListenerConfig) -> socket.socket:
    """A listening socket on `config.listen` (OSError when the address cannot be had,
    ConfigError when it is not HOST:PORT), to share between the processes that accept on it."""
    host, port = split_listen(config.listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=1024)
    sock.setblocking(False)
    return sock


async def finish_in_flight(timeout: float) -> int:
    """Wait up to `timeout` seconds for the messages being stored when the listeners were
    closed, so that each gets its reply before the spool and the log close; returns how many
    were still unfinished."""
    if not _IN_FLIGHT:
        return 0
    _, pending = await asyncio.wait(set(_IN_FLIGHT), timeout=timeout)
    return len(pending)


async def start_listener(
    config: EsmtpListenerConfig, accept: Accept, sock: socket.socket | None = None
) -> asyncio.Server:
    """Listen on `config.listen` (OSError when the address cannot be had, ConfigError when it
    is not HOST:PORT), or accept on `sock` (from bind_listener)."""
    listener = _Listener(config, accept)
    loop = asyncio.get_running_loop()
    if sock is not None:
        server = await loop.create_server(lambda: _Session(listener), sock=sock)
    else:
        host, port = split_listen(config.listen)
        server = await loop.create_server(lambda: _Session(listener), host, port, backlog=1024)
    log.info(
        "esmtp listener started",
        listen=config.listen,
        bound=[show_address(sock.getsockname()) for sock in server.sockets],
        relay_hosts=config.relay_hosts,
    )
    return server
