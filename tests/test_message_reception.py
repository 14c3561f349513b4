"""The `msg` object through the whole path: a real SMTP client (aiosmtplib) sends to the
listener, `smtp_server_message_received` edits the message and sets meta of every JSON type,
the engine delivers to a real MX; and the meta's tables, numbers and booleans keep their types
through the spool and a daemon restart."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from kumoclient.configs import EsmtpListenerConfig
from kumoclient.errors import SubmissionRefused
from kumoclient.listener import start_listener
from kumoclient.testing import KumoEngine, ScriptedMX
from tests.daemon_process import DaemonProcess, free_port
from tests.test_daemon import wait_for

RECEPTION = """
kumo.on('smtp_server_message_received', function(msg)
  msg:import_x_headers()
  msg:set_meta('tenant', msg:get_first_named_header_value('X-Tenant'))
  msg:set_meta('x_flags', { vip = true, score = 1.5, tags = { 'a', 'b' } })
  msg:set_meta('x_count', 7)
  msg:remove_x_headers()
  msg:prepend_header('X-Checked', msg:sender().domain .. ' ' .. msg:recipient().user)
  msg:append_text_plain('-- unsubscribe: https://example.com/u')
  if msg:recipient().user == 'refused' then
    kumo.reject(550, '5.7.1 ' .. msg:queue_name() .. ' refused')
  end
end)
"""
CONTENT = (
    b"From: shop@example.com\r\nTo: you@example.net\r\nX-Tenant: acme\r\n"
    b"X-Campaign-ID: 12345\r\nSubject: offer\r\n\r\nHello\r\n"
)
META = {
    "x_tenant": "acme",
    "x_campaign_id": "12345",
    "tenant": "acme",
    "x_flags": {"vip": True, "score": 1.5, "tags": ["a", "b"]},
    "x_count": 7,
}
# the connection's metadata every message starts with (KumoMTA's conn_meta keys)
CONNECTION_KEYS = {"reception_protocol", "received_via", "received_from", "hostname", "ehlo_domain"}


def policy_meta(meta: object) -> dict[str, object]:
    """A record's meta without the connection's keys (checked to be there)."""
    assert isinstance(meta, dict)
    assert set(meta) >= CONNECTION_KEYS
    return {key: value for key, value in meta.items() if key not in CONNECTION_KEYS}


@pytest.fixture
async def listening(
    tmp_path: Path, scripted_mx: ScriptedMX
) -> AsyncIterator[tuple[KumoEngine, int]]:
    policy = tmp_path / "policy.lua"
    policy.write_text(RECEPTION)
    engine = await KumoEngine.start(policy, data_dir=tmp_path / "data", mx=scripted_mx)
    config = EsmtpListenerConfig(listen="127.0.0.1:0")
    server = await start_listener(config, engine.engine.reception.accept_transaction)
    try:
        yield engine, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await engine.stop()


async def test_a_real_client_s_message_is_edited_and_delivered_with_its_meta(
    listening: tuple[KumoEngine, int], scripted_mx: ScriptedMX
) -> None:
    engine, port = listening
    errors, reply = await aiosmtplib.send(
        CONTENT,
        sender="shop@example.com",
        recipients=["you@example.net"],
        hostname="127.0.0.1",
        port=port,
    )
    assert errors == {}
    assert reply.startswith("2.0.0 OK queued as ")
    message_id = reply.split()[-1]
    delivery = await engine.next_disposition(message_id)
    assert delivery.type == "Delivery"
    assert policy_meta(delivery.raw["meta"]) == META
    assert delivery.raw["queue"] == "acme@example.net"
    (received,) = scripted_mx.received
    assert received.message["X-Checked"] == "example.com you"
    assert received.message["X-Tenant"] is None
    assert received.message["X-Campaign-ID"] is None
    assert (
        received.message.get_content() == "Hello\r\n\r\n-- unsubscribe: https://example.com/u\r\n"
    )


async def test_a_rejection_answers_the_client(
    listening: tuple[KumoEngine, int], scripted_mx: ScriptedMX
) -> None:
    _, port = listening
    with pytest.raises(aiosmtplib.SMTPDataError) as info:
        await aiosmtplib.send(
            CONTENT,
            sender="shop@example.com",
            recipients=["refused@example.net"],
            hostname="127.0.0.1",
            port=port,
        )
    assert (info.value.code, info.value.message) == (550, "5.7.1 acme@example.net refused")
    assert scripted_mx.received == []


# --- through the spool and a restart of the daemon ------------------------------------------


class Sink:
    """An MTA that accepts everything (a thread of its own, for the daemon process)."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self.lock:
            self.received.append(envelope.original_content or b"")
        return "250 2.0.0 OK"


def daemon_policy(tmp_path: Path, mx_port: int) -> Path:
    path = tmp_path / "policy.lua"
    path.write_text(
        RECEPTION
        + f"""
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {{
    retry_interval = '1s', protocol = {{ smtp = {{ mx_list = {{ '127.0.0.1:{mx_port}' }} }} }},
  }}
end)
kumo.on('get_egress_path_config', function(routing_domain, egress_source, site_name)
  return kumo.make_egress_path {{ prohibited_hosts = {{}}, enable_tls = 'Disabled' }}
end)
"""
    )
    return path


def records(data_dir: Path, kind: str) -> list[dict[str, object]]:
    return [
        record
        for path in sorted((data_dir / "logs").glob("*.jsonl"))
        for line in path.read_text().splitlines()
        if (record := json.loads(line))["type"] == kind
    ]


def test_meta_of_every_json_type_survives_the_spool_and_a_restart(tmp_path: Path) -> None:
    """The MX is down at first: the message is spooled, fails transiently (its state file is
    written, meta included), the daemon stops; the MX comes up, the daemon starts again and
    delivers it with the meta the policy set, each value of its JSON type."""
    data, mx_port = tmp_path / "data", free_port()
    process = DaemonProcess(data, policy=daemon_policy(tmp_path, mx_port)).start()
    try:
        reply = asyncio.run(
            aiosmtplib.send(
                CONTENT,
                sender="shop@example.com",
                recipients=["you@example.net"],
                hostname="127.0.0.1",
                port=process.port,
            )
        )[1]
        assert reply.startswith("2.0.0 OK queued as ")
        wait_for(lambda: len(records(data, "TransientFailure")) >= 1)
    finally:
        assert process.stop() == 0
    sink = Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=mx_port)
    controller.start()
    try:
        process = DaemonProcess(data, policy=daemon_policy(tmp_path, mx_port)).start()
        try:
            wait_for(lambda: len(records(data, "Delivery")) == 1, timeout=30)
        finally:
            assert process.stop() == 0
    finally:
        controller.stop()
    (delivery,) = records(data, "Delivery")
    assert policy_meta(delivery["meta"]) == META
    assert delivery["num_attempts"] >= 1
    assert len(sink.received) == 1


async def test_meta_that_names_no_queue_is_refused_and_not_spooled(
    tmp_path: Path, scripted_mx: ScriptedMX
) -> None:
    """A library caller's meta with a non-string tenant (a policy cannot set one): refused
    with 451 as a policy error, nothing spooled (KumoMTA fails the reception too)."""
    policy = tmp_path / "policy.lua"
    policy.write_text("")
    engine = await KumoEngine.start(policy, data_dir=tmp_path / "data", mx=scripted_mx)
    try:
        with pytest.raises(SubmissionRefused) as info:
            await engine.engine.submit("a@example.com", ["b@example.net"], CONTENT, {"tenant": 5})
        assert (info.value.code, info.value.text) == (
            451,
            "4.3.0 Local policy error, try again later",
        )
        assert engine.engine.spool.ids() == []
    finally:
        await engine.stop()
