"""The private Postfix MX fixture itself: replies on the wire, stored mail, clean stop."""

from __future__ import annotations

import os
import shutil
import smtplib
import socket
import time
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest

from tests.integration import postfix as postfix_module
from tests.integration.conftest import PostfixFactory
from tests.integration.postfix import (
    INACTIVE_ACTION,
    OVER_QUOTA,
    TEMPORARY_FAILURE,
    USER_UNKNOWN,
    PrivatePostfix,
    strip_postfix_headers,
)

INACTIVE_EXACT = (
    "450 4.2.1 <inactive@example.net>: Recipient address rejected: "
    "this mailbox is inactive and has been disabled"
)


class RawSMTP:
    """Sends command lines and returns the reply lines exactly as they arrive."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=30)
        self.file = self.sock.makefile("rb")
        self.banner = self.reply()

    def reply(self) -> list[bytes]:
        lines = []
        while True:
            line = self.file.readline()
            assert line.endswith(b"\r\n"), line
            lines.append(line)
            if line[3:4] != b"-":
                return lines

    def command(self, line: str) -> list[bytes]:
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def rcpt_replies(postfix: PrivatePostfix, recipients: list[str]) -> dict[str, bytes]:
    client = RawSMTP(postfix.host, postfix.port)
    try:
        assert client.banner[0].startswith(b"220 ")
        assert client.command("EHLO client.test")[-1].startswith(b"250 ")
        assert client.command("MAIL FROM:<sender@client.test>") == [b"250 2.1.0 Ok\r\n"]
        replies = {}
        for recipient in recipients:
            (line,) = client.command(f"RCPT TO:<{recipient}>")
            replies[recipient] = line
        client.command("QUIT")
        return replies
    finally:
        client.close()


def test_exact_replies_arrive_at_rcpt_unchanged(postfix_factory: PostfixFactory) -> None:
    postfix = postfix_factory(
        replies={
            "full@example.net": OVER_QUOTA,
            "inactive@example.net": INACTIVE_EXACT,
            "nobody@example.net": USER_UNKNOWN,
            "later@example.net": TEMPORARY_FAILURE,
        }
    )
    replies = rcpt_replies(
        postfix,
        [
            "full@example.net",
            "inactive@example.net",
            "nobody@example.net",
            "later@example.net",
            "Full@Example.NET",
            "someone@example.net",
        ],
    )
    assert replies == {
        "full@example.net": (
            b"452 4.2.2 The email account that you tried to reach is over quota.\r\n"
        ),
        "inactive@example.net": (
            b"450 4.2.1 <inactive@example.net>: Recipient address rejected: "
            b"this mailbox is inactive and has been disabled\r\n"
        ),
        "nobody@example.net": (
            b"550 5.1.1 The email account that you tried to reach does not exist.\r\n"
        ),
        "later@example.net": b"451 4.3.0 Temporary lookup failure\r\n",
        "Full@Example.NET": (
            b"452 4.2.2 The email account that you tried to reach is over quota.\r\n"
        ),
        "someone@example.net": b"250 2.1.5 Ok\r\n",
    }


def test_access_map_replies_are_formatted_by_postfix(postfix_factory: PostfixFactory) -> None:
    postfix = postfix_factory(
        access={
            "full@example.net": OVER_QUOTA,
            "inactive@example.net": INACTIVE_ACTION,
            "nobody@example.net": "550 5.1.1 User unknown",
            "later@example.net": "451 4.3.0 Temporary lookup failure",
        }
    )
    replies = rcpt_replies(
        postfix,
        ["full@example.net", "inactive@example.net", "nobody@example.net", "later@example.net"],
    )
    # access(5) "NNN text": Postfix always puts "<address>: Recipient address rejected:" first
    assert replies == {
        "full@example.net": (
            b"452 4.2.2 <full@example.net>: Recipient address rejected: "
            b"The email account that you tried to reach is over quota.\r\n"
        ),
        "inactive@example.net": (
            b"450 4.2.1 <inactive@example.net>: Recipient address rejected: "
            b"this mailbox is inactive and has been disabled\r\n"
        ),
        "nobody@example.net": (
            b"550 5.1.1 <nobody@example.net>: Recipient address rejected: User unknown\r\n"
        ),
        "later@example.net": (
            b"451 4.3.0 <later@example.net>: Recipient address rejected: "
            b"Temporary lookup failure\r\n"
        ),
    }


def test_replies_can_change_while_running(postfix: PrivatePostfix) -> None:
    assert rcpt_replies(postfix, ["box@example.net"]) == {"box@example.net": b"250 2.1.5 Ok\r\n"}
    postfix.set_reply("box@example.net", OVER_QUOTA)
    assert rcpt_replies(postfix, ["box@example.net"]) == {
        "box@example.net": OVER_QUOTA.encode() + b"\r\n"
    }
    postfix.set_reply("box@example.net", None)
    assert rcpt_replies(postfix, ["box@example.net"]) == {"box@example.net": b"250 2.1.5 Ok\r\n"}
    postfix.replies = {"box@example.net": TEMPORARY_FAILURE}  # a new dict works too
    assert rcpt_replies(postfix, ["box@example.net"]) == {
        "box@example.net": b"451 4.3.0 Temporary lookup failure\r\n"
    }


def test_malformed_reply_is_refused() -> None:
    with pytest.raises(ValueError, match="not a single-line"):
        PrivatePostfix(Path("unused"), replies={"a@example.net": "452 5.2.2 class mismatch"})
    with pytest.raises(ValueError, match="not a single-line"):
        PrivatePostfix(Path("unused"), replies={"a@example.net": "250 accepted"})


def test_accepted_8bit_message_is_stored_byte_identical(postfix: PrivatePostfix) -> None:
    message = (
        "From: Sender <sender@client.test>\r\n"
        "To: Box <box@example.net>\r\n"
        "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n"
        "Message-ID: <8bit-1@client.test>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        "Grüße aus Köln, naïve café, ☃ and 𝄞.\r\n"
        ".a line that starts with a dot\r\n"
        "..and one with two\r\n"
        ".\ttab after a dot\r\n"
        "  leading spaces and trailing spaces  \r\n"
        "\r\n"
        "last line\r\n"
    ).encode()
    with smtplib.SMTP(postfix.host, postfix.port, timeout=30) as client:
        client.ehlo("client.test")
        assert client.has_extn("8bitmime")
        refused = client.sendmail(
            "sender@client.test", ["box@example.net"], message, mail_options=["BODY=8BITMIME"]
        )
    assert refused == {}
    (stored,) = postfix.wait_for_messages(1)
    # as Postfix stored it: its delivery headers in front, LF line ends, dots unstuffed
    assert stored.startswith(b"Return-Path: <sender@client.test>\nX-Original-To: box@example.net\n")
    assert b"\nDelivered-To: box@example.net\nReceived: from client.test " in stored
    assert stored.endswith(message.replace(b"\r\n", b"\n"))
    assert b"\n.a line that starts with a dot\n..and one with two\n" in stored
    assert strip_postfix_headers(stored) == message
    assert postfix.messages(recipient="box@example.net") == [stored]
    assert postfix.messages(recipient="other@example.net") == []


def test_smtputf8_message_is_stored(postfix: PrivatePostfix) -> None:
    message = (
        "From: sender@client.test\r\nTo: jösé@exämple.net\r\nSubject: Grüße\r\n\r\nKöln\r\n"
    ).encode()
    with smtplib.SMTP(postfix.host, postfix.port, timeout=30) as client:
        client.ehlo("client.test")
        assert client.has_extn("smtputf8")
        refused = client.sendmail(
            "sender@client.test",
            ["jösé@exämple.net"],
            message,
            mail_options=["SMTPUTF8", "BODY=8BITMIME"],
        )
    assert refused == {}
    (stored,) = postfix.wait_for_messages(1)
    assert "Delivered-To: jösé@exämple.net\n".encode() in stored
    assert strip_postfix_headers(stored) == message


@pytest.mark.slow
def test_large_attachment_is_stored_byte_identical(postfix: PrivatePostfix) -> None:
    message = EmailMessage(policy=SMTP)
    message["From"] = "sender@client.test"
    message["To"] = "box@example.net"
    message["Subject"] = "5 MB attachment"
    message.set_content("see attachment\n")
    message.add_attachment(
        os.urandom(5 * 1024 * 1024), maintype="application", subtype="octet-stream"
    )
    data = message.as_bytes()
    with smtplib.SMTP(postfix.host, postfix.port, timeout=60) as client:
        assert client.sendmail("sender@client.test", ["box@example.net"], data) == {}
    (stored,) = postfix.wait_for_messages(1, timeout=30)
    assert strip_postfix_headers(stored) == data


def test_strip_postfix_headers_keeps_the_messages_own_headers() -> None:
    stored = (
        b"Return-Path: <a@client.test>\n"
        b"X-Original-To: b@example.net\n"
        b"Delivered-To: b@example.net\n"
        b"Received: from client.test (unknown [127.0.0.1])\n"
        b"\tby mx.postfix.test (Postfix) with ESMTP id 4F1A2B\n"
        b"\tfor <b@example.net>; Tue, 24 Nov 2026 00:00:00 +0000 (UTC)\n"
        b"Received: by client.test; Mon, 23 Nov 2026 23:59:59 +0000\n"
        b"Delivered-To: earlier@example.org\n"
        b"Subject: s\n"
        b"\n"
        b"body\n"
    )
    assert strip_postfix_headers(stored) == (
        b"Received: by client.test; Mon, 23 Nov 2026 23:59:59 +0000\r\n"
        b"Delivered-To: earlier@example.org\r\n"
        b"Subject: s\r\n"
        b"\r\n"
        b"body\r\n"
    )
    assert strip_postfix_headers(stored, crlf=False).startswith(b"Received: by client.test;")


def instance_pids(conf_dir: Path) -> set[int]:
    """Every process, zombies too, whose command line or environment names conf_dir."""
    marker = os.fsencode(conf_dir)
    pids = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            environ = Path(f"/proc/{entry}/environ").read_bytes()
        except OSError:
            continue
        if marker in cmdline or marker in environ:
            pids.add(int(entry))
    return pids


def test_stop_leaves_no_process_behind(tmp_path: Path) -> None:
    postfix_module.require_postfix()
    postfix = PrivatePostfix(tmp_path / "postfix")
    postfix.start()
    try:
        assert postfix.master_pid is not None
        pid_file = postfix.queue_dir / "pid" / "master.pid"
        assert int(pid_file.read_text().split()[0]) == postfix.master_pid
        # deliver a message and keep a session open: smtpd, cleanup, qmgr, virtual, ...
        with smtplib.SMTP(postfix.host, postfix.port, timeout=30) as client:
            client.sendmail("a@client.test", ["b@example.net"], b"Subject: x\r\n\r\nx\r\n")
        postfix.wait_for_messages(1)
        busy = smtplib.SMTP(postfix.host, postfix.port, timeout=30)
        busy.ehlo("client.test")
        running = postfix.processes()
        names = {process.cmdline.split()[0].rsplit("/", 1)[-1] for process in running}
        assert {"master", "smtpd", "qmgr", "cleanup", "virtual", "postlogd"} <= names, running
        pids = {process.pid for process in running} | instance_pids(postfix.conf_dir)
    finally:
        postfix.stop()
    busy.close()
    assert postfix.stop_seconds is not None
    # reaped, not just dead: no zombies either
    assert postfix.processes(zombies=True) == []
    assert instance_pids(postfix.conf_dir) == set()
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists(), pid
    postfix.stop()  # idempotent


def test_start_and_stop_are_fast(tmp_path: Path) -> None:
    postfix_module.require_postfix()
    postfix = PrivatePostfix(tmp_path / "postfix")
    started = time.monotonic()
    with postfix:
        assert postfix.start_seconds is not None
    assert postfix.stop_seconds is not None
    # generous: a loaded shared CI machine; typically 0.05-0.3 s each
    assert time.monotonic() - started < 15


def test_missing_postfix_fails_instead_of_skipping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)
    message = r"postconf is not installed \(Debian package postfix\): `\./scripts/test` installs"
    with pytest.raises(pytest.fail.Exception, match=message):
        postfix_module.require_postfix()


def test_without_root_the_postfix_tests_fail_saying_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(pytest.fail.Exception, match=r"needs root .*: run the tests as root$"):
        postfix_module.require_postfix()
