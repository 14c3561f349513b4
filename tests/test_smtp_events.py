"""The SMTP server events against a real listener, spool and policy, with aiosmtplib as the
client: each handler's decision lands on the command it belongs to (a `kumo.reject` is that
command's reply and the session goes on; `kumo.disconnect` ends it), and each KumoMTA
reference page's example runs as written there."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from tests.conftest import without_trace
from tests.smtp_rig import MESSAGE, SmtpRig, smtp_rig, tls_files


async def rig_for(tmp_path: Path, policy: str, **listener: Any) -> AsyncIterator[SmtpRig]:
    async for rig in smtp_rig(tmp_path, policy, **listener):
        yield rig


async def connected(rig: SmtpRig) -> aiosmtplib.SMTP:
    client = rig.client()
    await client.connect()
    await client.ehlo(hostname="client.example")
    return client


# --- smtp_server_connection_accepted ---------------------------------------------------------

# docs/reference/events/smtp_server_connection_accepted.md, its example as written, with the
# "hypothetical function" it calls defined
CONNECTION_ACCEPTED_EXAMPLE = """
function is_peer_deny_listed(peer)
  return peer:match('^127%.0%.0%.2:') ~= nil
end

kumo.on('smtp_server_connection_accepted', function(conn_meta)
  local peer = conn_meta:get_meta 'received_from'
  -- is_peer_deny_listed is some hypothetical function you
  -- define that will check to see if you want to allow this
  -- connection to continue
  if is_peer_deny_listed(peer) then
    kumo.reject(421, string.format('service not accepted from %s', peer))
  end
end)
"""


async def test_connection_accepted_example_refuses_a_listed_peer_before_the_banner(
    tmp_path: Path,
) -> None:
    async for rig in rig_for(tmp_path, CONNECTION_ACCEPTED_EXAMPLE):
        refused = rig.client(source_address=("127.0.0.2", 0))
        with pytest.raises(aiosmtplib.SMTPConnectError) as caught:
            await refused.connect()
        assert caught.value.code == 421
        assert caught.value.message.startswith("service not accepted from 127.0.0.2:")
        allowed = rig.client()
        greeting = await allowed.connect()
        assert greeting.code == 220
        await allowed.sendmail("a@example.com", ["b@example.net"], MESSAGE)
        await allowed.quit()
        assert len(rig.spool.ids()) == 1


# --- smtp_server_ehlo --------------------------------------------------------------------------

EHLO_REJECT_EXAMPLE = """
-- Called to validate the helo and/or ehlo domain
kumo.on('smtp_server_ehlo', function(domain, conn_meta)
  -- Use kumo.reject to return an error to the EHLO command
  if domain == 'bad.actor' then
    kumo.reject(420, 'go away')
  end
end)
"""

EHLO_EXTENSION_EXAMPLE = """
kumo.on('smtp_server_ehlo', function(domain, conn_meta, extensions)
  table.insert(extensions, 'X-SOMETHING')
  return extensions
end)
"""


async def test_ehlo_example_refuses_the_named_domain_and_the_session_goes_on(
    tmp_path: Path,
) -> None:
    async for rig in rig_for(tmp_path, EHLO_REJECT_EXAMPLE):
        client = rig.client()
        await client.connect()
        refused = await client.execute_command(b"EHLO", b"bad.actor")
        assert (refused.code, refused.message) == (420, "go away")
        helo_refused = await client.execute_command(b"HELO", b"bad.actor")
        assert helo_refused.code == 420
        accepted = await client.ehlo(hostname="good.example")
        assert accepted.code == 250
        await client.sendmail("a@example.com", ["b@example.net"], MESSAGE)
        await client.quit()
        (message,) = rig.spool.enumerate()
        assert message.meta["ehlo_domain"] == "good.example"


async def test_ehlo_example_advertises_the_extension_it_adds(tmp_path: Path) -> None:
    async for rig in rig_for(tmp_path, EHLO_EXTENSION_EXAMPLE):
        client = rig.client()
        await client.connect()
        reply = await client.ehlo(hostname="client.example")
        assert "x-something" in client.esmtp_extensions
        assert "pipelining" in client.esmtp_extensions  # the others are still there
        assert reply.message.splitlines()[-1] == "X-SOMETHING"  # where table.insert put it
        await client.quit()


# --- smtp_server_mail_from / smtp_server_rcpt_to -------------------------------------------------

MAIL_FROM_EXAMPLE = """
kumo.on('smtp_server_mail_from', function(sender)
  if sender.domain == 'bad.domain' then
    kumo.reject(420, 'not thanks')
  end
end)
"""

RCPT_TO_EXAMPLE = """
kumo.on('smtp_server_rcpt_to', function(recipient)
  if recipient.domain == 'bad.domain' then
    kumo.reject(420, 'not thanks')
  end
end)
"""


async def test_mail_from_example_refuses_the_sender_at_mail(tmp_path: Path) -> None:
    async for rig in rig_for(tmp_path, MAIL_FROM_EXAMPLE):
        client = await connected(rig)
        refused = await client.execute_command(b"MAIL", b"FROM:<x@bad.domain>")
        assert (refused.code, refused.message) == (420, "not thanks")
        # no transaction was opened: the next MAIL is not a nested one
        await client.sendmail("a@good.domain", ["b@example.net"], MESSAGE)
        await client.quit()
        assert [m.sender for m in rig.spool.enumerate()] == ["a@good.domain"]


async def test_rcpt_to_example_refuses_that_recipient_only(tmp_path: Path) -> None:
    async for rig in rig_for(tmp_path, RCPT_TO_EXAMPLE):
        client = await connected(rig)
        await client.mail("a@example.com")
        refused = await client.execute_command(b"RCPT", b"TO:<x@bad.domain>")
        assert (refused.code, refused.message) == (420, "not thanks")
        assert (await client.rcpt("b@example.net"))[0] == 250
        assert (await client.data(MESSAGE)).code == 250
        await client.quit()
        assert [m.recipient for m in rig.spool.enumerate()] == ["b@example.net"]


CONN_META_POLICY = """
kumo.on('smtp_server_ehlo', function(domain, conn_meta)
  conn_meta:set_meta('x_seen', { ehlo = domain, count = 1 })
end)
kumo.on('smtp_server_mail_from', function(sender, conn_meta)
  local seen = conn_meta:get_meta 'x_seen'
  seen.count = seen.count + 1
  seen.sender = sender.email
  conn_meta:set_meta('x_seen', seen)
  if sender.user == 'stop' then
    kumo.disconnect(451, '4.7.1 no thank you')
  end
end)
kumo.on('smtp_server_rcpt_to', function(recipient, conn_meta)
  if recipient.user == 'follow' then
    kumo.disconnect(550, '5.7.1 go', 'FollowWith421')
  end
  conn_meta:set_meta('x_last_rcpt', tostring(recipient))
end)
kumo.on('smtp_server_message_received', function(msg, conn_meta)
  msg:set_meta('x_from_conn', conn_meta:get_meta('received_via'))
end)
"""


async def test_conn_meta_carries_state_between_events_into_the_message(tmp_path: Path) -> None:
    async for rig in rig_for(tmp_path, CONN_META_POLICY):
        client = await connected(rig)
        await client.sendmail("a@example.com", ["b@example.net"], MESSAGE)
        await client.quit()
        (message,) = rig.spool.enumerate()
        # a table set in conn_meta stays a table in the message's meta
        assert message.meta["x_seen"] == {
            "count": 2,
            "ehlo": "client.example",
            "sender": "a@example.com",
        }
        assert message.meta["x_last_rcpt"] == "b@example.net"
        assert message.meta["x_from_conn"] == f"127.0.0.1:{rig.port}"
        assert message.meta["received_via"] == f"127.0.0.1:{rig.port}"
        assert message.meta["reception_protocol"] == "ESMTP"


async def test_kumo_disconnect_answers_then_ends_the_session(tmp_path: Path) -> None:
    async for rig in rig_for(tmp_path, CONN_META_POLICY):
        client = await connected(rig)
        reply = await client.execute_command(b"MAIL", b"FROM:<stop@example.com>")
        assert (reply.code, reply.message) == (451, "4.7.1 no thank you")
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await client.noop()
        follow = await connected(rig)
        await follow.mail("a@example.com")
        reply = await follow.execute_command(b"RCPT", b"TO:<follow@example.net>")
        assert (reply.code, reply.message) == (550, "5.7.1 go")
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await follow.noop()
        assert rig.spool.ids() == []


async def test_pipelined_commands_are_answered_in_order_after_each_handler(
    tmp_path: Path,
) -> None:
    slow = """
kumo.on('smtp_server_rcpt_to', function(recipient)
  kumo.sleep(0.05)
  if recipient.user == 'no' then kumo.reject(550, '5.1.1 no such user') end
end)
"""
    async for rig in rig_for(tmp_path, slow):
        reader, writer = await asyncio.open_connection("127.0.0.1", rig.port)
        await reader.readline()
        writer.write(
            b"EHLO c\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<no@example.net>\r\n"
            b"RCPT TO:<yes@example.net>\r\nDATA\r\n" + MESSAGE + b".\r\nQUIT\r\n"
        )
        replies = [line.decode() for line in (await reader.read()).splitlines()]
        codes = [line[:4] for line in replies if line[3] == " "]
        assert codes == ["250 ", "250 ", "550 ", "250 ", "354 ", "250 ", "221 "]
        writer.close()
        assert [m.recipient for m in rig.spool.enumerate()] == ["yes@example.net"]


# --- smtp_server_data ---------------------------------------------------------------------------

DATA_POLICY = """
kumo.on('smtp_server_data', function(message, conn_meta)
  if message:get_first_named_header_value('Subject') == 'spam' then
    kumo.reject(552, '5.7.0 content refused')
  end
  message:set_meta('x_checked', 'yes')
end)
"""


async def test_data_event_decides_at_the_final_dot_for_every_recipient(tmp_path: Path) -> None:
    async for rig in rig_for(tmp_path, DATA_POLICY):
        client = await connected(rig)
        spam = b"Subject: spam\r\n\r\nbuy\r\n"
        with pytest.raises(aiosmtplib.SMTPDataError) as caught:
            await client.sendmail("a@example.com", ["b@example.net", "c@example.net"], spam)
        assert (caught.value.code, caught.value.message) == (552, "5.7.0 content refused")
        await client.sendmail("a@example.com", ["b@example.net", "c@example.net"], MESSAGE)
        await client.quit()
        messages = list(rig.spool.enumerate())
        assert len(messages) == 2
        assert all(m.meta["x_checked"] == "yes" for m in messages)


ALIAS_POLICY = """
kumo.on('smtp_server_data', function(msg, conn_meta)
  local given = msg:recipient_list()
  msg:set_meta('x_given', #given)
  local expanded = {}
  for _, recipient in ipairs(given) do
    if recipient.user == 'team' then
      table.insert(expanded, 'ann@' .. recipient.domain)
      table.insert(expanded, 'bob@' .. recipient.domain)
    else
      table.insert(expanded, recipient)
    end
  end
  msg:set_recipient(expanded)
end)
"""


async def test_data_event_sees_every_recipient_and_may_expand_the_list(tmp_path: Path) -> None:
    """KumoMTA's page: the recipient list may be changed here (alias expansion); each
    recipient of the new list gets its own message."""
    async for rig in rig_for(tmp_path, ALIAS_POLICY):
        client = await connected(rig)
        await client.sendmail("a@example.com", ["team@example.net", "c@example.org"], MESSAGE)
        await client.quit()
        messages = sorted(rig.spool.enumerate(), key=lambda m: m.recipient)
        assert [m.recipient for m in messages] == [
            "ann@example.net",
            "bob@example.net",
            "c@example.org",
        ]
        assert {m.meta["x_given"] for m in messages} == {2}


# --- smtp_server_message_received ----------------------------------------------------------------

RECEIVED_POLICY = """
kumo.on('smtp_server_message_received', function(msg, conn_meta)
  -- the Received header is there already; the supplemental header comes after
  if msg:get_first_named_header_value('Received') == nil then error('no Received header') end
  if msg:get_first_named_header_value('X-KumoRef') ~= nil then error('too early') end
  msg:set_meta('tenant', conn_meta:get_meta('ehlo_domain'))
  if msg:recipient().email == 'blocked@example.net' then
    kumo.reject(550, '5.7.1 blocked by policy')
  end
end)
"""


async def test_message_received_sees_the_received_header_and_refuses_the_whole_transaction(
    tmp_path: Path,
) -> None:
    async for rig in rig_for(tmp_path, RECEIVED_POLICY):
        client = await connected(rig)
        with pytest.raises(aiosmtplib.SMTPDataError) as caught:
            await client.sendmail(
                "a@example.com", ["ok@example.net", "blocked@example.net"], MESSAGE
            )
        assert caught.value.code == 550
        assert rig.spool.ids() == []  # all or nothing
        await client.sendmail("a@example.com", ["ok@example.net"], MESSAGE)
        await client.quit()
        (message,) = rig.spool.enumerate()
        assert message.meta["tenant"] == "client.example"
        content = await rig.spool.read_content(message.id)
        assert content.startswith(b"X-KumoRef: ")
        assert without_trace(content) == MESSAGE


# --- smtp_server_rewrite_response ---------------------------------------------------------------

REWRITE_EXAMPLE = """
kumo.on(
  'smtp_server_rewrite_response',
  function(status, response, command, conn_meta)
    if command == 'DATA' and status == 250 then
      return 250, 'super fantastic!\\n' .. response
    end

    -- leave the status and response unchanged
  end
)
"""

REWRITE_POLICY = """
kumo.on('smtp_server_rewrite_response', function(status, response, command, conn_meta)
  if command ~= nil and command:match('^RCPT') and status == 550 then
    return 421, '4.7.0 go away'
  end
  if command == nil and status == 220 then
    return nil, 'rewritten banner'
  end
  if command == 'NOOP' then error('a broken rewrite') end
end)
"""


async def test_rewrite_response_example_amends_the_data_reply(tmp_path: Path) -> None:
    async for rig in rig_for(tmp_path, REWRITE_EXAMPLE):
        client = await connected(rig)
        errors, reply = await client.sendmail("a@example.com", ["b@example.net"], MESSAGE)
        assert errors == {}
        first, second = reply.splitlines()
        assert first == "super fantastic!"
        assert second.startswith("2.0.0 OK queued as ")
        assert (await client.noop()).message == "2.0.0 OK"  # the others unchanged
        await client.quit()


async def test_rewrite_response_sees_the_greeting_and_a_421_ends_the_session(
    tmp_path: Path,
) -> None:
    async for rig in rig_for(tmp_path, REWRITE_POLICY, relay_hosts=()):
        client = rig.client()
        greeting = await client.connect()
        assert (greeting.code, greeting.message) == (220, "rewritten banner")
        await client.ehlo(hostname="client.example")
        noop = await client.noop()  # the handler fails: the reply goes out as it was
        assert (noop.code, noop.message) == (250, "2.0.0 OK")
        await client.mail("a@example.com")
        reply = await client.execute_command(b"RCPT", b"TO:<b@example.net>")
        assert (reply.code, reply.message) == (421, "4.7.0 go away")
        with pytest.raises(aiosmtplib.SMTPServerDisconnected):
            await client.noop()


# --- smtp_server_get_dynamic_parameters ----------------------------------------------------------

# docs/reference/events/smtp_server_get_dynamic_parameters.md, its first example as written
DYNAMIC_EXAMPLE = """
kumo.on('init', function()
  kumo.start_esmtp_listener {
    listen = '0.0.0.0:25',
  }
end)

kumo.on('smtp_server_get_dynamic_parameters', function(listener, conn_meta)
  return {
    via = {
      -- When clients connect to this server via its 10.0.0.1 IP
      -- address, we will use the hostname and TLS parameters
      -- defined in this block
      ['10.0.0.1'] = {
        hostname = 'mx.example-customer.com',
        tls_certificate = '/path/to/customer1.cert',
        tls_private_key = '/path/to/customer1.key',
      },
      -- When clients connect to this server via its 10.0.0.2 IP
      -- address, we will use the hostname and TLS parameters
      -- defined in this block
      ['10.0.0.2'] = {
        hostname = 'mx.other-customer.com',
        tls_certificate = '/path/to/customer2.cert',
        tls_private_key = '/path/to/customer2.key',
      },
    },
  }
end)
"""


async def test_dynamic_parameters_example_runs_and_applies_no_block_on_loopback(
    tmp_path: Path,
) -> None:
    async for rig in rig_for(tmp_path, DYNAMIC_EXAMPLE, hostname="mx.listener.example"):
        client = rig.client()
        greeting = await client.connect()
        assert greeting.message.startswith("mx.listener.example ")  # no block is 127.0.0.1's
        await client.quit()


async def test_dynamic_parameters_set_the_connections_keys(tmp_path: Path) -> None:
    tls, client_context = tls_files(tmp_path)
    policy = f"""
kumo.on('smtp_server_get_dynamic_parameters', function(listener, conn_meta)
  if conn_meta:get_meta('received_from'):match('^127%.0%.0%.3:') then
    kumo.reject(421, '4.7.0 not from there')
  end
  return {{
    banner = 'dynamic banner',
    meta = {{ x_listener = listener }},
    via = {{
      ['127.0.0.1'] = {{
        hostname = 'mx.example-customer.com',
        tls_certificate = '{tls["tls_certificate"]}',
        tls_private_key = '{tls["tls_private_key"]}',
      }},
    }},
  }}
end)
"""
    async for rig in rig_for(tmp_path, policy, hostname="mx.listener.example"):
        client = rig.client(tls_context=client_context)
        greeting = await client.connect()
        assert greeting.message == "mx.example-customer.com dynamic banner"
        await client.ehlo(hostname="client.example")
        assert "starttls" in client.esmtp_extensions  # the via block's certificate
        await client.starttls(server_hostname="localhost")
        await client.sendmail("a@example.com", ["b@example.net"], MESSAGE)
        await client.quit()
        (message,) = rig.spool.enumerate()
        assert message.meta["hostname"] == "mx.example-customer.com"
        assert message.meta["tls_protocol_version"].startswith("TLSv1.")
        assert message.meta["x_listener"] == f"127.0.0.1:{rig.port}"
        refused = rig.client(source_address=("127.0.0.3", 0))
        with pytest.raises(aiosmtplib.SMTPConnectError) as caught:
            await refused.connect()
        assert (caught.value.code, caught.value.message) == (421, "4.7.0 not from there")


async def test_a_failing_handler_gets_451_and_the_session_goes_on(tmp_path: Path) -> None:
    policy = """
kumo.on('smtp_server_mail_from', function(sender)
  if sender.user == 'bug' then error('a bug in the policy') end
end)
"""
    async for rig in rig_for(tmp_path, policy):
        client = await connected(rig)
        reply = await client.execute_command(b"MAIL", b"FROM:<bug@example.com>")
        assert (reply.code, reply.message) == (451, "4.3.0 Local policy error, try again later")
        await client.sendmail("a@example.com", ["b@example.net"], MESSAGE)
        await client.quit()
        assert len(rig.spool.ids()) == 1
