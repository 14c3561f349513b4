"""What real policies' `init` calls, in a real daemon (issue 16 item 6): a RocksDB spool served
by the local-disk spool and the accounting database of what it took and delivered, the HTTP
inject API's recipient rate limit, the diagnostic log filter, a self-signed HTTPS listener,
and the spool's least free space on a real small disk."""

from __future__ import annotations

import asyncio
import datetime
import json
import socket
import sqlite3
import ssl
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from kumoclient.testing import ScriptedMX
from tests.daemon_process import DaemonProcess, free_port
from tests.small_disk import SmallDisk
from tests.smtp_client import Client

pytestmark = pytest.mark.slow

CONTENT = b"Subject: t\r\n\r\nhello\r\n"


@pytest.fixture
async def mx() -> AsyncIterator[ScriptedMX]:
    async with ScriptedMX() as server:
        yield server


def routing(mx: ScriptedMX) -> str:
    return f"""
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {{
    retry_interval = '1s', protocol = {{ smtp = {{ mx_list = {{ '{mx.address}' }} }} }},
  }}
end)
kumo.on('get_egress_path_config', function(routing_domain, egress_source, site_name)
  return kumo.make_egress_path {{ prohibited_hosts = {{}}, enable_tls = 'Disabled' }}
end)
"""


def write_policy(tmp_path: Path, source: str) -> Path:
    policy = tmp_path / "policy.lua"
    policy.write_text("local kumo = require 'kumo'\n" + textwrap.dedent(source))
    return policy


def records(log_dir: Path, kind: str) -> list[dict[str, object]]:
    found = []
    for path in sorted(log_dir.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record["type"] == kind:
                found.append(record)
    return found


async def until(predicate: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def send(port: int, recipients: list[str]) -> str:
    client = await Client.connect(port)
    try:
        return await client.transaction("a@example.com", recipients, CONTENT)
    finally:
        await client.close()


def wait_port(port: int, daemon: DaemonProcess) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert daemon.proc is not None
        assert daemon.proc.poll() is None, daemon.stderr()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}: {daemon.stderr()}")


def accounting_rows(path: Path) -> list[tuple[str, int, int]]:
    with sqlite3.connect(path) as db:
        return db.execute(
            "SELECT event_time, received, delivered FROM accounting ORDER BY event_time"
        ).fetchall()


# --- define_spool{kind='RocksDB'} and the accounting database -----------------------------------


async def test_a_rocksdb_spool_takes_mail_and_the_accounting_db_counts_it(
    tmp_path: Path, mx: ScriptedMX
) -> None:
    """The reference page's RocksDB example (rocks_params with increase_parallelism) runs on
    the local-disk spool at the path given; the accounting database counts each recipient
    received and each delivered (not the bounce), in the row of this month, adding to it
    across restarts."""
    mx.reply("bounce@example.net", "550 5.1.1 no such user")
    policy = write_policy(
        tmp_path,
        """
        kumo.on('init', function()
          kumo.configure_accounting_db_path 'acct.db'
          kumo.configure_local_logs { log_dir = 'logs', max_segment_duration = '1s' }
          local params = { increase_parallelism = kumo.available_parallelism() }
          kumo.define_spool { name = 'data', path = 'spool/data', kind = 'RocksDB',
                              rocks_params = params }
          kumo.define_spool { name = 'meta', path = 'spool/meta', kind = 'RocksDB',
                              rocks_params = params }
        end)
        """
        + routing(mx),
    )
    database, logs = tmp_path / "acct.db", tmp_path / "logs"
    daemon = DaemonProcess(None, policy, cwd=tmp_path).start()  # type: ignore[arg-type]
    try:
        reply = await send(
            daemon.port, ["ok1@example.net", "ok2@example.net", "bounce@example.net"]
        )
        assert reply.startswith("250"), reply
        assert (tmp_path / "spool" / "data" / "data").is_dir()  # the RocksDB path holds it
        await until(lambda: len(records(logs, "Delivery")) == 2 and records(logs, "Bounce"))
    finally:
        assert daemon.stop() == 0
    month = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-01 00:00:00")
    assert accounting_rows(database) == [(month, 3, 2)]
    daemon = DaemonProcess(None, policy, cwd=tmp_path).start()  # type: ignore[arg-type]
    try:
        assert (await send(daemon.port, ["ok3@example.net"])).startswith("250")
        await until(lambda: len(records(logs, "Delivery")) == 3)
    finally:
        assert daemon.stop() == 0
    assert accounting_rows(database) == [(month, 4, 3)]


# --- kumo.set_httpinject_recipient_rate_limit ---------------------------------------------------


def inject_request(count: int) -> dict[str, object]:
    return {
        "envelope_sender": "a@example.com",
        "content": "Subject: t\r\n\r\nhi\r\n",
        "recipients": [{"email": f"r{i}@example.net"} for i in range(count)],
    }


def start_http_daemon(tmp_path: Path, source: str) -> tuple[DaemonProcess, str]:
    http_port = free_port()
    daemon = DaemonProcess(tmp_path / "data", write_policy(tmp_path, source))
    daemon.extra_args = ["--http", f"127.0.0.1:{http_port}"]
    daemon.start()
    wait_port(http_port, daemon)
    return daemon, f"127.0.0.1:{http_port}"


async def test_the_recipient_rate_limit_holds_a_request_it_cannot_admit_yet(
    tmp_path: Path,
) -> None:
    """`local:3/1h` (pre_init, as the reference page does): a request of three recipients is
    taken at once; the next one must wait twenty minutes for its recipient, so it is not
    answered while the client waits, and nothing of it is spooled."""
    daemon, address = start_http_daemon(
        tmp_path,
        """
        kumo.on('pre_init', function()
          kumo.set_httpinject_recipient_rate_limit 'local:3/1h'
        end)
        kumo.on('init', function() kumo.start_http_listener { listen = '127.0.0.1:1' } end)
        """,
    )
    url = f"http://{address}/api/inject/v1"
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(url, json=inject_request(3)) as resp:
                assert resp.status == 200
                assert (await resp.json())["success_count"] == 3
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(3):
                    await session.post(url, json=inject_request(1))
        spooled = list((tmp_path / "data" / "spool" / "data").iterdir())
        assert len(spooled) == 3
    finally:
        assert daemon.stop() == 0


async def test_a_request_larger_than_the_burst_is_admitted_once_there_is_room(
    tmp_path: Path,
) -> None:
    """With room for two recipients a second, a request of five waits its turn and is
    taken whole (the limit sleeps, it does not refuse)."""
    daemon, address = start_http_daemon(
        tmp_path,
        """
        kumo.on('pre_init', function()
          kumo.set_httpinject_recipient_rate_limit '2/s'
        end)
        kumo.on('init', function() kumo.start_http_listener { listen = '127.0.0.1:1' } end)
        """,
    )
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"http://{address}/api/inject/v1", json=inject_request(5)) as resp,
        ):
            assert resp.status == 200
            assert (await resp.json())["success_count"] == 5
    finally:
        assert daemon.stop() == 0


# --- kumo.set_diagnostic_log_filter -------------------------------------------------------------


def test_the_diagnostic_log_filter_set_in_init_applies_from_then_on(tmp_path: Path) -> None:
    """Before the call, the command line's level (info) hides a Lua debug line; the reference
    page's form `kumod=warn,lua=debug` then shows the Lua debug lines and hides kumoclient's
    own info lines (`kumoclient running`), as KumoMTA's EnvFilter does."""
    policy = write_policy(
        tmp_path,
        """
        kumo.on('init', function()
          kumo.log_debug 'before-the-filter'
          kumo.set_diagnostic_log_filter 'kumod=warn,lua=debug'
          kumo.log_debug 'after-the-filter'
        end)
        """,
    )
    daemon = DaemonProcess(tmp_path / "data", policy).start()
    assert daemon.stop() == 0
    lines = [json.loads(line) for line in daemon.stderr().splitlines() if line.startswith("{")]
    events = [line["event"] for line in lines]
    assert "after-the-filter" in events
    assert "before-the-filter" not in events
    assert "kumoclient running" not in events
    assert "stopped" not in events  # info of kumoclient.daemon: hidden too


# --- start_http_listener{use_tls=true} without a certificate ------------------------------------


async def test_use_tls_without_a_certificate_serves_a_self_signed_one_for_the_hostname(
    tmp_path: Path,
) -> None:
    daemon, address = start_http_daemon(
        tmp_path,
        """
        kumo.on('init', function()
          kumo.start_http_listener { listen = '127.0.0.1:1', use_tls = true,
                                     hostname = 'mail.example.com' }
        end)
        """,
    )
    host, port = address.split(":")
    try:
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE
        with (
            socket.create_connection((host, int(port))) as raw,
            insecure.wrap_socket(raw) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        certificate = x509.load_der_x509_certificate(der)
        subject = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        assert [a.value for a in subject] == ["mail.example.com"]
        assert certificate.issuer == certificate.subject  # self-signed
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        assert names.value.get_values_for_type(x509.DNSName) == ["mail.example.com"]
        # trusting that certificate, https with the name checked works
        trusting = ssl.create_default_context(cadata=ssl.DER_cert_to_PEM_cert(der))
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"https://{address}/api/check-liveness/v1",
                ssl=trusting,
                server_hostname="mail.example.com",
            ) as resp,
        ):
            assert resp.status == 200
    finally:
        assert daemon.stop() == 0


# --- min_free_space on a real small disk --------------------------------------------------------


async def test_a_spool_disk_short_of_min_free_space_takes_no_mail_until_it_has_room(
    tmp_path: Path, mx: ScriptedMX
) -> None:
    """The spool on a tmpfs of its own, `min_free_space = '10%'`: filled, SMTP gets `451 4.3.1`,
    the inject API 503 and liveness 503, and the message taken before stays spooled; emptied,
    mail is taken again and both messages are delivered."""
    mx.reply("*", "451 4.3.0 not now")
    http_port = free_port()
    with SmallDisk(tmp_path / "disk", "4m") as disk:
        policy = write_policy(
            tmp_path,
            f"""
            kumo.on('init', function()
              kumo.configure_accounting_db_path 'acct.db'
              kumo.configure_local_logs {{ log_dir = 'logs' }}
              kumo.define_spool {{ name = 'data', path = 'disk/spool', min_free_space = '10%' }}
              kumo.start_http_listener {{ listen = '127.0.0.1:{http_port}' }}
            end)
            """
            + routing(mx),
        )
        daemon = DaemonProcess(None, policy, cwd=tmp_path).start()  # type: ignore[arg-type]
        wait_port(http_port, daemon)
        base = f"http://127.0.0.1:{http_port}"
        try:
            async with aiohttp.ClientSession() as session:
                assert (await send(daemon.port, ["early@example.net"])).startswith("250")
                disk.fill()

                async def liveness() -> int:
                    async with session.get(f"{base}/api/check-liveness/v1") as resp:
                        return resp.status

                await until_async(liveness, 503)
                refused = await send(daemon.port, ["late@example.net"])
                assert refused.startswith("451 4.3.1 Spool disk is too full"), refused
                async with session.post(f"{base}/api/inject/v1", json=inject_request(1)) as resp:
                    assert resp.status == 503
                    assert "4.3.1" in (await resp.json())["error"]
                disk.free()
                await until_async(liveness, 200)
                assert (await send(daemon.port, ["again@example.net"])).startswith("250")
                mx.replies.clear()
                logs = tmp_path / "logs"
                await until(lambda: len(records(logs, "Delivery")) == 2)
            delivered = sorted(str(r["recipient"]) for r in records(tmp_path / "logs", "Delivery"))
            assert delivered == ["again@example.net", "early@example.net"]
        finally:
            assert daemon.stop() == 0


async def until_async(
    probe: Callable[[], Awaitable[object]], expected: object, timeout: float = 30
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value == expected:
            return
        assert time.monotonic() < deadline, f"still {value!r}, not {expected!r}"
        await asyncio.sleep(0.2)
