"""`kumoclient run --workers N`: reception worker processes beside the delivering main process,
as real processes (kumoclient/daemon/workers.py)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_process import DaemonProcess, kumoclient
from tests.smtp_client import Client
from tests.test_daemon import REJECT_RULE, spooled, submit, wait_for
from tests.test_delivery_restart import CountingSink, sink  # noqa: F401 - the fixture

MESSAGE = b"Subject: hi\r\n\r\nhello\r\n"


def records(data_dir: Path) -> list[dict[str, object]]:
    return [
        json.loads(line)
        for path in sorted((data_dir / "logs").glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]


def children(pid: int) -> list[int]:
    """The live child processes of `pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def worker_daemon(data_dir: Path, workers: int, policy: Path | None = None) -> DaemonProcess:
    process = DaemonProcess(data_dir, policy=policy)
    process.extra_args = ["--workers", str(workers)]
    try:
        process.start()
        assert process.proc is not None
        wait_for(lambda: len(children(process.proc.pid)) == workers)  # type: ignore[union-attr]
    except BaseException:
        process.kill()
        raise
    return process


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[DaemonProcess]:
    process = worker_daemon(tmp_path / "data", 2)
    yield process
    process.kill()


def submit_many(port: int, count: int, connections: int) -> list[str]:
    """`count` single-recipient submissions over `connections` concurrent connections."""

    async def one_connection(numbers: range) -> list[str]:
        replies = []
        for number in numbers:  # a connection per message, as smtp-source does
            client = await Client.connect(port)
            try:
                replies.append(
                    await client.transaction("a@example.com", [f"r{number}@example.net"], MESSAGE)
                )
            finally:
                await client.close()
        return replies

    async def go() -> list[str]:
        per = count // connections
        parts = await asyncio.gather(
            *(one_connection(range(i * per, (i + 1) * per)) for i in range(connections))
        )
        return [reply for part in parts for reply in part]

    return asyncio.run(go())


def test_workers_take_mail_in_and_the_main_process_delivers_it(
    tmp_path: Path,
    sink: tuple[CountingSink, int],  # noqa: F811 - the fixture
) -> None:
    handler, port = sink
    policy = tmp_path / "policy.lua"
    policy.write_text(
        f"""
kumo.on('get_queue_config', function()
  return kumo.make_queue_config {{ protocol = {{ smtp = {{ mx_list = {{ '127.0.0.1:{port}' }} }} }} }}
end)
kumo.on('get_egress_path_config', function()
  return kumo.make_egress_path {{ prohibited_hosts = {{}}, enable_tls = 'Disabled' }}
end)
"""
    )
    process = worker_daemon(tmp_path / "data", 2, policy)
    try:
        replies = submit_many(process.port, 120, connections=8)
        assert all(r.startswith("250 2.0.0 OK queued as ") for r in replies), replies
        wait_for(lambda: handler.total() == 120, timeout=60)
        assert process.stop() == 0
    finally:
        process.kill()
    assert sorted(handler.received) == sorted(f"r{n}@example.net" for n in range(120))
    assert max(handler.received.values()) == 1
    by_type: dict[str, list[str]] = {}
    for record in records(tmp_path / "data"):
        by_type.setdefault(str(record["type"]), []).append(str(record["id"]))
    acked_ids = {reply.split()[5] for reply in replies}
    # the main process wrote a Reception record for every message a worker acknowledged
    assert set(by_type["Reception"]) == acked_ids
    assert sorted(by_type["Delivery"]) == sorted(by_type["Reception"])
    assert spooled(tmp_path / "data") == []
    stderr = process.stderr()
    accepted = [json.loads(line) for line in stderr.splitlines() if "worker stopped" in line]
    assert sorted(entry["worker"] for entry in accepted) == [0, 1]
    assert sum(entry["accepted"] for entry in accepted) == 120


def test_sigkill_of_the_main_process_takes_the_workers_with_it(
    two_workers: DaemonProcess,
) -> None:
    assert two_workers.proc is not None
    workers = children(two_workers.proc.pid)
    assert submit(two_workers.port, ["b@example.net"]).startswith("250")
    two_workers.kill()
    wait_for(lambda: not any(alive(pid) for pid in workers), timeout=5)
    # and a restart gets the port back at once, with the acknowledged message spooled
    restarted = worker_daemon(two_workers.data_dir, 2)
    try:
        assert len(spooled(two_workers.data_dir)) == 1
        assert submit(restarted.port, ["c@example.net"]).startswith("250")
    finally:
        assert restarted.stop() == 0
    assert len(spooled(two_workers.data_dir)) == 2


def test_when_the_workers_die_the_main_process_takes_mail_itself(
    two_workers: DaemonProcess,
) -> None:
    assert two_workers.proc is not None
    for pid in children(two_workers.proc.pid):
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: "accepting SMTP in the main process" in two_workers.stderr())
    assert "reception worker exited" in two_workers.stderr()
    reply = submit(two_workers.port, ["b@example.net"])
    assert reply.startswith("250 2.0.0 OK queued as ")
    assert two_workers.stop() == 0
    assert spooled(two_workers.data_dir) == [reply.split()[5]]


def test_sigterm_stops_the_workers_and_keeps_everything_spooled(
    two_workers: DaemonProcess,
) -> None:
    assert two_workers.proc is not None
    workers = children(two_workers.proc.pid)
    replies = submit_many(two_workers.port, 20, connections=4)
    assert two_workers.stop() == 0
    assert not any(alive(pid) for pid in workers)
    ids = {reply.split()[5] for reply in replies}
    assert set(spooled(two_workers.data_dir)) == ids
    received = [r for r in records(two_workers.data_dir) if r["type"] == "Reception"]
    assert {r["id"] for r in received} == ids


def test_sighup_reloads_the_policy_in_the_workers(tmp_path: Path) -> None:
    policy = tmp_path / "policy.lua"
    rule = REJECT_RULE
    policy.write_text(rule.format("first", "first"))
    process = worker_daemon(tmp_path / "data", 2, policy)
    try:
        assert submit(process.port, ["first@example.net"]).startswith("550 5.7.1 no first")
        policy.write_text(rule.format("second", "second"))
        process.signal(signal.SIGHUP)
        wait_for(lambda: process.stderr().count("policy reloaded") >= 3)  # main + 2 workers
        for _ in range(6):  # whichever worker takes the connection
            assert submit(process.port, ["first@example.net"]).startswith("250")
            assert submit(process.port, ["second@example.net"]).startswith("550 5.7.1 no second")
    finally:
        assert process.stop() == 0


def test_port_in_use_with_workers_exits_69(two_workers: DaemonProcess, tmp_path: Path) -> None:
    started = time.monotonic()
    done = kumoclient(
        "run",
        "--workers",
        "2",
        "--data-dir",
        tmp_path / "other",
        "--listen",
        f"127.0.0.1:{two_workers.port}",
    )
    assert done.returncode == 69
    assert f"cannot listen on 127.0.0.1:{two_workers.port}" in done.stderr
    assert time.monotonic() - started >= 2.0  # it waited BIND_WAIT for the address


@pytest.mark.parametrize("value", ["-1", "many", "65"])
def test_a_bad_worker_count_is_a_usage_error(value: str, tmp_path: Path) -> None:
    done = kumoclient("run", "--workers", value, "--data-dir", tmp_path / "d")
    assert done.returncode == 64  # EX_USAGE
    assert f"expected 0..64 or 'auto', got '{value}'" in done.stderr
    assert not (tmp_path / "d").exists()


def test_a_workers_message_keeps_its_meta_and_schedule_for_the_main_process(
    tmp_path: Path,
) -> None:
    """A worker hands the main process its messages with their meta (tables, numbers,
    booleans) and their scheduling constraints (`msg:set_scheduling`), which the main process
    honours: here an expiry already past, so the message expires at its first decision."""
    policy = tmp_path / "policy.lua"
    policy.write_text(
        """
kumo.on('smtp_server_message_received', function(msg)
  msg:set_meta('x_flags', { vip = true, n = 2, tags = { 'a' } })
  msg:set_scheduling {
    dow = 'Mon,Tue,Wed,Thu,Fri,Sat,Sun', tz = 'Etc/UTC', start = '00:00:00',
    ['end'] = '23:59:59', expires = '2000-01-01T00:00:00Z',
  }
end)
"""
    )
    process = worker_daemon(tmp_path / "data", 1, policy)
    try:
        reply = submit(process.port, ["b@example.net"])
        assert reply.startswith("250 2.0.0 OK queued as ")
        wait_for(lambda: any(r["type"] == "Expiration" for r in records(tmp_path / "data")))
    finally:
        assert process.stop() == 0
    (expiration,) = [r for r in records(tmp_path / "data") if r["type"] == "Expiration"]
    assert expiration["id"] == reply.split()[5]
    meta = expiration["meta"]
    assert isinstance(meta, dict)
    assert meta["x_flags"] == {"vip": True, "n": 2, "tags": ["a"]}
    assert meta["reception_protocol"] == "ESMTP"  # the connection's meta came along
    content = str(expiration["response"]["content"])  # type: ignore[index]
    assert content.endswith("the expiry time 2000-01-01T00:00:00Z configured via set_scheduling")
