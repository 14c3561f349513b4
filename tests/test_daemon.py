"""`kumoclient run`, `inject` and `queue` as real processes."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kumoclient.spool import Spool
from tests.daemon_process import DaemonProcess, kumoclient
from tests.smtp_client import Client

MESSAGE = b"Subject: hi\r\n\r\nhello\r\n"
# a reception policy refusing recipients that contain a word: .format(word, word)
REJECT_RULE = (
    "kumo.on('smtp_server_message_received', function(msg)\n"
    "  if msg:recipient().email:find('{}') then kumo.reject(550, '5.7.1 no {}') end\nend)\n"
)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[DaemonProcess]:
    process = DaemonProcess(tmp_path / "data").start()
    yield process
    process.kill()


def submit(port: int, recipients: list[str], content: bytes = MESSAGE) -> str:
    async def go() -> str:
        client = await Client.connect(port)
        try:
            return await client.transaction("a@example.com", recipients, content)
        finally:
            await client.close()

    return asyncio.run(go())


def wait_for(predicate: object, timeout: float = 10.0) -> None:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def spooled(data_dir: Path) -> list[str]:
    return Spool(data_dir / "spool").ids()


def test_default_run_accepts_mail_and_sigterm_exits_0_keeping_the_spool(
    daemon: DaemonProcess,
) -> None:
    reply = submit(daemon.port, ["b@example.net", "c@example.org"])
    assert reply.startswith("250 2.0.0 OK queued as ")
    assert daemon.stop() == 0
    assert len(spooled(daemon.data_dir)) == 2
    records = [
        json.loads(line)
        for path in (daemon.data_dir / "logs").glob("*.jsonl")
        for line in path.read_text().splitlines()
    ]
    assert [r["type"] for r in records][:2] == ["Reception", "Reception"]
    # example.net and example.org cannot be reached from here: attempts fail transiently and
    # the messages stay spooled
    assert {r["type"] for r in records[2:]} <= {"TransientFailure"}
    assert "stopped" in daemon.stderr()


def test_run_without_options_uses_the_embedded_defaults(tmp_path: Path) -> None:
    """The README's first command: built-in policy, ./kumoclient-data, SMTP on loopback."""
    process = DaemonProcess(None, cwd=tmp_path).start()
    try:
        assert submit(process.port, ["b@example.net"]).startswith("250")
        assert "kumoclient/policies/default.lua" in process.stderr()
    finally:
        assert process.stop() == 0
    assert len(spooled(tmp_path / "kumoclient-data")) == 1
    assert list((tmp_path / "kumoclient-data" / "logs").glob("*.jsonl"))


def test_messages_survive_a_restart(daemon: DaemonProcess) -> None:
    submit(daemon.port, ["b@example.net"])
    daemon.kill()
    restarted = DaemonProcess(daemon.data_dir, port=daemon.port).start()
    try:
        assert len(spooled(daemon.data_dir)) == 1
        assert (
            '"spool enumerated"' in restarted.stderr() or "spool enumerated" in restarted.stderr()
        )
    finally:
        restarted.kill()


def test_inject_while_running_is_picked_up(daemon: DaemonProcess) -> None:
    done = kumoclient(
        "inject",
        "--from",
        "a@example.com",
        "--to",
        "b@example.net",
        "--to",
        "c@example.net",
        "--tenant",
        "acme",
        "--data-dir",
        daemon.data_dir,
        "-",
        stdin=b"Subject: injected\n\nbody\n",
    )
    assert done.returncode == 0, done.stderr
    ids = done.stdout.decode().split()
    assert len(ids) == 2
    wait_for(lambda: sorted(spooled(daemon.data_dir)) == sorted(ids))
    spool = Spool(daemon.data_dir / "spool")
    message = spool.load(ids[0])
    assert message.meta == {"tenant": "acme"}
    assert message.reception_protocol == "Inject"
    # the drop file goes once its messages are durable, just after they appear in the spool
    wait_for(lambda: list(spool.incoming.iterdir()) == [])
    assert asyncio.run(spool.read_content(ids[0])) == b"Subject: injected\r\n\r\nbody\r\n"


def test_inject_while_stopped_is_picked_up_at_start(tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = kumoclient(
        "inject",
        "--from",
        "a@example.com",
        "--to",
        "b@example.net",
        "--data-dir",
        data,
        "-",
        stdin=MESSAGE,
    )
    assert done.returncode == 0
    (message_id,) = done.stdout.decode().split()
    assert spooled(data) == []
    process = DaemonProcess(data).start()
    try:
        wait_for(lambda: spooled(data) == [message_id])
    finally:
        process.stop()


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["--to", "b@example.net"], b"", "the message is empty"),
        (["--to", "b\r@example.net"], MESSAGE, "contains CR, LF, NUL"),
        (["--to", "nobody"], MESSAGE, "expected local-part@domain"),
        (["--to", "b@example.net", "--meta", "novalue"], MESSAGE, "expected KEY=VALUE"),
        (["--to", "b@example.net"], b"Subject: x\n\nnul\x00\n", "NUL bytes"),
    ],
)
def test_inject_refuses_bad_input_with_exit_65(
    tmp_path: Path, args: list[str], stdin: bytes, message: str
) -> None:
    done = kumoclient(
        "inject", "--from", "a@example.com", *args, "--data-dir", tmp_path, "-", stdin=stdin
    )
    assert done.returncode == 65
    assert message in done.stderr.decode()
    assert not list(tmp_path.rglob("*.msg"))  # nothing was dropped


def test_sighup_reloads_and_a_broken_reload_keeps_the_old_policy(tmp_path: Path) -> None:
    policy = tmp_path / "policy.lua"
    rule = REJECT_RULE
    policy.write_text(rule.format("first", "first"))
    process = DaemonProcess(tmp_path / "data", policy=policy).start()
    try:
        assert submit(process.port, ["first@example.net"]).startswith("550 5.7.1 no first")
        policy.write_text(rule.format("second", "second"))
        process.signal(signal.SIGHUP)
        wait_for(lambda: "policy reloaded" in process.stderr())
        assert submit(process.port, ["first@example.net"]).startswith("250")
        assert submit(process.port, ["second@example.net"]).startswith("550 5.7.1 no second")
        policy.write_text("kumo.on('init', function()\n")
        process.signal(signal.SIGHUP)
        wait_for(lambda: "policy reload failed" in process.stderr())
        assert submit(process.port, ["second@example.net"]).startswith("550 5.7.1 no second")
    finally:
        assert process.stop() == 0


def test_policy_error_at_start_exits_78(tmp_path: Path) -> None:
    policy = tmp_path / "policy.lua"
    policy.write_text("kumo.on('init', function()\n  kumo.start_esmtp_listener{port = 25}\nend)\n")
    done = kumoclient("run", "--policy", policy, "--data-dir", tmp_path / "d")
    assert done.returncode == 78
    assert "policy.lua:2: start_esmtp_listener: unknown key 'port'" in done.stderr
    assert "Traceback" not in done.stderr


def test_port_in_use_exits_69(daemon: DaemonProcess, tmp_path: Path) -> None:
    done = kumoclient(
        "run", "--data-dir", tmp_path / "other", "--listen", f"127.0.0.1:{daemon.port}"
    )
    assert done.returncode == 69
    assert f"cannot listen on 127.0.0.1:{daemon.port}" in done.stderr


def test_queue_summary_and_list(daemon: DaemonProcess) -> None:
    submit(daemon.port, ["b@example.net", "c@example.net", "d@example.org"])
    summary = kumoclient("queue", "summary", "--data-dir", daemon.data_dir)
    assert summary.returncode == 0, summary.stderr
    lines = summary.stdout.splitlines()
    assert any(line.startswith("example.net") and " 2 " in line for line in lines)
    assert lines[-1] == "3 messages in 2 queues"

    # the example domains do not resolve here (or have a null MX, which bounces: then this
    # test cannot run): each message's first attempt fails, and the listing shows the
    # attempt count and the last (transient) response
    def listing() -> str:
        return kumoclient("queue", "list", "--data-dir", daemon.data_dir).stdout

    wait_for(lambda: listing().count("attempts=1") == 3)
    text = listing()
    assert text.splitlines()[-1] == "3 messages"
    assert "<a@example.com> -> <d@example.org> attempts=1" in text
    assert re.search(r"<d@example.org> attempts=1 .*last='4\d\d [^']*example\.org", text), text


def test_queue_without_a_spool_is_a_clear_error(tmp_path: Path) -> None:
    done = kumoclient("queue", "summary", "--data-dir", tmp_path / "nothing")
    assert done.returncode == 78
    assert "no spool at" in done.stderr
