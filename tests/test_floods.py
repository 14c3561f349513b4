"""Floods against a real `kumoclient run` process (issue 15, item 5): idle sockets past the
connection limits, a client trickling bytes, concurrent large DATA sections, and descriptors
running out under the drop folder. Each time the daemon keeps
serving, and the mail it acknowledged is delivered once to a real SMTP sink."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from tests.daemon_process import DaemonProcess, free_port, kumoclient
from tests.sink_policy import write_sink_policy
from tests.smtp_client import Client
from tests.test_daemon import submit, wait_for
from tests.test_delivery_restart import CountingSink

pytestmark = pytest.mark.slow
MESSAGE = b"Subject: flood\r\n\r\nstill here\r\n"


@pytest.fixture
def sink() -> Iterator[tuple[CountingSink, int]]:
    handler = CountingSink()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


def start(
    tmp_path: Path,
    mx_port: int,
    listener: str = "",
    nofile: int | None = None,
    listeners: tuple[int, ...] = (),
) -> DaemonProcess:
    """A daemon delivering everything to 127.0.0.1:`mx_port`, its SMTP listener with the
    keys in `listener` (Lua), under a descriptor limit `nofile`; or, given `listeners`, a
    listener on each of these ports (`--listen` would keep the first only)."""
    init = f"kumo.start_esmtp_listener {{ {listener} }}"
    if listeners:
        init = " ".join(
            f"kumo.start_esmtp_listener {{ listen = '127.0.0.1:{p}' }}" for p in listeners
        )
    policy = write_sink_policy(tmp_path / "policy.lua", mx_port, init=init, connection_limit=4)
    daemon = DaemonProcess(tmp_path / "data", policy, port=listeners[0] if listeners else None)
    daemon.nofile = nofile
    daemon.listen_option = not listeners
    return daemon.start()


def greeting(sock: socket.socket) -> str:
    """The first reply line a fresh connection gets."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(512)
        if not chunk:
            break
        data += chunk
    return data.decode().rstrip()


def flood(
    port: int, count: int, source: str = "127.0.0.1"
) -> tuple[list[socket.socket], list[str]]:
    """`count` idle connections from `source`, and the first line each one got."""
    sockets, replies = [], []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
        sockets.append(sock)
        replies.append(greeting(sock))
    return sockets, replies


def close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


def submit_when_free(port: int, recipient: str) -> str:
    """A transaction, once a session is to be had (the daemon sees closed sockets in its
    own time)."""
    reply = ""

    def taken() -> bool:
        nonlocal reply
        try:
            reply = submit(port, [recipient], MESSAGE)
        except AssertionError:  # the greeting was a 421
            return False
        return True

    wait_for(taken, timeout=20)
    return reply


def records(daemon: DaemonProcess, kind: str) -> list[dict[str, object]]:
    return [
        record
        for path in sorted((daemon.data_dir / "logs").glob("*.jsonl"))
        for line in path.read_text().splitlines()
        if (record := json.loads(line))["type"] == kind
    ]


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_idle_sockets_past_the_limit_get_421_and_the_daemon_keeps_its_descriptors(
    tmp_path: Path, sink: tuple[CountingSink, int]
) -> None:
    """256 descriptors: 64 are kept for the rest, so 192 sessions at most. 300 idle sockets:
    192 are greeted, 108 told 421 4.7.0; meanwhile an injected message is picked up, spooled,
    logged and delivered (no EMFILE anywhere); once the flood is gone, SMTP mail is taken and
    delivered too, each message once."""
    handler, mx_port = sink
    daemon = start(tmp_path, mx_port, nofile=256)
    try:
        assert daemon.proc is not None
        sockets, replies = flood(daemon.port, 300)
        try:
            assert sum(r.startswith("220 ") for r in replies) == 192
            refused = [r for r in replies if not r.startswith("220 ")]
            assert len(refused) == 108
            assert all(r.startswith("421 4.7.0 ") for r in refused), set(refused)
            assert all("too many concurrent sessions" in r for r in refused)
            assert 256 - open_descriptors(daemon.proc.pid) >= 32  # the reserve is there
            message = tmp_path / "injected.eml"
            message.write_bytes(MESSAGE)
            injected = kumoclient(
                "inject",
                "--data-dir",
                daemon.data_dir,
                "--from",
                "a@example.com",
                "--to",
                "injected@example.net",
                message,
            )
            assert injected.returncode == 0, injected.stderr
            wait_for(lambda: handler.received["injected@example.net"] == 1, timeout=30)
        finally:
            close_all(sockets)
        reply = submit_when_free(daemon.port, "after@example.net")
        assert reply.startswith("250 ")
        wait_for(lambda: handler.received["after@example.net"] == 1, timeout=30)
        assert "Too many open files" not in daemon.stderr()
        assert daemon.stop() == 0
        assert handler.received == {"injected@example.net": 1, "after@example.net": 1}
    finally:
        daemon.kill()


def test_two_listeners_share_the_descriptors_of_their_process(
    tmp_path: Path, sink: tuple[CountingSink, int]
) -> None:
    """The reserve is the process's: two listeners under 256 descriptors take 192 sessions
    between them, not 192 each."""
    _, mx_port = sink
    second = free_port()
    daemon = start(tmp_path, mx_port, nofile=256, listeners=(free_port(), second))
    try:
        first_flood, first = flood(daemon.port, 150)
        second_flood, then = flood(second, 150)
        try:
            greeted = [r for r in first + then if r.startswith("220 ")]
            assert (len(greeted), sum(r.startswith("220 ") for r in first)) == (192, 150)
            assert all(r.startswith("421 4.7.0 ") for r in then[42:])
        finally:
            close_all(first_flood + second_flood)
        assert submit_when_free(second, "second@example.net").startswith("250 ")
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def test_one_address_past_its_limit_gets_421_while_others_are_served(
    tmp_path: Path, sink: tuple[CountingSink, int]
) -> None:
    """Two flooding addresses (127.0.0.2, 127.0.0.3) get 5 sessions each; a relay host's
    client (127.0.0.1, no per-address limit) sends mail meanwhile, and it is delivered."""
    handler, mx_port = sink
    daemon = start(tmp_path, mx_port, "max_connections_per_client = 5")
    try:
        floods = [flood(daemon.port, 8, source) for source in ("127.0.0.2", "127.0.0.3")]
        try:
            for source, (_, replies) in zip(("127.0.0.2", "127.0.0.3"), floods, strict=True):
                assert [r[:3] for r in replies] == ["220"] * 5 + ["421"] * 3
                assert all(r.startswith("421 4.7.0 ") for r in replies[5:])
                assert all(f"too many connections from {source}" in r for r in replies[5:])
            assert submit(daemon.port, ["local@example.net"], MESSAGE).startswith("250 ")
            wait_for(lambda: handler.received["local@example.net"] == 1, timeout=30)
        finally:
            for sockets, _ in floods:
                close_all(sockets)
        assert daemon.stop() == 0
    finally:
        daemon.kill()


def test_a_client_trickling_data_is_cut_off_at_the_session_deadline(
    tmp_path: Path, sink: tuple[CountingSink, int]
) -> None:
    """Slowloris: a byte every 100 ms never lets `client_timeout` (60 s) fire; at
    `max_session_duration` (2 s) the session ends with 421 4.4.2, nothing of it is stored,
    and the next client is served."""
    handler, mx_port = sink
    daemon = start(tmp_path, mx_port, "max_session_duration = '2s'")

    async def slowloris() -> str:
        client = await Client.connect(daemon.port)
        for command in ("MAIL FROM:<a@example.com>", "RCPT TO:<slow@example.net>", "DATA"):
            await client.cmd(command)

        async def trickle() -> None:
            while True:
                client.writer.write(b"x")
                await client.writer.drain()
                await asyncio.sleep(0.1)

        trickling = asyncio.ensure_future(trickle())
        try:
            reply = await client.reply()
            assert await asyncio.wait_for(client.reader.read(), 5) == b""
        finally:
            trickling.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await trickling
            client.writer.close()
        return reply

    try:
        reply = asyncio.run(slowloris())
        assert reply.startswith("421 4.4.2 ")
        assert "session time limit exceeded" in reply
        assert submit(daemon.port, ["next@example.net"], MESSAGE).startswith("250 ")
        wait_for(lambda: handler.received["next@example.net"] == 1, timeout=30)
        assert daemon.stop() == 0
        assert handler.received == {"next@example.net": 1}
        assert [r["recipient"] for r in records(daemon, "Reception")] == ["next@example.net"]
    finally:
        daemon.kill()


def memory(pid: int, field: str) -> int:
    """A /proc/<pid>/status memory figure, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


async def send_big(port: int, content: bytes, all_sent: asyncio.Barrier) -> str:
    """One large message whose final dot goes only once every client has sent, or could not
    send, all of its data: the worst case, every session holding a whole message at once."""
    client = await Client.connect(port)
    try:
        for command in ("MAIL FROM:<a@example.com>", "RCPT TO:<big@example.net>", "DATA"):
            await client.cmd(command)
        client.writer.write(content)
        transport = client.writer.transport
        while transport.get_write_buffer_size():
            left = transport.get_write_buffer_size()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(client.writer.drain(), 2)
            if transport.get_write_buffer_size() == left:
                break  # the daemon stopped reading from this client (its memory budget)
        await all_sent.wait()
        return await client.send(b".\r\n")
    finally:
        await client.close()


def test_concurrent_large_data_sections_hold_less_than_all_of_them(tmp_path: Path) -> None:
    """Twelve 25 MiB messages at once. Without a bound the daemon held all of them (and their
    copies) at the same time: 326-361 MiB more than at rest in bench/data_memory.py. With the
    default budget (64 MiB), sessions wait for their turn: the peak stays well under the
    300 MiB of the messages themselves, and every one is accepted."""
    daemon = start(tmp_path, free_port(), "max_message_size = '30MiB'")
    line = b"x" * 76 + b"\r\n"
    content = b"Subject: big\r\n\r\n" + line * (25 * 1024 * 1024 // len(line))

    async def all_of_them() -> list[str]:
        barrier = asyncio.Barrier(12)
        return await asyncio.gather(*(send_big(daemon.port, content, barrier) for _ in range(12)))

    try:
        assert daemon.proc is not None
        at_rest = memory(daemon.proc.pid, "VmRSS")
        replies = asyncio.run(all_of_them())
        peak = memory(daemon.proc.pid, "VmHWM")
        assert all(reply.startswith("250 ") for reply in replies), replies
        assert peak - at_rest < 12 * 25 * 1024 * 1024
        assert daemon.stop() == 0
        assert len(records(daemon, "Reception")) == 12
    finally:
        daemon.kill()


def test_the_drop_folder_survives_running_out_of_descriptors_and_takes_the_message_once(
    tmp_path: Path, sink: tuple[CountingSink, int]
) -> None:
    """The daemon's descriptor limit is lowered under its feet (every new descriptor:
    EMFILE): `kumoclient inject` still writes its file, the pick-up says once that it fails
    and keeps trying; with descriptors back it says so, and the message is delivered once."""
    handler, mx_port = sink
    daemon = start(tmp_path, mx_port)
    try:
        assert daemon.proc is not None
        pid = daemon.proc.pid
        limits = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        message = tmp_path / "injected.eml"
        message.write_bytes(MESSAGE)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (3, limits[1]))
        try:
            injected = kumoclient(
                "inject",
                "--data-dir",
                daemon.data_dir,
                "--from",
                "a@example.com",
                "--to",
                "dropped@example.net",
                message,
            )
            assert injected.returncode == 0, injected.stderr
            (message_id,) = injected.stdout.split()
            wait_for(lambda: "drop folder pick-up failing" in daemon.stderr(), timeout=10)
            assert len(list((daemon.data_dir / "spool" / "incoming").glob("*.msg"))) == 1
        finally:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, limits)
        wait_for(lambda: "drop folder pick-up recovered" in daemon.stderr(), timeout=20)
        wait_for(lambda: handler.received["dropped@example.net"] == 1, timeout=30)
        assert list((daemon.data_dir / "spool" / "incoming").glob("*.msg")) == []
        assert daemon.stop() == 0
        assert handler.received == {"dropped@example.net": 1}
        assert [r["id"] for r in records(daemon, "Reception")] == [message_id]
        assert [r["id"] for r in records(daemon, "Delivery")] == [message_id]
        assert daemon.stderr().count("drop folder pick-up failing") == 1  # one line, not a flood
    finally:
        daemon.kill()
