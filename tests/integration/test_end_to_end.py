"""End to end through real processes: mail submitted over SMTP to `kumoclient run`, delivered
to a real Postfix that rejects chosen recipients, dispositions decided by SPEC 4.4's example
policy (its text unchanged, after a routing preamble that sends everything to the Postfix)."""

from __future__ import annotations

import email
import email.policy
import json
import os
import shutil
import smtplib
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import without_trace
from tests.daemon_process import DaemonProcess
from tests.integration.conftest import PostfixFactory
from tests.integration.postfix import (
    INACTIVE_ACTION,
    OVER_QUOTA,
    TEMPORARY_FAILURE,
    USER_UNKNOWN,
    PrivatePostfix,
    strip_postfix_headers,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SENDER = "sender@example.org"
OVER, INACTIVE, LATER, GONE = (
    "full@example.net",
    "inactive@example.net",
    "later@example.net",
    "gone@example.net",
)

ROUTING = """
-- test preamble: every queue goes to the private Postfix, retried every second
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {{
    protocol = {{ smtp = {{ mx_list = {{ '127.0.0.1:{port}' }} }} }},
    retry_interval = '1s', max_retry_interval = '2s', generate_dsn = {dsn},
  }}
end)
kumo.on('get_egress_path_config', function(routing_domain, egress_source, site_name)
  return kumo.make_egress_path {{ prohibited_hosts = {{}} }}
end)
-- SPEC 4.4, examples/dsn_rewrite.lua as shipped:
"""


@pytest.fixture
def mta(postfix_factory: PostfixFactory) -> PrivatePostfix:
    return postfix_factory(
        replies={OVER: OVER_QUOTA, LATER: TEMPORARY_FAILURE, GONE: USER_UNKNOWN},
        access={INACTIVE: INACTIVE_ACTION},
    )


@pytest.fixture
def daemon_for(tmp_path: Path) -> Iterator[Callable[[PrivatePostfix, bool], DaemonProcess]]:
    started: list[DaemonProcess] = []

    def start(mta: PrivatePostfix, dsn: bool = False) -> DaemonProcess:
        policy = tmp_path / "policy" / "dsn_rewrite.lua"
        policy.parent.mkdir(exist_ok=True)
        shutil.copy(EXAMPLES / "dsn_rewrite.json", policy.parent)
        example = (EXAMPLES / "dsn_rewrite.lua").read_text()
        preamble = ROUTING.format(port=mta.port, dsn="true" if dsn else "false")
        policy.write_text(preamble + example)
        daemon = DaemonProcess(tmp_path / "data", policy).start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        if daemon.stop() != 0:
            daemon.kill()


def submit(daemon: DaemonProcess, recipients: list[str], content: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", daemon.port, timeout=30) as client:
        client.ehlo("client.test")
        options = ["BODY=8BITMIME"] if not content.isascii() else []
        refused = client.sendmail(SENDER, recipients, content, mail_options=options)
        assert refused == {}


def records(daemon: DaemonProcess) -> list[dict[str, Any]]:
    found = []
    for path in sorted((daemon.data_dir / "logs").glob("*.jsonl")):
        found += [json.loads(line) for line in path.read_text().splitlines() if line]
    return found


def wait_for(
    daemon: DaemonProcess, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 60.0
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        found = records(daemon)
        if done(found):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out; records: {found}\n{daemon.stderr()[-3000:]}")
        time.sleep(0.1)


def stored(mta: PrivatePostfix, recipient: str, timeout: float = 30.0) -> list[bytes]:
    """The copies Postfix stored for `recipient` (its local delivery follows its 250)."""
    deadline = time.monotonic() + timeout
    while not (messages := mta.messages(recipient)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return messages


def final(found: list[dict[str, Any]], recipient: str) -> dict[str, Any] | None:
    kinds = ("Delivery", "Bounce", "Expiration")
    return next((r for r in found if r["recipient"] == recipient and r["type"] in kinds), None)


def test_the_spec_example_bounces_over_quota_and_inactive_retries_451_and_delivers(
    mta: PrivatePostfix, daemon_for: Callable[[PrivatePostfix, bool], DaemonProcess]
) -> None:
    daemon = daemon_for(mta, False)
    content = b"From: sender@example.org\r\nSubject: hello\r\n\r\nhello\r\n"
    submit(daemon, [OVER, INACTIVE, LATER, GONE, "ok@example.net"], content)

    found = wait_for(
        daemon,
        lambda rs: (
            all(final(rs, r) for r in (OVER, INACTIVE, GONE, "ok@example.net"))
            and sum(r["type"] == "TransientFailure" and r["recipient"] == LATER for r in rs) >= 2
        ),
    )
    over = final(found, OVER)
    assert over is not None
    assert over["type"] == "Bounce"
    assert over["response"]["code"] == 500
    assert over["response"]["enhanced_code"] == {"class": 4, "subject": 2, "detail": 2}
    assert over["response"]["content"] == (
        "The email account that you tried to reach is over quota. "
        "(kumomta: status was rewritten from 452 -> 500)"
    )
    assert over["response"]["command"] == f"RCPT TO:<{OVER}>\r\n"
    inactive = final(found, INACTIVE)
    assert inactive is not None
    assert inactive["type"] == "Bounce"
    assert inactive["response"]["content"] == (
        f"<{INACTIVE}>: Recipient address rejected: this mailbox is inactive and has been "
        "disabled (kumomta: status was rewritten from 450 -> 500)"
    )
    gone = final(found, GONE)
    assert gone is not None
    assert (gone["type"], gone["response"]["code"]) == ("Bounce", 550)
    assert "rewritten" not in gone["response"]["content"]
    assert final(found, LATER) is None  # retried, not bounced
    retries = [r for r in found if r["recipient"] == LATER and r["type"] == "TransientFailure"]
    assert [r["num_attempts"] for r in retries[:2]] == [0, 1]
    assert retries[0]["response"]["content"] == "Temporary lookup failure"

    mta.set_reply(LATER, None)  # the mailbox is back: the next retry is delivered
    found = wait_for(daemon, lambda rs: final(rs, LATER) is not None)
    assert final(found, LATER)["type"] == "Delivery"  # type: ignore[index]
    assert len(stored(mta, "ok@example.net")) == 1
    assert len(stored(mta, LATER)) == 1
    assert mta.messages(OVER) == []


def big_message() -> bytes:
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = "big@example.net"
    message["Subject"] = "five megabytes"
    message.set_content("see the attachment\n")
    message.add_attachment(
        os.urandom(5 * 1024 * 1024),
        maintype="application",
        subtype="octet-stream",
        filename="data.bin",
    )
    return message.as_bytes(policy=email.policy.SMTP)


@pytest.mark.parametrize(
    ("recipient", "content"),
    [
        (
            "utf8@example.net",
            "From: sender@example.org\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\nContent-Type: text/plain; "
            "charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nÄpfel, Bäume, "
            "Öfen — 8-bit\r\n".encode(),
        ),
        (
            "dots@example.net",
            b"From: sender@example.org\r\nSubject: dots\r\n\r\n.starts with a dot\r\n"
            b"..two dots\r\n.\r\nthe line above is a lone dot\r\n",
        ),
        ("big@example.net", big_message()),
    ],
    ids=["8-bit", "dot-leading", "5MB-attachment"],
)
def test_accepted_mail_arrives_byte_identical(
    mta: PrivatePostfix,
    daemon_for: Callable[[PrivatePostfix, bool], DaemonProcess],
    recipient: str,
    content: bytes,
) -> None:
    daemon = daemon_for(mta, False)
    submit(daemon, [recipient], content)
    found = wait_for(daemon, lambda rs: final(rs, recipient) is not None)
    assert final(found, recipient)["type"] == "Delivery"  # type: ignore[index]
    [copy] = stored(mta, recipient)
    # Postfix's headers stripped, then the listener's trace headers (X-KumoRef, Received:):
    # every byte the client sent arrives as it was
    assert without_trace(strip_postfix_headers(copy)) == content


def test_with_generate_dsn_the_sender_gets_a_delivery_status_report(
    mta: PrivatePostfix, daemon_for: Callable[[PrivatePostfix, bool], DaemonProcess]
) -> None:
    daemon = daemon_for(mta, True)
    submit(daemon, [OVER], b"From: sender@example.org\r\nSubject: to a full mailbox\r\n\r\nx\r\n")
    found = wait_for(daemon, lambda rs: final(rs, SENDER) is not None)
    assert final(found, OVER)["type"] == "Bounce"  # type: ignore[index]
    assert final(found, SENDER)["type"] == "Delivery"  # type: ignore[index]
    [copy] = stored(mta, SENDER)
    report = email.message_from_bytes(strip_postfix_headers(copy), policy=email.policy.default)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    status = next(p for p in report.walk() if p.get_content_type() == "message/delivery-status")
    text = status.as_string()
    assert f"Final-Recipient: rfc822; {OVER}" in text
    assert "Status: 5.2.2" in text
    assert "status was rewritten from 452 -> 500" in " ".join(text.split())


def test_the_local_mta_example_policy_delivers_to_the_mta_named_in_its_environment(
    mta: PrivatePostfix, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOCAL_MTA", f"127.0.0.1:{mta.port}")
    daemon = DaemonProcess(tmp_path / "data", EXAMPLES / "local_mta.lua").start()
    try:
        submit(daemon, [OVER, "someone@example.com"], b"Subject: local\r\n\r\nlocal\r\n")
        found = wait_for(
            daemon, lambda rs: all(final(rs, r) for r in (OVER, "someone@example.com"))
        )
    finally:
        assert daemon.stop() == 0
    assert final(found, "someone@example.com")["type"] == "Delivery"  # type: ignore[index]
    over = final(found, OVER)
    assert over is not None
    assert over["type"] == "Bounce"
    assert over["response"]["content"].endswith("(kumomta: status was rewritten from 452 -> 500)")
    assert len(stored(mta, "someone@example.com")) == 1
