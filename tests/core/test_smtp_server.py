"""The listener's decisions on literal strings: command lines, paths, parameters, content."""

from __future__ import annotations

import pytest

from kumoclient.core.smtp_server import (
    MAX_LINE,
    MailFrom,
    content_problem,
    has_long_line,
    parse_mail,
    parse_rcpt,
    split_command,
    unstuff,
)
from kumoclient.errors import CommandError


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("EHLO client.example", ("EHLO", "client.example")),
        ("ehlo   client.example  ", ("EHLO", "client.example")),
        ("QUIT", ("QUIT", "")),
        ("MAIL FROM:<a@b>", ("MAIL", "FROM:<a@b>")),
        ("Rcpt To: <a@b>", ("RCPT", "To: <a@b>")),
    ],
)
def test_split_command(line: str, expected: tuple[str, str]) -> None:
    assert split_command(line) == expected


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("FROM:<a@example.com>", MailFrom("a@example.com")),
        ("from:<a@example.com>", MailFrom("a@example.com")),
        ("FROM: <a@example.com>", MailFrom("a@example.com")),
        ("FROM:a@example.com", MailFrom("a@example.com")),
        ("FROM:<>", MailFrom("")),
        ("FROM:<@relay.example,@r2.example:a@example.com>", MailFrom("a@example.com")),
        ("FROM:<a@example.com> SIZE=2048", MailFrom("a@example.com", size=2048)),
        ("FROM:<a@example.com> BODY=8BITMIME", MailFrom("a@example.com")),
        ("FROM:<a@example.com> body=7bit", MailFrom("a@example.com")),
        ("FROM:<é@example.com> SMTPUTF8", MailFrom("é@example.com", smtputf8=True)),
        (
            "FROM:<a@example.com> SMTPUTF8 BODY=8BITMIME SIZE=10",
            MailFrom("a@example.com", True, 10),
        ),
    ],
)
def test_mail_from_is_parsed(arg: str, expected: MailFrom) -> None:
    assert parse_mail(arg, extended=True, size_limit=4096) == expected


@pytest.mark.parametrize(
    ("arg", "extended", "reply"),
    [
        ("TO:<a@example.com>", True, "501 5.5.4 Syntax: FROM:"),
        ("FROM:<a@example.com", True, "501 5.5.4 Syntax: FROM:"),
        ("FROM:", True, "501 5.5.4 Syntax: FROM:"),
        ("FROM:<a@example.com> SIZE=4097", True, "552 5.3.4"),
        ("FROM:<a@example.com> SIZE=x", True, "555 5.5.4 MAIL parameter not recognized: SIZE=x"),
        ("FROM:<a@example.com> BODY=BINARYMIME", True, "555 5.5.4"),
        ("FROM:<a@example.com> AUTH=<>", True, "555 5.5.4"),
        ("FROM:<a@example.com> SIZE=10", False, "501 5.5.4 Parameters need EHLO"),
        ("FROM:<a\x00b@example.com>", True, "553 5.1.7"),
        ("FROM:<a\rb@example.com>", True, "553 5.1.7"),
        ("FROM:<é@example.com>", True, "553 5.6.7"),
        ("FROM:<a\tb@example.com>", True, "553 5.1.7"),
        ("FROM:<a b@example.com>", True, "553 5.1.7"),
        ("FROM:<@relay.example:>", True, "501 5.5.4"),
        # the rules of core/address.py: a sender is a mailbox or <>
        ("FROM:<postmaster>", True, "553 5.1.7 Sender address is not valid: expected local-part@"),
        ("FROM:<a@b@example.com>", True, "553 5.1.7 Sender address is not valid: expected"),
        ("FROM:<a<b@example.com>", True, "553 5.1.7 Sender address is not valid: it contains <"),
        (
            "FROM:<a\x01b@example.com>",
            True,
            "553 5.1.7 Sender address is not valid: it contains CR",
        ),
    ],
)
def test_mail_from_is_refused(arg: str, extended: bool, reply: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse_mail(arg, extended=extended, size_limit=4096)
    assert caught.value.reply.startswith(reply)


@pytest.mark.parametrize(
    ("arg", "smtputf8", "expected"),
    [
        ("TO:<b@example.net>", False, "b@example.net"),
        ('TO:<"quoted space"@example.net>', False, '"quoted space"@example.net'),
        ("to: <B@Example.NET>", False, "B@Example.NET"),
        ("TO:b@example.net", False, "b@example.net"),
        ("TO:<ü@example.net>", True, "ü@example.net"),
        ('TO:<"at@inside"@example.net>', False, '"at@inside"@example.net'),
    ],
)
def test_rcpt_to_is_parsed(arg: str, smtputf8: bool, expected: str) -> None:
    assert parse_rcpt(arg, smtputf8=smtputf8) == expected


@pytest.mark.parametrize(
    ("arg", "reply"),
    [
        ("<b@example.net>", "501 5.5.4 Syntax: TO:"),
        ("TO:<>", "553 5.1.3"),
        ("TO:<no-at-sign>", "553 5.1.3"),
        ("TO:<b\x00@example.net>", "553 5.1.3"),
        ("TO:<b@example.net> NOTIFY=NEVER", "555 5.5.4 RCPT parameter not recognized"),
        ("TO:<ü@example.net>", "553 5.6.7"),
        ("TO:<b@c@example.net>", "553 5.1.3 Recipient address is not a valid mailbox: expected"),
        ('TO:<"quoted"@exa mple.net>', "553 5.1.3 Recipient address is not a valid mailbox: it"),
        ("TO:<b\u00a0@example.net>", "553 5.1.3"),
    ],
)
def test_rcpt_to_is_refused(arg: str, reply: str) -> None:
    with pytest.raises(CommandError) as caught:
        parse_rcpt(arg, smtputf8=False)
    assert caught.value.reply.startswith(reply)


@pytest.mark.parametrize(
    ("data", "content"),
    [
        (b"Subject: x\r\n\r\nbody\r\n", b"Subject: x\r\n\r\nbody\r\n"),
        (b"..leading\r\n", b".leading\r\n"),
        (b"a\r\n..b\r\n...c\r\n.d\r\n", b"a\r\n.b\r\n..c\r\nd\r\n"),
        (b"", b""),
    ],
)
def test_dot_stuffing_is_undone(data: bytes, content: bytes) -> None:
    assert unstuff(data) == content


def test_a_line_of_1000_octets_with_its_crlf_is_the_longest_allowed() -> None:
    longest = b"x" * (MAX_LINE - 2) + b"\r\n"
    assert not has_long_line(b"Subject: a\r\n\r\n" + longest + b"end\r\n")
    assert has_long_line(b"Subject: a\r\n\r\n" + b"x" + longest + b"end\r\n")
    assert not has_long_line(b"short\r\n" * 1000)


@pytest.mark.parametrize(
    ("content", "smtputf8", "reply"),
    [
        (b"Subject: x\r\n\r\nfine\r\n", False, None),
        (b"Subject: x\r\n\r\n8-bit body \xff\r\n", False, None),
        (b"Subject: x\r\n\r\nnul\x00\r\n", False, "554 5.6.0"),
        (b"Subject: x\r\n\r\nbare\nlf\r\n", False, "554 5.6.11 Message contains a bare LF"),
        (b"Subject: x\r\n\r\nbare\rcr\r\n", False, "554 5.6.11 Message contains a bare CR"),
        (b"Subject: x\r\n\r\nend\r.\rMAIL\r\n", False, "554 5.6.11 Message contains a bare CR"),
        ("Subject: café\r\n\r\nx\r\n".encode(), False, "554 5.6.7 Non-ASCII header"),
        ("Subject: café\r\n\r\nx\r\n".encode(), True, None),
        (b"Subject: \xff\xfe\r\n\r\nx\r\n", True, "554 5.6.7 Header is not valid UTF-8"),
    ],
)
def test_content_problems(content: bytes, smtputf8: bool, reply: str | None) -> None:
    problem = content_problem(content, smtputf8)
    if reply is None:
        assert problem is None
    else:
        assert problem is not None
        assert problem.startswith(reply)
