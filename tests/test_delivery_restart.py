"""Must-show 4 of the delivery issue: a daemon stopped with SIGTERM, or killed with SIGKILL,
in the middle of delivering 1,000 spooled messages delivers every one after a restart."""

from __future__ import annotations

import asyncio
import collections
import json
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from kumoclient.spool import Spool, Submission
from tests.daemon_process import DaemonProcess, free_port
from tests.sink_policy import write_sink_policy
from tests.test_daemon import wait_for

pytestmark = pytest.mark.slow
COUNT = 1000


class CountingSink:
    """Accepts everything; counts deliveries per recipient (from the daemon, in a thread)."""

    def __init__(self) -> None:
        self.received: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.received.update(envelope.rcpt_tos)
        return "250 2.0.0 OK"

    def total(self) -> int:
        with self.lock:
            return sum(self.received.values())


@pytest.fixture
def sink() -> Iterator[tuple[CountingSink, int]]:
    handler = CountingSink()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


def prefill(spool_dir: Path) -> list[str]:
    async def go() -> list[str]:
        spool = Spool(spool_dir)
        await spool.start()
        recipients = []
        for start in range(0, COUNT, 100):
            stores = []
            for index in range(start, start + 100):
                rcpt = f"r{index}@example.net"
                body = f"Subject: {index}\r\n\r\n".encode() + (b"x" * 70 + b"\r\n") * 20
                stores.append(
                    spool.store(spool.prepare(Submission("a@example.com", (rcpt,), body)), body)
                )
                recipients.append(rcpt)
            await asyncio.gather(*stores)
        await spool.close()
        return recipients

    return asyncio.run(go())


def delivery_records(data_dir: Path) -> list[dict[str, object]]:
    return [
        record
        for path in sorted((data_dir / "logs").glob("*.jsonl"))
        for line in path.read_text().splitlines()
        if (record := json.loads(line))["type"] == "Delivery"
    ]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_an_interrupted_drain_delivers_everything_after_restart(
    tmp_path: Path, sink: tuple[CountingSink, int], signum: int
) -> None:
    handler, port = sink
    data = tmp_path / "data"
    recipients = prefill(data / "spool")
    daemon = DaemonProcess(
        data, write_sink_policy(tmp_path / "policy.lua", port, connection_limit=8)
    ).start()
    try:
        wait_for(lambda: handler.total() >= 150, timeout=120)
        daemon.signal(signum)
        code = daemon.proc.wait(timeout=20) if daemon.proc else None
    finally:
        daemon.kill()  # never leave a daemon behind, whatever failed
    assert code == (0 if signum == signal.SIGTERM else -signal.SIGKILL)
    interrupted_at = handler.total()
    left = len(Spool(data / "spool").ids())
    assert 0 < left < COUNT, "the signal must land in the middle of the drain"
    if signum == signal.SIGTERM:
        # an orderly stop: every message the sink took is recorded and out of the spool
        assert left == COUNT - interrupted_at
        assert len(delivery_records(data)) == interrupted_at

    restarted = DaemonProcess(
        data, write_sink_policy(tmp_path / "policy.lua", port, connection_limit=8)
    ).start()
    try:
        wait_for(lambda: not Spool(data / "spool").ids(), timeout=180)
    finally:
        assert restarted.stop() == 0
    assert set(handler.received) == set(recipients)  # nothing lost
    duplicates = {r: n for r, n in handler.received.items() if n > 1}
    if signum == signal.SIGTERM:
        assert duplicates == {}
    else:
        # at-least-once: only messages the sink had accepted before the kill come twice
        assert sum(duplicates.values()) - len(duplicates) <= interrupted_at
    assert {str(r["recipient"]) for r in delivery_records(data)} == set(recipients)
