"""aiosmtplib's protocol, keeping every reply in order (RFC 2920) and setting apart the replies
that answer no command.

aiosmtplib's own protocol expects one reply per `read_response` and drops data that arrives
while a parsed reply waits to be read, so replies to pipelined commands would be lost. Here
the protocol counts the replies the server owes (one for the greeting, one per command
written: `send(data, replies, label)`). Every complete reply that arrives while one is owed
goes into a queue and `read_response` takes the oldest; a reply that arrives while none is
owed answers no command: it is kept apart in `out_of_turn` (the first one, with `label`s of
the last command written before it) for the session to judge, never handed to a reader.
Timeouts, EOF and a lost connection are reported as aiosmtplib reports them.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from collections.abc import Callable

import aiosmtplib
from aiosmtplib.errors import SMTPReadTimeoutError
from aiosmtplib.protocol import COMMAND_INJECTION_REGEX, MAX_RESPONSE_LENGTH, SMTPProtocol
from aiosmtplib.response import SMTPResponse


class ReplyProtocol(SMTPProtocol):
    """See the module's text."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        connection_lost_callback: Callable[[SMTPProtocol], None],
    ) -> None:
        super().__init__(loop=loop, connection_lost_callback=connection_lost_callback)
        self._replies: deque[SMTPResponse] = deque()
        self._owed = 1  # the greeting
        self._last_sent = "greeting"
        # the first reply that answered no command, and the last command written before it
        self.out_of_turn: tuple[str, SMTPResponse] | None = None

    def send(self, data: bytes, replies: int, label: str) -> None:
        """Write `data`, which asks the server for `replies` replies; `label` names it."""
        self._owed += replies
        self._last_sent = label
        self.write(data)

    def data_received(self, data: bytes) -> None:
        waiter = self._response_waiter
        if waiter is None:
            return
        self._buffer.extend(data)
        try:
            while (response := self._read_response_from_buffer()) is not None:
                if self._owed > 0:
                    self._owed -= 1
                    self._replies.append(response)
                elif self.out_of_turn is None:
                    self.out_of_turn = (self._last_sent, response)
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
        """The oldest owed reply not yet read, waiting up to `timeout` seconds for it.

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

    async def execute_command(self, *args: bytes, timeout: float | None = None) -> SMTPResponse:
        """One command and its reply (what aiosmtplib's QUIT uses)."""
        line = b" ".join(args)
        if COMMAND_INJECTION_REGEX.search(line):
            raise ValueError("Command arg contains a prohibited control character")
        if line == b"QUIT":
            self._quit_sent = True
        self.send(line + b"\r\n", 1, line.decode("ascii", "replace"))
        return await self.read_response(timeout=timeout)

    async def start_tls(
        self,
        tls_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> SMTPResponse:
        self._owed += 1  # aiosmtplib writes STARTTLS itself
        self._last_sent = "STARTTLS"
        response = await super().start_tls(tls_context, server_hostname, timeout)
        # anything that arrived before the handshake finished was clear text a
        # man-in-the-middle may have injected (RFC 3207 section 4.2)
        self._forget()
        return response

    def _forget(self) -> None:
        self._replies.clear()
        self._owed = 0
        self.out_of_turn = None
        waiter = self._response_waiter
        handed_over = waiter is not None and waiter.done() and not waiter.cancelled()
        if handed_over and waiter is not None and waiter.exception() is None:
            self._response_waiter = self._loop.create_future()


def _time_out(waiter: asyncio.Future[SMTPResponse]) -> None:
    if not waiter.done():
        waiter.set_exception(SMTPReadTimeoutError("Timed out waiting for server response"))


class ReplySMTP(aiosmtplib.SMTP):
    """aiosmtplib's client over `ReplyProtocol`, on a socket we connected ourselves."""

    async def _create_connection(self, timeout: float | None) -> SMTPResponse:
        loop = asyncio.get_running_loop()
        protocol = ReplyProtocol(loop, self._on_connection_lost)
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
