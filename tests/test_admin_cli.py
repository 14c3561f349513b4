"""Queue administration of a running daemon from the command line (`kumoclient admin ...`,
over the daemon's HTTP listener): suspend → messages wait; resume → they go; bounce →
AdminBounce records and the messages are gone; bad requests are clear errors."""

from __future__ import annotations

import json
import smtplib
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from prometheus_client.parser import text_string_to_metric_families

from tests.daemon_process import DaemonProcess, free_port, kumoclient

MESSAGE = b"From: a@example.com\r\nSubject: admin\r\n\r\nhello\r\n"


class Sink:
    """Accepts everything but the recipients of `REPLIES`."""

    REPLIES: ClassVar[dict[str, str]] = {
        "later@example.com": "451 4.3.0 try again later",
        "full@example.com": "452 4.2.2 The email account that you tried to reach is over quota.",
    }

    def __init__(self) -> None:
        self.recipients: list[str] = []
        self._lock = threading.Lock()

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.REPLIES:
            return self.REPLIES[address]
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._lock:
            self.recipients.extend(envelope.rcpt_tos)
        return "250 2.0.0 OK"


class Rig:
    def __init__(self, daemon: DaemonProcess, sink: Sink, url: str) -> None:
        self.daemon, self.sink, self.url = daemon, sink, url

    def admin(self, *args: str) -> Any:
        done = kumoclient("admin", *args, "--url", self.url)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    def submit(self, *recipients: str) -> None:
        with smtplib.SMTP("127.0.0.1", self.daemon.port, timeout=30) as client:
            client.sendmail("a@example.com", list(recipients), MESSAGE)

    def records(self) -> list[dict[str, Any]]:
        found = []
        for path in sorted((self.daemon.data_dir / "logs").glob("*.jsonl")):
            found += [json.loads(line) for line in path.read_text().splitlines() if line]
        return found

    def wait(self, done: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert time.monotonic() < deadline, f"timed out; records: {self.records()}"
            time.sleep(0.1)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    sink = Sink()
    sink_port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=sink_port)
    controller.start()
    http_port = free_port()
    policy = tmp_path / "policy.lua"
    policy.write_text(
        f"""
kumo.on('get_queue_config', function()
  return kumo.make_queue_config {{
    protocol = {{ smtp = {{ mx_list = {{ '127.0.0.1:{sink_port}' }} }} }},
  }}
end)
kumo.on('get_egress_path_config', function()
  return kumo.make_egress_path {{ prohibited_hosts = {{}}, enable_tls = 'Disabled' }}
end)
kumo.on('smtp_client_rewrite_delivery_status', function(response)
  if response:find('4.2.2', 1, true) then return 500 end
end)
"""
    )
    daemon = DaemonProcess(tmp_path / "data", policy)
    daemon.extra_args = ["--http", f"127.0.0.1:{http_port}"]
    daemon.start()
    try:
        yield Rig(daemon, sink, f"http://127.0.0.1:{http_port}")
    finally:
        if daemon.stop() != 0:
            daemon.kill()
        controller.stop()


def test_suspend_holds_resume_releases_bounce_removes(rig: Rig) -> None:
    suspension = rig.admin("suspend", "--domain", "example.net", "--reason", "maintenance")
    assert suspension["reason"] == "maintenance"

    rig.submit("one@example.net", "two@example.net", "three@example.org")
    rig.wait(lambda: "three@example.org" in rig.sink.recipients)
    time.sleep(1.0)  # the held domain had the same chance
    assert rig.sink.recipients == ["three@example.org"]
    [held] = [q for q in rig.admin("queues") if q["queue"] == "example.net"]
    assert held["suspended"] is True
    assert held["held"] == 2

    assert rig.admin("resume", "--domain", "example.net") == {"resumed": 1}
    rig.wait(lambda: len(rig.sink.recipients) == 3)
    assert sorted(rig.sink.recipients) == [
        "one@example.net",
        "three@example.org",
        "two@example.net",
    ]

    rig.admin("suspend", "--domain", "example.net", "--reason", "again")
    rig.submit("four@example.net", "five@example.net")
    rig.wait(lambda: sum(r["type"] == "Reception" for r in rig.records()) == 5)
    assert rig.admin("bounce", "--domain", "example.net", "--reason", "spam run") == {"bounced": 2}
    rig.wait(lambda: sum(r["type"] == "AdminBounce" for r in rig.records()) == 2)
    bounces = [r for r in rig.records() if r["type"] == "AdminBounce"]
    assert {r["recipient"] for r in bounces} == {"four@example.net", "five@example.net"}
    assert all("spam run" in r["response"]["content"] for r in bounces)
    rig.wait(
        lambda: (
            "0 messages" in kumoclient("queue", "list", "--data-dir", rig.daemon.data_dir).stdout
        )
    )
    assert len(rig.sink.recipients) == 3  # the bounced ones never went out


def test_retry_now_and_bad_requests(rig: Rig) -> None:
    assert rig.admin("retry", "--domain", "example.com") == {"retried": 0}
    no_reason = kumoclient("admin", "suspend", "--domain", "x.test", "--url", rig.url)
    assert no_reason.returncode == 64
    assert "--reason is required" in no_reason.stderr
    everything = kumoclient("admin", "bounce", "--reason", "oops", "--url", rig.url)
    assert everything.returncode == 65
    assert "set everything=true to bounce every message" in everything.stderr
    bad_duration = kumoclient(
        "admin", "suspend", "--reason", "r", "--duration", "soon", "--url", rig.url
    )
    assert bad_duration.returncode == 65
    assert "duration" in bad_duration.stderr
    closed = f"http://127.0.0.1:{free_port()}"
    unreachable = kumoclient("admin", "queues", "--url", closed)
    assert unreachable.returncode == 69
    assert f"cannot reach the daemon at {closed}" in unreachable.stderr
    assert rig.admin("suspensions") == []


def metric(text: str, name: str, **labels: str) -> float:
    """One sample of the Prometheus text exposition (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def test_metrics_over_http_move_with_each_disposition(rig: Rig) -> None:
    def scrape() -> str:
        with urllib.request.urlopen(f"{rig.url}/metrics", timeout=10) as answer:
            return str(answer.read().decode())

    before = scrape()
    assert metric(before, "kumoclient_deliveries_total", queue="example.com") == 0
    rig.submit("ok@example.com", "later@example.com", "full@example.com")
    rig.wait(
        lambda: {r["type"] for r in rig.records()} >= {"Delivery", "TransientFailure", "Bounce"}
    )
    after = scrape()
    assert metric(after, "kumoclient_messages_received_total", queue="example.com") == 3
    assert metric(after, "kumoclient_deliveries_total", queue="example.com") == 1
    assert metric(after, "kumoclient_transient_failures_total", queue="example.com") == 1
    assert metric(after, "kumoclient_bounces_total", queue="example.com") == 1
    assert metric(after, "kumoclient_rewrite_hook_calls_total", queue="example.com") == 2
    assert metric(after, "kumoclient_rewrites_total", queue="example.com") == 1
    assert metric(after, "kumoclient_rewrite_hook_seconds_count") == 2
    assert metric(after, "kumoclient_spooled_messages") == 1  # the one that will be retried
