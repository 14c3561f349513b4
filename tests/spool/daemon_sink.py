"""What the spool's tests with a real daemon share: a local SMTP sink the daemon delivers to,
the policy that sends everything there, spooled and submitted messages with tokens."""

from __future__ import annotations

import asyncio
import contextlib
import smtplib
import threading
from collections.abc import Iterator
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from kumoclient.records import SpooledMessage
from kumoclient.spool import Spool, Submission
from tests.daemon_process import free_port
from tests.sink_policy import write_sink_policy


def content(token: int) -> bytes:
    return f"Subject: spool fault test\r\nX-Token: {token}\r\n\r\nbody {token}\r\n".encode()


class Sink:
    """Accepts every message (aiosmtpd, in its own thread) and keeps the tokens received; a
    recipient in `defer_once` is answered 451 at its first attempt."""

    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.defer_once: set[str] = set()
        self.port = free_port()
        self._lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._lock:
            deferred = self.defer_once.intersection(envelope.rcpt_tos)
            if deferred:
                self.defer_once -= deferred
                return "451 4.3.0 try again later"
            raw = envelope.original_content or b""
            self.tokens.append(int(raw.split(b"X-Token: ")[1].split(b"\r\n")[0]))
        return "250 2.0.0 OK"

    def received(self) -> list[int]:
        with self._lock:
            return list(self.tokens)

    def has_all(self, tokens: set[int]) -> bool:
        return tokens <= set(self.received())


@contextlib.contextmanager
def running_sink() -> Iterator[Sink]:
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


def prefill(spool_dir: Path, recipients: dict[str, int]) -> list[SpooledMessage]:
    """Spool one message per recipient, each with its token, as an earlier run would have."""

    async def go() -> list[SpooledMessage]:
        spool = Spool(spool_dir)
        await spool.start()
        try:
            stored = []
            for recipient, token in recipients.items():
                body = content(token)
                messages = spool.prepare(Submission("a@example.com", (recipient,), body))
                await spool.store(messages, body)
                stored += messages
            return stored
        finally:
            await spool.close()

    return asyncio.run(go())


def submit(port: int, recipient: str, token: int) -> str:
    """One SMTP transaction with the daemon; the id its 250 names (acknowledged)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("test.example")
        client.mail("a@example.com")
        client.rcpt(recipient)
        code, reply = client.data(content(token))
    assert code == 250, reply
    return reply.decode().split()[-1]


def delivery_policy(folder: Path, port: int) -> Path:
    """Every queue delivers to the sink on `port`, retrying after a second."""
    return write_sink_policy(folder / "policy.lua", port)
