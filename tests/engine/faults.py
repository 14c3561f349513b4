"""A scripted SMTP server for the faults no real server produces on demand: a greeting of
421, a refused EHLO, a server that stops answering, a connection dropped in the middle of DATA,
replies out of turn. (No real MTA answers out of turn on request; Postfix and aiosmtpd answer
every command exactly once, so these need a script.)
"""

from __future__ import annotations

import asyncio
import contextlib


class FaultyMX:
    """Talks SMTP line by line; `fault` names the one thing it does wrong.

    greeting_421  answers the connection with 421 and closes
    ehlo_rejected refuses EHLO and HELO with 554
    silent        accepts the connection and never says anything
    stall_mail    greets, answers EHLO, then never answers MAIL FROM
    drop_in_data  accepts MAIL, RCPT, DATA, then closes while the content arrives

    and, offering PIPELINING, the faults of pipelined transactions:
    stall_rcpt            answers MAIL FROM, then never answers RCPT TO
    354_after_bad_rcpt    refuses RCPT with 550, yet answers DATA with 354 (RFC 2920 says 503)
    replies_then_close    answers MAIL, RCPT and DATA (554) in one write and closes at once

    and, on the first connection only (later ones behave), replies out of turn, offering
    PIPELINING when `pipelining` is set:
    data_out_of_turn   answers DATA with `data_reply` (e.g. 250) instead of 354
    double_mail_reply  answers MAIL FROM twice, in one write
    double_dot_reply   answers the final dot twice, in one write
    idle_reply         after the first message's 250, once the test sets `send_stray`, says
                       `250 2.0.0 still here` while the client has no command outstanding
                       (`stray_sent` is set once it did)

    Every message it accepted (the content between DATA's 354 and the dot) is in `received`.
    """

    PIPELINED = ("stall_rcpt", "354_after_bad_rcpt", "replies_then_close")
    OUT_OF_TURN = ("data_out_of_turn", "double_mail_reply", "double_dot_reply", "idle_reply")

    def __init__(
        self, fault: str, *, pipelining: bool = False, data_reply: bytes = b"250 2.0.0 OK"
    ) -> None:
        self.fault = fault
        self.pipelining = pipelining or fault in self.PIPELINED
        self.data_reply = data_reply
        self.lines: list[bytes] = []  # every line the client sent, content included
        self.received: list[bytes] = []
        self.connections = 0
        self.port = 0
        self.send_stray = asyncio.Event()
        self.stray_sent = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> FaultyMX:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        for writer in self._writers:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        once = self.fault in self.OUT_OF_TURN and self.connections > 1
        with contextlib.suppress(ConnectionError):
            await _Conversation(self, "plain" if once else self.fault, reader, writer).talk()


class _Conversation:
    """One connection of a FaultyMX."""

    def __init__(
        self,
        mx: FaultyMX,
        fault: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.mx = mx
        self.fault = fault
        self.reader = reader
        self.writer = writer
        self.bad_rcpt = False

    async def talk(self) -> None:
        if self.fault == "silent":
            await self.reader.read()  # until the client gives up
            return
        if self.fault == "greeting_421":
            await self.say(b"421 4.3.2 mx.test too busy, try later\r\n")
            self.writer.close()
            return
        await self.say(b"220 mx.test ESMTP\r\n")
        while line := await self.reader.readline():
            self.mx.lines.append(line)
            if not await self.answer(line[:4].upper()):
                return

    async def say(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self, verb: bytes) -> bool:
        """Answer one command; False when the conversation is over."""
        if verb in (b"EHLO", b"HELO"):
            await self.hello()
        elif verb == b"MAIL":
            return await self.mail()
        elif verb == b"RCPT":
            return await self.rcpt()
        elif verb == b"DATA":
            return await self.data()
        elif verb == b"QUIT":
            await self.say(b"221 bye\r\n")
            self.writer.close()
            return False
        else:
            await self.say(b"250 OK\r\n")
        return True

    async def hello(self) -> None:
        if self.fault == "ehlo_rejected":
            await self.say(b"554 5.7.1 you are not welcome here\r\n")
        elif self.mx.pipelining:
            await self.say(b"250-mx.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
        else:
            await self.say(b"250-mx.test\r\n250 8BITMIME\r\n")

    async def mail(self) -> bool:
        if self.fault == "replies_then_close":
            rest = [await self.reader.readline(), await self.reader.readline()]  # RCPT, DATA
            self.mx.lines.extend(rest)
            await self.say(b"250 2.1.0 OK\r\n250 2.1.5 OK\r\n554 5.3.0 closing now\r\n")
            self.writer.close()
            return False
        if self.fault == "stall_mail":
            await self.reader.read()
            return False
        twice = self.fault == "double_mail_reply"
        await self.say(b"250 2.1.0 OK\r\n" * (2 if twice else 1))
        return True

    async def rcpt(self) -> bool:
        if self.fault == "stall_rcpt":
            await self.reader.read()
            return False
        if self.fault == "354_after_bad_rcpt":
            self.bad_rcpt = True
            await self.say(b"550 5.1.1 no such user\r\n")
        else:
            await self.say(b"250 2.1.5 OK\r\n")
        return True

    async def data(self) -> bool:
        if self.bad_rcpt:
            await self.say(b"354 go ahead anyway\r\n")
            self.mx.lines.append(await self.reader.readline())  # the client's lone dot
            await self.say(b"554 5.5.1 no valid recipients\r\n")
            return True
        if self.fault == "data_out_of_turn":
            await self.say(self.mx.data_reply + b"\r\n")
            return True
        await self.say(b"354 go ahead\r\n")
        if self.fault == "drop_in_data":
            await self.reader.read(10)
            self.writer.transport.abort()
            return False
        content = bytearray()
        while (line := await self.reader.readline()) != b".\r\n":
            if not line:  # the client went away in the middle of the content
                return False
            self.mx.lines.append(line)
            content += line[1:] if line.startswith(b"..") else line  # dot-stuffing undone
        self.mx.received.append(bytes(content))
        twice = self.fault == "double_dot_reply"
        await self.say(b"250 2.0.0 OK queued\r\n" * (2 if twice else 1))
        if self.fault == "idle_reply":
            await self.mx.send_stray.wait()
            await self.say(b"250 2.0.0 still here\r\n")
            self.mx.stray_sent.set()
        return True
