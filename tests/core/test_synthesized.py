"""The table of made-up replies: each kind's code, enhanced code and text."""

from __future__ import annotations

import pytest

from kumoclient.core.reply import single_line
from kumoclient.core.synthesized import TABLE, Synthesized, admin_bounce, iso_time, synthesize


@pytest.mark.parametrize(
    ("kind", "fields", "line"),
    [
        (
            Synthesized.CONNECT_FAILED,
            {"failures": "mx:25: connect: Connection refused"},
            "400 failed to connect to any candidate hosts: mx:25: connect: Connection refused",
        ),
        (
            Synthesized.TIMEOUT,
            {"target": "mx:25", "timeout": "5", "command": "DATA", "phase": "DATA"},
            "421 4.4.2 KumoMTA internal: failed to send message to mx:25: "
            "Timed Out waiting 5s for response to DATA (DATA)",
        ),
        (
            Synthesized.TRANSPORT,
            {"phase": "RCPT TO", "reason": "Connection lost"},
            "400 KumoMTA internal: failed to send message: RCPT TO: Connection lost",
        ),
        (
            Synthesized.SMTPUTF8_MISSING,
            {},
            "554 5.6.7 KumoMTA internal: the envelope needs SMTPUTF8, which the server lacks",
        ),
        (
            Synthesized.PROHIBITED,
            {"address": "127.0.0.1"},
            "550 5.4.4 KumoMTA internal: 127.0.0.1 is on the list of prohibited_hosts",
        ),
        (Synthesized.NULL_MX, {}, "556 5.1.10 Recipient address has a null MX"),
        (
            Synthesized.DNS_FAILURE,
            {"queue": "x.test", "reason": "MX lookup for x.test failed: NXDOMAIN"},
            "451 4.4.4 KumoMTA internal: failed to resolve queue x.test: "
            "MX lookup for x.test failed: NXDOMAIN",
        ),
        (
            Synthesized.POLICY_FAILURE,
            {"error": "p.lua:3: boom"},
            "451 4.3.0 KumoMTA internal: policy error while routing: p.lua:3: boom",
        ),
        (
            Synthesized.INTERNAL_ERROR,
            {"error": "KeyError: 'x'"},
            "400 KumoMTA internal: delivery attempt failed: KeyError: 'x'",
        ),
        (
            Synthesized.EXPIRED,
            {"limit": "2026-01-01T00:00:00Z"},
            "551 5.4.7 Message is older than the expiry time 2026-01-01T00:00:00Z "
            "configured via max_age",
        ),
    ],
)
def test_each_kind_has_its_code_and_text(
    kind: Synthesized, fields: dict[str, object], line: str
) -> None:
    reply = synthesize(kind, **fields)
    assert single_line(reply) == line
    assert reply.command is None  # made up here: it answered no command


def test_every_kind_is_in_the_table() -> None:
    assert set(TABLE) == set(Synthesized)


def test_a_field_value_is_inserted_as_it_is_not_parsed_as_a_template() -> None:
    reply = synthesize(Synthesized.POLICY_FAILURE, error="p.lua:1: {queue} {0}")
    assert reply.content.endswith("p.lua:1: {queue} {0}")


def test_an_admin_bounce_reason_loses_its_line_breaks() -> None:
    reply = admin_bounce("spam\r\nrun  now")
    assert single_line(reply) == "551 5.7.1 Administrative bounce: spam run now"


def test_expiry_times_are_utc_iso() -> None:
    assert iso_time(0) == "1970-01-01T00:00:00Z"
