"""Reply parsing and the one-line forms of SPEC 2.3 step 1."""

from __future__ import annotations

import pytest

from kumoclient.core.reply import (
    LITERAL_CRLF,
    SPACE,
    apply_rewrite,
    parse_one_line,
    parse_reply_lines,
    single_line,
    strip_rewrite_note,
)
from kumoclient.errors import ReplyParseError
from kumoclient.records import EnhancedCode, Reply


def test_single_line_reply_with_enhanced_code() -> None:
    reply = parse_reply_lines(["452 4.2.2 mailbox full"], "RCPT TO:<a@b>\r\n")
    assert reply == Reply(452, EnhancedCode(4, 2, 2), "mailbox full", "RCPT TO:<a@b>\r\n")
    assert single_line(reply) == "452 4.2.2 mailbox full"


def test_reply_without_enhanced_code_has_no_extra_space() -> None:
    reply = parse_reply_lines(["421 disconnecting foo"])
    assert reply.enhanced_code is None
    assert single_line(reply) == "421 disconnecting foo"


def test_three_line_reply_joins_with_literal_crlf_and_drops_repeated_enhanced_codes() -> None:
    reply = parse_reply_lines(
        ["550-5.7.1 first line", "550-5.7.1 second line", "550 5.7.1 third line"]
    )
    assert reply.enhanced_code == EnhancedCode(5, 7, 1)
    text = single_line(reply)
    assert text == "550 5.7.1 first line\\r\\nsecond line\\r\\nthird line"
    assert "\r" not in text
    assert "\n" not in text


def test_space_line_break_gives_kumomta_2024_form() -> None:
    reply = parse_reply_lines(["550-5.7.1 foo", "550 5.7.1 bar"])
    assert single_line(reply, SPACE) == "550 5.7.1 foo bar"


def test_continuation_with_a_different_enhanced_code_keeps_it() -> None:
    reply = parse_reply_lines(["451-4.3.0 try later", "451 4.7.1 greylisted"])
    assert single_line(reply, LITERAL_CRLF) == "451 4.3.0 try later\\r\\n4.7.1 greylisted"


def test_bare_code_line_is_a_reply_with_empty_text() -> None:
    assert parse_reply_lines(["250"]) == Reply(250, None, "")


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([], "empty reply"),
        (["hello"], "malformed"),
        (["25 ok"], "malformed"),
        (["250-first"], "the last line"),
        (["250 first", "250 second"], "a line before the last"),
        (["250-first", "251 second"], "changes the code"),
    ],
)
def test_malformed_replies_are_refused(lines: list[str], message: str) -> None:
    with pytest.raises(ReplyParseError, match=message):
        parse_reply_lines(lines)


def test_content_line_breaks_never_survive_single_line() -> None:
    reply = Reply(450, None, "a\r\nb\nc\rd")
    assert single_line(reply) == "450 a\\r\\nb\\r\\nc\\r\\nd"
    assert single_line(reply, SPACE) == "450 a b c d"


def test_apply_rewrite_appends_the_note_and_keeps_enhanced_code_and_command() -> None:
    reply = Reply(452, EnhancedCode(4, 2, 2), "over quota.", "RCPT TO:<a@b>\r\n")
    rewritten = apply_rewrite(reply, 500)
    assert rewritten.code == 500
    assert rewritten.enhanced_code == EnhancedCode(4, 2, 2)
    assert rewritten.command == "RCPT TO:<a@b>\r\n"
    assert rewritten.content == "over quota. (kumomta: status was rewritten from 452 -> 500)"


def test_apply_rewrite_to_the_same_code_changes_nothing() -> None:
    reply = Reply(452, None, "x")
    assert apply_rewrite(reply, 452) is reply


def test_parse_one_line_and_strip_rewrite_note() -> None:
    reply = parse_one_line("500 4.2.2 full (kumomta: status was rewritten from 452 -> 500)")
    assert reply.code == 500
    assert strip_rewrite_note(reply.content) == ("full", 452)
    assert strip_rewrite_note("plain") == ("plain", None)


@pytest.mark.parametrize("text", ["", "hello", "45 x", "452-4.2.2 continuation"])
def test_parse_one_line_refuses_non_replies(text: str) -> None:
    with pytest.raises(ReplyParseError, match="not an SMTP reply"):
        parse_one_line(text)
