"""SPEC 2.5: with `generate_dsn = true` a Bounce or an Expiration sends the envelope sender an
RFC 3464 report, spooled and delivered like any message; never for the null sender."""

from __future__ import annotations

import asyncio
import email
import email.policy
from email.message import EmailMessage
from pathlib import Path

from tests.engine.conftest import (
    MakeEngine,
    ScriptedMX,
    deliver_one,
    records,
    write_policy,
)


async def arrived(mx: ScriptedMX) -> None:
    """Until the report reached the scripted MX."""
    async with asyncio.timeout(20):
        while not mx.received:
            await asyncio.sleep(0.05)


OVER_QUOTA = "452 4.2.2 The email account that you tried to reach is over quota."


async def test_a_rewritten_bounce_sends_the_sender_a_delivery_status_report(
    mx: ScriptedMX, engines: MakeEngine, tmp_path: Path
) -> None:
    mx.replies[("RCPT", "full@example.net")] = OVER_QUOTA
    policy = write_policy(
        tmp_path / "p.lua",
        [mx.address],
        rewrite="return 500",
        queue="generate_dsn = true,",
    )
    engine = engines(policy)
    await engine.start()
    bounce = await deliver_one(engine, recipient="full@example.net")
    assert bounce["type"] == "Bounce"
    await arrived(mx)
    reception = records(engine)[-2]
    assert (reception["type"], reception["sender"], reception["recipient"]) == (
        "Reception",
        "",
        "a@example.com",
    )
    assert reception["reception_protocol"] == "DSN"
    assert records(engine)[-1]["type"] == "Delivery"

    [(sender, recipients, content)] = mx.received
    assert (sender, recipients) == ("<>", ["a@example.com"])
    report = email.message_from_bytes(content, policy=email.policy.default)
    assert isinstance(report, EmailMessage)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    status = next(p for p in report.walk() if p.get_content_type() == "message/delivery-status")
    text = status.as_string()
    assert "Final-Recipient: rfc822; full@example.net" in text
    assert "Status: 5.2.2" in text  # the enhanced code kept, in the class of the new code
    assert "(kumomta: status was rewritten from 452 -> 500)" in text
    headers = next(p for p in report.walk() if p.get_content_type() == "text/rfc822-headers")
    assert "Message-ID: <1@example.com>" in headers.as_string()
    # the original left the spool only after its report was spooled
    await engine.flush()
    assert engine.spool.ids() == []


async def test_an_expiration_sends_a_report_too(
    mx: ScriptedMX, engines: MakeEngine, tmp_path: Path
) -> None:
    mx.replies[("RCPT", "slow@example.net")] = "451 4.3.0 try later"
    policy = write_policy(
        tmp_path / "p.lua",
        [mx.address],
        queue="generate_dsn = true, max_age = '1s', retry_interval = '5s',",
    )
    engine = engines(policy)
    await engine.start()
    expired = await deliver_one(engine, recipient="slow@example.net")
    assert expired["type"] == "Expiration"
    await arrived(mx)
    [(sender, _, content)] = mx.received
    assert sender == "<>"  # MAIL FROM:<>, as aiosmtpd reports it
    assert b"Status: 5.4.7" in content


async def test_no_report_for_the_null_sender_or_without_generate_dsn(
    mx: ScriptedMX, engines: MakeEngine, tmp_path: Path
) -> None:
    mx.replies[("RCPT", "gone@example.net")] = "550 5.1.1 no such user"
    with_dsn = write_policy(tmp_path / "p.lua", [mx.address], queue="generate_dsn = true,")
    engine = engines(with_dsn)
    await engine.start()
    bounce = await deliver_one(engine, recipient="gone@example.net", sender="")
    assert bounce["type"] == "Bounce"
    without = engines(write_policy(tmp_path / "q.lua", [mx.address]), data="other")
    await without.start()
    assert (await deliver_one(without, recipient="gone@example.net"))["type"] == "Bounce"
    await asyncio.sleep(0.5)  # a report would have been spooled by now
    for each in (engine, without):
        await each.flush()
        assert [r["type"] for r in records(each)] == ["Reception", "Bounce"]
        assert each.spool.ids() == []
    assert mx.received == []


async def test_a_stop_right_after_a_bounce_keeps_the_report_and_drops_the_original(
    mx: ScriptedMX, engines: MakeEngine, tmp_path: Path
) -> None:
    mx.replies[("RCPT", "gone@example.net")] = "550 5.1.1 no such user"
    policy = write_policy(tmp_path / "p.lua", [mx.address], queue="generate_dsn = true,")
    engine = engines(policy)
    await engine.start()
    bounce = await deliver_one(engine, recipient="gone@example.net")
    assert bounce["type"] == "Bounce"
    await engine.stop()  # at once: the report may still be on its way into the spool
    left = [message.recipient for message in engine.spool.enumerate(quarantine=False)]
    # the report may have been delivered before the stop; the original is gone either way
    assert "gone@example.net" not in left
    assert left in ([], ["a@example.com"])
