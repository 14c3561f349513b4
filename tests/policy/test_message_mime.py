"""The `msg` object's content methods: data, text and HTML parts, MIME parts and header maps,
conformance, reports; each KumoMTA reference page's example, through a real policy runtime."""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path

import pytest

from kumoclient.errors import PolicyError
from tests.policy.conftest import LoadPolicy
from tests.policy.message_helpers import make_view, run

REPORTS = Path(__file__).resolve().parents[1] / "data" / "reports"

MIXED = (
    b"From: a@example.com\r\nTo: b@example.net\r\nSubject: mixed\r\nMIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="outer"\r\n\r\n'
    b"preamble\r\n--outer\r\n"
    b'Content-Type: multipart/alternative; boundary="inner"\r\n\r\n'
    b"--inner\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n\r\ncaf=E9 text\r\n"
    b"--inner\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    b"<html><body><p>hi</p></body></html>\r\n--inner--\r\n"
    b"--outer\r\nContent-Type: application/pdf; name=report.pdf\r\n"
    b'Content-Disposition: attachment; filename="report.pdf"\r\n'
    b"Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n"
    b"--outer\r\nContent-Type: image/png\r\nContent-ID: <logo@example.com>\r\n"
    b"Content-Disposition: inline\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw==\r\n"
    b"--outer--\r\nepilogue\r\n"
)


def parsed(content: bytes) -> email.message.EmailMessage:
    message = email.message_from_bytes(content, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


async def test_get_data_and_set_data_keep_every_byte(load_policy: LoadPolicy) -> None:
    view, got = await run(
        load_policy,
        """
        local before = msg:get_data()
        msg:set_data('Subject: new\\r\\n\\r\\n\\xff\\x00binary\\r\\n')
        OUT = {#before, msg:get_data() == 'Subject: new\\r\\n\\r\\n\\xff\\x00binary\\r\\n'}
        """,
    )
    assert got == [len(make_view().content), True]
    assert view.content == b"Subject: new\r\n\r\n\xff\x00binary\r\n"


async def test_append_text_plain_and_html(load_policy: LoadPolicy) -> None:
    """The tracking pixel of KumoMTA's `append_text_html` page, and a footer."""
    view, got = await run(
        load_policy,
        """
        local my_tracking_link =
          '<img src="http://10.0.0.1/img_tracker.jpg" alt="open tracking pixel">'
        OUT = {msg:append_text_html(my_tracking_link), msg:append_text_plain('-- footer é')}
        """,
        make_view(MIXED),
    )
    assert got == [True, True]
    message = parsed(view.content)
    plain = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert plain is not None
    assert html is not None
    # (KumoMTA's body of a part ends with the line end before the next delimiter; a MIME
    # reader such as Python's gives it to the delimiter)
    assert plain.get_content() == "café text\r\n\r\n-- footer é"
    assert html.get_content() == (
        "<html><body><p>hi</p>\r\n"
        '<img src="http://10.0.0.1/img_tracker.jpg" alt="open tracking pixel"></body></html>'
    )
    assert b"JVBERi0xLjQK" in view.content  # the attachment untouched


async def test_append_text_is_false_without_such_a_part(load_policy: LoadPolicy) -> None:
    view, got = await run(
        load_policy,
        "OUT = {msg:append_text_html('<img>')}",
        make_view(b"Subject: plain\r\n\r\njust text\r\n"),
    )
    assert got == [False]
    assert view.content == b"Subject: plain\r\n\r\njust text\r\n"


async def test_parse_mime_attachment_listing(load_policy: LoadPolicy) -> None:
    """The example of KumoMTA's `parse_mime` page (returned rather than printed)."""
    _, got = await run(
        load_policy,
        """
        local mime_part = msg:parse_mime()
        local structure = mime_part:get_simple_structure()
        OUT = {}
        for _, attachment in ipairs(structure.attachments) do
          table.insert(OUT, {attachment.file_name or 'nil', attachment.content_type,
                             {attachment.part.body:byte(1, -1)}, attachment.inline,
                             attachment.content_id or 'nil'})
        end
        """,
        make_view(MIXED),
    )
    assert got == [
        ["report.pdf", "application/pdf", list(b"%PDF-1.4\n"), False, "nil"],
        ["nil", "image/png", list(b"\x89PNG"), True, "logo@example.com"],
    ]


async def test_simple_structure_edits_applied_with_set_data(load_policy: LoadPolicy) -> None:
    """The 'modifying incoming message content' example of `get_simple_structure`."""
    view, got = await run(
        load_policy,
        """
        local mime_part = msg:parse_mime()
        local structure = mime_part:get_simple_structure()
        local before = msg:get_data()
        if structure.text_part then
          structure.text_part.body = 'PREPENDED!\\r\\n' .. structure.text_part.body
        end
        if structure.html_part then
          structure.html_part.body = '<B>PREPENDED!</B>\\r\\n' .. structure.html_part.body
        end
        OUT = {msg:get_data() == before, structure.header_part.id, structure.text_part.id,
               structure.html_part.id, structure.amp_html_part == nil}
        msg:set_data(tostring(mime_part))
        """,
        make_view(MIXED),
    )
    assert got == [True, "", "0.0", "0.1", True]  # untouched until set_data
    message = parsed(view.content)
    plain, html = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None
    assert html is not None
    assert plain.get_content() == "PREPENDED!\r\ncafé text"
    assert html.get_content().startswith("<B>PREPENDED!</B>\r\n<html>")
    assert view.content.startswith(MIXED.split(b"--outer\r\n")[0])  # headers, preamble kept
    assert view.content.endswith(b"--outer--\r\nepilogue\r\n")


async def test_an_unchanged_tree_is_written_back_byte_for_byte(load_policy: LoadPolicy) -> None:
    _, got = await run(
        load_policy,
        "OUT = {tostring(msg:parse_mime()) == msg:get_data()}",
        make_view(MIXED),
    )
    assert got == [True]


async def test_mime_part_and_header_map(load_policy: LoadPolicy) -> None:
    """`headers:subject()` (the `mimepart/headers` example), both `iter` examples of the
    headermap page, typed getters and setters, replace_body, append_part, rebuild."""
    content = (
        b"Subject: hello\r\nFrom: Alice <a@example.com>\r\nTo: b@example.net, c@example.net\r\n"
        b"Authentication-Results: mx.example.com; dkim=pass header.d=example.com\r\n"
        b"Message-ID: <id1@example.com>\r\nReferences: <r1@x> <r2@y>\r\n"
        b'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
        b"--b1\r\nContent-Type: text/plain\r\n\r\none\r\n--b1--\r\n"
    )
    view, got = await run(
        load_policy,
        """
        local mime_part = msg:parse_mime()
        local headers = mime_part.headers
        local names, auth = {}, nil
        for hdr in headers:iter() do table.insert(names, hdr.name) end
        for hdr in headers:iter 'Authentication-Results' do auth = hdr.value end
        local first = headers:get_first_named('to')
        OUT = {
          subject = headers:subject(),
          names = names,
          auth = auth,
          from = headers:from(),
          to = first.address_list,
          raw = first.raw_value,
          message_id = headers:message_id(),
          references = headers:references(),
          content_type = headers:content_type(),
          missing = headers:cc() == nil,
        }
        headers:set_subject('new subject é')
        headers:set_to({ { name = 'Bob', address = { local_part = 'bob', domain = 'example.net' } } })
        headers:append('X-Added', 'yes')
        headers:remove_all_named('References')
        local extra = mime_part:rebuild()
        mime_part:append_part(extra:get_simple_structure().text_part)
        mime_part:get_simple_structure().text_part:replace_body('two', 'text/html')
        msg:set_data(tostring(mime_part))
        """,
        make_view(content),
    )
    assert got["subject"] == "hello"
    assert got["names"] == [
        "Subject",
        "From",
        "To",
        "Authentication-Results",
        "Message-ID",
        "References",
        "Content-Type",
    ]
    assert got["auth"] == {
        "serv_id": "mx.example.com",
        "results": [
            {
                "method": "dkim",
                "result": "pass",
                "props": {"header.d": "example.com"},
            }
        ],
    }
    assert got["from"] == [
        {"name": "Alice", "address": {"local_part": "a", "domain": "example.com"}}
    ]
    assert [entry["address"]["local_part"] for entry in got["to"]] == ["b", "c"]
    assert got["raw"] == "b@example.net, c@example.net"
    assert got["message_id"] == "id1@example.com"
    assert got["references"] == ["r1@x", "r2@y"]
    assert got["content_type"] == {"value": "multipart/mixed", "parameters": {"boundary": "b1"}}
    assert got["missing"] is True
    message = parsed(view.content)
    assert message["Subject"] == "new subject é"
    assert message["To"] == "Bob <bob@example.net>"
    assert message["X-Added"] == "yes"
    assert message["References"] is None
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/html", "text/plain"]
    assert [p.get_content() for p in parts] == ["two", "one"]


async def test_header_typed_access_refuses_the_wrong_shape(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        "kumo.on('smtp_server_message_received', function(msg)\n"
        "  local x = msg:parse_mime().headers:get_first_named('Subject').address_list\nend)\n"
    )
    with pytest.raises(PolicyError, match=r"policy\.lua:2: Subject: invalid address list"):
        await runtime.message_event(
            "smtp_server_message_received", make_view(b"Subject: not an address\r\n\r\nx\r\n")
        )


FIXES = (
    "LINE_TOO_LONG|NAME_ENDS_WITH_SPACE|NEEDS_TRANSFER_ENCODING|NON_CANONICAL_LINE_ENDINGS|"
    "MISSING_DATE_HEADER|MISSING_MESSAGE_ID_HEADER|MISSING_MIME_VERSION"
)
# the example handler of KumoMTA's check_fix_conformance page
CONFORMANCE = f"""
  local failed = msg:check_fix_conformance(
    -- check for and reject messages with these issues:
    'MISSING_COLON_VALUE',
    -- fix messages with these issues:
    '{FIXES}'
  )
  if failed then
    kumo.reject(552, string.format('5.6.0 %s', failed))
  end
"""


async def test_check_fix_conformance_rejects_what_it_checks(load_policy: LoadPolicy) -> None:
    from kumoclient.errors import PolicyReject

    runtime = load_policy(
        f"kumo.on('smtp_server_message_received', function(msg)\n{CONFORMANCE}\nend)\n"
    )
    with pytest.raises(PolicyReject) as info:
        await runtime.message_event(
            "smtp_server_message_received", make_view(b"Subject\r\nTo: b@example.net\r\n\r\nx\r\n")
        )
    assert (info.value.code, info.value.text) == (
        552,
        "5.6.0 Message has conformance issues: MISSING_COLON_VALUE",
    )


async def test_check_fix_conformance_fixes_what_it_fixes(load_policy: LoadPolicy) -> None:
    content = (
        b"Subject : caf\xc3\xa9\nFrom: a@example.com\n\n"
        + b"long line " * 12
        + b"\nbody \xc3\xa9\n"
    )
    view, _ = await run(load_policy, CONFORMANCE, make_view(content))
    message = parsed(view.content)
    assert b"\r\n" in view.content
    assert re.search(rb"(?<!\r)\n", view.content) is None
    assert view.content.isascii()
    assert max(len(line) for line in view.content.split(b"\r\n")) <= 78
    assert message["Subject"] == "café"
    assert message["Mime-Version"] == "1.0"
    assert message["Message-ID"] == "<" + "0" * 31 + "1@example.com>"
    assert message["Date"] is not None
    assert message.get_content() == ("long line " * 12 + "\r\nbody é\r\n")


async def test_check_fix_conformance_detects_a_legacy_charset(load_policy: LoadPolicy) -> None:
    """The detect_encoding example of KumoMTA's page: latin-1 text becomes UTF-8."""
    content = "Subject: Café crème\r\n\r\nLe café est très bon, merci beaucoup.\r\n"
    view, got = await run(
        load_policy,
        """
        OUT = {msg:check_fix_conformance('', 'NEEDS_TRANSFER_ENCODING', {
          detect_encoding = true,
          include_encodings = { 'iso-8859-1' },
          exclude_encodings = {},
        }) == nil}
        """,
        make_view(content.encode("latin-1")),
    )
    assert got == [True]
    message = parsed(view.content)
    assert message["Subject"] == "Café crème"
    assert message.get_content() == "Le café est très bon, merci beaucoup.\r\n"


async def test_check_fix_conformance_names_an_unknown_flag(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        "kumo.on('smtp_server_message_received', function(msg)\n"
        "  msg:check_fix_conformance('LINE_TOO_SHORT', '')\nend)\n"
    )
    with pytest.raises(PolicyError, match="invalid MessageConformance flag 'LINE_TOO_SHORT'"):
        await runtime.message_event("smtp_server_message_received", make_view())


async def test_parse_rfc3464_returns_the_report_of_its_page(load_policy: LoadPolicy) -> None:
    """The table of KumoMTA's `parse_rfc3464` page, from RFC 3464's simple example."""
    _, got = await run(
        load_policy,
        "OUT = {msg:parse_rfc3464(), msg:parse_rfc5965() == nil}",
        make_view((REPORTS / "rfc3464-simple.eml").read_bytes()),
    )
    report, not_arf = got
    assert not_arf is True
    assert report["per_message"]["reporting_mta"] == {"mta_type": "dns", "name": "cs.utk.edu"}
    (recipient,) = report["per_recipient"]
    assert recipient["original_recipient"] == {
        "recipient_type": "rfc822",
        "recipient": "louisl@larry.slip.umd.edu",
    }
    assert recipient["final_recipient"] == recipient["original_recipient"]
    assert recipient["action"] == "failed"
    assert recipient["status"] == {"class": 4, "subject": 0, "detail": 0}
    assert recipient["diagnostic_code"] == {
        "diagnostic_type": "smtp",
        "diagnostic": "426 connection timed out",
    }
    assert recipient["last_attempt_date"] == "1994-07-07T21:15:49Z"


async def test_parse_rfc5965_returns_the_feedback_report(load_policy: LoadPolicy) -> None:
    _, got = await run(
        load_policy,
        "local r = msg:parse_rfc5965()\n"
        "OUT = {r.feedback_type, r.user_agent, r.version, msg:parse_rfc3464() == nil}",
        make_view((REPORTS / "rfc5965-simple.eml").read_bytes()),
    )
    assert got == ["abuse", "SomeGenerator/1.0", "1", True]


async def test_a_malformed_report_is_an_error(load_policy: LoadPolicy) -> None:
    broken = (
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain\r\n\r\nno status part\r\n--b--\r\n"
    )
    runtime = load_policy(
        "kumo.on('smtp_server_message_received', function(msg)\n"
        "  local r = msg:parse_rfc3464()\nend)\n"
    )
    with pytest.raises(PolicyError, match=r"policy\.lua:2: .*no delivery-status part"):
        await runtime.message_event("smtp_server_message_received", make_view(broken))


async def test_rebuild_and_replace_body_examples(load_policy: LoadPolicy) -> None:
    """The examples of KumoMTA's `mimepart/rebuild` and `mimepart/replace_body` pages."""
    content = b"Subject: x\r\nContent-Type: text/html\r\n\r\n<b>caf\xc3\xa9</b>\r\n"
    view, _ = await run(
        load_policy,
        """
        local mimepart = msg:parse_mime()
        msg:set_data(tostring(mimepart:rebuild()))
        local again = msg:parse_mime()
        again:replace_body('changed content', 'text/plain')
        msg:set_data(tostring(again))
        """,
        make_view(content),
    )
    assert view.content == (
        b'Subject: x\r\nContent-Type: text/plain;\r\n\tcharset="us-ascii"\r\n\r\n'
        b"changed content\r\n"
    )


async def test_a_header_setter_checks_a_string(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        "kumo.on('smtp_server_message_received', function(msg)\n"
        "  msg:parse_mime().headers:set_to('a@b@c')\nend)\n"
    )
    with pytest.raises(PolicyError, match=r"policy\.lua:2: set_to: invalid address list"):
        await runtime.message_event("smtp_server_message_received", make_view())


GOOD_HEAD = (
    b"Date: Mon, 4 Mar 2024 09:00:00 +0000\r\nMessage-ID: <1@x.example>\r\nMime-Version: 1.0\r\n"
)


@pytest.mark.parametrize(
    ("label", "content"),
    [
        ("MISSING_COLON_VALUE", GOOD_HEAD + b"Subject\r\n\r\nbody\r\n"),
        ("NON_CANONICAL_LINE_ENDINGS", GOOD_HEAD + b"\r\nbody\nmore\r\n"),
        ("NAME_ENDS_WITH_SPACE", GOOD_HEAD + b"Subject : x\r\n\r\nbody\r\n"),
        ("LINE_TOO_LONG", GOOD_HEAD + b"\r\n" + b"a" * 77 + b"\r\n"),
        ("NEEDS_TRANSFER_ENCODING", GOOD_HEAD + b"\r\ncaf\xc3\xa9\r\n"),
        ("MISSING_DATE_HEADER", GOOD_HEAD.replace(b"Mon, 4 Mar 2024", b"someday") + b"\r\nx\r\n"),
        ("MISSING_MESSAGE_ID_HEADER", GOOD_HEAD.replace(b"<1@x.example>", b"<<1>>") + b"\r\nx\r\n"),
        ("MISSING_MIME_VERSION", GOOD_HEAD.replace(b"1.0", b"2.0") + b"\r\nx\r\n"),
    ],
)
async def test_each_conformance_issue_is_found(
    load_policy: LoadPolicy, label: str, content: bytes
) -> None:
    _, got = await run(
        load_policy,
        f"OUT = {{msg:check_fix_conformance('{label}', '') or 'none', "
        "msg:check_fix_conformance('', '') == nil}",
        make_view(content),
    )
    assert got == [f"Message has conformance issues: {label}", True]


async def test_a_conforming_message_has_no_issue(load_policy: LoadPolicy) -> None:
    every = (
        "MISSING_COLON_VALUE|NON_CANONICAL_LINE_ENDINGS|NAME_ENDS_WITH_SPACE|LINE_TOO_LONG|"
        "NEEDS_TRANSFER_ENCODING|MISSING_DATE_HEADER|MISSING_MESSAGE_ID_HEADER|"
        "MISSING_MIME_VERSION"
    )
    content = GOOD_HEAD + b"Subject: fine\r\n\r\n" + b"a" * 76 + b"\r\n"
    view, got = await run(
        load_policy,
        f"OUT = {{msg:check_fix_conformance('{every}', '') == nil}}",
        make_view(content),
    )
    assert got == [True]
    assert view.content == content
