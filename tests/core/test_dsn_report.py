"""RFC 3464 delivery status reports read into KumoMTA's structure: the RFC's examples, bounces
shaped like Gmail's, Yahoo's and Microsoft's, kumoclient's own DSNs, and what is not a report."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from kumoclient.core.dsn import build_dsn
from kumoclient.core.dsn_report import Action, DsnReport, PerRecipient, dsn_json, parse_dsn
from kumoclient.errors import ReportError
from kumoclient.records import EnhancedCode, RemoteMta, Reply
from tests.core.reports import FAILED, PER_MESSAGE, report, sample


def parsed(name: str) -> DsnReport:
    found = parse_dsn(sample(name))
    assert found is not None
    return found


def test_the_rfc_simple_example_has_kumomtas_whole_shape() -> None:
    assert dsn_json(parsed("rfc3464-simple.eml")) == {
        "per_message": {
            "original_envelope_id": None,
            "reporting_mta": {"mta_type": "dns", "name": "cs.utk.edu"},
            "dsn_gateway": None,
            "received_from_mta": None,
            "arrival_date": None,
            "extensions": {},
        },
        "per_recipient": [
            {
                "final_recipient": {
                    "recipient_type": "rfc822",
                    "recipient": "louisl@larry.slip.umd.edu",
                },
                "action": "failed",
                "status": {"class": 4, "subject": 0, "detail": 0, "comment": None},
                "original_recipient": {
                    "recipient_type": "rfc822",
                    "recipient": "louisl@larry.slip.umd.edu",
                },
                "remote_mta": None,
                "diagnostic_code": {
                    "diagnostic_type": "smtp",
                    "diagnostic": "426 connection timed out",
                },
                "last_attempt_date": "1994-07-07T21:15:49Z",
                "final_log_id": None,
                "will_retry_until": None,
                "extensions": {},
            }
        ],
        "original_message": "[original message goes here]\n",
    }


def summary(entry: PerRecipient) -> tuple[str, str | None, str, str, str | None]:
    """(final recipient, original recipient, action, status with comment, diagnostic)."""
    status = entry.status
    code = f"{status.klass}.{status.subject}.{status.detail}"
    diagnostic = entry.diagnostic_code
    return (
        f"{entry.final_recipient.recipient_type};{entry.final_recipient.recipient}",
        None if entry.original_recipient is None else entry.original_recipient.recipient,
        entry.action.value,
        code if status.comment is None else f"{code} {status.comment}",
        None if diagnostic is None else f"{diagnostic.diagnostic_type}; {diagnostic.diagnostic}",
    )


GMAIL_DIAGNOSTIC = (
    "smtp; 550-5.1.1 The email account that you tried to reach does not exist. Please try"
    " 550-5.1.1 double-checking the recipient's email address for typos or 550-5.1.1"
    " unnecessary spaces. For more information, go to 550 5.1.1 "
    " https://support.google.com/mail/?p=NoSuchUser a1b2c3d4e5f6.7 - gsmtp"
)

ENTRIES: list[tuple[str, str, list[tuple[str, str | None, str, str, str | None]]]] = [
    (
        "rfc3464-multi-recipient.eml",
        "dns; cs.utk.edu",
        [
            (
                "rfc822;arathib@vnet.ibm.com",
                "arathib@vnet.ibm.com",
                "failed",
                "5.0.0 (permanent failure)",
                "smtp; 550 'arathib@vnet.IBM.COM' is not a registered gateway user",
            ),
            (
                "rfc822;johnh@hpnjld.njd.hp.com",
                "johnh@hpnjld.njd.hp.com",
                "delayed",
                "4.0.0 (hpnjld.njd.jp.com: host name lookup failure)",
                None,
            ),
            (
                "rfc822;wsnell@sdcc13.ucsd.edu",
                "wsnell@sdcc13.ucsd.edu",
                "failed",
                "5.0.0",
                "smtp; 550 user unknown",
            ),
        ],
    ),
    (
        "rfc3464-gateway.eml",
        "mailbus; SYS30",
        [("unknown;nair_s", None, "failed", "5.0.0 (unknown permanent failure)", None)],
    ),
    (
        "rfc3464-delayed.eml",
        "dns; sun2.nsfnet-relay.ac.uk",
        [
            (
                "rfc822;thomas@de-montfort.ac.uk",
                None,
                "delayed",
                "4.0.0 (unknown temporary failure)",
                None,
            )
        ],
    ),
    (
        "constructed-gmail-failed.eml",
        "dns; googlemail.com",
        [("rfc822;no.such.user@example.org", None, "failed", "5.1.1", GMAIL_DIAGNOSTIC)],
    ),
    (
        "constructed-gmail-delayed.eml",
        "dns; googlemail.com",
        [
            (
                "rfc822;slow.host@example.net",
                None,
                "delayed",
                "4.4.1",
                "smtp; The recipient server did not accept our requests to connect. "
                " [mx.example.net. 198.51.100.7: timed out]",
            )
        ],
    ),
    (
        "constructed-yahoo-failed.eml",
        "dns; mta4032.mail.gq1.yahoo.com",
        [
            (
                "rfc822;gone.reader@yahoo.com",
                "gone.reader@yahoo.com",
                "failed",
                "5.0.0",
                "smtp; 554 delivery error: dd This user doesn't have a yahoo.com account"
                " (gone.reader@yahoo.com) [0] - mta4032.mail.gq1.yahoo.com",
            )
        ],
    ),
    (
        "constructed-microsoft-failed.eml",
        "dns; DM6PR11MB1234.namprd11.prod.outlook.com",
        [
            (
                "rfc822;missing@contoso.com",
                "missing@contoso.com",
                "failed",
                "5.1.10",
                "smtp; 550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient missing@contoso.com"
                " not found by SMTP address lookup",
            ),
            (
                "rfc822;someone@fabrikam.example",
                None,
                "failed",
                "5.4.4",
                "smtp; 554 5.4.4 SMTPSEND.DNS.NonExistentDomain; nonexistent domain",
            ),
        ],
    ),
]


@pytest.mark.parametrize(("name", "reporting_mta", "entries"), ENTRIES, ids=[e[0] for e in ENTRIES])
def test_each_recipient_entry_is_read_unfolded(
    name: str, reporting_mta: str, entries: list[tuple[str, str | None, str, str, str | None]]
) -> None:
    found = parsed(name)
    mta = found.per_message.reporting_mta
    assert f"{mta.mta_type}; {mta.name}" == reporting_mta
    assert [summary(entry) for entry in found.per_recipient] == entries


def test_dates_are_read_in_any_zone_and_written_in_utc() -> None:
    gmail = dsn_json(parsed("constructed-gmail-delayed.eml"))
    entry = gmail["per_recipient"][0]  # type: ignore[index]
    assert gmail["per_message"]["arrival_date"] == "2024-03-05T17:14:02Z"  # type: ignore[index]
    assert entry["last_attempt_date"] == "2024-03-06T17:15:12Z"
    assert entry["will_retry_until"] == "2024-03-07T17:14:02Z"


def test_fields_the_rfc_does_not_define_are_extensions_by_lower_case_name() -> None:
    gmail, microsoft = (
        parsed("constructed-gmail-failed.eml"),
        parsed("constructed-microsoft-failed.eml"),
    )
    assert gmail.per_message.extensions == {
        "x-original-message-id": ("<20240305171400.4d2c@news.example.com>",)
    }
    assert gmail.per_message.received_from_mta == RemoteMta("dns", "news.example.com")
    assert [entry.extensions for entry in microsoft.per_recipient] == [
        {"x-display-name": ("missing@contoso.com",)},
        {"x-display-name": ("Someone",)},
    ]


def test_the_returned_message_is_kept_as_sent() -> None:
    # the message/rfc822 part, not parsed and written again (which would change its headers)
    assert parsed("constructed-gmail-failed.eml").original_message == (
        b"Return-Path: <bounces+7f3a91@bounce.example.com>\n"
        b"From: Example News <news@example.com>\n"
        b"To: no.such.user@example.org\n"
        b"Subject: Your March newsletter\n"
        b"Message-ID: <20240305171400.4d2c@news.example.com>\n"
        b"Date: Tue, 05 Mar 2024 17:14:00 +0000\n"
        b"MIME-Version: 1.0\n"
        b'Content-Type: text/plain; charset="UTF-8"\n'
        b"\n"
        b"Hello, here is the news.\n"
    )
    assert parsed("rfc3464-gateway.eml").original_message is None


def test_crlf_and_lf_line_endings_read_the_same() -> None:
    crlf = sample("constructed-microsoft-failed.eml")
    assert b"\r\n" in crlf
    assert parse_dsn(crlf) == parse_dsn(crlf.replace(b"\r\n", b"\n"))


def test_kumoclients_own_dsn_reads_back() -> None:
    dsn = build_dsn(
        original=b"From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n",
        sender="a@example.com",
        recipient="b@example.net",
        kind="Bounce",
        reply=Reply(550, EnhancedCode(5, 1, 1), "no such user"),
        reporting_mta="mta.example.com",
        arrival=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        remote_mta="mx.example.net",
        attempted=datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC),
    )
    found = parse_dsn(dsn)
    assert found is not None
    assert found.per_message.reporting_mta == RemoteMta("dns", "mta.example.com")
    assert found.per_message.arrival_date == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
    [entry] = found.per_recipient
    assert summary(entry) == (
        "rfc822;b@example.net",
        "b@example.net",
        "failed",
        "5.1.1",
        "smtp; 550 5.1.1 no such user",
    )
    assert entry.remote_mta == RemoteMta("dns", "mx.example.net")
    assert found.original_message == b"From: a@example.com\nSubject: hi\n"


@pytest.mark.parametrize(
    "message",
    [
        sample("constructed-yahoo-plain-notice.eml"),
        sample("rfc5965-complete.eml"),  # a feedback report is not this kind of report
        report(PER_MESSAGE + "\n" + FAILED, report_type="disposition-notification"),
        report("just text", report_type=None, part_type="text/plain"),
        b"Content-Type: multipart/mixed; boundary=B\n\n--B\n\nhello\n--B--\n",
        b"",
        b"\x00\xff\xfe garbage \r\n\r\n\x80",
    ],
    ids=["plain-text", "arf", "mdn", "no-type-no-part", "mixed", "empty", "garbage"],
)
def test_a_message_that_is_not_a_delivery_status_report_gives_none(message: bytes) -> None:
    assert parse_dsn(message) is None


def test_a_report_without_report_type_is_read_when_it_has_a_status_part() -> None:
    found = parse_dsn(report(PER_MESSAGE + "\n" + FAILED, report_type=None))
    assert found is not None
    assert found.per_recipient[0].final_recipient.recipient == "user@example.org"


def malformed(block: str) -> bytes:
    return report(PER_MESSAGE + "\n" + block)


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (report("", part_type="text/plain"), None),  # says delivery-status, has no such part
        (report("\n \n"), "reporting-mta"),
        (report("Arrival-Date: Tue, 5 Mar 2024 14:02:11 +0000\n\n" + FAILED), "reporting-mta"),
        (report("Reporting-MTA: mx.example.net\n\n" + FAILED), "reporting-mta"),
        (malformed(FAILED.replace("Final-Recipient", "X-Recipient")), "final-recipient"),
        (malformed(FAILED.replace("Action: failed\n", "")), "action"),
        (malformed(FAILED.replace("Status: 5.1.1\n", "")), "status"),
        (malformed(FAILED.replace("failed", "bounced")), "action"),
        (malformed(FAILED.replace("5.1.1\n", "5.x.1\n")), "status"),
        (malformed(FAILED.replace("5.1.1\n", "5.1.99999\n")), "status"),
        (malformed(FAILED.replace("rfc822; ", "rfc822 ")), "final-recipient"),
        (malformed(FAILED + "Status: 5.1.2\n"), "status"),
        (malformed(FAILED.replace("smtp; ", "")), "diagnostic-code"),
        (malformed(FAILED + "Remote-MTA: mx.example.org\n"), "remote-mta"),
        (malformed("this line is not a field\n" + FAILED), None),
        (malformed(" continued before any field\n" + FAILED), None),
    ],
)
def test_a_malformed_report_raises_report_error_naming_the_field(
    message: bytes, field: str | None
) -> None:
    with pytest.raises(ReportError) as raised:
        parse_dsn(message)
    assert raised.value.report == "delivery-status"
    assert raised.value.field == field


@pytest.mark.parametrize(
    "date", ["yesterday", "Thu, 32 Foo 2024 99:99:99 +0000", "Fri, 30 Feb 2024 10:00:00 +0000"]
)
def test_a_date_that_cannot_be_read_is_none_and_the_report_stands(date: str) -> None:
    found = parse_dsn(
        report(
            f"{PER_MESSAGE}Arrival-Date: {date}\n\n{FAILED}Last-Attempt-Date: {date}\n"
            f"Will-Retry-Until: {date}\n"
        )
    )
    assert found is not None
    entry = found.per_recipient[0]
    assert (found.per_message.arrival_date, entry.last_attempt_date, entry.will_retry_until) == (
        None,
        None,
        None,
    )
    assert entry.extensions == {}  # a known field, not an extension


def test_case_brackets_and_blank_line_runs_are_forgiven() -> None:
    status = (
        "Reporting-MTA: DNS; mx.example.net\n \n\t\n\n"
        "Final-Recipient: RFC822; <user@example.org>\nAction: FAILED\nStatus: 5.1.1\n"
    )
    found = parse_dsn(report(status))
    assert found is not None
    [entry] = found.per_recipient
    assert entry.action is Action.FAILED
    assert (entry.final_recipient.recipient_type, entry.final_recipient.recipient) == (
        "RFC822",
        "user@example.org",
    )


def test_eight_bit_junk_becomes_replacement_characters_and_the_original_stays_bytes() -> None:
    status = (PER_MESSAGE + "\n" + FAILED).encode() + b"X-Junk: caf\xe9 \xff\xfe\n"
    found = parse_dsn(report(status, original=b"Subject: \xff\n\nbody \xe9\n"))
    assert found is not None
    assert found.per_recipient[0].extensions == {"x-junk": ("caf\ufffd \ufffd\ufffd",)}
    assert found.original_message == b"Subject: \xff\n\nbody \xe9\n"
    assert dsn_json(found)["original_message"] == list(b"Subject: \xff\n\nbody \xe9\n")


def test_utf8_status_fields_and_encoded_words_are_decoded() -> None:
    status = PER_MESSAGE + "X-Note: =?utf-8?q?caf=C3=A9?=\n\n" + FAILED + "X-Name: José\n"
    found = parse_dsn(report(status.encode(), part_type="message/global-delivery-status"))
    assert found is not None
    assert found.per_message.extensions == {"x-note": ("café",)}
    assert found.per_recipient[0].extensions == {"x-name": ("José",)}


def test_a_base64_encoded_status_part_is_decoded() -> None:
    encoded = base64.encodebytes((PER_MESSAGE + "\n" + FAILED).encode()).decode()
    headers = "Content-Transfer-Encoding: base64"
    found = parse_dsn(
        report(encoded, part_type="message/global-delivery-status", part_headers=headers)
    )
    assert found is not None
    assert found.per_recipient[0].final_recipient.recipient == "user@example.org"


def test_huge_headers_and_fields_are_read_whole() -> None:
    diagnostic = "x" * 1_000_000
    status = PER_MESSAGE + "\n" + FAILED.replace("no such user", diagnostic)
    headers = b"".join(b"X-Filler-%d: %s\n" % (n, b"y" * 100) for n in range(10_000))
    message = headers + b"Subject: " + b"z" * 1_000_000 + b"\n" + report(status)
    found = parse_dsn(message)
    assert found is not None
    code = found.per_recipient[0].diagnostic_code
    assert code is not None
    assert code.diagnostic == "550 5.1.1 " + diagnostic


def test_a_field_folded_over_many_lines_is_read_as_one_value() -> None:
    folded = "Diagnostic-Code: smtp; 550" + "".join(f"\n  part{n}" for n in range(50_000))
    found = parse_dsn(report(PER_MESSAGE + "\n" + FAILED.replace(FAILED.splitlines()[3], folded)))
    assert found is not None
    code = found.per_recipient[0].diagnostic_code
    assert code is not None
    assert code.diagnostic == "550 " + " ".join(f"part{n}" for n in range(50_000))
