"""The user guide's `listener_domains.toml`, unchanged (from the shared reference directory:
tests/reference_examples.py), loaded by the bundled helper behind a
real listener: mail is relayed and refused as its comments say, for an SMTP client that is
not one of `relay_hosts` (aiosmtplib; SMTP AUTH over STARTTLS for `relay_from_authz`).

Its `["*"]` section logs reports for every domain (`log_oob = true`, `log_arf = true`), so a
recipient without an entry of its own is taken at RCPT (a report may come) and plain mail to it
is refused once its content is known, at the end of DATA."""

from __future__ import annotations

import ssl
from pathlib import Path

import aiosmtplib
import pytest

from tests.core.reports import sample
from tests.reference_examples import kumomta_example
from tests.smtp_rig import MESSAGE, SmtpRig, smtp_rig, tls_files
from tests.test_smtp_listener_domains import crlf

POLICY = """
local listener_domains = require 'policy-extras.listener_domains'
kumo.on('get_listener_domain', listener_domains:setup { EXAMPLE })
kumo.on('smtp_server_auth_plain', function(authz, authc, password, conn_meta)
  return authc == 'username1' and password == 'pw-of-username1'
end)
"""


async def session(rig: SmtpRig, context: ssl.SSLContext, user: str | None) -> aiosmtplib.SMTP:
    client = rig.client(tls_context=context)
    await client.connect()
    await client.starttls(server_hostname="localhost")
    await client.ehlo(hostname="client.example")
    if user is not None:
        await client.auth_plain(user, "pw-of-username1")
    return client


async def transaction(
    client: aiosmtplib.SMTP, sender: str, recipient: str, content: bytes = MESSAGE
) -> tuple[int, int]:
    """The codes of RCPT and of the end of DATA (0 when DATA was not reached)."""
    await client.mail(sender)
    rcpt = await client.execute_command(b"RCPT", f"TO:<{recipient}>".encode())
    if rcpt.code != 250:
        await client.rset()
        return rcpt.code, 0
    try:
        data = await client.data(crlf(content))
    except aiosmtplib.SMTPDataError as refused:
        return rcpt.code, refused.code
    return rcpt.code, data.code


@pytest.fixture
def policy() -> str:
    """The policy, with the example's path (the test is skipped without it)."""
    return POLICY.replace("EXAMPLE", repr(str(kumomta_example("listener_domains.toml"))))


@pytest.fixture
def tls(tmp_path: Path) -> tuple[dict[str, str], ssl.SSLContext]:
    return tls_files(tmp_path)


async def test_the_user_guide_example_relays_and_refuses_as_its_comments_say(
    tmp_path: Path, policy: str, tls: tuple[dict[str, str], ssl.SSLContext]
) -> None:
    keys, context = tls
    async for rig in smtp_rig(tmp_path, policy, relay_hosts=(), **keys):
        client = await session(rig, context, None)
        # "allow relaying mail from anyone, so long as it is addressed to example.com"
        assert await transaction(client, "a@elsewhere.example", "b@example.com") == (250, 250)
        # "<anything>.example.com": relay_to
        assert await transaction(client, "a@elsewhere.example", "b@news.example.com") == (
            250,
            250,
        )
        # www.example.com: "explicitly set options to false to essentially exclude an entry"
        assert await transaction(client, "a@elsewhere.example", "b@www.example.com") == (550, 0)
        # any other domain: ["*"] takes reports only
        assert await transaction(client, "a@elsewhere.example", "b@other.example") == (250, 550)
        # send.example.com: "the connected peer matches one of the listed CIDR blocks" —
        # 127.0.0.1 is not in 10.0.0.0/24
        assert await transaction(client, "a@send.example.com", "b@other.example") == (250, 550)
        # auth-send.example.com: not authenticated, not relayed
        assert await transaction(client, "a@auth-send.example.com", "b@other.example") == (
            250,
            550,
        )
        await client.quit()
        authenticated = await session(rig, context, "username1")
        # "so long as ... the connected peer has authenticated as any of the authorization
        # identities listed"
        assert await transaction(authenticated, "a@auth-send.example.com", "b@other.example") == (
            250,
            250,
        )
        # the identity lets it relay for that sender domain only
        assert await transaction(authenticated, "a@elsewhere.example", "b@other.example") == (
            250,
            550,
        )
        await authenticated.quit()
        assert sorted(m.recipient for m in rig.spool.enumerate()) == [
            "b@example.com",
            "b@news.example.com",
            "b@other.example",
        ]


async def test_the_user_guide_example_logs_reports_sent_to_its_report_domains(
    tmp_path: Path, policy: str, tls: tuple[dict[str, str], ssl.SSLContext]
) -> None:
    keys, context = tls
    async for rig in smtp_rig(tmp_path, policy, relay_hosts=(), **keys):
        client = await session(rig, context, None)
        # "accept and log OOB bounce reports sent to bounce.example.com"
        dsn = sample("rfc3464-simple.eml")
        assert await transaction(client, "", "b@bounce.example.com", dsn) == (250, 250)
        # "accept and log ARF feedback reports sent to fbl.example.com"
        arf = sample("rfc5965-simple.eml")
        assert await transaction(client, "", "c@fbl.example.com", arf) == (250, 250)
        await client.quit()
        records = await rig.records()
        assert [(r["type"], r["recipient"]) for r in records] == [
            ("Reception", "b@bounce.example.com"),
            ("OOB", "louisl@larry.slip.umd.edu"),
            ("Feedback", "c@fbl.example.com"),
        ]
        assert records[0]["tls_protocol_version"].startswith("TLSv1.")
        # `true` is LogThenRelay: both are kept for delivery after they are logged
        assert len(rig.spool.ids()) == 2
