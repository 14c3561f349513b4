"""`kumo.start_esmtp_listener`'s keys at work on a real listener: banner and hostname, the
trace headers, `invalid_line_endings`, the line and recipient limits, `peer`/`via`/`meta`, and
the client (its EHLO name and address, its TLS) in the Reception records."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from kumoclient.configs import LineEndings, TraceHeaders
from kumoclient.core.arf_report import supplemental_trace
from kumoclient.policy.listener_config import start_esmtp_listener
from tests.conftest import without_trace
from tests.smtp_rig import MESSAGE, SmtpRig, smtp_rig, tls_files

TENANT_POLICY = """
kumo.on('smtp_server_message_received', function(msg)
  msg:set_meta('tenant', 'acme')
end)
"""


async def stored(rig: SmtpRig) -> bytes:
    (content,) = await rig.contents()
    return content


async def test_banner_and_hostname_are_the_listeners(tmp_path: Path) -> None:
    async for rig in smtp_rig(tmp_path, hostname="mx.example.com", banner="Welcome!"):
        client = rig.client()
        greeting = await client.connect()
        assert greeting.message == "mx.example.com Welcome!"
        reply = await client.ehlo(hostname="client.example")
        assert reply.message.splitlines()[0] == "mx.example.com"
        await client.quit()


async def test_received_and_supplemental_headers_by_default(tmp_path: Path) -> None:
    trace = TraceHeaders(include_meta_names=("tenant", "campaign"))
    async for rig in smtp_rig(
        tmp_path, TENANT_POLICY, hostname="mx.example.com", trace_headers=trace
    ):
        client = rig.client()
        await client.connect()
        await client.ehlo(hostname="client.example")
        await client.sendmail("a@example.com", ["b@example.net"], MESSAGE)
        await client.quit()
        (message,) = rig.spool.enumerate()
        content = await rig.spool.read_content(message.id)
        head, _, _ = content.partition(b"\r\n\r\n")
        names = [line.split(b":")[0] for line in head.split(b"\r\n") if line[:1] not in b" \t"]
        assert names[:3] == [b"X-KumoRef", b"Received", b"From"]  # the trace headers on top
        received = content[content.index(b"Received:") :].split(b";")[0].decode()
        assert received.split() == [
            "Received:", "from", "client.example", "(127.0.0.1)",
            "by", "mx.example.com", "(kumoclient", "127.0.0.1)",
            "with", "ESMTP", "id", message.id,
            "for", "<b@example.net>",
        ]  # fmt: skip
        # the supplemental header leads a complaint back to the message (core.arf_report)
        assert supplemental_trace(content) == {"recipient": "b@example.net", "tenant": "acme"}
        assert without_trace(content) == MESSAGE


async def test_trace_headers_can_be_renamed_and_left_out(tmp_path: Path) -> None:
    only_supplemental = TraceHeaders(received_header=False, header_name="X-Trace")
    async for rig in smtp_rig(tmp_path / "one", trace_headers=only_supplemental):
        client = await rig.raw()
        await client.transaction("a@example.com", ["b@example.net"], MESSAGE)
        content = await stored(rig)
        name, _, rest = content.partition(b": ")
        assert name == b"X-Trace"
        encoded = b"".join(rest.partition(b"\r\n" + MESSAGE[:5])[0].split())
        assert json.loads(base64.b64decode(encoded)) == {
            "_@_": "\\_/",
            "recipient": "b@example.net",
        }
        assert b"Received:" not in content
    none = TraceHeaders(received_header=False, supplemental_header=False)
    async for rig in smtp_rig(tmp_path / "none", trace_headers=none):
        client = await rig.raw()
        await client.transaction("a@example.com", ["b@example.net"], MESSAGE)
        assert await stored(rig) == MESSAGE


BARE_LF = b"Subject: legacy\nX-Mailer: old\n\nline one\nline two\r\n"


@pytest.mark.parametrize(
    ("endings", "reply", "kept"),
    [
        (LineEndings.DENY, "554 5.6.11 Message contains a bare LF", None),
        (LineEndings.ALLOW, "250 2.0.0", BARE_LF),
        (LineEndings.FIX, "250 2.0.0", BARE_LF.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")),
    ],
)
async def test_invalid_line_endings(
    tmp_path: Path, endings: LineEndings, reply: str, kept: bytes | None
) -> None:
    none = TraceHeaders(received_header=False, supplemental_header=False)
    async for rig in smtp_rig(tmp_path, invalid_line_endings=endings, trace_headers=none):
        client = await rig.raw()
        answer = await client.transaction("a@example.com", ["b@example.net"], BARE_LF)
        assert answer.startswith(reply)
        assert (await rig.contents()) == ([] if kept is None else [kept])


async def test_a_bare_lf_dot_line_never_ends_the_message_even_when_fixed(tmp_path: Path) -> None:
    none = TraceHeaders(received_header=False, supplemental_header=False)
    async for rig in smtp_rig(tmp_path, invalid_line_endings=LineEndings.FIX, trace_headers=none):
        client = await rig.raw()
        smuggled = b"Subject: a\r\n\r\nfirst\n.\nMAIL FROM:<evil@example.com>\r\n"
        assert (await client.transaction("a@example.com", ["b@example.net"], smuggled)).startswith(
            "250"
        )
        # one message, the smuggled command inside it (the next hop dot-stuffs the line)
        assert await rig.contents() == [
            b"Subject: a\r\n\r\nfirst\r\n.\r\nMAIL FROM:<evil@example.com>\r\n"
        ]


async def test_line_length_hard_limit(tmp_path: Path) -> None:
    long_line = b"Subject: x\r\n\r\n" + b"y" * 1500 + b"\r\n"
    async for rig in smtp_rig(tmp_path / "default"):
        client = await rig.raw()
        refused = await client.transaction("a@example.com", ["b@example.net"], long_line)
        assert refused == "500 5.5.2 Line too long"
    async for rig in smtp_rig(tmp_path / "raised", line_length_hard_limit=2000):
        client = await rig.raw()
        taken = await client.transaction("a@example.com", ["b@example.net"], long_line)
        assert taken.startswith("250")


async def test_max_messages_per_connection_counts_recipients(tmp_path: Path) -> None:
    async for rig in smtp_rig(tmp_path, max_messages_per_connection=2):
        client = await rig.raw()
        await client.cmd("MAIL FROM:<a@example.com>")
        assert (await client.cmd("RCPT TO:<b@example.net>")).startswith("250")
        assert (await client.cmd("RCPT TO:<c@example.net>")).startswith("250")
        assert await client.cmd("RCPT TO:<d@example.net>") == (
            "452 4.5.3 Too many recipients on this connection"
        )
        await client.send(b"DATA\r\n")
        assert (await client.send(MESSAGE + b".\r\n")).startswith("250")
        await client.cmd("MAIL FROM:<a@example.com>")
        closing = await client.cmd("RCPT TO:<e@example.net>")
        assert closing.startswith("421 4.5.3 ")
        assert closing.endswith("on this connection")
        assert await client.reader.read() == b""  # closed


async def test_reception_records_name_the_client_and_its_tls(tmp_path: Path) -> None:
    keys, context = tls_files(tmp_path)
    async for rig in smtp_rig(tmp_path, **keys):
        client = rig.client(tls_context=context)
        await client.connect()
        await client.ehlo(hostname="client.example")
        await client.sendmail("a@example.com", ["b@example.net"], MESSAGE)
        await client.starttls(server_hostname="localhost")
        await client.ehlo(hostname="secure.example")
        await client.sendmail("a@example.com", ["c@example.net"], MESSAGE)
        await client.quit()
        clear, secure = await rig.records()
        assert clear["peer_address"] == {"name": "client.example", "addr": "127.0.0.1"}
        assert "tls_protocol_version" not in clear
        assert secure["peer_address"] == {"name": "secure.example", "addr": "127.0.0.1"}
        assert secure["tls_protocol_version"].startswith("TLSv1.")
        assert secure["tls_cipher"]
        assert b"with ESMTPS (TLSv1." in (await rig.spool.read_content(secure["id"]))


# docs/reference/kumo/start_esmtp_listener/meta.md, the second example's table as written
META_EXAMPLE: dict[str, Any] = {
    "listen": "0.0.0.0:25",
    "meta": {"trusted": False},
    "peer": {
        "127.0.0.0/24": {"meta": {"trusted": True}},
        "192.168.1.0/24": {"meta": {"trusted": True}},
    },
}


async def test_meta_and_peer_blocks_set_the_connections_metadata(tmp_path: Path) -> None:
    config = start_esmtp_listener(META_EXAMPLE)
    # every loopback address may relay: the second client's address is outside the default
    listener = {"meta": config.meta, "peer": config.peer, "relay_hosts": ("127.0.0.0/8",)}
    async for rig in smtp_rig(tmp_path, **listener):
        for source, recipient in (
            ("127.0.0.1", "in@example.net"),
            ("127.0.1.1", "out@example.net"),
        ):
            client = rig.client(source_address=(source, 0))
            await client.connect()
            await client.sendmail("a@example.com", [recipient], MESSAGE)
            await client.quit()
        trusted = {m.recipient: m.meta["trusted"] for m in rig.spool.enumerate()}
        assert trusted == {"in@example.net": True, "out@example.net": False}


async def test_peer_and_via_blocks_set_the_keys_of_matching_connections(tmp_path: Path) -> None:
    config = start_esmtp_listener(
        {
            "banner": "Welcome to KumoMTA!",
            "peer": {
                "127.0.0.1": {"banner": "Welcome loopback!"},
                "127.0.0.2/32": {"banner": "Welcome two!", "relay_hosts": {}},
            },
            "via": {"127.0.0.0/8": {"hostname": "mx.via.example"}},
        }
    )
    listener = {"banner": config.banner, "peer": config.peer, "via": config.via}
    async for rig in smtp_rig(tmp_path, **listener):
        one = rig.client()
        assert (await one.connect()).message == "mx.via.example Welcome loopback!"
        await one.quit()
        two = rig.client(source_address=("127.0.0.2", 0))
        assert (await two.connect()).message == "mx.via.example Welcome two!"
        await two.ehlo(hostname="client.example")
        await two.mail("a@example.com")
        refused = await two.execute_command(b"RCPT", b"TO:<b@example.net>")
        assert refused.code == 550  # its relay_hosts are none
        await two.quit()
