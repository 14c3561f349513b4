"""Listener domains over SMTP (aiosmtplib against the real listener, reception, spool and log):
who may relay (KumoMTA's reference examples for `kumo.make_listener_domain` as written), and
inbound reports — the RFC 3464 and RFC 5965 examples — logged as OOB and Feedback records with
the fields of KumoMTA's log-record reference, relayed or dropped as the domain says."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from tests.core.reports import sample
from tests.smtp_rig import MESSAGE, SmtpRig, smtp_rig

RELAY_TO_EXAMPLE = """
kumo.on('get_listener_domain', function(domain, listener, conn_meta)
  if domain == 'example.com' then
    return kumo.make_listener_domain {
      relay_to = true,
    }
  end
end)
"""

RELAY_FROM_EXAMPLE = """
kumo.on('get_listener_domain', function(domain, listener, conn_meta)
  if domain == 'send.example.com' then
    return kumo.make_listener_domain {
      relay_from = { '10.0.0.0/24' },
    }
  end
end)
"""

LOG_OOB_EXAMPLE = """
kumo.on('get_listener_domain', function(domain, listener, conn_meta)
  if domain == 'bounce.example.com' then
    return kumo.make_listener_domain {
      log_oob = 'LogThenDrop',
    }
  end
end)
"""

LOG_ARF_EXAMPLE = """
kumo.on('get_listener_domain', function(domain, listener, conn_meta)
  if domain == 'fbl.example.com' then
    return kumo.make_listener_domain {
      log_arf = 'LogThenDrop',
    }
  end
end)
"""

# both kinds relayed after they are logged, and a domain that relays whatever comes
LOG_THEN_RELAY = """
kumo.on('get_listener_domain', function(domain, listener, conn_meta)
  if domain == 'reports.example.com' then
    return kumo.make_listener_domain { log_oob = true, log_arf = 'LogThenRelay' }
  end
  if domain == 'open.example.com' then
    return kumo.make_listener_domain { relay_to = true, log_oob = 'LogThenDrop' }
  end
end)
"""


def crlf(content: bytes) -> bytes:
    return re.sub(rb"\r?\n", b"\r\n", content)


async def send(rig: SmtpRig, recipients: list[str], content: bytes, sender: str = "") -> str:
    """One transaction from 127.0.0.1 saying EHLO client.example; the reply to the data."""
    client = rig.client()
    await client.connect()
    await client.ehlo(hostname="client.example")
    try:
        _, reply = await client.sendmail(sender, recipients, crlf(content))
    finally:
        await client.quit()
    return reply


def of_type(records: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [record for record in records if record["type"] == kind]


async def test_relay_to_example_takes_mail_for_its_domain_from_anyone(tmp_path: Path) -> None:
    async for rig in smtp_rig(tmp_path, RELAY_TO_EXAMPLE, relay_hosts=()):
        client = rig.client()
        await client.connect()
        await client.ehlo(hostname="client.example")
        await client.mail("a@elsewhere.example")
        refused = await client.execute_command(b"RCPT", b"TO:<b@other.example>")
        assert (refused.code, refused.message) == (550, "5.7.1 relaying denied")
        assert (await client.rcpt("b@example.com"))[0] == 250
        assert (await client.data(crlf(MESSAGE))).code == 250
        await client.quit()
        assert [m.recipient for m in rig.spool.enumerate()] == ["b@example.com"]


async def test_relay_from_example_refuses_a_peer_outside_its_cidrs(tmp_path: Path) -> None:
    async for rig in smtp_rig(tmp_path, RELAY_FROM_EXAMPLE, relay_hosts=()):
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
            await send(rig, ["b@other.example"], MESSAGE, sender="a@send.example.com")
        assert rig.spool.ids() == []


async def test_relay_hosts_still_relay_when_the_domain_has_no_entry(tmp_path: Path) -> None:
    async for rig in smtp_rig(tmp_path, RELAY_FROM_EXAMPLE):  # relay_hosts: loopback
        await send(rig, ["b@other.example"], MESSAGE, sender="a@any.example")
        assert len(rig.spool.ids()) == 1


async def test_log_oob_example_logs_the_rfc3464_report_then_drops_it(tmp_path: Path) -> None:
    async for rig in smtp_rig(tmp_path, LOG_OOB_EXAMPLE, relay_hosts=()):
        reply = await send(
            rig, ["bounces@bounce.example.com"], sample("rfc3464-multi-recipient.eml")
        )
        assert reply.startswith("2.0.0 OK queued as ")
        assert rig.spool.ids() == []  # LogThenDrop
        records = await rig.records()
        (reception,) = of_type(records, "Reception")
        assert reception["recipient"] == "bounces@bounce.example.com"
        assert reception["peer_address"] == {"name": "client.example", "addr": "127.0.0.1"}
        oob = of_type(records, "OOB")
        # one record per entry whose action is failed (the delayed one gives none)
        assert [r["recipient"] for r in oob] == ["arathib@vnet.ibm.com", "wsnell@sdcc13.ucsd.edu"]
        first, second = oob
        assert first["id"] == reception["id"]
        assert first["sender"] == "bounces@bounce.example.com"  # the bounce address
        assert first["response"]["code"] == 550
        assert first["response"]["enhanced_code"] == {"class": 5, "subject": 0, "detail": 0}
        assert second["response"]["content"] == "user unknown"
        assert first["peer_address"] == {"name": "cs.utk.edu", "addr": "127.0.0.1"}
        assert (first["size"], first["num_attempts"]) == (0, 0)
        assert first["reception_protocol"] == "ESMTP"
        for field in ("queue", "site", "timestamp", "event_time", "created", "meta", "nodeid"):
            assert field in first


async def test_log_oob_refuses_plain_mail_it_does_not_relay(tmp_path: Path) -> None:
    async for rig in smtp_rig(tmp_path, LOG_OOB_EXAMPLE, relay_hosts=()):
        with pytest.raises(aiosmtplib.SMTPDataError) as caught:
            await send(rig, ["bounces@bounce.example.com"], MESSAGE)
        assert (caught.value.code, caught.value.message) == (550, "5.7.1 relaying denied")
        assert rig.spool.ids() == []
        assert await rig.records() == []


async def test_log_arf_example_logs_the_rfc5965_report_as_feedback(tmp_path: Path) -> None:
    async for rig in smtp_rig(tmp_path, LOG_ARF_EXAMPLE, relay_hosts=()):
        await send(rig, ["fbl@fbl.example.com"], sample("rfc5965-complete.eml"))
        assert rig.spool.ids() == []
        records = await rig.records()
        (feedback,) = records  # instead of the Reception record
        assert feedback["type"] == "Feedback"
        assert feedback["recipient"] == "fbl@fbl.example.com"
        assert feedback["peer_address"] == {"name": "client.example", "addr": "127.0.0.1"}
        report = feedback["feedback_report"]
        assert (report["feedback_type"], report["user_agent"], report["version"]) == (
            "abuse",
            "SomeGenerator/1.0",
            "1",
        )
        assert report["original_mail_from"] == "somespammer@example.net"
        assert report["original_rcpto_to"] == ["user@example.com"]
        assert report["source_ip"] == "192.0.2.1"
        assert report["reporting_mta"] == {"mta_type": "dns", "name": "mail.example.com"}
        assert report["reported_domain"] == ["example.net"]
        assert report["reported_uri"] == [
            "http://example.net/earn_money.html",
            "mailto:user@example.com",
        ]
        assert report["extensions"] == {"removal-recipient": ["user@example.com"]}
        assert report["original_message"].startswith("From: <somespammer@example.net>\n")


async def test_log_then_relay_logs_and_keeps_both_kinds(tmp_path: Path) -> None:
    async for rig in smtp_rig(tmp_path, LOG_THEN_RELAY, relay_hosts=()):
        await send(rig, ["a@reports.example.com"], sample("rfc3464-simple.eml"))
        await send(rig, ["b@reports.example.com"], sample("rfc5965-simple.eml"))
        assert sorted(m.recipient for m in rig.spool.enumerate()) == [
            "a@reports.example.com",
            "b@reports.example.com",
        ]
        records = await rig.records()
        assert [r["type"] for r in records] == ["Reception", "OOB", "Feedback"]
        assert records[1]["recipient"] == "louisl@larry.slip.umd.edu"
        assert records[1]["response"] == {
            "code": 426,
            "enhanced_code": {"class": 4, "subject": 0, "detail": 0},
            "content": "connection timed out",
            "command": None,
        }


async def test_a_report_to_two_bounce_addresses_gives_its_oob_records_once(
    tmp_path: Path,
) -> None:
    async for rig in smtp_rig(tmp_path, LOG_THEN_RELAY, relay_hosts=()):
        await send(
            rig, ["a@reports.example.com", "b@reports.example.com"], sample("rfc3464-simple.eml")
        )
        records = await rig.records()
        assert [r["type"] for r in records] == ["Reception", "OOB", "Reception"]
        assert len(rig.spool.ids()) == 2


async def test_a_malformed_report_is_plain_mail(tmp_path: Path) -> None:
    broken = sample("rfc3464-simple.eml").replace(b"Action: failed", b"Action: exploded")
    async for rig in smtp_rig(tmp_path, LOG_THEN_RELAY, relay_hosts=()):
        await send(rig, ["a@open.example.com"], broken)  # relay_to: relayed as any mail
        assert len(rig.spool.ids()) == 1
        assert [r["type"] for r in await rig.records()] == ["Reception"]
