"""A scripted SMTP server for the faults no real server produces on demand: a greeting of
421, a refused EHLO, a server that stops answering, a connection dropped in the middle of DATA.
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
    """

    PIPELINED = ("stall_rcpt", "354_after_bad_rcpt", "replies_then_close")

    def __init__(self, fault: str) -> None:
        self.fault = fault
        self.lines: list[bytes] = []  # every line the client sent
        self.connections = 0
        self.port = 0
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
        with contextlib.suppress(ConnectionError):
            await self._talk(reader, writer)

    async def _talk(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.fault == "silent":
            await reader.read()  # until the client gives up
            return
        if self.fault == "greeting_421":
            writer.write(b"421 4.3.2 mx.test too busy, try later\r\n")
            await writer.drain()
            writer.close()
            return
        writer.write(b"220 mx.test ESMTP\r\n")
        bad_rcpt = False
        while line := await reader.readline():
            self.lines.append(line)
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                if self.fault == "ehlo_rejected":
                    writer.write(b"554 5.7.1 you are not welcome here\r\n")
                elif self.fault in self.PIPELINED:
                    writer.write(b"250-mx.test\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
                else:
                    writer.write(b"250-mx.test\r\n250 8BITMIME\r\n")
            elif verb == b"MAIL" and self.fault == "replies_then_close":
                rest = [await reader.readline(), await reader.readline()]  # RCPT, DATA
                self.lines.extend(rest)
                writer.write(b"250 2.1.0 OK\r\n250 2.1.5 OK\r\n554 5.3.0 closing now\r\n")
                await writer.drain()
                writer.close()
                return
            elif verb == b"MAIL":
                if self.fault == "stall_mail":
                    await reader.read()
                    return
                writer.write(b"250 2.1.0 OK\r\n")
            elif verb == b"RCPT":
                if self.fault == "stall_rcpt":
                    await reader.read()
                    return
                if self.fault == "354_after_bad_rcpt":
                    bad_rcpt = True
                    writer.write(b"550 5.1.1 no such user\r\n")
                else:
                    writer.write(b"250 2.1.5 OK\r\n")
            elif verb == b"DATA" and bad_rcpt:
                writer.write(b"354 go ahead anyway\r\n")
                await writer.drain()
                self.lines.append(await reader.readline())  # the client's lone dot
                writer.write(b"554 5.5.1 no valid recipients\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go ahead\r\n")
                await writer.drain()
                if self.fault == "drop_in_data":
                    await reader.read(10)
                    writer.transport.abort()
                    return
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                writer.close()
                return
            else:
                writer.write(b"250 OK\r\n")
            await writer.drain()
