"""The `msg` object's envelope, metadata, queue and spool methods (KumoMTA's reference pages
`docs/reference/message/` and `address/`), fired through a real policy runtime."""

from __future__ import annotations

import pytest

from kumoclient.errors import PolicyError
from tests.policy.conftest import LoadPolicy
from tests.policy.message_helpers import make_view, run


async def test_sender_and_recipient_are_envelope_addresses(load_policy: LoadPolicy) -> None:
    _, got = await run(
        load_policy,
        """
        local s, r = msg:sender(), msg:recipient()
        OUT = {s.user, s.domain, s.email, tostring(s), r.user, r.domain, r.email, tostring(r),
               msg:id()}
        """,
    )
    assert got == [
        "alice",
        "example.com",
        "alice@example.com",
        "alice@example.com",
        "bob",
        "example.net",
        "bob@example.net",
        "bob@example.net",
        "0" * 31 + "1",
    ]


@pytest.mark.parametrize(
    ("address", "user"),
    [
        ("foo@example.com", "foo"),
        ('"foo"@example.com', "foo"),
        ('"f\\oo"@example.com', "foo"),
        ('"info@"@example.com', "info@"),
    ],
)
async def test_user_is_the_normalized_local_part(
    load_policy: LoadPolicy, address: str, user: str
) -> None:
    """The table of KumoMTA's `address/user` page."""
    _, got = await run(
        load_policy,
        "OUT = {msg:recipient().user, msg:recipient().domain, msg:recipient().email}",
        make_view(recipient=address),
    )
    assert got == [user, "example.com", address]


async def test_recipient_list_and_a_batch(load_policy: LoadPolicy) -> None:
    _, got = await run(
        load_policy,
        """
        local list = msg:recipient_list()
        OUT = {#list, list[1].email, list[2].email, #msg:recipient(), msg:recipient()[2].domain}
        """,
        make_view(recipient=["a@one.example", "b@two.example"]),
    )
    assert got == [2, "a@one.example", "b@two.example", 2, "two.example"]


async def test_set_sender_and_set_recipient_take_strings_objects_and_lists(
    load_policy: LoadPolicy,
) -> None:
    view, got = await run(
        load_policy,
        """
        msg:set_sender(string.format('bounce-%s@%s', 'abc', 'bounces.example'))
        local first = msg:sender().email
        msg:set_recipient 'someone.else@example.com'
        local one = msg:recipient().email
        msg:set_recipient {'<x@a.example>', msg:sender(), 'y@b.example'}
        msg:set_sender('<>')
        local null = {msg:sender().email, msg:sender().user, tostring(msg:sender())}
        OUT = {first, one, null}
        """,
    )
    assert got == ["bounce-abc@bounces.example", "someone.else@example.com", ["", "", ""]]
    assert view.envelope_sender == ""
    assert view.recipients == ["x@a.example", "bounce-abc@bounces.example", "y@b.example"]


async def test_set_recipient_refuses_the_null_address_and_nonsense(load_policy: LoadPolicy) -> None:
    for value in ("''", "'not an address'", "{}", "'a@b.example\\r\\nRCPT TO:<c@d.example>'"):
        runtime = load_policy(
            f"kumo.on('smtp_server_message_received', function(msg)\n"
            f"  msg:set_recipient({value})\nend)\n"
        )
        with pytest.raises(PolicyError, match=r"policy\.lua:2: "):
            await runtime.message_event("smtp_server_message_received", make_view())


async def test_meta_holds_any_json_value(load_policy: LoadPolicy) -> None:
    """The examples of KumoMTA's `set_meta` page: a string, a number, a boolean, a table."""
    view, got = await run(
        load_policy,
        """
        msg:set_meta('foo', 'bar')
        local s = msg:get_meta 'foo'
        msg:set_meta('foo', 123)
        local n = msg:get_meta 'foo'
        msg:set_meta('foo', true)
        local b = msg:get_meta 'foo'
        msg:set_meta('foo', { key = 'value' })
        local t = msg:get_meta 'foo'
        msg:set_meta('x_list', {1, 2.5, 'three', {nested = {false}}})
        msg:set_meta('x_gone', nil)
        OUT = {s, math.type(n), n, b, t.key, msg:get_meta('x_list')[4].nested[1], msg:get_meta('x_gone') == nil}
        """,
    )
    assert got == ["bar", "integer", 123, True, "value", False, True]
    assert view.meta == {
        "foo": {"key": "value"},
        "x_list": [1, 2.5, "three", {"nested": [False]}],
        "x_gone": None,
    }


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("5", "meta 'tenant' must be a string"),
        ("{}", "meta 'tenant' must be a string"),
        ("true", "meta 'tenant' must be a string"),
    ],
)
async def test_reserved_meta_keys_must_be_strings(
    load_policy: LoadPolicy, value: str, error: str
) -> None:
    runtime = load_policy(
        "kumo.on('smtp_server_message_received', function(msg)\n"
        f"  msg:set_meta('tenant', {value})\nend)\n"
    )
    with pytest.raises(PolicyError, match=rf"policy\.lua:2: {error}"):
        await runtime.message_event("smtp_server_message_received", make_view())


async def test_meta_refuses_what_json_cannot_hold(load_policy: LoadPolicy) -> None:
    for value in ("0/0", "1/0", "msg", "function() end"):
        runtime = load_policy(
            "kumo.on('smtp_server_message_received', function(msg)\n"
            f"  msg:set_meta('x_v', {value})\nend)\n"
        )
        with pytest.raises(PolicyError, match=r"policy\.lua:2: "):
            await runtime.message_event("smtp_server_message_received", make_view())


async def test_queue_name_follows_the_meta(load_policy: LoadPolicy) -> None:
    _, got = await run(
        load_policy,
        """
        local names = {msg:queue_name()}
        msg:set_meta('tenant', 'acme')
        table.insert(names, msg:queue_name())
        msg:set_meta('campaign', 'spring')
        msg:set_meta('routing_domain', 'relay.example')
        table.insert(names, msg:queue_name())
        msg:set_meta('queue', 'my-queue')
        table.insert(names, msg:queue_name())
        OUT = names
        """,
        make_view(recipient="bob@Example.NET"),
    )
    assert got == [
        "example.net",
        "acme@example.net",
        "spring:acme@example.net!relay.example",
        "my-queue",
    ]


async def test_attempts_and_the_spool_calls_without_counterpart(load_policy: LoadPolicy) -> None:
    view, got = await run(
        load_policy,
        """
        local before = msg:num_attempts()
        msg:increment_num_attempts()
        msg:save()
        msg:set_force_sync(true)
        OUT = {before, msg:num_attempts(), msg:shrink(), msg:shrink_data()}
        """,
    )
    assert got == [0, 1, False, False]
    assert view.attempts == 1


async def test_dkim_and_arc_are_refused_with_a_clear_error(load_policy: LoadPolicy) -> None:
    for call in ("msg:dkim_sign({})", "msg:dkim_verify()", "msg:arc_verify()", "msg:arc_seal()"):
        runtime = load_policy(
            f"kumo.on('smtp_server_message_received', function(msg)\n  {call}\nend)\n"
        )
        with pytest.raises(PolicyError, match="no DKIM or ARC signing and verifying yet"):
            await runtime.message_event("smtp_server_message_received", make_view())


async def test_add_authentication_results_prepends_an_rfc8601_header(
    load_policy: LoadPolicy,
) -> None:
    """The header of KumoMTA's `add_authentication_results` page, from results as
    `dkim_verify` and `kumo.spf.check_host` return them."""
    view, _ = await run(
        load_policy,
        """
        msg:add_authentication_results('hostname.example.com', {
          { method = 'dkim', result = 'pass', props = {
              ['header.d'] = 'github.com', ['header.i'] = '@github.com',
              ['header.s'] = 'pf2023', ['header.a'] = 'rsa-sha256', ['header.b'] = 'jo0EO4dX' } },
          { method = 'spf', result = 'pass' },
        })
        msg:add_authentication_results('hostname.example.com', {})
        """,
    )
    assert view.content.startswith(
        b"Authentication-Results: hostname.example.com; none\r\n"
        b"Authentication-Results: hostname.example.com;\r\n\tdkim=pass\r\n"
        b"\theader.a=rsa-sha256\r\n\theader.b=jo0EO4dX\r\n\theader.d=github.com\r\n"
        b"\theader.i=@github.com\r\n\theader.s=pf2023;\r\n\tspf=pass\r\nFrom: "
    )
