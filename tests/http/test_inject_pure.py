"""The inject API's request checks and message building without a server: JSON values in,
typed requests and RFC 5322 bytes out (tests/test_http.py drives the same through HTTP)."""

from __future__ import annotations

import email
import email.policy
from typing import Any

import pytest

from kumoclient.errors import BadInjectRequest
from kumoclient.http.inject_message import generate
from kumoclient.http.inject_request import Builder, parse_request


def request(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "envelope_sender": "bounces@example.com",
        "content": "Subject: hello\n\nHello {{ name }}\n",
        "recipients": [{"email": "one@example.net", "name": "One"}],
    }
    body.update(overrides)
    return body


def test_a_request_parses_into_typed_parts() -> None:
    parsed = parse_request(
        request(
            envelope_sender="",
            content={"text_body": "hi", "headers": {"X-A": "1"}},
            substitutions={"k": "v"},
        )
    )
    assert parsed.envelope_sender == ""  # the null sender
    assert [r.email for r in parsed.recipients] == ["one@example.net"]
    assert isinstance(parsed.content, Builder)
    assert parsed.content.headers == (("X-A", "1"),)
    assert parsed.substitutions == {"k": "v"}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ([], "request: expected an object, got a list"),
        (request(recipients=[{"email": "no-at-sign"}]), "recipients[0].email: invalid address"),
        (
            request(recipients=[{"email": "a@ex!ample.net"}]),
            "recipients[0].email: invalid address 'a@ex!ample.net': the domain is neither",
        ),
        (
            request(envelope_sender="a\u00a0b@example.com"),
            "envelope_sender: invalid address 'a\\xa0b@example.com': it contains white space",
        ),
        (request(template_dialect="Mustache"), "template_dialect: 'Mustache' is not supported"),
    ],
)
def test_a_bad_request_names_its_field(body: object, error: str) -> None:
    with pytest.raises(BadInjectRequest) as caught:
        parse_request(body)
    assert str(caught.value).startswith(error)


def test_each_recipient_gets_its_rendered_message_with_crlf_line_ends() -> None:
    [message] = generate(parse_request(request()))
    assert message.recipient == "one@example.net"
    assert message.content == b"Subject: hello\r\n\r\nHello One\r\n"


def test_the_builder_writes_a_quoted_local_part_as_one() -> None:
    body = request(content={"text_body": "hi"}, recipients=[{"email": '"first last"@example.net'}])
    [message] = generate(parse_request(body))
    parsed = email.message_from_bytes(message.content, policy=email.policy.SMTP)
    assert parsed["To"] == '"first last"@example.net'


def test_a_from_address_is_checked_once_its_template_is_rendered() -> None:
    body = request(content={"text_body": "x", "from": {"email": "<{{ name }}@example.com>"}})
    with pytest.raises(BadInjectRequest) as caught:
        generate(parse_request(body))
    assert str(caught.value) == (
        "recipient one@example.net: content.from: "
        "invalid address '<One@example.com>': it contains < or >"
    )
