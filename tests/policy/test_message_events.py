"""smtp_server_message_received: the msg methods of SPEC 4.2, meta, headers, kumo.reject."""

from __future__ import annotations

import pytest

from kumoclient.errors import PolicyError, PolicyReject
from kumoclient.policy.message import MessageView
from tests.policy.conftest import LoadPolicy

CONTENT = (
    b"From: a@example.com\r\nX-Tenant: acme\r\nX-Campaign: spring\r\n"
    b"Subject: hello\r\n  world\r\n\r\nbody line\r\n"
)


def view() -> MessageView:
    return MessageView("0" * 32, "a@example.com", "b@example.net", CONTENT, {})


async def test_msg_methods_meta_and_headers(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        kumo.on('smtp_server_message_received', function(msg)
          msg:import_x_headers {'tenant', 'campaign'}
          msg:remove_x_headers {'tenant'}
          msg:set_meta('routing_domain', 'relay.example.org')
          msg:append_header('X-Seen-By', 'kumoclient')
          SEEN = table.concat({msg:id(), msg:sender(), msg:recipient(),
                               msg:get_meta('tenant'), msg:get_first_named_header_value('subject')}, '|')
        end)
        """
    )
    message = view()
    await runtime.message_event("smtp_server_message_received", message)
    assert f"{'0' * 32}|a@example.com|b@example.net|acme|hello world" == runtime._lua.globals().SEEN
    assert message.meta == {
        "tenant": "acme",
        "campaign": "spring",
        "routing_domain": "relay.example.org",
    }
    assert b"X-Tenant" not in message.content
    assert b"X-Campaign: spring\r\n" in message.content
    assert message.content.endswith(b"X-Seen-By: kumoclient\r\n\r\nbody line\r\n")


async def test_kumo_reject_refuses_with_its_reply(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        "kumo.on('smtp_server_message_received', function(msg)\n"
        "  if msg:recipient():find('blocked') then kumo.reject(550, '5.7.1 not here') end\nend)\n"
    )
    blocked = MessageView("1" * 32, "a@x", "blocked@example.net", CONTENT, {})
    with pytest.raises(PolicyReject) as info:
        await runtime.message_event("smtp_server_message_received", blocked)
    assert (info.value.code, info.value.text) == (550, "5.7.1 not here")
    await runtime.message_event("smtp_server_message_received", view())  # others pass


async def test_bad_meta_value_is_a_policy_error_naming_the_line(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        "kumo.on('smtp_server_message_received', function(msg)\n"
        "  msg:set_meta('tenant', {})\nend)\n"
    )
    with pytest.raises(
        PolicyError,
        match=r"policy\.lua:2: meta 'tenant': values are strings",
    ):
        await runtime.message_event("smtp_server_message_received", view())
