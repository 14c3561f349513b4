"""SIGKILL during reception: every message that got a 250 survives, readable, exactly once.

A real daemon process takes 2,000 submissions over SMTP from 4 concurrent clients and is
killed with SIGKILL at 20 random moments (then restarted). Then, with two reception worker
processes (`--workers 2`), 600 submissions and 8 SIGKILLs of the main process: its workers die
with it, wherever they are in a transaction. Each submission carries a unique
token. Afterwards, every acknowledged message is in the spool under the id its 250 named,
its content checks out, and no acknowledged token appears twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from pathlib import Path

import pytest

from kumoclient.spool import Spool, Submission
from tests.daemon_process import DaemonProcess
from tests.smtp_client import Client

SUBMISSIONS = 2000
KILLS = 20
CLIENTS = 4
RECYCLED = 300  # files of earlier, delivered messages waiting in spool/free/ to be reused


async def fill_free_pool(spool_dir: Path, count: int) -> set[int]:
    """Spool and remove `count` messages, as deliveries do: their files wait in free/ for new
    messages to be written over them. Returns their inode numbers."""
    spool = Spool(spool_dir)
    await spool.start()
    messages = spool.prepare(Submission("old@example.com", ("gone@example.net",) * count, b"x"))
    await spool.store(messages, content(-1) * 40)  # longer than what will be written over it
    await asyncio.to_thread(spool.apply, [], [m.id for m in messages])
    await spool.close()
    inodes = {entry.stat().st_ino for entry in spool.free.iterdir()}
    assert len(inodes) == count
    return inodes


def content(token: int) -> bytes:
    return f"Subject: crash test\r\nX-Token: {token}\r\n\r\nbody {token}\r\n".encode()


class Run:
    def __init__(self, daemon: DaemonProcess, submissions: int) -> None:
        self.daemon = daemon
        self.submissions = submissions
        self.next_token = 0
        self.acked: dict[int, str] = {}  # token -> id named by the 250
        self.retried: set[int] = set()
        self.ready = asyncio.Event()
        self.ready.set()

    async def client(self) -> None:
        connection: Client | None = None
        while self.next_token < self.submissions:
            token = self.next_token
            self.next_token += 1
            while True:
                await self.ready.wait()
                try:
                    if connection is None:
                        connection = await Client.connect(self.daemon.port)
                    reply = await connection.transaction(
                        "a@example.com", ["b@example.net"], content(token)
                    )
                except (OSError, asyncio.IncompleteReadError, AssertionError, TimeoutError):
                    self.retried.add(token)  # no 250: the submission is sent again
                    if connection is not None:
                        connection.writer.close()
                        with contextlib.suppress(OSError):
                            await connection.writer.wait_closed()
                        connection = None
                    await asyncio.sleep(0.05)
                    continue
                if reply.startswith("250"):
                    self.acked[token] = reply.split()[5]
                    break
                self.retried.add(token)
        if connection is not None:
            await connection.close()

    async def killer(self, moments: list[int]) -> None:
        for moment in moments:
            while len(self.acked) < moment:
                await asyncio.sleep(0.002)
            await asyncio.sleep(random.uniform(0, 0.01))  # land anywhere in a transaction
            self.ready.clear()
            self.daemon.kill()
            await asyncio.to_thread(self.daemon.start)
            self.ready.set()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("workers", "submissions", "kills"),
    [(0, SUBMISSIONS, KILLS), (2, 600, 8)],
)
def test_acknowledged_mail_survives_sigkill(
    tmp_path: Path, workers: int, submissions: int, kills: int
) -> None:
    recycled = asyncio.run(fill_free_pool(tmp_path / "data" / "spool", RECYCLED))
    daemon = DaemonProcess(tmp_path / "data")
    daemon.extra_args = ["--workers", str(workers)]
    daemon.start()
    run = Run(daemon, submissions)
    moments = sorted(random.sample(range(20, submissions - 20), kills))

    async def main() -> None:
        await asyncio.gather(run.killer(moments), *(run.client() for _ in range(CLIENTS)))

    try:
        asyncio.run(main())
    finally:
        daemon.kill()
    spool = Spool(tmp_path / "data" / "spool")
    messages = {m.id: m for m in spool.enumerate()}
    assert spool.unreadable == 0
    assert len(run.acked) == submissions
    tokens_in_spool: dict[int, list[str]] = {}
    for message_id in messages:
        body = asyncio.run(spool.read_content(message_id))  # checks size and CRC
        token = int(body.split(b"X-Token: ")[1].split(b"\r\n")[0])
        tokens_in_spool.setdefault(token, []).append(message_id)
    for token, message_id in run.acked.items():
        assert message_id in messages, f"acknowledged message {message_id} (token {token}) lost"
        assert message_id in tokens_in_spool[token]
        if token not in run.retried:
            assert tokens_in_spool[token] == [message_id], f"token {token} stored twice"
    # the run wrote over files of messages delivered before it (spool/free/), not only new ones
    written_over = recycled & {
        (tmp_path / "data" / "spool" / "data" / i).stat().st_ino for i in messages
    }
    assert len(written_over) >= RECYCLED // 2
