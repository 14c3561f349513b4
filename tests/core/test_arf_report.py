"""RFC 5965 feedback reports read into KumoMTA's `feedback_report`: the RFC's examples,
complaints shaped like Yahoo's and Microsoft's, the supplemental trace header, and what is not
a feedback report."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest

from kumoclient.core.arf_report import parse_arf, supplemental_trace
from kumoclient.errors import ReportError
from kumoclient.records import ArfReport, RemoteMta
from tests.core.reports import report, sample

RFC_ORIGINAL = (
    b"From: <somespammer@example.net>\n"
    b"Received: from mailserver.example.net (mailserver.example.net\n"
    b"        [192.0.2.1]) by example.com with ESMTP id M63d4137594e46;\n"
    b"        Tue, 08 Mar 2005 14:00:00 -0400\n"
    b"To: <Undisclosed Recipients>\n"
    b"Subject: Earn money\n"
    b"MIME-Version: 1.0\n"
    b"Content-type: text/plain\n"
    b"Message-ID: 8787KJKJ3K4J3K4J3K4J3.mail@example.net\n"
    b"Date: Thu, 02 Sep 2004 12:31:03 -0500\n"
    b"\n"
    b"Spam Spam Spam\n"
    b"Spam Spam Spam\n"
    b"Spam Spam Spam\n"
    b"Spam Spam Spam"
)


def test_the_rfc_complete_example_reads_into_every_field() -> None:
    assert parse_arf(sample("rfc5965-complete.eml")) == ArfReport(
        feedback_type="abuse",
        user_agent="SomeGenerator/1.0",
        version="1",
        arrival_date=datetime(2005, 3, 8, 18, 0, 0, tzinfo=UTC).timestamp(),  # 14:00 EDT
        original_mail_from="somespammer@example.net",
        reporting_mta=RemoteMta("dns", "mail.example.com"),
        source_ip="192.0.2.1",
        authentication_results=("mail.example.com; spf=fail smtp.mail=somespammer@example.com",),
        original_rcpto_to=("user@example.com",),
        reported_domain=("example.net",),
        reported_uri=("http://example.net/earn_money.html", "mailto:user@example.com"),
        extensions={"removal-recipient": ("user@example.com",)},
        original_message=RFC_ORIGINAL,
    )


def test_the_rfc_simple_example_has_only_the_required_fields() -> None:
    found = parse_arf(sample("rfc5965-simple.eml"))
    assert found is not None
    assert (found.feedback_type, found.user_agent, found.version) == (
        "abuse",
        "SomeGenerator/1.0",
        "1",
    )
    assert found == ArfReport(
        "abuse", "SomeGenerator/1.0", "1", original_message=found.original_message
    )
    assert found.original_message is not None
    assert found.original_message.startswith(b"Received: from mailserver.example.net\n")


COMPLAINTS = [
    (
        "constructed-yahoo-arf.eml",
        (
            "Yahoo!-Mail-Feedback/2.0",
            "0.1",
            datetime(2024, 3, 5, 17, 20, 0, tzinfo=UTC).timestamp(),  # from Received-Date
            "bounces+5a1e@bounce.example.com",
            ("reader@yahoo.com",),
            ("bounce.example.com",),
            None,
            {},
            {"recipient": "reader@yahoo.com", "tenant": "newsletters", "campaign": "march"},
        ),
    ),
    (
        "constructed-microsoft-arf.eml",
        (
            "Hotmail FBL",
            "0.1",
            datetime(2024, 3, 6, 2, 2, 3, tzinfo=UTC).timestamp(),
            "bounces+6b2f@bounce.example.com",
            ("redacted@hotmail.com",),
            ("bounce.example.com",),
            "203.0.113.9",
            {"x-hmxmroriginalrecipient": ("<c29tZW9uZQ@hotmail.com>",)},
            None,
        ),
    ),
]


@pytest.mark.parametrize(("name", "expected"), COMPLAINTS, ids=[c[0] for c in COMPLAINTS])
def test_provider_shaped_complaints_are_read(name: str, expected: tuple[object, ...]) -> None:
    found = parse_arf(sample(name))
    assert found is not None
    assert found.feedback_type == "abuse"
    assert (
        found.user_agent,
        found.version,
        found.arrival_date,
        found.original_mail_from,
        found.original_rcpto_to,
        found.reported_domain,
        found.source_ip,
        found.extensions,
        found.supplemental_trace,
    ) == expected


@pytest.mark.parametrize(
    "message",
    [
        sample("rfc3464-simple.eml"),
        sample("constructed-yahoo-plain-notice.eml"),
        report("Feedback-Type: abuse\n", report_type=None, part_type="message/feedback-report"),
        report("Feedback-Type: abuse\n", report_type="Delivery-Status"),
        b"Content-Type: message/feedback-report\n\nFeedback-Type: abuse\n",
        b"",
    ],
    ids=["dsn", "plain-text", "no-report-type", "other-report-type", "bare-part", "empty"],
)
def test_a_message_that_is_not_a_feedback_report_gives_none(message: bytes) -> None:
    assert parse_arf(message) is None


REQUIRED = "Feedback-Type: abuse\nUser-Agent: Gen/1.0\nVersion: 1\n"


def arf(fields: str | bytes) -> bytes:
    return report(fields, report_type="feedback-report", part_type="message/feedback-report")


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (report(REQUIRED, report_type="feedback-report", part_type="text/plain"), None),
        (arf(REQUIRED.replace("Feedback-Type: abuse\n", "")), "feedback-type"),
        (arf(REQUIRED.replace("User-Agent: Gen/1.0\n", "")), "user-agent"),
        (arf(REQUIRED.replace("Version: 1\n", "")), "version"),
        (arf(REQUIRED + "Version: 2\n"), "version"),
        (arf(REQUIRED + "Incidents: many\n"), "incidents"),
        (arf(REQUIRED + "Incidents: -1\n"), "incidents"),
        (arf(REQUIRED + "Reporting-MTA: mail.example.com\n"), "reporting-mta"),
        (arf("not a field\n" + REQUIRED), None),
    ],
)
def test_a_malformed_feedback_report_raises_report_error_naming_the_field(
    message: bytes, field: str | None
) -> None:
    with pytest.raises(ReportError) as raised:
        parse_arf(message)
    assert raised.value.report == "feedback-report"
    assert raised.value.field == field


def test_arrival_date_falls_back_to_received_date_and_garbage_is_none() -> None:
    received = "Received-Date: Tue, 5 Mar 2024 17:20:00 +0000\n"
    fallback = parse_arf(arf(REQUIRED + "Arrival-Date: someday\n" + received))
    neither = parse_arf(arf(REQUIRED + "Arrival-Date: someday\nReceived-Date: never\n"))
    assert fallback is not None
    assert neither is not None
    assert fallback.arrival_date == datetime(2024, 3, 5, 17, 20, tzinfo=UTC).timestamp()
    assert (neither.arrival_date, neither.extensions) == (None, {})


def test_the_fields_are_the_first_block_of_the_part() -> None:
    found = parse_arf(arf("\n\n" + REQUIRED + "Incidents: 3\n\nX-Later: ignored\n"))
    assert found is not None
    assert (found.incidents, found.extensions) == (3, {})


def test_eight_bit_junk_in_fields_becomes_replacement_characters() -> None:
    found = parse_arf(arf(REQUIRED.encode() + b"X-Junk: \xff\xfe ok\n"))
    assert found is not None
    assert found.extensions == {"x-junk": ("\ufffd\ufffd ok",)}


def test_a_base64_encoded_feedback_part_is_decoded() -> None:
    encoded = base64.encodebytes(REQUIRED.encode()).decode()
    message = report(
        encoded,
        report_type="feedback-report",
        part_type="message/feedback-report",
        part_headers="Content-Transfer-Encoding: base64",
    )
    found = parse_arf(message)
    assert found == ArfReport("abuse", "Gen/1.0", "1")


def test_huge_fields_are_read_whole() -> None:
    uri = "http://example.net/" + "a" * 1_000_000
    found = parse_arf(arf(REQUIRED + f"Reported-Uri: {uri}\n"))
    assert found is not None
    assert found.reported_uri == (uri,)


def trace_header(payload: object, name: str = "X-KumoRef") -> bytes:
    encoded = base64.b64encode(json.dumps(payload).encode())
    return b"%s: %s\nSubject: hi\n\nbody\n" % (name.encode(), encoded)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (trace_header({"_@_": "\\_/", "recipient": "a@b", "n": 1}), {"recipient": "a@b", "n": 1}),
        (trace_header({"_@_": "\\_/"}, name="x-anything"), {}),
        (trace_header({"_@_": "other", "recipient": "a@b"}), None),
        (trace_header({"recipient": "a@b"}), None),
        (trace_header(["_@_", "\\_/"]), None),
        (trace_header({"_@_": "\\_/", "recipient": "a@b"}, name="Subject"), None),
        (b"X-KumoRef: not base64 at all!\n\nbody\n", None),
        (b"X-KumoRef: " + base64.b64encode(b"not json") + b"\n\nbody\n", None),
        (b"X-KumoRef: " + base64.b64encode(b"\xff\xfe{") + b"\n\nbody\n", None),
        (b"[original message goes here]\n", None),
        (
            trace_header({"_@_": "\\_/", "first": True}).replace(b"\n\nbody", b"")
            + trace_header({"_@_": "\\_/", "second": True}),
            {"first": True},
        ),
    ],
)
def test_the_supplemental_trace_header_is_decoded_only_when_it_is_one(
    headers: bytes, expected: dict[str, object] | None
) -> None:
    assert supplemental_trace(headers) == expected


def test_a_folded_supplemental_trace_header_still_decodes() -> None:
    found = parse_arf(sample("constructed-yahoo-arf.eml"))
    assert found is not None
    assert found.original_message is not None
    assert b"X-KumoRef: eyJfQF8i" in found.original_message  # the header is folded there
    assert found.supplemental_trace == {
        "recipient": "reader@yahoo.com",
        "tenant": "newsletters",
        "campaign": "march",
    }
