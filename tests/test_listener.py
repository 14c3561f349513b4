"""The SMTP listener over real sockets, with the real reception path and a real spool.

Each bad input gets its specific reply, nothing half-written is stored, and acknowledged mail
is in the spool.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from kumoclient.configs import EsmtpListenerConfig
from kumoclient.listener import SmtpServer, Transaction, start_listener
from kumoclient.spool import Spool
from tests.conftest import without_trace
from tests.smtp_client import Client
from tests.smtp_rig import smtp_rig

MESSAGE = b"From: a@example.com\r\nSubject: hi\r\n\r\nhello\r\n"


async def open_data(client: Client) -> None:
    """MAIL, RCPT and DATA of one message from a@example.com to b@example.net."""
    assert (await client.cmd("MAIL FROM:<a@example.com>")).startswith("250")
    assert (await client.cmd("RCPT TO:<b@example.net>")).startswith("250")
    assert (await client.cmd("DATA")).startswith("354")


@dataclass
class Rig:
    port: int
    spool: Spool
    logs: Path
    clients: list[Client]
    server: SmtpServer | None = None

    async def connect_from(self, source: str) -> Client:
        """Connect from another loopback address (127.0.0.2, ...): another client."""
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", self.port, local_addr=(source, 0)
        )
        client = Client(reader, writer)
        self.clients.append(client)
        return client

    async def connect(self) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        client = Client(reader, writer)
        self.clients.append(client)
        return client

    async def close(self) -> None:
        for client in self.clients:
            client.writer.close()
            with contextlib.suppress(OSError):
                await client.writer.wait_closed()

    async def client(self) -> Client:
        client = await self.connect()
        assert (await client.reply()).startswith("220")
        assert (await client.cmd("EHLO test.example")).startswith("250")
        return client


async def make_rig(tmp_path: Path, policy: str = "", **listener: object) -> AsyncIterator[Rig]:
    """The listener of tests/smtp_rig.py, with this module's line-level clients."""
    async for base in smtp_rig(tmp_path, policy, **listener):
        rig = Rig(base.port, base.spool, base.log_dir, [], base.server)
        try:
            yield rig
        finally:
            await rig.close()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    async for value in make_rig(tmp_path, max_message_size=4096):
        yield value


async def test_ehlo_advertises_the_extensions(rig: Rig) -> None:
    client = await rig.connect()
    await client.reply()
    ehlo = await client.cmd("EHLO me")
    for extension in ("PIPELINING", "8BITMIME", "SMTPUTF8", "SIZE 4096"):
        assert extension in ehlo


async def test_accepted_mail_is_spooled_one_per_recipient(rig: Rig) -> None:
    client = await rig.client()
    reply = await client.transaction("a@example.com", ["b@example.net", "c@example.org"], MESSAGE)
    assert reply.startswith("250 2.0.0 OK queued as ")
    messages = list(rig.spool.enumerate())
    assert sorted(m.recipient for m in messages) == ["b@example.net", "c@example.org"]
    assert reply.split()[5] in {m.id for m in messages}
    assert all([without_trace(await rig.spool.read_content(m.id)) == MESSAGE for m in messages])


async def test_pipelined_transaction(rig: Rig) -> None:
    client = await rig.client()
    client.writer.write(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n")
    assert (await client.reply()).startswith("250")
    assert (await client.reply()).startswith("250")
    assert (await client.reply()).startswith("354")
    assert (await client.send(MESSAGE + b".\r\n")).startswith("250")


async def test_dot_stuffing_is_undone(rig: Rig) -> None:
    client = await rig.client()
    await client.transaction("a@example.com", ["b@example.net"], b"Subject: x\r\n\r\n..dot\r\n")
    (message,) = rig.spool.enumerate()
    assert without_trace(await rig.spool.read_content(message.id)) == b"Subject: x\r\n\r\n.dot\r\n"


@pytest.mark.parametrize(
    ("content", "reply"),
    [
        (b"Subject: x\r\n\r\n" + b"a" * 5000 + b"\r\n", "500 5.5.2 Line too long"),
        (b"Subject: x\r\n\r\n" + b"abc\r\n" * 1000, "552 5.3.4 Message too big"),
        (b"Subject: x\r\n\r\nnul\x00byte\r\n", "554 5.6.0 Message contains NUL bytes"),
        (b"Subject: x\r\n\r\nbare\nlf\r\n", "554 5.6.11 Message contains a bare LF"),
        (b"Subject: caf\xc3\xa9\r\n\r\nbody\r\n", "554 5.6.7 Non-ASCII header requires SMTPUTF8"),
    ],
)
async def test_bad_content_gets_its_reply_and_nothing_is_stored(
    rig: Rig, content: bytes, reply: str
) -> None:
    client = await rig.client()
    answer = await client.transaction("a@example.com", ["b@example.net"], content)
    assert answer.startswith(reply)
    assert rig.spool.ids() == []
    # the session goes on: a good message after the bad one is accepted
    assert (await client.transaction("a@example.com", ["b@example.net"], MESSAGE)).startswith("250")
    assert len(rig.spool.ids()) == 1


async def test_invalid_utf8_header_with_smtputf8_is_refused(rig: Rig) -> None:
    client = await rig.client()
    await client.cmd("MAIL FROM:<a@example.com> SMTPUTF8")
    await client.cmd("RCPT TO:<b@example.net>")
    await client.cmd("DATA")
    reply = await client.send(b"Subject: \xff\xfe\r\n\r\nx\r\n.\r\n")
    assert reply.startswith("554 5.6.7 Header is not valid UTF-8")
    assert rig.spool.ids() == []


async def test_utf8_header_with_smtputf8_is_accepted(rig: Rig) -> None:
    client = await rig.client()
    await client.cmd("MAIL FROM:<a@example.com> SMTPUTF8")
    await client.cmd("RCPT TO:<b@example.net>")
    await client.cmd("DATA")
    assert (await client.send("Subject: café\r\n\r\nx\r\n.\r\n".encode())).startswith("250")


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        (b"MAIL FROM:<a\x00b@example.com>\r\n", "553 5.1.7"),
        (b"MAIL FROM:<a\rb@example.com>\r\n", "553 5.1.7"),
        (b"HELLO there\r\n", '500 5.5.1 Error: command "HELLO" not recognized'),
        (b"MAIL FROM:" + b"x" * 2000 + b"\r\n", "500 5.5.2 Command line too long"),
        (b"RCPT TO:<b@example.net>\r\n", "503"),
        (b"DATA\r\n", "503"),
    ],
)
async def test_malformed_commands_get_specific_replies(rig: Rig, line: bytes, reply: str) -> None:
    client = await rig.client()
    assert (await client.send(line)).startswith(reply)
    assert (await client.cmd("NOOP")).startswith("250")  # the listener is still there


async def test_recipient_with_bad_characters_is_refused(rig: Rig) -> None:
    client = await rig.client()
    await client.cmd("MAIL FROM:<a@example.com>")
    assert (await client.send(b"RCPT TO:<b\x00@example.net>\r\n")).startswith("553 5.1.3")
    assert (await client.cmd("RCPT TO:<no-at-sign>")).startswith("553 5.1.3")


async def test_client_outside_relay_hosts_is_refused_at_rcpt(tmp_path: Path) -> None:
    async for rig in make_rig(tmp_path, relay_hosts=("192.0.2.0/24",)):
        client = await rig.client()
        await client.cmd("MAIL FROM:<a@example.com>")
        assert await client.cmd("RCPT TO:<b@example.net>") == "550 5.7.1 relaying denied"
        assert (await client.cmd("DATA")).startswith("503")
        assert rig.spool.ids() == []


async def test_too_many_recipients(tmp_path: Path) -> None:
    async for rig in make_rig(tmp_path, max_recipients_per_message=2):
        client = await rig.client()
        await client.cmd("MAIL FROM:<a@example.com>")
        assert (await client.cmd("RCPT TO:<a@x.com>")).startswith("250")
        assert (await client.cmd("RCPT TO:<b@x.com>")).startswith("250")
        assert (await client.cmd("RCPT TO:<c@x.com>")).startswith("452 4.5.3")


POLICY = """
kumo.on('smtp_server_message_received', function(msg)
  msg:import_headers { { name = 'X-Tenant', target = 'tenant' } }
  if msg:recipient().email == 'blocked@example.net' then kumo.reject(550, '5.7.1 blocked by policy') end
  if msg:recipient().email == 'broken@example.net' then error('policy bug') end
  msg:set_meta('campaign', 'spring')
end)
"""


async def test_policy_sets_meta_which_decides_the_queue(tmp_path: Path) -> None:
    async for rig in make_rig(tmp_path, POLICY):
        client = await rig.client()
        content = b"X-Tenant: acme\r\nSubject: t\r\n\r\nbody\r\n"
        assert (await client.transaction("a@example.com", ["b@Example.NET"], content)).startswith(
            "250"
        )
        (message,) = rig.spool.enumerate()
        assert message.meta["tenant"] == "acme"
        assert message.meta["campaign"] == "spring"
        # and the connection's metadata, copied in as KumoMTA does
        assert message.meta["received_from"].startswith("127.0.0.1:")
        assert message.meta["ehlo_domain"] == "test.example"
        await asyncio.sleep(0.6)  # past the log flush interval
        (record,) = [line for line in next(rig.logs.glob("*.jsonl")).read_text().splitlines()]
        assert '"queue":"spring:acme@example.net"' in record
        assert '"type":"Reception"' in record


async def test_policy_reject_and_policy_error(tmp_path: Path) -> None:
    async for rig in make_rig(tmp_path, POLICY):
        client = await rig.client()
        rejected = await client.transaction(
            "a@x.com", ["ok@example.net", "blocked@example.net"], MESSAGE
        )
        assert rejected == "550 5.7.1 blocked by policy"
        broken = await client.transaction("a@x.com", ["broken@example.net"], MESSAGE)
        assert broken.startswith("451 4.3.0")
        assert rig.spool.ids() == []  # all or nothing


async def test_disk_full_gives_452_and_the_same_submission_succeeds_later(tmp_path: Path) -> None:
    mount = tmp_path / "small"
    mount.mkdir()
    proc = await asyncio.create_subprocess_exec(
        "mount",
        "-t",
        "tmpfs",
        "-o",
        "size=64k",
        "tmpfs",
        str(mount),
        stderr=asyncio.subprocess.DEVNULL,
    )
    if await proc.wait() != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        async for rig in make_rig(mount, max_message_size=200_000):
            filler = mount / "filler"
            filler.write_bytes(b"\0" * 40_000)
            big = b"Subject: big\r\n\r\n" + (b"0123456789abcdef" * 4 + b"\r\n") * 450  # ~30 kB
            client = await rig.client()
            reply = await client.transaction("a@example.com", ["b@example.net"], big)
            assert reply.startswith("452 4.3.1")
            assert rig.spool.ids() == []
            assert not [p for p in rig.spool.data.iterdir()]  # no partial entry
            filler.unlink()
            assert (await client.transaction("a@example.com", ["b@example.net"], big)).startswith(
                "250"
            )
            (message,) = rig.spool.enumerate()
            assert without_trace(await rig.spool.read_content(message.id)) == big
    finally:
        await (await asyncio.create_subprocess_exec("umount", "-l", str(mount))).wait()


async def test_pipelined_quit_after_data_still_gets_both_replies(rig: Rig) -> None:
    client = await rig.client()
    await open_data(client)
    client.writer.write(MESSAGE + b".\r\nQUIT\r\nNOOP\r\n")
    assert (await client.reply()).startswith("250 2.0.0")
    assert (await client.reply()).startswith("221")


def certificate(tmp_path: Path) -> tuple[dict[str, str], ssl.SSLContext]:
    """Listener settings with a certificate for "localhost", and a client context trusting it."""
    authority = trustme.CA()
    server_cert = authority.issue_cert("localhost")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    server_cert.cert_chain_pems[0].write_to_path(str(cert))
    server_cert.private_key_pem.write_to_path(str(key))
    client_context = ssl.create_default_context()
    authority.configure_trust(client_context)
    return {"tls_certificate": str(cert), "tls_private_key": str(key)}, client_context


async def test_starttls_when_a_certificate_is_configured(tmp_path: Path) -> None:
    tls, client_context = certificate(tmp_path)
    async for rig in make_rig(tmp_path, **tls):
        client = await rig.client()
        assert "STARTTLS" in await client.cmd("EHLO again")
        assert (await client.cmd("STARTTLS")).startswith("220")
        await client.writer.start_tls(client_context, server_hostname="localhost")
        assert client.writer.get_extra_info("ssl_object") is not None
        assert "STARTTLS" not in await client.cmd("EHLO secure")
        assert (await client.transaction("a@example.com", ["b@example.net"], MESSAGE)).startswith(
            "250"
        )
        assert len(rig.spool.ids()) == 1


async def test_no_starttls_without_a_certificate(rig: Rig) -> None:
    client = await rig.client()
    assert "STARTTLS" not in await client.cmd("EHLO again")


async def test_data_arriving_a_byte_at_a_time_is_stored_intact(rig: Rig) -> None:
    client = await rig.client()
    for line in (b"MAIL FROM:<a@example.com>\r\n", b"RCPT TO:<b@example.net>\r\n", b"DATA\r\n"):
        for byte in line:
            client.writer.write(bytes([byte]))
            await client.writer.drain()
        assert (await client.reply())[:3] in {"250", "354"}
    for byte in b"Subject: x\r\n\r\n..dot\r\nend\r\n.\r\n":
        client.writer.write(bytes([byte]))
        await client.writer.drain()
    assert (await client.reply()).startswith("250 2.0.0")
    (message,) = rig.spool.enumerate()
    assert (
        without_trace(await rig.spool.read_content(message.id))
        == b"Subject: x\r\n\r\n.dot\r\nend\r\n"
    )


async def test_an_empty_message_split_across_writes_is_accepted(rig: Rig) -> None:
    client = await rig.client()
    await open_data(client)
    client.writer.write(b".")
    await client.writer.drain()
    await asyncio.sleep(0.05)
    assert (await client.send(b"\r\n")).startswith("250")
    (message,) = rig.spool.enumerate()
    assert without_trace(await rig.spool.read_content(message.id)) == b""


async def test_a_message_far_over_the_limit_is_refused_and_the_session_goes_on(rig: Rig) -> None:
    client = await rig.client()
    await open_data(client)
    chunk = b"0123456789" * 100 + b"\r\n"  # 1,002 octets a line, 4,096 allowed in all
    for _ in range(300):  # 300 kB, streamed: dropped as it comes, not held
        client.writer.write(chunk[:-4] + b"\r\n")
    assert (await client.send(b".\r\n")).startswith("552 5.3.4 Message too big")
    assert rig.spool.ids() == []
    assert (await client.transaction("a@example.com", ["b@example.net"], MESSAGE)).startswith("250")


async def test_a_long_line_in_a_dropped_message_is_named(rig: Rig) -> None:
    client = await rig.client()
    await open_data(client)
    client.writer.write(b"x" * 50_000 + b"\r\n")
    assert (await client.send(b".\r\n")).startswith("500 5.5.2 Line too long")
    assert rig.spool.ids() == []


async def test_two_whole_transactions_in_one_write_are_answered_in_order(rig: Rig) -> None:
    client = await rig.client()
    one = b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n" + MESSAGE + b".\r\n"
    client.writer.write(one + one.replace(b"b@example.net", b"c@example.net") + b"NOOP\r\n")
    replies = [await client.reply() for _ in range(9)]
    assert [r[:3] for r in replies] == ["250", "250", "354", "250"] * 2 + ["250"]
    assert replies[3] != replies[7]  # each its own queued id
    assert sorted(m.recipient for m in rig.spool.enumerate()) == ["b@example.net", "c@example.net"]


async def test_an_idle_client_is_told_421_and_disconnected(tmp_path: Path) -> None:
    async for rig in make_rig(tmp_path, client_timeout=0.3):
        client = await rig.client()
        assert (await client.reply()).startswith("421 4.4.2")
        assert await asyncio.wait_for(client.reader.read(), 5) == b""


@pytest.mark.parametrize(
    ("raw", "reply"),
    [
        (b"STARTTLS\r\n", "454 4.7.0 TLS not available"),
        (b"NOOP \xff\xfe\r\n", "500 5.5.2 Command is not valid UTF-8"),
        (b"EHLO\r\n", "501 5.5.4 Syntax: EHLO hostname"),
        (b"MAIL FROM:<a@example.com> SIZE=5000\r\n", "552 5.3.4"),
        (b"MAIL FROM:<a@example.com> FOO=1\r\n", "555 5.5.4"),
        (b"MAIL FROM:<\xc3\xa9@example.com>\r\n", "553 5.6.7"),
        (b"VRFY someone\r\n", "252"),
        (b"RSET now\r\n", "501 5.5.4"),
        (b"MAIL FROM:<a\tb@example.com>\r\n", "553 5.1.7"),
        (b"MAIL FROM:<a b@example.com>\r\n", "553 5.1.7"),
        (b"MAIL FROM:<@relay.example:>\r\n", "501 5.5.4"),
        (b"FO\x00O bar\r\n", '500 5.5.1 Error: command "FO?O" not recognized'),
    ],
)
async def test_more_commands_get_specific_replies(rig: Rig, raw: bytes, reply: str) -> None:
    client = await rig.client()
    assert (await client.send(raw)).startswith(reply)
    assert (await client.cmd("NOOP")).startswith("250")


async def test_a_long_command_line_split_across_writes_is_refused(rig: Rig) -> None:
    client = await rig.client()
    for _ in range(5):
        client.writer.write(b"MAIL FROM:" + b"x" * 600)
        await client.writer.drain()
        await asyncio.sleep(0.01)
    assert (await client.send(b"\r\n")).startswith("500 5.5.2 Command line too long")
    assert (await client.transaction("a@example.com", ["b@example.net"], MESSAGE)).startswith("250")


async def test_a_client_gone_mid_data_leaves_nothing(rig: Rig) -> None:
    client = await rig.client()
    await open_data(client)
    client.writer.write(b"Subject: half\r\n\r\nthe first half")
    await client.writer.drain()
    client.writer.close()
    await asyncio.sleep(0.2)
    assert rig.spool.ids() == []


async def test_helo_then_mail_with_parameters_is_refused_and_rset_clears(rig: Rig) -> None:
    client = await rig.connect()
    await client.reply()
    assert (await client.cmd("HELO old.example")).startswith("250 ")
    assert (await client.cmd("MAIL FROM:<a@example.com> SIZE=10")).startswith("501 5.5.4")
    assert (await client.cmd("MAIL FROM:<a@example.com>")).startswith("250")
    assert (await client.cmd("MAIL FROM:<a@example.com>")).startswith("503 5.5.1")
    assert (await client.cmd("RSET")).startswith("250")
    assert (await client.cmd("RCPT TO:<b@example.net>")).startswith("503 5.5.1")


async def test_a_message_being_stored_at_close_gets_its_reply() -> None:
    from kumoclient.listener import finish_in_flight

    release = asyncio.Event()

    async def slow_accept(transaction: Transaction) -> str:
        await release.wait()
        return "250 2.0.0 OK queued as slow"

    server = await start_listener(EsmtpListenerConfig(listen="127.0.0.1:0"), slow_accept)
    client = await Client.connect(server.sockets[0].getsockname()[1])
    await open_data(client)
    client.writer.write(MESSAGE + b".\r\n")
    await client.writer.drain()
    await asyncio.sleep(0.1)
    server.close()  # the daemon's stop: listeners first ...
    waiting = asyncio.ensure_future(finish_in_flight(5))
    await asyncio.sleep(0.1)
    assert not waiting.done()  # ... then it waits for the message being stored
    release.set()
    assert await waiting == 0
    assert await client.reply() == "250 2.0.0 OK queued as slow"
    await client.close()


async def test_a_client_that_reads_no_replies_is_not_read_from_until_it_does(rig: Rig) -> None:
    """Replies that pile up pause reading, so memory stays bounded; then all are answered."""
    client = await rig.client()
    chunk = b"NOOP\r\n" * 10_000  # 60 kB of commands, 140 kB of replies
    sent, limit = 0, 64 * 1024 * 1024 // 6

    async def send_until_blocked() -> None:
        nonlocal sent
        while sent < limit:
            client.writer.write(chunk)
            sent += 10_000  # written: on its way, whether or not drain() finishes
            await asyncio.wait_for(client.writer.drain(), 2)

    with pytest.raises(TimeoutError):
        await send_until_blocked()
    assert sent < limit  # the server stopped taking commands
    replies = b""
    while len(replies) < sent * len(b"250 2.0.0 OK\r\n"):
        replies += await asyncio.wait_for(client.reader.read(1 << 20), 10)
    assert replies == b"250 2.0.0 OK\r\n" * sent  # every one answered, once, in order
    assert (await client.cmd("RSET")).startswith("250")  # and the session goes on


async def test_a_half_closed_client_still_gets_every_reply(rig: Rig) -> None:
    client = await rig.client()
    client.writer.write(
        b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n"
        + MESSAGE
        + b".\r\nQUIT\r\n"
    )
    client.writer.write_eof()  # as `nc -N` does
    replies = (await asyncio.wait_for(client.reader.read(), 10)).decode().splitlines()
    assert [r[:3] for r in replies] == ["250", "250", "354", "250", "221"]
    assert len(rig.spool.ids()) == 1


async def test_starttls_then_silence_is_closed_after_the_client_timeout(tmp_path: Path) -> None:
    tls, _ = certificate(tmp_path)
    async for rig in make_rig(tmp_path, client_timeout=0.5, **tls):
        client = await rig.client()
        assert (await client.cmd("STARTTLS")).startswith("220")
        assert await asyncio.wait_for(client.reader.read(), 10) == b""


async def test_a_bare_cr_is_refused_so_it_cannot_end_data_at_the_next_hop(rig: Rig) -> None:
    client = await rig.client()
    smuggled = b"Subject: x\r\n\r\nbody\r.\rMAIL FROM:<x@example.com>\r\n"
    answer = await client.transaction("a@example.com", ["b@example.net"], smuggled)
    assert answer.startswith("554 5.6.11 Message contains a bare CR")
    assert rig.spool.ids() == []


async def test_dot_stuffing_does_not_count_against_the_size_limit(tmp_path: Path) -> None:
    async for rig in make_rig(tmp_path, max_message_size=200_000):
        client = await rig.client()
        content = b"Subject: dots\r\n\r\n" + b"..\r\n" * 66_000  # 198 kB, 264 kB as sent
        assert (await client.transaction("a@example.com", ["b@example.net"], content)).startswith(
            "250"
        )
        (message,) = rig.spool.enumerate()
        assert (
            without_trace(await rig.spool.read_content(message.id))
            == b"Subject: dots\r\n\r\n" + b".\r\n" * 66_000
        )
