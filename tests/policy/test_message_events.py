"""Reception events fired with the `msg` object: an edit reaches the message, `kumo.reject`
refuses, a failure is a PolicyError naming the policy's line, an event gets its other
arguments. (Each method: test_message_envelope/headers/mime/scheduling.py.)"""

from __future__ import annotations

import gc
import weakref

import pytest

from kumoclient.errors import PolicyError, PolicyReject
from kumoclient.policy.message import MessageView
from tests.policy.conftest import LoadPolicy

CONTENT = (
    b"From: a@example.com\r\nX-Tenant: acme\r\nX-Campaign: spring\r\n"
    b"Subject: hello\r\n  world\r\n\r\nbody line\r\n"
)


def view(recipient: str = "b@example.net") -> MessageView:
    return MessageView("0" * 32, "a@example.com", recipient, CONTENT, {})


async def test_the_handler_edits_reach_the_view(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        """
        kumo.on('smtp_server_message_received', function(msg)
          msg:import_headers {
            { name = 'X-Tenant', target = 'tenant', remove = true },
            { name = 'X-Campaign', target = 'campaign' },
          }
          msg:set_meta('routing_domain', 'relay.example.org')
          msg:append_header('X-Seen-By', 'kumoclient')
          SEEN = table.concat({msg:id(), tostring(msg:sender()), msg:recipient().email,
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
        "  if msg:recipient().user == 'blocked' then kumo.reject(550, '5.7.1 not here') end\n"
        "end)\n"
    )
    with pytest.raises(PolicyReject) as info:
        await runtime.message_event("smtp_server_message_received", view("blocked@example.net"))
    assert (info.value.code, info.value.text) == (550, "5.7.1 not here")
    await runtime.message_event("smtp_server_message_received", view())  # others pass


async def test_a_failing_method_is_a_policy_error_naming_the_line(load_policy: LoadPolicy) -> None:
    runtime = load_policy(
        "kumo.on('smtp_server_message_received', function(msg)\n"
        "  msg:set_meta('tenant', {})\nend)\n"
    )
    with pytest.raises(
        PolicyError,
        match=r"policy\.lua:2: meta 'tenant' must be a string \(it names the message's queue\)",
    ):
        await runtime.message_event("smtp_server_message_received", view())


async def test_the_event_gets_its_other_arguments(load_policy: LoadPolicy) -> None:
    """`http_message_generated(msg, auth_info)`: the second argument reaches the handler."""
    runtime = load_policy(
        """
        kumo.on('http_message_generated', function(msg, auth_info)
          msg:set_meta('x_groups', auth_info.groups)
          msg:set_meta('x_peer', auth_info.peer_address)
        end)
        """
    )
    message = view()
    await runtime.message_event(
        "http_message_generated", message, {"peer_address": "10.0.0.1", "groups": ["g1"]}
    )
    assert message.meta == {"x_groups": ["g1"], "x_peer": "10.0.0.1"}


async def test_the_message_is_let_go_when_its_event_ends(load_policy: LoadPolicy) -> None:
    """A policy that keeps `msg` (here in a global) does not keep the message, its content,
    alive: the object is released after the event (freed once Lua's collector has run), and
    using it later is an error."""
    runtime = load_policy(
        """
        kumo.on('smtp_server_message_received', function(msg)
          KEPT = msg
          PART = msg:parse_mime()
        end)
        kumo.on('later', function()
          return KEPT:id()
        end)
        """
    )
    message = view()
    alive = weakref.ref(message)
    await runtime.message_event("smtp_server_message_received", message)
    del message
    runtime._lua.execute("collectgarbage()")  # Lua's collector runs as Lua allocates
    gc.collect()
    assert alive() is None
    fired = await runtime.vm.fire("later")
    assert fired.status == "error"
    assert "Message can only be used during the event it was given to" in str(fired.value)
