"""RFC 3464 delivery status notifications for Bounce and Expiration (SPEC 2.5)."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime
from email.message import EmailMessage, Message

import pytest

from kumoclient.core.dsn import (
    address_field,
    build_dsn,
    header_block,
    should_generate,
    status_code,
)
from kumoclient.core.reply import apply_rewrite, parse_one_line
from kumoclient.records import EnhancedCode, Reply

ORIGINAL = (
    b"From: Alice <alice@sender.example>\r\n"
    b"To: bob@dest.example\r\n"
    b"Subject: quarterly figures\r\n"
    b"Message-ID: <orig-1@sender.example>\r\n"
    b"\r\n"
    b"SECRET BODY LINE\r\n"
)
ARRIVAL = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)
ATTEMPTED = datetime(2025, 3, 1, 12, 5, 0, tzinfo=UTC)
NOW = datetime(2025, 3, 1, 12, 5, 1, tzinfo=UTC)


def make(
    reply: Reply | None = None,
    *,
    kind: str = "Bounce",
    recipient: str = "bob@dest.example",
    sender: str = "alice@sender.example",
    original: bytes = ORIGINAL,
    remote_mta: str | None = "mx.dest.example",
) -> bytes:
    return build_dsn(
        original=original,
        sender=sender,
        recipient=recipient,
        kind=kind,  # type: ignore[arg-type]
        reply=reply or parse_one_line("550 5.1.1 no such user"),
        reporting_mta="mta.kumo.example",
        arrival=ARRIVAL,
        remote_mta=remote_mta,
        attempted=ATTEMPTED,
        now=NOW,
    )


def parse(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def parts(message: EmailMessage) -> list[EmailMessage]:
    found = list(message.iter_parts())
    assert all(isinstance(part, EmailMessage) for part in found)
    return found  # type: ignore[return-value]


def status_blocks(message: EmailMessage) -> tuple[Message, Message]:
    report = parts(message)[1]
    assert report.get_content_type() == "message/delivery-status"
    per_message, per_recipient = report.get_payload()
    return per_message, per_recipient


def test_report_structure_and_headers() -> None:
    raw = make()
    message = parse(raw)
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "delivery-status"
    assert message["From"].addresses[0].addr_spec == "MAILER-DAEMON@mta.kumo.example"
    assert message["From"].addresses[0].display_name == "Mail Delivery System"
    assert message["To"].addresses[0].addr_spec == "alice@sender.example"
    assert message["Subject"] == "Undelivered Mail Returned to Sender"
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["MIME-Version"] == "1.0"
    assert message["Date"].datetime == NOW
    assert re.fullmatch(r"<[^<>@\s]+@mta\.kumo\.example>", message["Message-ID"])
    assert [p.get_content_type() for p in parts(message)] == [
        "text/plain",
        "message/delivery-status",
        "text/rfc822-headers",
    ]
    assert not message.defects
    assert all(not part.defects for part in parts(message))


def test_delivery_status_fields() -> None:
    per_message, per_recipient = status_blocks(parse(make()))
    assert per_message["Reporting-MTA"] == "dns; mta.kumo.example"
    assert per_message["Arrival-Date"] == "Sat, 01 Mar 2025 12:00:00 +0000"
    assert per_recipient["Final-Recipient"] == "rfc822; bob@dest.example"
    assert per_recipient["Original-Recipient"] == "rfc822; bob@dest.example"
    assert per_recipient["Action"] == "failed"
    assert per_recipient["Status"] == "5.1.1"
    assert per_recipient["Remote-MTA"] == "dns; mx.dest.example"
    assert per_recipient["Diagnostic-Code"] == "smtp; 550 5.1.1 no such user"
    assert per_recipient["Last-Attempt-Date"] == "Sat, 01 Mar 2025 12:05:00 +0000"


def test_rewritten_reply_keeps_note_and_takes_failure_class() -> None:
    reply = apply_rewrite(parse_one_line("452 4.2.2 mailbox full"), 500)
    message = parse(make(reply))
    _, per_recipient = status_blocks(message)
    assert per_recipient["Status"] == "5.2.2"
    assert per_recipient["Diagnostic-Code"] == (
        "smtp; 500 4.2.2 mailbox full (kumomta: status was rewritten from 452 -> 500)"
    )
    text = parts(message)[0].get_content()
    assert "bob@dest.example" in text
    assert "(kumomta: status was rewritten from 452 -> 500)" in text


@pytest.mark.parametrize(
    ("reply", "kind", "expected"),
    [
        (Reply(550, EnhancedCode(5, 7, 1), "denied"), "Bounce", "5.7.1"),
        (Reply(500, EnhancedCode(4, 2, 2), "full"), "Bounce", "5.2.2"),
        (Reply(554, EnhancedCode(2, 0, 0), "odd"), "Bounce", "5.0.0"),
        (Reply(550, None, "no enhanced code"), "Bounce", "5.0.0"),
        (Reply(551, EnhancedCode(5, 4, 7), "expired"), "Expiration", "5.4.7"),
        (Reply(551, None, "expired"), "Expiration", "5.4.7"),
    ],
)
def test_status_class_is_always_failure(reply: Reply, kind: str, expected: str) -> None:
    assert str(status_code(reply, kind)) == expected  # type: ignore[arg-type]
    _, per_recipient = status_blocks(parse(make(reply, kind=kind)))
    assert per_recipient["Status"] == expected


def test_multiline_reply_is_one_readable_line() -> None:
    reply = Reply(550, EnhancedCode(5, 1, 1), "no such user\nsee https://help.example")
    message = parse(make(reply))
    _, per_recipient = status_blocks(message)
    assert per_recipient["Diagnostic-Code"] == (
        "smtp; 550 5.1.1 no such user see https://help.example"
    )
    assert "\\r\\n" not in parts(message)[0].get_content()


def test_expiration_variant() -> None:
    reply = Reply(551, EnhancedCode(5, 4, 7), "message expired after 7 days in the queue")
    message = parse(make(reply, kind="Expiration", remote_mta=None))
    assert message["Subject"].startswith("Delivery expired")
    _, per_recipient = status_blocks(message)
    assert per_recipient["Status"] == "5.4.7"
    assert per_recipient["Action"] == "failed"
    assert per_recipient["Remote-MTA"] is None
    assert per_recipient["Diagnostic-Code"] == (
        "smtp; 551 5.4.7 message expired after 7 days in the queue"
    )
    assert "expired" in parts(message)[0].get_content()


def test_original_headers_returned_without_body() -> None:
    raw = make()
    assert b"SECRET BODY LINE" not in raw
    returned = parts(parse(raw))[2]
    content = returned.get_content()
    assert "Subject: quarterly figures" in content
    assert "Message-ID: <orig-1@sender.example>" in content
    assert "SECRET" not in content


def test_header_block_stops_at_body_even_without_separator() -> None:
    assert header_block(b"A: 1\nB: 2\n  continued\n\nbody\n") == b"A: 1\r\nB: 2\r\n  continued\r\n"
    assert header_block(b"A: 1\r\nthis is not a header\r\nmore body") == b"A: 1\r\n"
    assert header_block(b"no headers at all\r\n") == b""
    assert header_block(b"") == b""


def test_no_headers_part_when_original_has_none() -> None:
    message = parse(make(original=b"just a body line\r\n"))
    assert [p.get_content_type() for p in parts(message)] == [
        "text/plain",
        "message/delivery-status",
    ]


def test_crlf_line_endings_throughout() -> None:
    reply = Reply(550, EnhancedCode(5, 1, 1), "no such user\nsee " + "word " * 60)
    raw = make(reply, original=ORIGINAL.replace(b"\r\n", b"\n"))
    assert raw.endswith(b"\r\n")
    assert b"\r" not in raw.replace(b"\r\n", b"")
    assert b"\n" not in raw.replace(b"\r\n", b"")
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))


def test_long_diagnostic_is_folded_and_unfolds_intact() -> None:
    text = "rejected " + " ".join(f"w{i}" for i in range(200))
    raw = make(Reply(550, EnhancedCode(5, 7, 1), text))
    assert all(len(line) <= 78 for line in raw.split(b"\r\n") if line.startswith(b"Diagnostic"))
    _, per_recipient = status_blocks(parse(raw))
    assert per_recipient["Diagnostic-Code"] == f"smtp; 550 5.7.1 {text}"


def test_header_injection_is_neutralised() -> None:
    raw = make(
        Reply(550, EnhancedCode(5, 1, 1), "bad\r\nX-Injected: reply\r\n\r\nbody"),
        recipient="bob@dest.example\r\nX-Injected: rcpt",
        sender="alice@sender.example\r\nBcc: victim@evil.example",
    )
    assert b"\r\nX-Injected" not in raw
    assert b"\r\nBcc" not in raw
    message = parse(raw)
    assert message["Bcc"] is None
    assert len(message.get_all("To") or []) == 1
    per_message, per_recipient = status_blocks(message)
    assert per_message["X-Injected"] is None
    assert per_recipient["X-Injected"] is None
    assert per_recipient["Final-Recipient"] == "rfc822; bob@dest.example X-Injected: rcpt"
    assert per_recipient["Diagnostic-Code"] == "smtp; 550 5.1.1 bad X-Injected: reply  body"
    assert len(parts(message)) == 3


def test_utf8_recipient_uses_rfc6533_xtext() -> None:
    assert address_field("bob@dest.example") == "rfc822; bob@dest.example"
    assert address_field("δοκιμή+x@παράδειγμα.example") == (
        "utf-8; \\x{3B4}\\x{3BF}\\x{3BA}\\x{3B9}\\x{3BC}\\x{3AE}\\x{2B}x@"
        "\\x{3C0}\\x{3B1}\\x{3C1}\\x{3AC}\\x{3B4}\\x{3B5}\\x{3B9}\\x{3B3}\\x{3BC}\\x{3B1}.example"
    )
    raw = make(recipient="δοκιμή@παράδειγμα.example", sender="送信者@例え.example")
    assert "\r\nTo: <送信者@例え.example>\r\n".encode() in raw  # RFC 6532 UTF-8 header
    message = parse(raw)
    report = parts(message)[1]
    assert report.as_bytes().isascii()
    _, per_recipient = status_blocks(message)
    assert per_recipient["Final-Recipient"].startswith("utf-8; \\x{3B4}")
    text = parts(message)[0]
    assert text["Content-Transfer-Encoding"] == "quoted-printable"
    assert "δοκιμή@παράδειγμα.example" in text.get_content()


def test_non_ascii_reply_and_headers() -> None:
    original = "Subject: résumé\r\nFrom: a@b.example\r\n\r\nbody\r\n".encode()
    raw = make(Reply(550, EnhancedCode(5, 1, 1), "utilisateur inconnu: é"), original=original)
    message = parse(raw)
    _, per_recipient = status_blocks(message)
    assert per_recipient["Diagnostic-Code"] == "smtp; 550 5.1.1 utilisateur inconnu: \\xe9"
    assert "utilisateur inconnu: é" in parts(message)[0].get_content()
    returned = parts(message)[2]
    assert returned.get_content_type() == "message/global-headers"
    assert "résumé".encode() in raw
    assert b"body\r\n" not in raw


@pytest.mark.parametrize("sender", ["", "<>", " <> ", "\r\n"])
def test_no_dsn_for_null_sender(sender: str) -> None:
    assert not should_generate(sender)
    with pytest.raises(ValueError, match="null sender"):
        make(sender=sender)


@pytest.mark.parametrize("sender", ["alice@sender.example", "<alice@sender.example>"])
def test_dsn_for_real_sender(sender: str) -> None:
    assert should_generate(sender)
    message = parse(make(sender=sender))
    assert message["To"].addresses[0].addr_spec == "alice@sender.example"


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown DSN kind"):
        make(kind="Delivery")


def test_naive_datetimes_are_utc() -> None:
    raw = build_dsn(
        original=ORIGINAL,
        sender="a@b.example",
        recipient="c@d.example",
        kind="Bounce",
        reply=Reply(550, None, "no"),
        reporting_mta="mta.example",
        arrival=datetime(2025, 1, 2, 3, 4, 5),
        remote_mta=None,
    )
    per_message, per_recipient = status_blocks(parse(raw))
    assert per_message["Arrival-Date"] == "Thu, 02 Jan 2025 03:04:05 +0000"
    assert per_recipient["Last-Attempt-Date"] is None
    assert per_recipient["Status"] == "5.0.0"
