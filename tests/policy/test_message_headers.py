"""The `msg` object's header methods, each KumoMTA reference page's example included
(`import_x_headers`, `remove_x_headers`, `import_headers`, `get_all_headers`, address
headers), fired through a real policy runtime."""

from __future__ import annotations

import json
import re

import pytest

from kumoclient.errors import PolicyError
from tests.policy.conftest import LoadPolicy
from tests.policy.message_helpers import make_view, run

# the message of KumoMTA's import_x_headers and remove_x_headers pages
DOC = b"X-Campaign-ID: 12345\r\nX-Mailer: foobar\r\nSubject: the subject\r\n\r\nThe body\r\n"


async def test_import_x_headers_without_names_imports_every_x_header(
    load_policy: LoadPolicy,
) -> None:
    view, got = await run(
        load_policy,
        "msg:import_x_headers()\nOUT = {msg:get_meta 'x_campaign_id', msg:get_meta 'x_mailer'}",
        make_view(DOC),
    )
    assert got == ["12345", "foobar"]
    assert view.meta == {"x_campaign_id": "12345", "x_mailer": "foobar"}


async def test_import_x_headers_with_names_imports_those_headers_by_their_own_names(
    load_policy: LoadPolicy,
) -> None:
    """KumoMTA's naming (a change from kumoclient's earlier `{'tenant'}` = `X-Tenant`): a
    name is the header's own, with or without `X-`, and the key is its snake case."""
    view, _ = await run(
        load_policy,
        "msg:import_x_headers { 'x-campaign-id', 'subject', 'tenant' }",
        make_view(DOC),
    )
    assert view.meta == {"x_campaign_id": "12345", "subject": "the subject"}


async def test_remove_x_headers_without_names_removes_every_x_header(
    load_policy: LoadPolicy,
) -> None:
    view, _ = await run(load_policy, "msg:remove_x_headers()", make_view(DOC))
    assert view.content == b"Subject: the subject\r\n\r\nThe body\r\n"


async def test_remove_x_headers_with_names_removes_those(load_policy: LoadPolicy) -> None:
    view, _ = await run(load_policy, "msg:remove_x_headers { 'x-campaign-id' }", make_view(DOC))
    assert view.content == b"X-Mailer: foobar\r\nSubject: the subject\r\n\r\nThe body\r\n"


IMPORT = (
    b"Received: from a\r\nReceived: from b\r\nX-Campaign-Id: c1\r\nX-Mailer: m\r\n"
    b"x-mailer: m2\r\nSubject: hi\r\n\r\nbody\r\n"
)


@pytest.mark.parametrize(
    ("specs", "meta", "content"),
    [
        (  # import every X- header and strip them
            "{ { name = 'X-*', remove = true } }",
            {"x_campaign_id": "c1", "x_mailer": "m2"},
            b"Received: from a\r\nReceived: from b\r\nSubject: hi\r\n\r\nbody\r\n",
        ),
        (  # every Received header as an array, and the subject
            "{ { name = 'Received', match = 'all' }, { name = 'Subject' } }",
            {"received": ["from a", "from b"], "subject": "hi"},
            IMPORT,
        ),
        (  # one header specially, then the other X- headers
            "{ { name = 'X-Campaign-Id', target = 'campaign_id' }, { name = 'X-*' } }",
            {"campaign_id": "c1", "x_mailer": "m2"},
            IMPORT,
        ),
        (  # another naming style
            "{ { name = 'X-*', transform = 'camel_case' } }",
            {"xCampaignId": "c1", "xMailer": "m2"},
            IMPORT,
        ),
        (
            "{ { name = 'X-*', transform = 'pascal_case', match = 'first' } }",
            {"XCampaignId": "c1", "XMailer": "m"},
            IMPORT,
        ),
        (
            "{ { name = 'X-Mailer', transform = 'kebab_case', match = 'all' }, { name = 'Nope' } }",
            {"x-mailer": ["m", "m2"]},
            IMPORT,
        ),
    ],
)
async def test_import_headers_examples(
    load_policy: LoadPolicy, specs: str, meta: dict[str, object], content: bytes
) -> None:
    """The examples of KumoMTA's `import_headers` page, and each match and transform."""
    view, _ = await run(load_policy, f"msg:import_headers {specs}", make_view(IMPORT))
    assert view.meta == meta
    assert view.content == content


@pytest.mark.parametrize(
    ("specs", "error"),
    [
        ("{ { name = 'X-*', target = 'x' } }", "`target` cannot be used with wildcard"),
        ("{ { name = '*' } }", "bare `*` patterns are not supported"),
        ("{ { name = '*-Id' } }", "only a single trailing `*`"),
        ("{ { name = '' } }", "must not be empty"),
        ("{ { name = 'A', match = 'most' } }", "match = 'most'"),
        ("{ { name = 'A', colour = 'red' } }", "unknown field `colour`"),
    ],
)
async def test_import_headers_refuses_bad_specs(
    load_policy: LoadPolicy, specs: str, error: str
) -> None:
    runtime = load_policy(
        f"kumo.on('smtp_server_message_received', function(msg)\n"
        f"  msg:import_headers {specs}\nend)\n"
    )
    with pytest.raises(PolicyError, match=rf"policy\.lua:2: .*{re.escape(error)}"):
        await runtime.message_event("smtp_server_message_received", make_view(IMPORT))


async def test_header_values_are_read_decoded(load_policy: LoadPolicy) -> None:
    content = (
        b"Subject: =?UTF-8?q?caf=C3=A9?=\r\n  au lait\r\nDate: Sun Feb 26 02:45:02 PM MST 2023\r\n"
        b"Received: one\r\nReceived: two\r\n\r\nbody\r\n"
    )
    _, got = await run(
        load_policy,
        """
        OUT = {
          all = msg:get_all_headers(),
          first = msg:get_first_named_header_value('received'),
          named = msg:get_all_named_header_values('RECEIVED'),
          none = #msg:get_all_named_header_values('X-None'),
          missing = msg:get_first_named_header_value('X-None') == nil,
        }
        """,
        make_view(content),
    )
    assert got == {
        "all": [
            ["Subject", "café au lait"],
            ["Date", "Sun Feb 26 02:45:02 PM MST 2023"],
            ["Received", "one"],
            ["Received", "two"],
        ],
        "first": "one",
        "named": ["one", "two"],
        "none": 0,
        "missing": True,
    }


async def test_prepend_and_append_header_with_and_without_encoding(
    load_policy: LoadPolicy,
) -> None:
    long = " ".join(["word"] * 20)
    view, _ = await run(
        load_policy,
        f"""
        msg:prepend_header('X-First', 'as is')
        msg:append_header('X-Long', '{long}', true)
        msg:append_header('X-Utf8', 'café crème', true)
        msg:append_header('X-Raw', 'café')
        msg:remove_all_named_headers('x-mailer')
        """,
    )
    head, _, body = view.content.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"X-First: as is"
    assert b"X-Mailer" not in head
    assert head.endswith(
        b"X-Long: word word word word word word word word word word word word word word word\r\n"
        b"\tword word word word word\r\n"
        b"X-Utf8: =?UTF-8?q?caf=C3=A9_cr=C3=A8me?=\r\n"
        b"X-Raw: caf\xc3\xa9"
    )
    assert body == b"The body\r\n"


async def test_address_headers(load_policy: LoadPolicy) -> None:
    """`from_header`, `to_header`, `get_address_header` and the AddressHeader fields; the
    `list` example of KumoMTA's `addressheader/list` page."""
    content = (
        b'From: "John Smith" <first.last@example.com>\r\n'
        b"To: user@example.com, John Smith <john.smith@example.com>\r\n"
        b"Cc: The A Team: bodie@example.com, doyle@example.com;\r\n\r\nbody\r\n"
    )
    _, got = await run(
        load_policy,
        """
        local from = msg:from_header()
        local to = {}
        for _, address in ipairs(msg:to_header().list) do
          table.insert(to, tostring(address))
        end
        local ok, err = pcall(function() return msg:to_header().email end)
        OUT = {
          from = {from.user, from.domain, from.email, from.name},
          to = to,
          single = tostring(ok) .. ' ' .. tostring(err),
          cc = tostring(msg:get_address_header('Cc')),
          cc_list = #msg:get_address_header('Cc').list,
          none = msg:get_address_header('Reply-To') == nil,
        }
        """,
        make_view(content),
    )
    assert got["from"] == ["first.last", "example.com", "first.last@example.com", "John Smith"]
    assert got["to"] == [
        '{"name":null,"address":"user@example.com"}',
        '{"name":"John Smith","address":"john.smith@example.com"}',
    ]
    assert got["single"].startswith("false ")
    assert "not a simple single address" in got["single"]
    assert json.loads(got["cc"]) == [
        {
            "Group": {
                "name": "The A Team",
                "addresses": [
                    {"name": None, "address": "bodie@example.com"},
                    {"name": None, "address": "doyle@example.com"},
                ],
            }
        }
    ]
    assert got["cc_list"] == 2
    assert got["none"] is True


async def test_a_malformed_address_header_is_an_error(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        "kumo.on('smtp_server_message_received', function(msg)\n  local x = msg:to_header()\nend)\n"
    )
    with pytest.raises(PolicyError, match=r"policy\.lua:2: To: invalid address list"):
        await runtime.message_event(
            "smtp_server_message_received", make_view(b"To: a@b@c\r\n\r\nx\r\n")
        )
