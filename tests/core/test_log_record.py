"""The one codec of log records: a typed record to one valid UTF-8 JSON line and back."""

from __future__ import annotations

import datetime
import json

import pytest

from kumoclient.core import log_record
from kumoclient.core.log_record import rfc3339
from kumoclient.errors import LogRecordError
from kumoclient.logs import encode_record
from kumoclient.records import EnhancedCode, LogRecord, RecordType, Reply

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
