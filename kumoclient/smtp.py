"""One outbound SMTP session over aiosmtplib; every server answer and every failure is a Reply.

A session is opened to one target (an address and port of one MX host): TCP connect, the
220 greeting, EHLO (HELO when EHLO is refused as unknown), STARTTLS per `enable_tls`. Any
failure there raises ConnectFailure (the engine then tries the next host; these never reach
the rewrite hook). Then `send` runs MAIL FROM, RCPT TO, DATA, the content and the final dot
for one message and returns an Exchange:
  - `accepted`: the final dot was answered 250;
  - `rejected`: MAIL or RCPT not 2xx, DATA not 354, or the dot not 250 (the reply remembers
    the exact command line it answered); the next transaction starts after RSET;
  - `transport`: a timeout or a dropped or nonsense-talking connection, described by a
    `TransportFailure` (the reply to log is made by `core.synthesized`); the session is
    broken and must be discarded;
  - `smtputf8`: the envelope needs SMTPUTF8 and the server lacks it; nothing was sent.
Every command has its own timeout (SPEC 5.2). The content is sent as spooled bytes, only
dot-stuffed, so signatures stay valid. When the server offers PIPELINING (RFC 2920), MAIL FROM,
RCPT TO and DATA go out in one write and their replies are read in order, each under its own
timeout: two writes per message instead of four. This is the only module that catches
aiosmtplib's errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import socket
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import aiosmtplib
from aiosmtplib.errors import SMTPReadTimeoutError
from aiosmtplib.protocol import MAX_RESPONSE_LENGTH, SMTPProtocol
from aiosmtplib.response import SMTPResponse

from kumoclient import logs
from kumoclient.core.reply import parse_reply_lines
from kumoclient.errors import ConnectFailure, ReplyParseError
from kumoclient.records import EgressPathConfig, Reply, TlsMode

log = logs.get_logger(__name__)

_PERIOD = re.compile(rb"(?m)^\.")
_BARE_LF = re.compile(rb"(?<!\r)\n")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # as aiosmtplib refuses in a command line
Transcript = Callable[[str, str], None]  # (direction '>' or '<', line without CRLF)


@dataclass(frozen=True, slots=True)
class Target:
    """One address of one MX host: `name` is the host's name (for TLS and logs)."""

    name: str
    address: str
    port: int

    @property
    def label(self) -> str:
        """`name` as used in failure texts and the peer_address of records."""
        if self.name == self.address:
            return f"[{self.address}]:{self.port}"
        return f"{self.name}:{self.port}"

    @property
    def where(self) -> str:
        """The label, with the address when the label is a name."""
        if self.name == self.address:
            return self.label
        return f"{self.label} ({self.address})"


@dataclass(frozen=True, slots=True)
class TransportFailure:
    """What broke a transaction: its `phase`, the `reason`, and for a timeout the seconds
    waited and the command whose reply did not come."""

    phase: str
    reason: str
    timeout: float | None = None
    command: str | None = None


@dataclass(frozen=True, slots=True)
class Exchange:
    """The outcome of one message's transaction: `kind` is accepted, rejected (with the
    server's `reply`), transport (with its `failure`) or smtputf8; `phase` where it ended."""

    kind: str
    phase: str
    reply: Reply | None = None
    failure: TransportFailure | None = None


def _reply(response: SMTPResponse, command: str | None) -> Reply:
    lines = response.message.split("\n")
    raw = [f"{response.code}-{line}" for line in lines[:-1]]
    raw.append(f"{response.code} {lines[-1]}")
    try:
        return parse_reply_lines(raw, command)
    except ReplyParseError:
        return Reply(response.code, None, response.message, command)


def needs_smtputf8(sender: str, recipient: str) -> bool:
    """True when an envelope address is not ASCII (RFC 6531)."""
    return not (sender.isascii() and recipient.isascii())


@functools.lru_cache(maxsize=2)
def _tls_context(verify: bool) -> ssl.SSLContext:
    """One context per mode for the process: loading the CA store costs milliseconds."""
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class _Protocol(SMTPProtocol):
    """aiosmtplib's protocol, keeping every reply that arrives, in order (RFC 2920).

    aiosmtplib's own protocol expects one reply per `read_response` and drops data that
    arrives while a parsed reply waits to be read, so replies to pipelined commands would be
    lost. Here every complete reply goes into a queue and `read_response` takes the oldest;
    timeouts, EOF and a lost connection are reported as aiosmtplib reports them.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        connection_lost_callback: Callable[[SMTPProtocol], None],
    ) -> None:
        super().__init__(loop=loop, connection_lost_callback=connection_lost_callback)
        self._replies: deque[SMTPResponse] = deque()

    def data_received(self, data: bytes) -> None:
        waiter = self._response_waiter
        if waiter is None:
            return
        self._buffer.extend(data)
        try:
            while (response := self._read_response_from_buffer()) is not None:
                self._replies.append(response)
            if len(self._buffer) > MAX_RESPONSE_LENGTH:
                raise aiosmtplib.SMTPResponseException(-1, "Response too long")
        except Exception as exc:
            del self._buffer[:]
            if not waiter.done():
                self._set_response_exception(waiter, exc)
            return
        self._hand_over()

    def _hand_over(self) -> None:
        waiter = self._response_waiter
        if self._replies and waiter is not None and not waiter.done():
            waiter.set_result(self._replies.popleft())

    async def read_response(self, timeout: float | None = None) -> SMTPResponse:
        """The oldest reply not yet read, waiting up to `timeout` seconds for it.

        (aiosmtplib's version wraps every wait in `asyncio.wait_for`; one timer per read is
        enough, and a reply that is already here is returned without waiting at all.)
        """
        waiter = self._response_waiter
        if waiter is None:
            if self._replies:  # replies that came just before the connection closed
                return self._replies.popleft()
            raise aiosmtplib.SMTPServerDisconnected("Connection lost")
        self._hand_over()
        timer = None
        if timeout is not None and not waiter.done():
            timer = self._loop.call_later(timeout, _time_out, waiter)
        try:
            return await waiter
        finally:
            if timer is not None:
                timer.cancel()
            self._response_waiter = None if self.transport is None else self._loop.create_future()
            self._hand_over()  # the next reply, if it is already here

    def discard_unsolicited(self) -> None:
        """Forget replies nobody asked for (before a transaction, after STARTTLS's 220)."""
        self._replies.clear()
        waiter = self._response_waiter
        handed_over = waiter is not None and waiter.done() and not waiter.cancelled()
        if handed_over and waiter is not None and waiter.exception() is None:
            self._response_waiter = self._loop.create_future()

    async def start_tls(
        self,
        tls_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> SMTPResponse:
        response = await super().start_tls(tls_context, server_hostname, timeout)
        # anything that arrived before the handshake finished was clear text a
        # man-in-the-middle may have injected (RFC 3207 section 4.2)
        self.discard_unsolicited()
        return response


def _time_out(waiter: asyncio.Future[SMTPResponse]) -> None:
    if not waiter.done():
        waiter.set_exception(SMTPReadTimeoutError("Timed out waiting for server response"))


class _SMTP(aiosmtplib.SMTP):
    """aiosmtplib's client over `_Protocol`, on a socket we connected ourselves."""

    async def _create_connection(self, timeout: float | None) -> SMTPResponse:
        loop = asyncio.get_running_loop()
        protocol = _Protocol(loop, self._on_connection_lost)
        transport, _ = await loop.create_connection(lambda: protocol, sock=self.sock)
        self.protocol = protocol
        self.transport = transport
        try:
            response = await protocol.read_response(timeout=timeout)
        except aiosmtplib.SMTPTimeoutError as exc:
            raise aiosmtplib.SMTPConnectTimeoutError("timed out waiting for the greeting") from exc
        if response.code != 220:
            raise aiosmtplib.SMTPConnectResponseError(response.code, response.message)
        return response


class Session:
    """An open, greeted SMTP connection to one target."""

    def __init__(
        self,
        smtp: aiosmtplib.SMTP,
        target: Target,
        config: EgressPathConfig,
        transcript: Transcript | None,
    ) -> None:
        self._smtp = smtp
        self.target = target
        self.config = config
        self.transcript = transcript
        self.deliveries = 0
        self.broken = False
        self.tls: tuple[str, str] | None = None

    # --- opening -------------------------------------------------------------------------

    @classmethod
    async def open(
        cls,
        target: Target,
        config: EgressPathConfig,
        ehlo_domain: str,
        transcript: Transcript | None = None,
    ) -> Session:
        """Connect, read the greeting, EHLO and STARTTLS; raises ConnectFailure."""
        mode = config.enable_tls
        session = await cls._greeted(target, config, ehlo_domain, transcript)
        if mode is TlsMode.DISABLED:
            return session
        offered = session._smtp.supports_extension("starttls")
        required = mode in (TlsMode.REQUIRED, TlsMode.REQUIRED_INSECURE)
        if not offered:
            if required:
                await session.close()
                raise ConnectFailure(target.where, "starttls", "STARTTLS is not advertised")
            return session
        verify = mode in (TlsMode.OPPORTUNISTIC, TlsMode.REQUIRED)
        try:
            await session._starttls(ehlo_domain, verify)
        except ConnectFailure:
            session.abort()
            if mode is not TlsMode.OPPORTUNISTIC_INSECURE:
                raise
            # OpportunisticInsecure: the handshake failed, carry on in clear text
            return await cls._greeted(target, config, ehlo_domain, transcript)
        return session

    @classmethod
    async def _greeted(
        cls,
        target: Target,
        config: EgressPathConfig,
        ehlo_domain: str,
        transcript: Transcript | None,
    ) -> Session:
        sock = await _tcp_connect(target, config.connect_timeout, config.source_address)
        smtp = _SMTP(
            hostname=target.address, local_hostname=ehlo_domain, start_tls=False, timeout=None
        )
        try:
            greeting = await smtp.connect(sock=sock, timeout=config.banner_timeout)
        except aiosmtplib.SMTPConnectResponseError as exc:
            smtp.close()
            raise ConnectFailure(target.where, "banner", f"{exc.code} {exc.message}") from exc
        except aiosmtplib.SMTPTimeoutError as exc:
            smtp.close()
            raise ConnectFailure(
                target.where, "banner", f"timed out after {config.banner_timeout:g}s"
            ) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            smtp.close()
            raise ConnectFailure(target.where, "banner", str(exc) or type(exc).__name__) from exc
        session = cls(smtp, target, config, transcript)
        session._note("<", f"{greeting.code} {greeting.message}")
        await session._ehlo(ehlo_domain)
        return session

    async def _ehlo(self, ehlo_domain: str) -> None:
        response = await self._setup_command(f"EHLO {ehlo_domain}", "ehlo")
        if response.code == 250:
            self._smtp.last_ehlo_response = response  # aiosmtplib parses the extensions
            return
        if 500 <= response.code < 510:  # EHLO not understood: an old server, try HELO
            response = await self._setup_command(f"HELO {ehlo_domain}", "helo")
            if response.code == 250:
                return
        self.abort()
        text = " ".join(response.message.split("\n"))
        raise ConnectFailure(self.target.where, "ehlo", f"{response.code} {text}")

    async def _setup_command(self, line: str, phase: str) -> SMTPResponse:
        try:
            return await self._exchange(line, self.config.ehlo_timeout, phase)
        except _TransportError as exc:
            self.abort()
            raise ConnectFailure(self.target.where, phase, exc.describe()) from exc

    async def _starttls(self, ehlo_domain: str, verify: bool) -> None:
        self._note(">", "STARTTLS")
        try:
            response = await self._smtp.starttls(
                server_hostname=self.target.name,
                tls_context=_tls_context(verify),
                timeout=self.config.starttls_timeout,
            )
        except aiosmtplib.SMTPResponseException as exc:
            raise ConnectFailure(
                self.target.where, "starttls", f"{exc.code} {exc.message}"
            ) from exc
        except aiosmtplib.SMTPTimeoutError as exc:
            timeout = self.config.starttls_timeout
            raise ConnectFailure(
                self.target.where, "starttls", f"timed out after {timeout:g}s"
            ) from exc
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
            raise ConnectFailure(
                self.target.where, "starttls", str(exc) or type(exc).__name__
            ) from exc
        self._note("<", f"{response.code} {response.message}")
        ssl_object = self._smtp.get_transport_info("ssl_object")
        if isinstance(ssl_object, ssl.SSLObject):
            cipher = ssl_object.cipher()
            self.tls = (ssl_object.version() or "", cipher[0] if cipher else "")
        await self._ehlo(ehlo_domain)

    # --- one message ---------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """False once the connection broke or the server closed it while idle."""
        return not self.broken and self._smtp.is_connected

    async def send(self, sender: str, recipient: str, content: bytes) -> Exchange:
        """One transaction. Never raises for anything the server or the network does."""
        self.deliveries += 1
        config = self.config
        options: list[str] = []
        if needs_smtputf8(sender, recipient):
            if not self._smtp.supports_extension("smtputf8"):
                return Exchange("smtputf8", "MAIL FROM")
            options.append("SMTPUTF8")
        if not content.isascii() and self._smtp.supports_extension("8bitmime"):
            options.append("BODY=8BITMIME")
        if self._smtp.supports_extension("size"):
            options.append(f"SIZE={len(content)}")
        mail = " ".join([f"MAIL FROM:<{sender}>", *options])
        steps = (
            (mail, config.mail_from_timeout, "MAIL FROM"),
            (f"RCPT TO:<{recipient}>", config.rcpt_to_timeout, "RCPT TO"),
            ("DATA", config.data_timeout, "DATA"),
        )
        try:
            if self._smtp.supports_extension("pipelining"):
                rejection = await self._pipelined(steps)
            else:
                rejection = await self._lockstep(steps)
            if rejection is not None:
                await self._reset()
                return rejection
            reply = await self._content(content, config.data_dot_timeout)
        except _TransportError as exc:
            self.abort()
            return Exchange("transport", exc.phase, failure=exc.failure())
        kind = "accepted" if reply.code == 250 else "rejected"
        return Exchange(kind, "final dot", reply)

    async def _lockstep(self, steps: tuple[tuple[str, float, str], ...]) -> Exchange | None:
        """MAIL, RCPT, DATA one at a time; the first rejection ends the transaction."""
        for line, timeout, phase in steps:
            reply = await self._command(line, timeout, phase)
            if not _wanted(phase, reply.code):
                return Exchange("rejected", phase, reply)
        return None

    async def _pipelined(self, steps: tuple[tuple[str, float, str], ...]) -> Exchange | None:
        """MAIL, RCPT and DATA in one write (RFC 2920); every reply is read, in order.

        The first rejection is the transaction's outcome: after a refused MAIL or RCPT the
        server refuses DATA too (503/554), and that later reply is not a rejection of its
        own. Should a server answer DATA 354 anyway, an empty message is ended with the dot.
        """
        protocol = self._protocol(steps[0][2])
        lines = [line for line, _, _ in steps]
        if any(_CONTROL.search(line) for line in lines):
            raise _TransportError(
                "MAIL FROM", "Command arg contains a prohibited control character"
            )
        protocol.discard_unsolicited()
        for line in lines:
            self._note(">", line)
        try:
            protocol.write("".join(f"{line}\r\n" for line in lines).encode())
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise _TransportError("MAIL FROM", str(exc) or type(exc).__name__) from exc
        rejection: Exchange | None = None
        for line, timeout, phase in steps:
            reply = _reply(await self._read(protocol, line, timeout, phase), line + "\r\n")
            if rejection is None and not _wanted(phase, reply.code):
                rejection = Exchange("rejected", phase, reply)
            elif rejection is not None and phase == "DATA" and reply.code == 354:
                self._note(">", ".")
                protocol.write(b".\r\n")
                await self._read(protocol, ".", self.config.data_dot_timeout, "final dot")
        return rejection

    async def _content(self, content: bytes, timeout: float) -> Reply:
        if content.count(b"\n") != content.count(b"\r\n"):
            content = _BARE_LF.sub(b"\r\n", content)  # framing only; spooled mail is CRLF
        if not content.endswith(b"\r\n"):
            content += b"\r\n"
        protocol = self._smtp.protocol
        if protocol is None:
            raise _TransportError("message content", "connection lost")
        self._note(">", f"<{len(content)} bytes of content>")
        try:
            if content.startswith(b".") or b"\n." in content:  # a cheap test first
                content = _PERIOD.sub(b"..", content)
            protocol.write(content + b".\r\n")
            response = await protocol.read_response(timeout=timeout)
        except aiosmtplib.SMTPTimeoutError as exc:
            raise _TransportError("final dot", "timeout", timeout, ".") from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise _TransportError("message content", str(exc) or type(exc).__name__) from exc
        self._note(">", ".")
        self._note("<", f"{response.code} {response.message}")
        return _reply(response, ".\r\n")

    async def _reset(self) -> None:
        """RSET after a failed transaction; a failing RSET breaks the session."""
        try:
            reply = await self._command("RSET", self.config.rset_timeout, "RSET")
        except _TransportError:
            self.abort()
            return
        if reply.code != 250:
            self.abort()

    # --- plumbing ------------------------------------------------------------------------

    async def _command(self, line: str, timeout: float, phase: str) -> Reply:
        return _reply(await self._exchange(line, timeout, phase), line + "\r\n")

    async def _exchange(self, line: str, timeout: float, phase: str) -> SMTPResponse:
        protocol = self._protocol(phase)
        self._note(">", line)
        try:
            response = await protocol.execute_command(line.encode(), timeout=timeout)
        except aiosmtplib.SMTPTimeoutError as exc:
            raise _TransportError(phase, "timeout", timeout, line) from exc
        except (aiosmtplib.SMTPException, OSError, ValueError) as exc:
            raise _TransportError(phase, str(exc) or type(exc).__name__) from exc
        self._note("<", f"{response.code} {response.message}")
        return response

    async def _read(
        self, protocol: _Protocol, line: str, timeout: float, phase: str
    ) -> SMTPResponse:
        """The next reply, for `line` (already written)."""
        try:
            response = await protocol.read_response(timeout=timeout)
        except aiosmtplib.SMTPTimeoutError as exc:
            raise _TransportError(phase, "timeout", timeout, line) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise _TransportError(phase, str(exc) or type(exc).__name__) from exc
        self._note("<", f"{response.code} {response.message}")
        return response

    def _protocol(self, phase: str) -> _Protocol:
        protocol = self._smtp.protocol
        if not isinstance(protocol, _Protocol):
            raise _TransportError(phase, "connection lost")
        return protocol

    def _note(self, direction: str, text: str) -> None:
        if self.transcript is not None:
            for line in text.split("\n"):
                self.transcript(direction, line)

    def abort(self) -> None:
        """Drop the connection without QUIT."""
        self.broken = True
        self._smtp.close()

    async def close(self) -> None:
        """QUIT (briefly waited for) and close."""
        if self.usable:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, ValueError):
                self._note(">", "QUIT")
                await self._smtp.quit(timeout=self.config.rset_timeout)
        self.abort()


class _TransportError(Exception):
    """A timeout or a lost connection in the middle of a transaction."""

    def __init__(
        self, phase: str, reason: str, timeout: float | None = None, command: str | None = None
    ) -> None:
        super().__init__(reason)
        self.phase = phase
        self.reason = reason
        self.timeout = timeout
        self.command = command

    def describe(self) -> str:
        if self.timeout is not None:
            return f"timed out after {self.timeout:g}s waiting for the reply to {self.command}"
        return self.reason

    def failure(self) -> TransportFailure:
        """The failure as data for the disposition."""
        return TransportFailure(self.phase, self.reason, self.timeout, self.command)


def _wanted(phase: str, code: int) -> bool:
    """Whether a reply lets the transaction go on: 2xx to MAIL and RCPT, 354 to DATA."""
    return code == 354 if phase == "DATA" else code // 100 == 2


async def _tcp_connect(
    target: Target, timeout: float, source_address: str | None = None
) -> socket.socket:
    """A connected, non-blocking socket to the target (from `source_address` when given);
    ConnectFailure on error or timeout."""
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in target.address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        if source_address is not None:
            sock.bind((source_address, 0))
        await asyncio.wait_for(loop.sock_connect(sock, (target.address, target.port)), timeout)
    except TimeoutError as exc:
        sock.close()
        raise ConnectFailure(target.where, "connect", f"timed out after {timeout:g}s") from exc
    except OSError as exc:
        sock.close()
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ConnectFailure(target.where, "connect", reason) from exc
    except BaseException:
        sock.close()
        raise
    return sock
