"""A raw SMTP client for tests: sends exactly the bytes given and reads whole replies."""

from __future__ import annotations

import asyncio
import contextlib


class Client:
    """A raw SMTP client: sends exactly the bytes given, reads whole replies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def reply(self) -> str:
        lines = []
        while True:
            line = (await asyncio.wait_for(self.reader.readline(), 10)).decode()
            lines.append(line.rstrip("\r\n"))
            if len(line) < 4 or line[3] != "-":
                return "\n".join(lines)

    async def send(self, raw: bytes) -> str:
        self.writer.write(raw)
        await self.writer.drain()
        return await self.reply()

    async def cmd(self, line: str) -> str:
        return await self.send(line.encode() + b"\r\n")

    async def transaction(self, sender: str, recipients: list[str], content: bytes) -> str:
        await self.cmd(f"MAIL FROM:<{sender}>")
        for rcpt in recipients:
            await self.cmd(f"RCPT TO:<{rcpt}>")
        data = await self.cmd("DATA")
        assert data.startswith("354"), data
        return await self.send(content + b".\r\n")

    @classmethod
    async def connect(cls, port: int, host: str = "127.0.0.1") -> Client:
        """Connect, read the greeting, say EHLO."""
        reader, writer = await asyncio.open_connection(host, port)
        client = cls(reader, writer)
        try:
            greeting = await client.reply()
            assert greeting.startswith("220"), greeting
            assert (await client.cmd("EHLO test.example")).startswith("250")
        except BaseException:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            raise
        return client

    async def close(self) -> None:
        """Close the connection (QUIT when it still answers)."""
        with contextlib.suppress(
            OSError, TimeoutError, asyncio.IncompleteReadError, AssertionError
        ):
            await asyncio.wait_for(self.cmd("QUIT"), 2)
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()
