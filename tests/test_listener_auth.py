"""SMTP AUTH on the listener with aiosmtplib: PLAIN and LOGIN over STARTTLS with a trustme
certificate, decided by `smtp_server_auth_plain` (KumoMTA's reference examples as written);
refused in clear unless the listener allows it; a failure is `535 5.7.8`, each one of a client
waiting longer; relaying only once authenticated; and the password in no log line, no record
and no spool file, in process and in a `kumoclient run` daemon."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest
import structlog

from kumoclient.core import smtp_auth
from kumoclient.listener import auth
from tests.daemon_process import DaemonProcess, free_port
from tests.sink_policy import write_sink_policy
from tests.smtp_rig import MESSAGE, SmtpRig, smtp_rig, tls_files
from tests.test_daemon import wait_for

PASSWORD = "tiger"  # the example's

# docs/reference/events/smtp_server_auth_plain.md, the first example as written
AUTH_EXAMPLE = """
-- Use this to lookup and confirm a user/password credential
kumo.on('smtp_server_auth_plain', function(authz, authc, password, conn_meta)
  -- This is just an example of how to populate the return value,
  -- not a recommended way to handle passwords in production!
  -- In particular, it is an absolutely terrible idea to hard code
  -- a password here in plain text!
  local password_database = {
    ['daniel'] = 'tiger',
  }
  if password == '' then
    return false
  end
  return password_database[authc] == password
end)
"""

# docs/reference/kumo/make_listener_domain/relay_to.md: any authenticated user may relay
RELAY_IF_AUTHENTICATED = """
kumo.on('get_listener_domain', function(domain, listener, conn_meta)
  if conn_meta:get_meta 'authz_id' then
    -- We're authenticated as someone.
    -- Allow relaying
    return kumo.make_listener_domain {
      relay_to = true,
    }
  end
end)
"""

# the second example of smtp_server_auth_plain.md (an AuthInfo with groups), as written, and
# a handler showing what the session then knows
AUTH_INFO_EXAMPLE = """
-- This is just an example of how to populate the return value,
-- not a recommended way to handle passwords in production!
-- In particular, it is an absolutely terrible idea to hard code
-- a password here in plain text!

local password_database = {
  ['daniel'] = {
    password = 'tiger',
    groups = { 'group1', 'group2' },
  },
}

kumo.on('smtp_server_auth_plain', function(authz, authc, password)
  local entry = password_database[authc]
  if not entry then
    return false
  end
  if entry.password ~= password then
    return false
  end

  -- Return an AuthInfo that lists out the identity and group
  -- membership
  return {
    identities = {
      { identity = authz, context = 'SmtpAuthPlainAuthorization' },
      { identity = authc, context = 'SmtpAuthPlainAuthentication' },
    },
    groups = entry.groups,
  }
end)

kumo.on('smtp_server_mail_from', function(sender, conn_meta)
  local info = conn_meta:auth_info()
  conn_meta:set_meta('x_groups', table.concat(info.groups, ','))
end)
"""


@pytest.fixture
def tls(tmp_path: Path) -> tuple[dict[str, str], ssl.SSLContext]:
    return tls_files(tmp_path)


async def rig_for(tmp_path: Path, policy: str, **listener: Any) -> AsyncIterator[SmtpRig]:
    async for rig in smtp_rig(tmp_path, policy, **listener):
        yield rig


async def secured(rig: SmtpRig, context: ssl.SSLContext) -> aiosmtplib.SMTP:
    client = rig.client(tls_context=context)
    await client.connect()
    await client.ehlo(hostname="client.example")
    assert not any(name.startswith("auth") for name in client.esmtp_extensions)  # not in clear
    await client.starttls(server_hostname="localhost")
    await client.ehlo(hostname="client.example")
    return client


async def test_auth_plain_over_starttls_admits_the_example_user(
    tmp_path: Path, tls: tuple[dict[str, str], ssl.SSLContext]
) -> None:
    keys, context = tls
    async for rig in rig_for(tmp_path, AUTH_EXAMPLE, **keys):
        client = await secured(rig, context)
        assert client.supported_auth_methods == ["plain", "login"]
        reply = await client.auth_plain("daniel", PASSWORD)
        assert (reply.code, reply.message) == (235, "2.7.0 Authentication successful")
        again = await client.execute_command(b"AUTH", b"PLAIN")
        assert again.code == 503  # once per session
        await client.sendmail("a@example.com", ["b@example.net"], MESSAGE)
        await client.quit()
        (message,) = rig.spool.enumerate()
        assert (message.meta["authz_id"], message.meta["authn_id"]) == ("daniel", "daniel")
        received = await rig.spool.read_content(message.id)
        assert b"with ESMTPSA (TLSv1." in received  # RFC 3848: TLS, authenticated


async def test_auth_login_over_starttls_admits_the_example_user(
    tmp_path: Path, tls: tuple[dict[str, str], ssl.SSLContext]
) -> None:
    keys, context = tls
    async for rig in rig_for(tmp_path, AUTH_EXAMPLE, **keys):
        client = await secured(rig, context)
        reply = await client.auth_login("daniel", PASSWORD)
        assert reply.code == 235
        await client.quit()


async def test_auth_is_refused_in_clear_unless_the_listener_allows_it(
    tmp_path: Path, tls: tuple[dict[str, str], ssl.SSLContext]
) -> None:
    keys, _ = tls
    async for rig in rig_for(tmp_path / "tls", AUTH_EXAMPLE, **keys):
        client = rig.client()
        await client.connect()
        await client.ehlo(hostname="client.example")
        reply = await client.execute_command(b"AUTH", b"PLAIN")
        assert (reply.code, reply.message) == (
            538,
            "5.7.11 Encryption required for requested authentication mechanism",
        )
        await client.quit()
    async for rig in rig_for(tmp_path / "clear", AUTH_EXAMPLE, allow_smtp_auth_without_tls=True):
        client = rig.client()
        await client.connect()
        await client.ehlo(hostname="client.example")
        assert client.supported_auth_methods == ["plain", "login"]
        assert (await client.auth_plain("daniel", PASSWORD)).code == 235
        await client.quit()


async def test_a_wrong_password_is_535_and_the_session_may_try_again(
    tmp_path: Path, tls: tuple[dict[str, str], ssl.SSLContext]
) -> None:
    keys, context = tls
    async for rig in rig_for(tmp_path, AUTH_EXAMPLE, **keys):
        client = await secured(rig, context)
        with pytest.raises(aiosmtplib.SMTPAuthenticationError) as caught:
            await client.auth_plain("daniel", "guess")
        assert (caught.value.code, caught.value.message) == (
            535,
            "5.7.8 Authentication credentials invalid",
        )
        assert rig.server.listener.failures["127.0.0.1"][0] == 1  # the next one waits longer
        assert (await client.auth_login("daniel", PASSWORD)).code == 235
        assert "127.0.0.1" not in rig.server.listener.failures  # forgotten once admitted
        await client.quit()


async def test_malformed_responses_get_their_replies(
    tmp_path: Path, tls: tuple[dict[str, str], ssl.SSLContext]
) -> None:
    keys, context = tls
    async for rig in rig_for(tmp_path, AUTH_EXAMPLE, **keys):
        client = await secured(rig, context)
        assert (await client.execute_command(b"AUTH", b"CRAM-MD5")).code == 504
        assert (await client.execute_command(b"AUTH", b"PLAIN", b"%%%")).code == 501
        prompt = await client.execute_command(b"AUTH", b"LOGIN")
        assert (prompt.code, prompt.message) == (334, "VXNlcm5hbWU6")
        cancelled = await client.execute_command(b"*")
        assert (cancelled.code, cancelled.message) == (501, "5.7.0 AUTH cancelled by client")
        assert (await client.noop()).code == 250  # the exchange is over
        await client.quit()


async def test_relaying_only_once_authenticated(
    tmp_path: Path, tls: tuple[dict[str, str], ssl.SSLContext]
) -> None:
    keys, context = tls
    policy = AUTH_EXAMPLE + RELAY_IF_AUTHENTICATED
    async for rig in rig_for(tmp_path, policy, relay_hosts=(), **keys):
        client = await secured(rig, context)
        await client.mail("a@example.com")
        refused = await client.execute_command(b"RCPT", b"TO:<b@example.net>")
        assert (refused.code, refused.message) == (550, "5.7.1 relaying denied")
        await client.rset()
        await client.auth_plain("daniel", PASSWORD)
        await client.sendmail("a@example.com", ["b@example.net"], MESSAGE)
        await client.quit()
        assert [m.recipient for m in rig.spool.enumerate()] == ["b@example.net"]


async def test_an_auth_info_answer_names_the_sessions_groups(
    tmp_path: Path, tls: tuple[dict[str, str], ssl.SSLContext]
) -> None:
    keys, context = tls
    async for rig in rig_for(tmp_path, AUTH_INFO_EXAMPLE, **keys):
        client = await secured(rig, context)
        await client.auth_plain("daniel", "tiger")
        await client.sendmail("a@example.com", ["b@example.net"], MESSAGE)
        await client.quit()
        (message,) = rig.spool.enumerate()
        assert message.meta["x_groups"] == "group1,group2"
        assert message.meta["authn_id"] == "daniel"


async def test_the_password_is_in_no_log_line_record_or_spool_file(
    tmp_path: Path, tls: tuple[dict[str, str], ssl.SSLContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    keys, context = tls
    monkeypatch.setattr(auth, "failure_delay", lambda failures: 0.0)  # (the wait is core's)
    policy = AUTH_EXAMPLE + RELAY_IF_AUTHENTICATED
    with structlog.testing.capture_logs() as logged:
        async for rig in rig_for(tmp_path, policy, relay_hosts=(), **keys):
            client = await secured(rig, context)
            for attempt in (client.auth_plain, client.auth_login):
                with pytest.raises(aiosmtplib.SMTPAuthenticationError):
                    await attempt("daniel", PASSWORD + "x")
            await client.auth_plain("daniel", PASSWORD)
            await client.sendmail("a@example.com", ["b@example.net"], MESSAGE)
            await client.quit()
            records = await rig.records()
    assert logged  # something was logged
    assert records  # and recorded
    text = json.dumps(logged, default=str) + json.dumps(records)
    files = written_files(tmp_path)
    for secret in secrets(PASSWORD, PASSWORD + "x"):
        assert secret not in text
        assert secret.encode() not in files


def secrets(*passwords: str) -> list[str]:
    """Each password, and the base64 a client sent it in (PLAIN's whole response, LOGIN's)."""
    found = []
    for password in passwords:
        found.append(password)
        found.append(base64.b64encode(f"\0daniel\0{password}".encode()).decode())
        found.append(base64.b64encode(password.encode()).decode())
    return found


def written_files(root: Path) -> bytes:
    """Every file under `root` but the policy (which holds the example's password)."""
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file() and p.suffix != ".lua")


async def test_each_failure_of_a_client_waits_longer_before_its_535(
    tmp_path: Path, tls: tuple[dict[str, str], ssl.SSLContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The waits the listener asks for (recorded, not slept: no timed assertion) double
    with each failure of the client's address, across sessions, up to the limit."""
    asked: list[float] = []

    def recorded(failures: int) -> float:
        asked.append(smtp_auth.failure_delay(failures))
        return 0.0

    monkeypatch.setattr(auth, "failure_delay", recorded)
    keys, context = tls
    async for rig in rig_for(tmp_path, AUTH_EXAMPLE, **keys):
        for _ in range(3):
            client = await secured(rig, context)
            for attempt in (client.auth_plain, client.auth_login):
                with pytest.raises(aiosmtplib.SMTPAuthenticationError) as caught:
                    await attempt("daniel", "guess")
                assert caught.value.code == 535
            await client.quit()
    assert asked == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_a_daemon_keeps_the_password_out_of_its_stderr_records_and_spool(
    tmp_path: Path, tls: tuple[dict[str, str], ssl.SSLContext]
) -> None:
    """`kumoclient run` with the example's AUTH: AUTH refused in clear, two failed attempts
    and one that succeeds over STARTTLS, a message relayed; then the daemon's stderr (its
    diagnostic log), its record logs and its spool (meta and content) hold no password."""
    keys, context = tls
    policy = write_sink_policy(
        tmp_path / "policy.lua",
        free_port(),  # nobody listens there: the message stays spooled
        init=(
            "kumo.start_esmtp_listener { listen = '127.0.0.1:25', relay_hosts = {}, "
            f"tls_certificate = '{keys['tls_certificate']}', "
            f"tls_private_key = '{keys['tls_private_key']}' }}"
        ),
    )
    policy.write_text(policy.read_text() + AUTH_EXAMPLE + RELAY_IF_AUTHENTICATED)
    data = tmp_path / "data"
    process = DaemonProcess(data, policy=policy).start()
    try:
        asyncio.run(_authenticate_and_send(process.port, context))
        wait_for(lambda: any(r["type"] == "Reception" for r in logged_records(data)))
    finally:
        assert process.stop() == 0
    assert "smtp authentication failed" in process.stderr()
    for secret in secrets(PASSWORD, PASSWORD + "x"):
        assert secret not in process.stderr()
        assert secret.encode() not in written_files(data)


async def _authenticate_and_send(port: int, context: ssl.SSLContext) -> None:
    client = aiosmtplib.SMTP(
        hostname="127.0.0.1", port=port, timeout=30, start_tls=False, tls_context=context
    )
    await client.connect()
    await client.ehlo(hostname="client.example")
    clear = await client.execute_command(b"AUTH", b"PLAIN")
    assert clear.code == 538
    await client.starttls(server_hostname="localhost")
    await client.ehlo(hostname="client.example")
    for attempt in (client.auth_plain, client.auth_login):
        with pytest.raises(aiosmtplib.SMTPAuthenticationError):
            await attempt("daniel", PASSWORD + "x")
    await client.auth_plain("daniel", PASSWORD)
    await client.sendmail("a@example.com", ["b@example.net"], MESSAGE)
    await client.quit()


def logged_records(data: Path) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for path in sorted((data / "logs").glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]
