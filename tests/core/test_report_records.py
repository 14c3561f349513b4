"""OOB and Feedback records made from an inbound report and the Reception record of its
message, by KumoMTA's rules, as their log lines show them (through the one codec)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from kumoclient.core import log_record
from kumoclient.core.arf_report import parse_arf
from kumoclient.core.dsn_report import (
    Action,
    DiagnosticCode,
    DsnReport,
    PerRecipient,
    Recipient,
    Status,
    parse_dsn,
)
from kumoclient.core.report_records import feedback_record, oob_records, oob_response
from kumoclient.logs import encode_record
from kumoclient.records import FINAL_TYPES, ArfReport, EnhancedCode, LogRecord, RecordType, Reply
from kumoclient.testing import records as testing_records
from tests.core.reports import sample

NOW = 1_709_700_000.0
RECEPTION = LogRecord(
    RecordType.RECEPTION,
    id="00112233445566778899aabbccddeeff",
    sender="",
    recipient="bounces+7f3a91@bounce.example.com",
    queue="bounce.example.com",
    when=NOW - 1,
    created=NOW - 1,
    size=2834,
    response=Reply(250, None, ""),
    peer_address=("mail-sor-f69.google.com", "209.85.220.69"),
    meta={"tenant": "inbound"},
    nodeid="node",
    tls=("TLSv1.3", "TLS_AES_256_GCM_SHA384"),
)


def dsn(name: str) -> DsnReport:
    found = parse_dsn(sample(name))
    assert found is not None
    return found


def line(record: LogRecord) -> dict[str, object]:
    """The record as its log line holds it."""
    fields = json.loads(encode_record(record))
    assert isinstance(fields, dict)
    return fields


def test_an_oob_record_has_kumomtas_fields() -> None:
    [record] = oob_records(RECEPTION, dsn("constructed-gmail-failed.eml"), NOW)
    fields = line(record)
    assert fields["type"] == "OOB"
    assert fields["id"] == RECEPTION.id
    assert fields["sender"] == "bounces+7f3a91@bounce.example.com"  # the report's recipient
    assert fields["recipient"] == "no.such.user@example.org"
    assert fields["response"] == {
        "code": 550,
        "enhanced_code": {"class": 5, "subject": 1, "detail": 1},
        "content": "550-5.1.1 The email account that you tried to reach does not exist. Please try"
        " 550-5.1.1 double-checking the recipient's email address for typos or 550-5.1.1"
        " unnecessary spaces. For more information, go to 550 5.1.1 "
        " https://support.google.com/mail/?p=NoSuchUser a1b2c3d4e5f6.7 - gsmtp",
        "command": None,
    }
    assert fields["peer_address"] == {"name": "googlemail.com", "addr": "209.85.220.69"}
    when = datetime(2024, 3, 5, 17, 14, 3, tzinfo=UTC)  # Last-Attempt-Date
    assert (fields["timestamp"], fields["event_time"]) == (
        int(when.timestamp()),
        "2024-03-05T17:14:03.000000Z",
    )
    assert (fields["size"], fields["num_attempts"]) == (0, 0)
    assert (fields["queue"], fields["created"], fields["meta"]) == (
        "bounce.example.com",
        int(NOW - 1),
        {"tenant": "inbound"},
    )
    assert "tls_cipher" not in fields
    assert "feedback_report" not in fields
    assert log_record.decode(fields) == record


OOB_BY_SAMPLE = [
    ("rfc3464-simple.eml", [("louisl@larry.slip.umd.edu", 426, "4.0.0", "connection timed out")]),
    (
        "rfc3464-multi-recipient.eml",
        [
            (
                "arathib@vnet.ibm.com",
                550,
                "5.0.0",
                "'arathib@vnet.IBM.COM' is not a registered gateway user",
            ),
            ("wsnell@sdcc13.ucsd.edu", 550, "5.0.0", "user unknown"),
        ],
    ),
    ("rfc3464-gateway.eml", [("nair_s", 550, "5.0.0", "")]),
    ("rfc3464-delayed.eml", []),
    ("constructed-gmail-delayed.eml", []),
    (
        "constructed-yahoo-failed.eml",
        [
            (
                "gone.reader@yahoo.com",
                554,
                "5.0.0",
                "delivery error: dd This user doesn't have a yahoo.com account"
                " (gone.reader@yahoo.com) [0] - mta4032.mail.gq1.yahoo.com",
            )
        ],
    ),
    (
        "constructed-microsoft-failed.eml",
        [
            (
                "missing@contoso.com",
                550,
                "5.1.10",
                "5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient missing@contoso.com"
                " not found by SMTP address lookup",
            ),
            (
                "someone@fabrikam.example",
                554,
                "5.4.4",
                "5.4.4 SMTPSEND.DNS.NonExistentDomain; nonexistent domain",
            ),
        ],
    ),
]


@pytest.mark.parametrize(("name", "expected"), OOB_BY_SAMPLE, ids=[s[0] for s in OOB_BY_SAMPLE])
def test_one_oob_record_per_failed_recipient_and_none_for_the_others(
    name: str, expected: list[tuple[str, int, str, str]]
) -> None:
    records = [line(record) for record in oob_records(RECEPTION, dsn(name), NOW)]
    got = []
    for fields in records:
        response = fields["response"]
        assert isinstance(response, dict)
        enhanced = response["enhanced_code"]
        code = f"{enhanced['class']}.{enhanced['subject']}.{enhanced['detail']}"
        got.append((fields["recipient"], response["code"], code, response["content"]))
    assert got == expected


def test_the_original_recipient_wins_over_the_final_one_and_time_defaults_to_now() -> None:
    entry = PerRecipient(
        final_recipient=Recipient("rfc822", "alias-target@example.org"),
        action=Action.FAILED,
        status=Status(5, 2, 2, "(mailbox full)"),
        original_recipient=Recipient("rfc822", "alias@example.org"),
    )
    report = replace(dsn("rfc3464-simple.eml"), per_recipient=(entry,))
    [record] = oob_records(replace(RECEPTION, peer_address=None), report, NOW)
    assert (record.recipient, record.when) == ("alias@example.org", NOW)
    assert record.response == Reply(550, EnhancedCode(5, 2, 2), "")
    assert record.peer_address == ("cs.utk.edu", "0.0.0.0")  # no peer known


@pytest.mark.parametrize(
    ("diagnostic", "code", "content"),
    [
        (DiagnosticCode("smtp", "550 5.1.1 no such user"), 550, "5.1.1 no such user"),
        (DiagnosticCode("SMTP", "552 over quota"), 552, "over quota"),
        (DiagnosticCode("smtp", "550-5.1.1 one 550 5.1.1 two"), 550, "550-5.1.1 one 550 5.1.1 two"),
        (DiagnosticCode("smtp", "host mx says: 550 no"), 550, "host mx says: 550 no"),
        (DiagnosticCode("smtp", "421"), 550, "421"),
        (DiagnosticCode("smtp", "99999 too big"), 550, "99999 too big"),
        (DiagnosticCode("smtp", "4\uff121 not ascii"), 550, "4\uff121 not ascii"),  # a wide 2
        (DiagnosticCode("X-Postfix", "host mx said: 550 no"), 550, ""),
        (None, 550, ""),
    ],
)
def test_the_response_comes_from_an_smtp_diagnostic_split_at_the_first_space(
    diagnostic: DiagnosticCode | None, code: int, content: str
) -> None:
    entry = PerRecipient(
        Recipient("rfc822", "a@b"), Action.FAILED, Status(5, 0, 0), diagnostic_code=diagnostic
    )
    assert oob_response(entry) == Reply(code, EnhancedCode(5, 0, 0), content)


def test_a_feedback_record_is_the_reception_record_with_the_report() -> None:
    report = parse_arf(sample("constructed-yahoo-arf.eml"))
    assert report is not None
    record = feedback_record(RECEPTION, report)
    fields = line(record)
    reception = line(RECEPTION)
    assert fields["type"] == "Feedback"
    for name in ("id", "sender", "recipient", "response", "peer_address", "size", "meta"):
        assert fields[name] == reception[name], name
    feedback = fields["feedback_report"]
    assert isinstance(feedback, dict)
    assert feedback["original_rcpto_to"] == ["reader@yahoo.com"]
    assert feedback["supplemental_trace"] == {
        "recipient": "reader@yahoo.com",
        "tenant": "newsletters",
        "campaign": "march",
    }
    assert log_record.decode(fields) == record


def test_oob_and_feedback_records_do_not_end_the_report_messages_life() -> None:
    """They carry the report message's own id, and with `LogThenRelay` that message is still
    delivered afterwards: as final types they would settle the wait for its outcome (and a
    test's `final`) on the report instead of on its Delivery."""
    records = [
        *oob_records(RECEPTION, dsn("rfc3464-multi-recipient.eml"), NOW),
        feedback_record(RECEPTION, ArfReport("abuse", "Gen/1.0", "1")),
    ]
    assert {record.id for record in records} == {RECEPTION.id}
    assert {record.type for record in records} == {RecordType.OOB, RecordType.FEEDBACK}
    assert [record for record in records if record.type in FINAL_TYPES] == []
    assert not any(testing_records.LogRecord.from_record(line(record)).final for record in records)
