"""Envelope-address syntax on literal strings: the one table for the listener, the CLI and
the HTTP inject API."""

from __future__ import annotations

import pytest

from kumoclient.core.address import (
    ANGLE,
    CONTROL,
    DOMAIN,
    NOT_MAILBOX,
    NOT_UTF8,
    OTHER_SPACE,
    SPACE,
    check_mailbox,
    check_sender,
    split_mailbox,
    unquote_local_part,
)
from kumoclient.errors import AddressError, KumoClientError

MAILBOXES = [
    ("a@example.com", ("a", "example.com")),
    ("first.last+tag@sub.example.com", ("first.last+tag", "sub.example.com")),
    ("B@Example.NET", ("B", "Example.NET")),
    ('"quoted space"@example.net', ('"quoted space"', "example.net")),
    ('"at@inside"@example.net', ('"at@inside"', "example.net")),
    ('"escaped \\" quote"@example.net', ('"escaped \\" quote"', "example.net")),
    ('"<angle>"@example.net', ('"<angle>"', "example.net")),
    ("jürgen@example.de", ("jürgen", "example.de")),  # SMTPUTF8 is the protocol's question
    ("user@[192.0.2.1]", ("user", "[192.0.2.1]")),
    ("user@[IPv6:2001:db8::1]", ("user", "[IPv6:2001:db8::1]")),
    ("user@bücher.de", ("user", "bücher.de")),
    ("user@xn--bcher-kva.de", ("user", "xn--bcher-kva.de")),
    ("user@_dmarc-style_.example", ("user", "_dmarc-style_.example")),
    ("localhost-user@localhost", ("localhost-user", "localhost")),
    ("sloppy..dots.@example.jp", ("sloppy..dots.", "example.jp")),  # the MX's business
    ("user%relay@example.com", ("user%relay", "example.com")),
]


@pytest.mark.parametrize(("address", "parts"), MAILBOXES, ids=[a for a, _ in MAILBOXES])
def test_a_mailbox_is_accepted_and_split_at_its_domain(
    address: str, parts: tuple[str, str]
) -> None:
    assert check_mailbox(address) == address
    assert check_sender(address) == address
    assert split_mailbox(address) == parts


REFUSED = [
    ("", NOT_MAILBOX),
    ("nobody", NOT_MAILBOX),
    ("@example.com", NOT_MAILBOX),
    ("a@", NOT_MAILBOX),
    ("a@b@example.com", NOT_MAILBOX),
    ('"unterminated@example.com', NOT_MAILBOX),
    ('"quoted"example.com', NOT_MAILBOX),
    ('"quoted"@', NOT_MAILBOX),
    ("a\r@example.com", CONTROL),
    ("a@example.com\r\nRCPT TO:<b@x>", CONTROL),
    ("a\n@example.com", CONTROL),
    ("a\x00b@example.com", CONTROL),
    ("a\tb@example.com", CONTROL),
    ("a\x01b@example.com", CONTROL),
    ("a\x7f@example.com", CONTROL),
    ("a\x85@example.com", CONTROL),
    ('"a\rb"@example.com', CONTROL),
    ("\udcff@example.com", NOT_UTF8),
    ("a b@example.com", SPACE),
    ("a@exa mple.com", SPACE),
    ('"a b"@exa mple.com', SPACE),
    ("bounces at example.com", SPACE),
    ("a\u00a0b@example.com", OTHER_SPACE),
    ('"a\u2003b"@example.com', OTHER_SPACE),
    ("a@b!c.example", DOMAIN),
    ("a@exa%mple.com", DOMAIN),
    ("a@.example.com", DOMAIN),
    ("a@example..com", DOMAIN),
    ("a@example.com.", DOMAIN),
    ("a@exa/mple.com", DOMAIN),
    ('a@"example".com', DOMAIN),
    ("a@[]", DOMAIN),
    ("a@[192.0.2.1", DOMAIN),
    ("a<b@example.com", ANGLE),
    ("<a@example.com>", ANGLE),
    ("a@example.com>", ANGLE),
]


@pytest.mark.parametrize(("address", "reason"), REFUSED, ids=[repr(a) for a, _ in REFUSED])
def test_what_is_not_a_mailbox_is_refused_with_its_reason(address: str, reason: str) -> None:
    with pytest.raises(AddressError) as caught:
        check_mailbox(address)
    assert caught.value.address == address
    assert caught.value.reason == reason
    assert str(caught.value) == f"invalid address {address!r}: {reason}"
    assert isinstance(caught.value, KumoClientError)


def test_the_null_sender_is_a_sender_and_never_a_recipient() -> None:
    assert check_sender("") == ""
    with pytest.raises(AddressError, match="expected local-part@domain"):
        check_mailbox("")


@pytest.mark.parametrize(("address", "reason"), REFUSED[1:], ids=[repr(a) for a, _ in REFUSED[1:]])
def test_a_sender_follows_the_mailbox_rules(address: str, reason: str) -> None:
    with pytest.raises(AddressError) as caught:
        check_sender(address)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("local", "text"),
    [
        ("plain", "plain"),
        ('"quoted space"', "quoted space"),
        ('"escaped \\" quote"', 'escaped " quote'),
        ('"back\\\\slash"', "back\\slash"),
    ],
)
def test_a_quoted_local_part_unquotes_to_its_text(local: str, text: str) -> None:
    assert unquote_local_part(local) == text
