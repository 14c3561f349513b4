"""RFC 2920 on the client side: with a server offering PIPELINING, MAIL FROM, RCPT TO and DATA
go out in one write; every reply is still read in order under its own timeout, and the
first rejection is the one the hook sees."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.engine.conftest import (
    MESSAGE,
    MakeEngine,
    ScriptedMX,
    deliver_one,
    hook_calls,
    next_record,
    write_policy,
)
from tests.engine.faults import FaultyMX


@pytest.fixture
async def pipelining_mx() -> AsyncIterator[ScriptedMX]:
    server = ScriptedMX(pipelining=True)
    await server.start()
    yield server
    await server.stop()


async def test_mail_rcpt_and_data_go_out_in_one_write(
    pipelining_mx: ScriptedMX, engines: MakeEngine, tmp_path: Path
) -> None:
    mx = pipelining_mx
    engine = engines(write_policy(tmp_path / "p.lua", [mx.address]))
    await engine.start()
    for _ in range(3):  # three transactions on one connection
        assert (await deliver_one(engine))["type"] == "Delivery"
    together = [chunk for chunk in mx.chunks if b"MAIL FROM:" in chunk]
    assert len(together) == 3
    assert all(b"RCPT TO:" in chunk and chunk.endswith(b"DATA\r\n") for chunk in together)
    assert mx.connections == 1
    assert [content for _, _, content in mx.received] == [MESSAGE] * 3


async def test_without_pipelining_each_command_waits_for_its_reply(
    mx: ScriptedMX, engines: MakeEngine, tmp_path: Path
) -> None:
    engine = engines(write_policy(tmp_path / "p.lua", [mx.address]))
    await engine.start()
    assert (await deliver_one(engine))["type"] == "Delivery"
    assert not any(b"MAIL FROM:" in chunk and b"RCPT TO:" in chunk for chunk in mx.chunks)


async def test_a_refused_rcpt_is_the_rejection_and_the_next_message_still_goes(
    pipelining_mx: ScriptedMX, engines: MakeEngine, tmp_path: Path
) -> None:
    mx = pipelining_mx
    mx.replies[("RCPT", "gone@example.net")] = "550 5.1.1 no such user"
    policy = write_policy(tmp_path / "p.lua", [mx.address], rewrite="return nil")
    engine = engines(policy)
    await engine.start()
    bounce = await deliver_one(engine, recipient="gone@example.net")
    assert bounce["type"] == "Bounce"
    assert bounce["response"]["command"] == "RCPT TO:<gone@example.net>\r\n"
    # aiosmtpd refused the pipelined DATA too (503); that reply is not a second rejection
    assert [call["response"] for call in hook_calls(policy)] == ["550 5.1.1 no such user"]
    delivered = await deliver_one(engine)  # after RSET, on the same connection
    assert delivered["type"] == "Delivery"
    assert mx.connections == 1


async def test_a_stalled_rcpt_reply_times_out_in_its_own_phase(
    engines: MakeEngine, tmp_path: Path
) -> None:
    server = await FaultyMX("stall_rcpt").start()
    try:
        policy = write_policy(
            tmp_path / "p.lua",
            [server.address],
            rewrite="return 500",
            egress="rcpt_to_timeout = '1s'",
        )
        engine = engines(policy)
        await engine.start()
        [message_id] = await engine.submit("a@example.com", ["b@example.net"], MESSAGE)
        failure = await next_record(engine, "TransientFailure", message_id)
    finally:
        await server.stop()
    assert failure["response"]["code"] == 421
    assert (
        "Timed Out waiting 1s for response to RCPT TO:<b@example.net>"
        in (failure["response"]["content"])
    )
    assert hook_calls(policy) == []


async def test_a_354_after_a_refused_rcpt_is_ended_with_an_empty_message(
    engines: MakeEngine, tmp_path: Path
) -> None:
    server = await FaultyMX("354_after_bad_rcpt").start()
    try:
        policy = write_policy(tmp_path / "p.lua", [server.address], rewrite="return nil")
        engine = engines(policy)
        await engine.start()
        bounce = await deliver_one(engine)
    finally:
        await server.stop()
    assert bounce["type"] == "Bounce"
    assert bounce["response"]["content"] == "no such user"
    assert bounce["response"]["command"] == "RCPT TO:<b@example.net>\r\n"
    sent = b"".join(server.lines)
    assert b"DATA\r\n.\r\n" in sent  # no content went out after the unwanted 354
    assert b"Subject:" not in sent


async def test_replies_that_arrive_just_before_the_server_closes_are_all_read(
    engines: MakeEngine, tmp_path: Path
) -> None:
    server = await FaultyMX("replies_then_close").start()
    try:
        policy = write_policy(tmp_path / "p.lua", [server.address], rewrite="return nil")
        engine = engines(policy)
        await engine.start()
        bounce = await deliver_one(engine)
    finally:
        await server.stop()
    assert bounce["type"] == "Bounce"
    assert bounce["response"]["code"] == 554
    assert bounce["response"]["command"] == "DATA\r\n"
    assert [call["response"] for call in hook_calls(policy)] == ["554 5.3.0 closing now"]
