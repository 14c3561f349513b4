"""One open SMTP connection: commands and their replies, each under its own timeout, every
aiosmtplib error translated here (into ConnectFailure while opening, `TransportError` after).

With `Session` (the public face), `opening` (connecting, EHLO, STARTTLS) and `transaction`
(one message), this is the only code that catches aiosmtplib's errors; the others see Reply
values, ConnectFailure and `TransportError`.
"""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
from collections.abc import Iterator

import aiosmtplib
from aiosmtplib.response import SMTPResponse

from kumoclient.core.reply import parse_reply_lines
from kumoclient.errors import ConnectFailure, ReplyParseError
from kumoclient.records import Reply
from kumoclient.smtp.protocol import ReplyProtocol, ReplySMTP
from kumoclient.smtp.values import Target, Transcript, TransportFailure

_PERIOD = re.compile(rb"(?m)^\.")
_BARE_LF = re.compile(rb"(?<!\r)\n")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # as aiosmtplib refuses in a command line


class TransportError(Exception):
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


@contextlib.contextmanager
def _translated(
    phase: str, timeout: float, command: str, *, timeout_phase: str | None = None
) -> Iterator[None]:
    """aiosmtplib's errors and OSError as TransportError, the one error a Channel raises
    once connected (a timeout names the command it waited on)."""
    try:
        yield
    except aiosmtplib.SMTPTimeoutError as exc:
        raise TransportError(timeout_phase or phase, "timeout", timeout, command) from exc
    except (aiosmtplib.SMTPException, OSError) as exc:
        raise TransportError(phase, str(exc) or type(exc).__name__) from exc


def to_reply(response: SMTPResponse, command: str | None) -> Reply:
    """An aiosmtplib response as a Reply answering `command` (the line with its CRLF)."""
    lines = response.message.split("\n")
    raw = [f"{response.code}-{line}" for line in lines[:-1]]
    raw.append(f"{response.code} {lines[-1]}")
    try:
        return parse_reply_lines(raw, command)
    except ReplyParseError:
        return Reply(response.code, None, response.message, command)


class Channel:
    """An open, greeted connection to `target` (see the module's text)."""

    def __init__(self, smtp: ReplySMTP, target: Target, transcript: Transcript | None) -> None:
        self._smtp = smtp
        self.target = target
        self.transcript = transcript
        self.broken = False
        self.tls: tuple[str, str] | None = None  # (protocol version, cipher) after STARTTLS

    @classmethod
    async def greet(
        cls,
        sock: socket.socket,
        target: Target,
        ehlo_domain: str,
        timeout: float,
        transcript: Transcript | None,
    ) -> Channel:
        """The connection over `sock`, once the server greeted with 220; ConnectFailure."""
        smtp = ReplySMTP(
            hostname=target.address, local_hostname=ehlo_domain, start_tls=False, timeout=None
        )
        try:
            greeting = await smtp.connect(sock=sock, timeout=timeout)
        except aiosmtplib.SMTPConnectResponseError as exc:
            smtp.close()
            raise ConnectFailure(target.where, "banner", f"{exc.code} {exc.message}") from exc
        except aiosmtplib.SMTPTimeoutError as exc:
            smtp.close()
            raise ConnectFailure(target.where, "banner", f"timed out after {timeout:g}s") from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            smtp.close()
            raise ConnectFailure(target.where, "banner", str(exc) or type(exc).__name__) from exc
        channel = cls(smtp, target, transcript)
        channel.note("<", f"{greeting.code} {greeting.message}")
        return channel

    # --- what the server offers ----------------------------------------------------------

    def supports(self, extension: str) -> bool:
        """Whether the last EHLO reply offered `extension`."""
        return self._smtp.supports_extension(extension)

    async def hello(self, verb: str, domain: str, timeout: float) -> tuple[int, str]:
        """EHLO or HELO: the reply's code and text on one line; a 250 to EHLO gives the
        extensions. TransportError."""
        response = await self._exchange(f"{verb} {domain}", timeout, verb.lower())
        if verb == "EHLO" and response.code == 250:
            self._smtp.last_ehlo_response = response  # aiosmtplib parses the extensions
        return response.code, " ".join(response.message.split("\n"))

    async def starttls(self, server_hostname: str, context: ssl.SSLContext, timeout: float) -> None:
        """STARTTLS and the handshake; ConnectFailure when either fails."""
        where = self.target.where
        self.note(">", "STARTTLS")
        try:
            response = await self._smtp.starttls(
                server_hostname=server_hostname, tls_context=context, timeout=timeout
            )
        except aiosmtplib.SMTPResponseException as exc:
            raise ConnectFailure(where, "starttls", f"{exc.code} {exc.message}") from exc
        except aiosmtplib.SMTPTimeoutError as exc:
            raise ConnectFailure(where, "starttls", f"timed out after {timeout:g}s") from exc
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as exc:
            raise ConnectFailure(where, "starttls", str(exc) or type(exc).__name__) from exc
        self.note("<", f"{response.code} {response.message}")
        ssl_object = self._smtp.get_transport_info("ssl_object")
        if isinstance(ssl_object, ssl.SSLObject):
            cipher = ssl_object.cipher()
            self.tls = (ssl_object.version() or "", cipher[0] if cipher else "")

    # --- commands ------------------------------------------------------------------------

    async def command(self, line: str, timeout: float, phase: str) -> Reply:
        """`line` and its reply. TransportError."""
        return to_reply(await self._exchange(line, timeout, phase), line + "\r\n")

    def pipeline(self, commands: list[tuple[str, str]]) -> None:
        """Write the (line, phase) `commands` at once (RFC 2920); read their replies with
        `read`. TransportError (in the first one's phase)."""
        phase = commands[0][1]
        protocol = self._protocol(phase)
        if any(_CONTROL.search(line) for line, _ in commands):
            raise TransportError(phase, "Command arg contains a prohibited control character")
        for line, _ in commands:
            self.note(">", line)
        data = "".join(f"{line}\r\n" for line, _ in commands).encode()
        try:
            protocol.send(data, len(commands), commands[-1][1])
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise TransportError(phase, str(exc) or type(exc).__name__) from exc

    async def read(self, line: str, timeout: float, phase: str) -> Reply:
        """The reply to `line`, already written. TransportError."""
        protocol = self._protocol(phase)
        with _translated(phase, timeout, line):
            response = await protocol.read_response(timeout=timeout)
        self.note("<", f"{response.code} {response.message}")
        return to_reply(response, line + "\r\n")

    async def content(self, content: bytes, timeout: float) -> Reply:
        """The message content (CRLF-framed, dot-stuffed) and the final dot's reply."""
        if content.count(b"\n") != content.count(b"\r\n"):
            content = _BARE_LF.sub(b"\r\n", content)  # framing only; spooled mail is CRLF
        if not content.endswith(b"\r\n"):
            content += b"\r\n"
        protocol = self._protocol("message content")
        self.note(">", f"<{len(content)} bytes of content>")
        with _translated("message content", timeout, ".", timeout_phase="final dot"):
            if content.startswith(b".") or b"\n." in content:  # a cheap test first
                content = _PERIOD.sub(b"..", content)
            protocol.send(content + b".\r\n", 1, "final dot")
            response = await protocol.read_response(timeout=timeout)
        self.note(">", ".")
        self.note("<", f"{response.code} {response.message}")
        return to_reply(response, ".\r\n")

    def out_of_turn(self) -> tuple[str, Reply] | None:
        """The first reply that answered no command (after the command named), if any."""
        protocol = self._smtp.protocol
        if not isinstance(protocol, ReplyProtocol) or protocol.out_of_turn is None:
            return None
        after, response = protocol.out_of_turn
        return after, to_reply(response, None)

    async def _exchange(self, line: str, timeout: float, phase: str) -> SMTPResponse:
        protocol = self._protocol(phase)
        self.note(">", line)
        if _CONTROL.search(line):
            raise TransportError(phase, "Command arg contains a prohibited control character")
        with _translated(phase, timeout, line):
            protocol.send(f"{line}\r\n".encode(), 1, phase)
            response = await protocol.read_response(timeout=timeout)
        self.note("<", f"{response.code} {response.message}")
        return response

    def _protocol(self, phase: str) -> ReplyProtocol:
        protocol = self._smtp.protocol
        if not isinstance(protocol, ReplyProtocol):
            raise TransportError(phase, "connection lost")
        return protocol

    # --- the connection ------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """False once broken, closed by the server, or after a reply that answered nothing."""
        return not self.broken and self._smtp.is_connected and self.out_of_turn() is None

    def note(self, direction: str, text: str) -> None:
        """One line (or several) of the transcript."""
        if self.transcript is not None:
            for line in text.split("\n"):
                self.transcript(direction, line)

    def abort(self) -> None:
        """Drop the connection without QUIT."""
        self.broken = True
        self._smtp.close()

    async def quit(self, timeout: float) -> None:
        """QUIT (briefly waited for) and close."""
        if self.usable:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, ValueError):
                self.note(">", "QUIT")
                await self._smtp.quit(timeout=timeout)
        self.abort()
