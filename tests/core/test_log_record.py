"""The one codec of log records: a typed record to one valid UTF-8 JSON line and back."""

from __future__ import annotations

import datetime
import json

import pytest

from kumoclient.core import log_record
from kumoclient.core.log_record import rfc3339
from kumoclient.errors import LogRecordError
from kumoclient.logs import encode_record
from kumoclient.records import ArfReport, EnhancedCode, LogRecord, RecordType, RemoteMta, Reply

BOUNCE = LogRecord(
    RecordType.BOUNCE,
    id="0123456789abcdef0123456789abcdef",
    sender="a@example.com",
    recipient="b@example.net",
    queue="camp:tenant@example.net",
    when=1700000000.25,
    created=1699999000.5,
    size=1234,
    site="unspecified->mx.example.net@smtp_client",
    response=Reply(500, EnhancedCode(4, 2, 2), "over quota.\nsecond line", "RCPT TO:<b@x>\r\n"),
    peer_address=("mx.example.net", "10.0.0.1:25"),
    num_attempts=2,
    meta={"tenant": "tenant", "campaign": "camp"},
    nodeid="node",
    tls=("TLSv1.3", "TLS_AES_256_GCM_SHA384"),
)


def test_a_record_is_one_json_line_with_kumomta_field_names() -> None:
    line = encode_record(BOUNCE)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    fields = json.loads(line)
    assert fields["type"] == "Bounce"
    assert fields["response"] == {
        "code": 500,
        "enhanced_code": {"class": 4, "subject": 2, "detail": 2},
        "content": "over quota. second line",
        "command": "RCPT TO:<b@x>\r\n",
    }
    assert fields["peer_address"] == {"name": "mx.example.net", "addr": "10.0.0.1:25"}
    assert fields["timestamp"] == 1700000000
    assert fields["event_time"] == "2023-11-14T22:13:20.250000Z"
    assert fields["tls_protocol_version"] == "TLSv1.3"


def test_decoding_what_was_encoded_gives_the_record_back() -> None:
    decoded = log_record.decode(json.loads(encode_record(BOUNCE)))
    assert decoded.response is not None
    assert decoded.response.content == "over quota. second line"  # written as one line
    assert decoded == LogRecord(
        **{
            **{name: getattr(BOUNCE, name) for name in BOUNCE.__dataclass_fields__},
            "response": decoded.response,
        }
    )
    assert decoded.when == pytest.approx(BOUNCE.when)


def test_a_record_without_tls_or_peer_has_no_tls_fields_and_a_null_peer() -> None:
    reception = LogRecord(RecordType.RECEPTION, "i", "a@x", "b@y", "y", when=1.0, created=1.0)
    fields = json.loads(encode_record(reception))
    assert "tls_cipher" not in fields
    assert fields["peer_address"] is None
    assert fields["response"] is None
    assert log_record.decode(fields).tls is None


def test_text_that_is_not_valid_utf8_still_makes_a_valid_line() -> None:
    # a server's reply with invalid UTF-8 arrives decoded with surrogate escapes
    bad = b"bad \xff byte".decode("utf-8", "surrogateescape")
    record = LogRecord(
        RecordType.BOUNCE,
        "i",
        "a@x",
        "b@y",
        "y",
        when=1.0,
        created=1.0,
        response=Reply(550, None, bad),
    )
    line = encode_record(record)
    line.decode("utf-8")  # valid UTF-8
    assert json.loads(line)["response"]["content"] == "bad \udcff byte"


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ([], "JSON object"),
        ({"type": "Nope"}, "type"),
        ({"type": "Bounce", "id": 7}, "id"),
        ({**json.loads(encode_record(BOUNCE)), "response": {"code": "500"}}, "response.code"),
        ({**json.loads(encode_record(BOUNCE)), "num_attempts": "two"}, "num_attempts"),
        (
            {**json.loads(encode_record(BOUNCE)), "response": {"code": 500, "enhanced_code": 4}},
            "response.enhanced_code",
        ),
    ],
)
def test_a_malformed_record_is_refused_naming_the_field(fields: object, named: str) -> None:
    with pytest.raises(LogRecordError, match=named):
        log_record.decode(fields)


@pytest.mark.parametrize("when", [0.0, 1700000000.0, 1700000000.5, 1700000000.123456])
def test_event_times_are_rfc3339_with_microseconds(when: float) -> None:
    expected = datetime.datetime.fromtimestamp(when, datetime.UTC)
    assert rfc3339(when) == expected.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- OOB and Feedback (KumoMTA's feedback_report) ----------------------------------------

COMPLAINT = ArfReport(
    feedback_type="abuse",
    user_agent="Yahoo!-Mail-Feedback/2.0",
    version="0.1",
    arrival_date=1709659200.0,
    incidents=2,
    original_mail_from="bounces@bounce.example.com",
    reporting_mta=RemoteMta("dns", "mta1.yahoo.com"),
    source_ip="203.0.113.9",
    authentication_results=("yahoo.com; dkim=pass",),
    original_rcpto_to=("reader@yahoo.com",),
    reported_domain=("bounce.example.com",),
    reported_uri=("mailto:unsub@example.com",),
    extensions={"abuse-type": ("complaint",)},
    original_message=b"Subject: hi\n\nbody\n",
    supplemental_trace={"recipient": "reader@yahoo.com", "tenant": "news"},
)
FEEDBACK = LogRecord(
    RecordType.FEEDBACK, "i", "a@x", "fbl@y", "y", when=1.0, created=1.0, feedback_report=COMPLAINT
)


def test_a_feedback_record_carries_kumomtas_feedback_report_object() -> None:
    fields = json.loads(encode_record(FEEDBACK))
    assert fields["type"] == "Feedback"
    assert fields["feedback_report"] == {
        "feedback_type": "abuse",
        "user_agent": "Yahoo!-Mail-Feedback/2.0",
        "version": "0.1",
        "arrival_date": "2024-03-05T17:20:00Z",
        "incidents": 2,
        "original_envelope_id": None,
        "original_mail_from": "bounces@bounce.example.com",
        "reporting_mta": {"mta_type": "dns", "name": "mta1.yahoo.com"},
        "source_ip": "203.0.113.9",
        "authentication_results": ["yahoo.com; dkim=pass"],
        "original_rcpto_to": ["reader@yahoo.com"],
        "reported_domain": ["bounce.example.com"],
        "reported_uri": ["mailto:unsub@example.com"],
        "extensions": {"abuse-type": ["complaint"]},
        "original_message": "Subject: hi\n\nbody\n",
        "supplemental_trace": {"recipient": "reader@yahoo.com", "tenant": "news"},
    }
    assert log_record.decode(fields) == FEEDBACK


def test_an_original_message_that_is_not_utf8_is_written_as_byte_values() -> None:
    record = LogRecord(
        RecordType.FEEDBACK,
        "i",
        "a@x",
        "fbl@y",
        "y",
        when=1.0,
        created=1.0,
        feedback_report=ArfReport("abuse", "Gen/1.0", "1", original_message=b"caf\xe9"),
    )
    fields = json.loads(encode_record(record))
    assert fields["feedback_report"]["original_message"] == [99, 97, 102, 233]
    assert log_record.decode(fields) == record


def test_records_without_a_report_have_no_feedback_report_field() -> None:
    oob = LogRecord(RecordType.OOB, "i", "bounces@x", "gone@y", "x", when=1.0, created=1.0)
    fields = json.loads(encode_record(oob))
    assert (fields["type"], "feedback_report" in fields) == ("OOB", False)
    assert log_record.decode(fields) == oob
    assert log_record.decode({**fields, "feedback_report": None}) == oob  # as KumoMTA writes it


def test_a_feedback_report_as_kumomta_writes_it_is_read() -> None:
    written = {
        "feedback_type": "abuse",
        "user_agent": "Gen/1.0",
        "version": "1",
        "extensions": {"x-raw": [[104, 255]]},  # KumoMTA writes non-UTF-8 values as bytes
        "original_message": None,
        "supplemental_trace": None,
    }
    fields = {**json.loads(encode_record(FEEDBACK)), "feedback_report": written}
    report = log_record.decode(fields).feedback_report
    assert report == ArfReport("abuse", "Gen/1.0", "1", extensions={"x-raw": ("h\ufffd",)})


REQUIRED = {"feedback_type": "abuse", "user_agent": "g", "version": "1"}


@pytest.mark.parametrize(
    ("report", "named"),
    [
        ("abuse", "feedback_report"),
        ({"user_agent": "g", "version": "1"}, "feedback_report.feedback_type"),
        ({**REQUIRED, "incidents": "3"}, "feedback_report.incidents"),
        ({**REQUIRED, "reporting_mta": "dns; x"}, "feedback_report.reporting_mta"),
        ({**REQUIRED, "arrival_date": "yesterday"}, "feedback_report.arrival_date"),
        ({**REQUIRED, "original_message": [300]}, "feedback_report.original_message"),
        ({**REQUIRED, "authentication_results": "x"}, "feedback_report.authentication_results"),
        ({**REQUIRED, "extensions": {"x": "y"}}, "feedback_report.extensions"),
        ({**REQUIRED, "supplemental_trace": [1]}, "feedback_report.supplemental_trace"),
    ],
)
def test_a_malformed_feedback_report_is_refused_naming_the_field(
    report: object, named: str
) -> None:
    fields = {**json.loads(encode_record(FEEDBACK)), "feedback_report": report}
    with pytest.raises(LogRecordError, match=named):
        log_record.decode(fields)
