"""`kumoclient run` while its delivery log cannot be written, as a real process: the log
directory is a real tmpfs of its own, filled to ENOSPC, or made immutable (chattr +i) when
the writer needs a new segment; messages go to a real SMTP sink (aiosmtpd, in a thread).

The daemon never exits; while the log is down no delivery starts, SMTP answers 451 4.3.0 and
HTTP inject 503 with nothing stored, `kumoclient inject` files wait in incoming/; a message the
sink took leaves the spool only with its record; when the disk can take records again it all
resumes by itself, and every message is delivered exactly once with its records.
"""

from __future__ import annotations

import asyncio
import collections
import json
import resource
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from kumoclient.spool import Spool, Submission
from tests.daemon_process import DaemonProcess, free_port, kumoclient
from tests.sink_policy import write_sink_policy
from tests.small_disk import SmallDisk
from tests.test_daemon import submit

pytestmark = pytest.mark.slow

FAULT_BEGAN = "delivery log cannot be written"
FAULT_ENDED = "delivery log written again"


class Sink:
    """Accepts every message after `delay` seconds; counts deliveries per recipient."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.received: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await asyncio.sleep(self.delay)
        with self.lock:
            self.received.update(envelope.rcpt_tos)
        return "250 2.0.0 OK"

    def total(self) -> int:
        with self.lock:
            return sum(self.received.values())

    def counts(self) -> collections.Counter[str]:
        with self.lock:
            return collections.Counter(self.received)


@pytest.fixture
def sink() -> Iterator[tuple[Sink, int]]:
    handler = Sink(delay=0.02)  # about 100 messages a second over two connections
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


def prefill(spool_dir: Path, count: int) -> list[str]:
    """`count` spooled messages, one recipient each; their recipients."""

    async def go() -> list[str]:
        spool = Spool(spool_dir)
        await spool.start()
        recipients = [f"r{index}@example.net" for index in range(count)]
        for rcpt in recipients:
            body = f"Subject: {rcpt}\r\n\r\nbody\r\n".encode()
            await spool.store(spool.prepare(Submission("a@example.com", (rcpt,), body)), body)
        await spool.close()
        return recipients

    return asyncio.run(go())


def records(log_dir: Path) -> collections.Counter[tuple[str, str]]:
    """(type, recipient) of every record in the segments, counted (a broken line fails)."""
    return collections.Counter(
        (record["type"], record["recipient"])
        for path in sorted(log_dir.glob("*.jsonl"))
        for line in path.read_text().splitlines()
        if (record := json.loads(line))
    )


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    (line,) = [line for line in text.splitlines() if line.startswith(name + " ")]
    return float(line.split()[1])


def inject_http(port: int, recipient: str) -> int:
    body = {
        "envelope_sender": "a@example.com",
        "content": "Subject: http\r\n\r\nbody\r\n",
        "recipients": [{"email": recipient}],
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/inject/v1",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def start(data: Path, policy_path: Path, *args: str) -> tuple[DaemonProcess, int]:
    http = free_port()
    daemon = DaemonProcess(data, policy_path)
    daemon.extra_args = ["--http", f"127.0.0.1:{http}", *args]
    daemon.start()
    wait_for(lambda: _answers(http))
    return daemon, http


def _answers(http: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/api/check-liveness/v1", timeout=5):
            return True
    except OSError:  # URLError: not listening yet
        return False


def spooled_recipients(data: Path) -> set[str]:
    return {m.recipient for m in Spool(data / "spool").enumerate(quarantine=False)}


def test_a_full_log_disk_pauses_the_daemon_and_it_resumes_delivering_each_message_once(
    tmp_path: Path, sink: tuple[Sink, int]
) -> None:
    handler, sink_port = sink
    data = tmp_path / "data"
    recipients = prefill(data / "spool", 300)
    with SmallDisk(data / "logs", "512k") as disk:
        disk.fill()  # before the start: the first records meet a full disk
        daemon, http = start(
            data, write_sink_policy(tmp_path / "policy.lua", sink_port, connection_limit=2)
        )
        try:
            wait_for(lambda: metric(http, "kumoclient_log_unavailable") == 1.0)
            time.sleep(1.0)  # the attempts in flight when the fault began end
            paused_at = handler.total()
            assert submit(daemon.port, ["refused@example.net"]).startswith("451 4.3.0")
            assert inject_http(http, "refused@example.org") == 503
            dropped = kumoclient(
                "inject", "--from", "a@example.com", "--to", "dropped@example.net",
                "--data-dir", data, "-", stdin=b"Subject: dropped\r\n\r\nbody\r\n",
            )  # fmt: skip
            assert dropped.returncode == 0
            time.sleep(1.5)  # a chance to deliver, pick up or exit, which it must not take
            assert daemon.proc is not None
            assert daemon.proc.poll() is None
            assert 0 < paused_at < len(recipients)
            assert handler.total() == paused_at  # no delivery started during the fault
            assert list((data / "spool" / "incoming").glob("*.msg"))  # the file waits
            spooled = spooled_recipients(data)
            # nothing new stored, and every message the sink took is still spooled: it
            # leaves the spool only with its Delivery record
            assert spooled == set(recipients)

            disk.free()
            wait_for(lambda: handler.total() >= len(recipients) + 1)
            wait_for(lambda: not Spool(data / "spool").ids())
            assert metric(http, "kumoclient_log_unavailable") == 0.0
            assert submit(daemon.port, ["after@example.net"]).startswith("250")
            wait_for(lambda: handler.total() == len(recipients) + 2)
        finally:
            code = daemon.stop()
        assert code == 0
        expected = [*recipients, "dropped@example.net", "after@example.net"]
        assert handler.counts() == collections.Counter(expected)  # each exactly once
        logged = records(disk.path)
        for rcpt in expected:
            assert logged[("Delivery", rcpt)] == 1
        assert logged[("Reception", "dropped@example.net")] == 1
        assert ("Reception", "refused@example.net") not in logged
    stderr = daemon.stderr()
    assert stderr.count(FAULT_BEGAN) == 1
    assert stderr.count(FAULT_ENDED) == 1


def test_an_unwritable_log_makes_reception_workers_refuse_mail_until_a_segment_can_be_made(
    tmp_path: Path, sink: tuple[Sink, int]
) -> None:
    handler, sink_port = sink
    data = tmp_path / "data"
    with SmallDisk(data / "logs") as disk:
        daemon, http = start(
            data,
            write_sink_policy(tmp_path / "policy.lua", sink_port, connection_limit=2),
            "--workers",
            "1",
        )
        assert daemon.proc is not None
        pid = daemon.proc.pid
        try:
            # records enough that the segment is larger than the daemon's stderr file, which
            # the file size limit below must leave room to grow
            first = [f"first{n}@example.net" for n in range(10)]
            assert submit(daemon.port, first).startswith("250")
            wait_for(lambda: handler.total() == 10 and not Spool(data / "spool").ids())
            (segment,) = disk.path.glob("*.jsonl")
            assert segment.stat().st_size > daemon.stderr_path.stat().st_size + 4096
            # the segment cannot grow (EFBIG: the main process's file size limit) and no new
            # one can be made beside it (chattr +i: root ignores permissions, not this)
            disk.immutable(disk.path)
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (segment.stat().st_size, -1))
            # taken (the log was up), then its Reception record finds the log unwritable
            assert submit(daemon.port, ["second@example.net"]).startswith("250")
            wait_for(lambda: metric(http, "kumoclient_log_unavailable") == 1.0)
            # the reception worker reads the main process's log health
            assert submit(daemon.port, ["refused@example.net"]).startswith("451 4.3.0")
            assert inject_http(http, "refused@example.org") == 503
            assert daemon.proc.poll() is None

            resource.prlimit(pid, resource.RLIMIT_FSIZE, (-1, -1))
            disk.immutable(disk.path, on=False)
            wait_for(lambda: metric(http, "kumoclient_log_unavailable") == 0.0)
            assert submit(daemon.port, ["third@example.net"]).startswith("250")
            wait_for(lambda: handler.total() == 12 and not Spool(data / "spool").ids())
        finally:
            code = daemon.stop()
        assert code == 0
        expected = [*first, "second@example.net", "third@example.net"]
        assert handler.counts() == collections.Counter(expected)
        logged = records(disk.path)
        for rcpt in expected:
            assert (logged[("Reception", rcpt)], logged[("Delivery", rcpt)]) == (1, 1)
        assert len(list(disk.path.glob("*.jsonl"))) == 2  # the left one, and its successor
    stderr = daemon.stderr()
    assert stderr.count(FAULT_BEGAN) == 1
    assert stderr.count(FAULT_ENDED) == 1


def test_a_rotation_onto_an_immutable_log_directory_goes_on_in_the_current_segment(
    tmp_path: Path, sink: tuple[Sink, int]
) -> None:
    handler, sink_port = sink
    data = tmp_path / "data"
    init = "kumo.configure_local_logs { log_dir = 'unused', max_segment_duration = '1 second' }"
    with SmallDisk(data / "logs") as disk:
        daemon, http = start(
            data,
            write_sink_policy(tmp_path / "policy.lua", sink_port, init=init, connection_limit=2),
        )
        try:
            assert submit(daemon.port, ["before@example.net"]).startswith("250")
            wait_for(lambda: handler.total() == 1)
            disk.immutable(disk.path)
            segments = set(disk.path.glob("*.jsonl"))
            time.sleep(1.5)  # the segment is due: its successor cannot be made
            during = [f"during{n}@example.net" for n in range(5)]
            for rcpt in during:
                assert submit(daemon.port, [rcpt]).startswith("250")  # never 451
            wait_for(lambda: handler.total() == 6 and not Spool(data / "spool").ids())
            assert set(disk.path.glob("*.jsonl")) == segments  # all went to the current one
            assert metric(http, "kumoclient_log_unavailable") == 0.0
            disk.immutable(disk.path, on=False)
            wait_for(lambda: set(disk.path.glob("*.jsonl")) != segments)  # rotated at last
            assert submit(daemon.port, ["after@example.net"]).startswith("250")
            wait_for(lambda: handler.total() == 7)
        finally:
            code = daemon.stop()
        assert code == 0
        expected = ["before@example.net", *during, "after@example.net"]
        assert handler.counts() == collections.Counter(expected)
        logged = records(disk.path)
        for rcpt in expected:
            assert (logged[("Reception", rcpt)], logged[("Delivery", rcpt)]) == (1, 1)
    stderr = daemon.stderr()
    assert stderr.count("cannot start a new log segment") == 1
    assert FAULT_BEGAN not in stderr
