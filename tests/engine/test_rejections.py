"""SPEC 2.3 over real sockets: every rejection phase reaches the rewrite hook exactly once,
with the one-line response and the queue-name arguments; the hook's code decides the path."""

from __future__ import annotations

from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tests.engine.conftest import (
    MESSAGE,
    MakeEngine,
    ScriptedMX,
    deliver_one,
    hook_calls,
    next_record,
    records,
    write_policy,
)
from tests.engine.faults import FaultyMX

OVER_QUOTA = "452 4.2.2 The email account that you tried to reach is over quota."
TO_500 = "if response:find('4.2.2', 1, true) then return 500 end"


@pytest.mark.parametrize(
    ("phase", "address", "reply", "command"),
    [
        (
            "MAIL",
            "a@example.com",
            "550 5.7.1 sender refused",
            f"MAIL FROM:<a@example.com> SIZE={len(MESSAGE)}",
        ),
        ("RCPT", "b@example.net", "550 5.1.1 no such user", "RCPT TO:<b@example.net>"),
        ("DATA", "b@example.net", "554 5.5.1 no valid recipients", "DATA"),
        ("DOT", "b@example.net", "554 5.7.1 content refused", "."),
    ],
)
async def test_each_rejection_phase_reaches_the_hook_once(
    either_mx: ScriptedMX,
    engines: MakeEngine,
    tmp_path: Path,
    phase: str,
    address: str,
    reply: str,
    command: str,
) -> None:
    mx = either_mx
    mx.replies[(phase, address)] = reply
    policy = write_policy(tmp_path / "p.lua", [mx.address], rewrite="return nil")
    engine = engines(policy)
    await engine.start()
    record = await deliver_one(engine)
    assert record["type"] == "Bounce"
    assert record["response"]["command"] == command + "\r\n"
    assert f"{record['response']['code']} " + reply.split(" ", 1)[1] == reply
    [call] = hook_calls(policy)
    assert call["response"] == reply
    assert call["domain"] == "example.net"
    assert call["routing_domain"] == "example.net"  # the domain when there is none
    assert call["tenant_type"] == "nil"
    assert call["campaign_type"] == "nil"
    assert record["peer_address"] == {"name": "127.0.0.1", "addr": mx.address}
    assert mx.received == []


async def test_tenant_campaign_and_routing_domain_come_from_the_queue_name(
    mx: ScriptedMX, engines: MakeEngine, tmp_path: Path
) -> None:
    mx.replies[("RCPT", "b@example.net")] = "550 5.1.1 no"
    policy = write_policy(tmp_path / "p.lua", [mx.address], rewrite="return nil")
    engine = engines(policy)
    await engine.start()
    meta = {"tenant": "t1", "campaign": "c1", "routing_domain": "route.example"}
    record = await deliver_one(engine, meta=meta)
    assert record["queue"] == "c1:t1@example.net!route.example"
    [call] = hook_calls(policy)
    assert (call["domain"], call["tenant"], call["campaign"], call["routing_domain"]) == (
        "example.net",
        "t1",
        "c1",
        "route.example",
    )


async def test_a_three_line_reply_arrives_joined_by_literal_crlf(
    mx: ScriptedMX, engines: MakeEngine, tmp_path: Path
) -> None:
    mx.replies[("RCPT", "b@example.net")] = (
        "550-5.1.1 The email account that you tried to reach does not exist.\r\n"
        "550-5.1.1 Please try double-checking the recipient's email address\r\n"
        "550 5.1.1 for typos."
    )
    policy = write_policy(tmp_path / "p.lua", [mx.address], rewrite="return nil")
    engine = engines(policy)
    await engine.start()
    record = await deliver_one(engine)
    [call] = hook_calls(policy)
    assert call["response"] == (
        "550 5.1.1 The email account that you tried to reach does not exist.\\r\\n"
        "Please try double-checking the recipient's email address\\r\\nfor typos."
    )
    assert "\n" not in record["response"]["content"]


async def test_the_hook_turns_over_quota_into_a_bounce_with_the_rewrite_note(
    mx: ScriptedMX, engines: MakeEngine, tmp_path: Path
) -> None:
    mx.replies[("RCPT", "b@example.net")] = OVER_QUOTA
    policy = write_policy(tmp_path / "p.lua", [mx.address], rewrite=TO_500)
    engine = engines(policy)
    await engine.start()
    record = await deliver_one(engine)
    assert record["type"] == "Bounce"
    response = record["response"]
    assert response["code"] == 500
    assert response["enhanced_code"] == {"class": 4, "subject": 2, "detail": 2}
    assert response["content"].endswith("(kumomta: status was rewritten from 452 -> 500)")
    assert response["content"] == (
        "The email account that you tried to reach is over quota."
        " (kumomta: status was rewritten from 452 -> 500)"
    )
    await engine.flush()
    assert engine.spool.ids() == []


@pytest.mark.parametrize("returned", ["return nil", "return", "return 451", "return '451'"])
async def test_nil_or_the_same_code_changes_nothing(
    mx: ScriptedMX, engines: MakeEngine, tmp_path: Path, returned: str
) -> None:
    mx.replies[("RCPT", "b@example.net")] = "451 4.3.0 try later"
    policy = write_policy(tmp_path / "p.lua", [mx.address], rewrite=returned)
    engine = engines(policy)
    await engine.start()
    [message_id] = await engine.submit(
        "a@example.com", ["b@example.net"], b"Subject: x\r\n\r\nx\r\n"
    )
    record = await next_record(engine, "TransientFailure", message_id)
    assert record["response"]["code"] == 451
    assert record["response"]["content"] == "try later"
    assert len(hook_calls(policy)) == 1


async def test_a_5xx_rewritten_to_4xx_is_retried(
    mx: ScriptedMX, engines: MakeEngine, tmp_path: Path
) -> None:
    mx.replies[("RCPT", "b@example.net")] = "550 5.2.1 mailbox disabled"
    policy = write_policy(tmp_path / "p.lua", [mx.address], rewrite="return 450")
    engine = engines(policy)
    await engine.start()
    [message_id] = await engine.submit(
        "a@example.com", ["b@example.net"], b"Subject: x\r\n\r\nx\r\n"
    )
    record = await next_record(engine, "TransientFailure", message_id)
    assert record["response"]["code"] == 450
    assert record["response"]["content"].endswith("(kumomta: status was rewritten from 550 -> 450)")
    await engine.flush()
    requeued = engine.spool.load(message_id)
    assert requeued.attempts == 1
    assert requeued.due > record["timestamp"] + 3000  # retry_interval is 1 hour


async def test_a_4xx_rewritten_to_250_is_a_delivery(
    mx: ScriptedMX, engines: MakeEngine, tmp_path: Path
) -> None:
    mx.replies[("RCPT", "b@example.net")] = "451 4.7.1 greylisted"
    policy = write_policy(tmp_path / "p.lua", [mx.address], rewrite="return 250")
    engine = engines(policy)
    await engine.start()
    record = await deliver_one(engine)
    assert record["type"] == "Delivery"
    assert record["response"]["code"] == 250
    assert mx.received == []  # the server never took it: the policy said it is done


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("error('boom')", "boom"),
        ("return { 500 }", "a table"),
        ("return true", "a boolean"),
        ("return 70000", "out of range"),
    ],
)
async def test_a_failing_hook_keeps_the_original_and_the_engine_goes_on(
    mx: ScriptedMX, engines: MakeEngine, tmp_path: Path, body: str, problem: str
) -> None:
    mx.replies[("RCPT", "bad@example.net")] = "550 5.1.1 no such user"
    policy = write_policy(tmp_path / "p.lua", [mx.address], rewrite=body)
    engine = engines(policy)
    await engine.start()
    with capture_logs() as logged:
        record = await deliver_one(engine, recipient="bad@example.net")
    assert record["type"] == "Bounce"
    assert record["response"]["code"] == 550
    assert "rewritten" not in record["response"]["content"]
    errors = [e for e in logged if e["log_level"] == "error"]
    assert len(errors) == 1
    assert problem in errors[0]["event"]
    assert "p.lua:" in errors[0]["event"]
    # and the next message goes through
    assert (await deliver_one(engine))["type"] == "Delivery"
    assert len(mx.received) == 1


async def test_accepted_mail_arrives_byte_identical(
    either_mx: ScriptedMX, engines: MakeEngine, tmp_path: Path
) -> None:
    mx = either_mx
    policy = write_policy(tmp_path / "p.lua", [mx.address])
    engine = engines(policy)
    await engine.start()
    content = "Subject: é\r\n\r\nGrüße\r\n.dot line\r\n..two dots\r\nend".encode()
    [message_id] = await engine.submit("a@example.com", ["b@example.net"], content)
    record = await engine.outcome(message_id)
    assert record["type"] == "Delivery"
    assert record["response"]["command"] == ".\r\n"
    assert [r["type"] for r in records(engine)] == ["Reception", "Delivery"]
    [(sender, rcpts, received)] = mx.received
    assert (sender, rcpts) == ("a@example.com", ["b@example.net"])
    assert received == content + b"\r\n"  # only the final CRLF framing added


@pytest.mark.parametrize("offered", [True, False], ids=["8BITMIME", "no-8BITMIME"])
async def test_8bit_content_is_delivered_intact_with_or_without_8bitmime(
    engines: MakeEngine, tmp_path: Path, offered: bool
) -> None:
    mx = ScriptedMX(eight_bit=offered)
    await mx.start()
    try:
        engine = engines(write_policy(tmp_path / "p.lua", [mx.address]))
        await engine.start()
        content = "Subject: Grüße\r\n\r\nÄpfel und Bäume\r\n".encode()
        [message_id] = await engine.submit("a@example.com", ["b@example.net"], content)
        assert (await engine.outcome(message_id))["type"] == "Delivery"
    finally:
        await mx.stop()
    [(_, _, received)] = mx.received
    assert received == content
    [options] = mx.mail_options
    assert ("BODY=8BITMIME" in options) is offered


async def test_an_address_that_needs_smtputf8_bounces_at_a_server_without_it(
    engines: MakeEngine, tmp_path: Path
) -> None:
    server = await FaultyMX("plain").start()  # EHLO offers 8BITMIME, not SMTPUTF8
    try:
        policy = write_policy(tmp_path / "p.lua", [server.address], rewrite="return nil")
        engine = engines(policy)
        await engine.start()
        record = await deliver_one(engine, recipient="grüße@example.net")
    finally:
        await server.stop()
    assert record["type"] == "Bounce"
    assert (record["response"]["code"], record["response"]["enhanced_code"]) == (
        554,
        {"class": 5, "subject": 6, "detail": 7},
    )
    assert "SMTPUTF8" in record["response"]["content"]
    assert not any(line.startswith(b"MAIL") for line in server.lines)  # never tried


async def test_a_failing_record_subscriber_does_not_undo_a_delivery(
    mx: ScriptedMX, engines: MakeEngine, tmp_path: Path
) -> None:
    engine = engines(write_policy(tmp_path / "p.lua", [mx.address]))
    await engine.start()

    def broken(record: dict[str, object]) -> None:
        raise RuntimeError("subscriber bug")

    engine.subscribe(broken)
    with capture_logs() as logs:
        record = await deliver_one(engine)
    assert record["type"] == "Delivery"
    assert [r["type"] for r in records(engine)] == ["Reception", "Delivery"]
    assert len(mx.received) == 1  # not sent again
    assert any(entry["event"] == "log record listener failed" for entry in logs)
