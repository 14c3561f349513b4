"""Issue 7, must-show 4: two kumoclient nodes (real daemons) sharing a Redis throttle of 50
messages per second deliver no more than the limit allows together, counted at the sink;
with local limits only, the same two nodes deliver about twice that."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from kumoclient.spool import Spool, Submission
from tests.counting import most_in_any_window
from tests.daemon_process import DaemonProcess, free_port
from tests.redis_server import RedisServer

RATE = 50  # messages per second, for both nodes together
WINDOW = 5.0
PER_NODE = 600  # more than either node could send in the run at the shared rate
CONTENT = b"From: a@example.com\r\nSubject: throttled\r\n\r\n" + (b"x" * 76 + b"\r\n") * 26


class CountingSink:
    """Accepts everything; remembers when each message arrived (monotonic seconds)."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._lock:
            self.arrivals.append(time.monotonic())
        return "250 2.0.0 OK"


@pytest.fixture
def sink() -> Iterator[tuple[CountingSink, int]]:
    handler = CountingSink()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def policy(path: Path, sink_port: int, redis_url: str | None) -> Path:
    shared = ""
    if redis_url is not None:
        # long timeouts: a stalled process on a busy machine must not look like Redis down
        shared = (
            f"kumo.configure_redis_throttles {{ node = '{redis_url}',"
            " connect_timeout = '3s', read_timeout = '3s' }"
        )
    path.write_text(
        f"""
kumo.on('init', function() {shared} end)
kumo.on('get_queue_config', function()
  return kumo.make_queue_config {{
    protocol = {{ smtp = {{ mx_list = {{ '127.0.0.1:{sink_port}' }} }} }},
  }}
end)
kumo.on('get_egress_path_config', function()
  return kumo.make_egress_path {{
    prohibited_hosts = {{}}, enable_tls = 'Disabled', max_message_rate = '{RATE}/s',
    connection_limit = 4,
  }}
end)
"""
    )
    return path


def fill(spool_dir: Path, count: int) -> None:
    async def store() -> None:
        spool = Spool(spool_dir)
        await spool.start()
        for start in range(0, count, 100):
            recipients = tuple(f"r{i}@example.net" for i in range(start, start + 100))
            submission = Submission("a@example.com", recipients, CONTENT)
            await spool.store(spool.prepare(submission), CONTENT)
        await spool.close()

    asyncio.run(store())


def run_two_nodes(tmp_path: Path, sink: CountingSink, port: int, redis_url: str | None) -> int:
    """Start two daemons on pre-filled spools; let them deliver for a while; the most
    messages the sink saw in any WINDOW seconds."""
    nodes = []
    for name in ("a", "b"):
        data = tmp_path / name / "data"
        fill(data / "spool", PER_NODE)
        rules = policy(tmp_path / name / "policy.lua", port, redis_url)
        nodes.append(DaemonProcess(data, rules))
    try:
        for node in nodes:
            node.start()
        deadline = time.monotonic() + 60
        while len(sink.arrivals) < 2 * RATE * WINDOW and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(WINDOW)  # a full window with both nodes sending
    finally:
        for node in nodes:
            if node.stop() != 0:
                node.kill()
    assert len(sink.arrivals) >= RATE * WINDOW, "the nodes did not get going"
    return most_in_any_window(sink.arrivals, WINDOW)


@pytest.mark.slow
def test_two_nodes_share_one_redis_throttle(
    tmp_path: Path, sink: tuple[CountingSink, int], redis_proc: RedisServer
) -> None:
    counter, port = sink
    most = run_two_nodes(tmp_path, counter, port, redis_proc.url)
    # the burst of the limit, then RATE per second; a few of slack for where the window falls
    allowed = RATE + int(RATE * WINDOW) + 5
    print(f"shared: at most {most} messages in any {WINDOW:g}s (allowed {allowed})")
    assert most <= allowed, f"{most} messages in {WINDOW}s, the shared limit allows {allowed}"


@pytest.mark.slow
def test_with_local_limits_the_same_two_nodes_deliver_about_twice_as_much(
    tmp_path: Path, sink: tuple[CountingSink, int]
) -> None:
    """The control: each node alone is held to 50/s, so together they exceed the shared
    allowance — the limit above is Redis's doing, not a slow machine's."""
    counter, port = sink
    most = run_two_nodes(tmp_path, counter, port, None)
    print(f"local limits: at most {most} messages in any {WINDOW:g}s")
    assert most > RATE + int(RATE * WINDOW) + 5
