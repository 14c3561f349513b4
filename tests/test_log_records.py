"""Encoding of log records: one valid UTF-8 JSON line each, whatever the text inside."""

from __future__ import annotations

import datetime
import json

import pytest

from kumoclient.logs import _rfc3339, encode_record


def test_a_record_is_one_json_line() -> None:
    record = {"type": "Delivery", "response": {"content": "Grüße\r\nline"}, "size": 3}
    line = encode_record(record)
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert json.loads(line) == record


def test_text_that_is_not_valid_utf8_still_makes_a_valid_line() -> None:
    # a server's reply with invalid UTF-8 arrives decoded with surrogate escapes
    record = {"response": {"content": b"bad \xff byte".decode("utf-8", "surrogateescape")}}
    line = encode_record(record)
    line.decode("utf-8")  # valid UTF-8
    assert json.loads(line)["response"]["content"] == "bad \udcff byte"


@pytest.mark.parametrize("when", [0.0, 1700000000.0, 1700000000.5, 1700000000.123456])
def test_event_times_are_rfc3339_with_microseconds(when: float) -> None:
    expected = datetime.datetime.fromtimestamp(when, datetime.UTC)
    assert _rfc3339(when) == expected.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
