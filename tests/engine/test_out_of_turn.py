"""SPEC 2.3 (amended): an MX that answers out of turn. DATA answered below 400 but not 354, or a
reply with no command outstanding, means the transaction did not take place: a TransientFailure
naming the unexpected reply, without the rewrite hook (the policy here would bounce anything it
sees), the connection discarded, and the next message delivered over a new connection.

The MX is tests.engine.faults.FaultyMX, a script: no real MTA answers out of turn on request.
Each fault hits its first connection only; later connections behave.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import structlog

from kumoclient.engine.engine import Engine
from tests.engine.conftest import (
    MESSAGE,
    MakeEngine,
    deliver_one,
    hook_calls,
    next_record,
    records,
    write_policy,
)
from tests.engine.faults import FaultyMX

DID_NOT_HAPPEN = "KumoMTA internal: the transaction did not take place: "
BOUNCE_EVERYTHING = "return 500"  # the rewrite hook would turn any reply it sees into a Bounce


@pytest.fixture
async def servers() -> AsyncIterator[list[FaultyMX]]:
    started: list[FaultyMX] = []
    yield started
    for server in started:
        await server.stop()


async def start(
    servers: list[FaultyMX], engines: MakeEngine, tmp_path: Path, mx: FaultyMX
) -> tuple[Engine, Path]:
    servers.append(await mx.start())
    policy = write_policy(tmp_path / "p.lua", [mx.address], rewrite=BOUNCE_EVERYTHING)
    engine = engines(policy)
    await engine.start()
    return engine, policy


async def failed_attempt(engine: Engine) -> tuple[str, dict[str, object]]:
    """Submit one message; its id and the TransientFailure of its first attempt."""
    [message_id] = await engine.submit("a@example.com", ["b@example.net"], MESSAGE)
    return message_id, await next_record(engine, "TransientFailure", message_id)


async def assert_next_goes_over_a_new_connection(engine: Engine, mx: FaultyMX) -> None:
    delivered = await deliver_one(engine, recipient="c@example.net")
    assert delivered["type"] == "Delivery"
    assert mx.connections == 2  # the first connection was discarded, not reused
    assert mx.received[-1] == MESSAGE


def assert_not_delivered(engine: Engine, message_id: str) -> None:
    kinds = [r["type"] for r in records(engine) if r["id"] == message_id]
    assert kinds == ["Reception", "TransientFailure"]  # spooled, waiting for its retry


@pytest.mark.parametrize("pipelining", [False, True], ids=["lockstep", "pipelining"])
@pytest.mark.parametrize(
    "data_reply", [b"250 2.0.0 OK", b"334 go on", b"221 2.0.0 bye"], ids=["250", "334", "221"]
)
async def test_data_answered_below_400_but_not_354_is_a_transient_failure(
    servers: list[FaultyMX],
    engines: MakeEngine,
    tmp_path: Path,
    pipelining: bool,
    data_reply: bytes,
) -> None:
    mx = FaultyMX("data_out_of_turn", pipelining=pipelining, data_reply=data_reply)
    engine, policy = await start(servers, engines, tmp_path, mx)
    message_id, failure = await failed_attempt(engine)
    assert failure["response"] == {
        "code": 400,
        "enhanced_code": None,
        "content": DID_NOT_HAPPEN + "DATA: unexpected reply " + data_reply.decode(),
        "command": None,
    }
    assert hook_calls(policy) == []
    assert mx.received == []
    assert not any(b"Subject:" in line for line in mx.lines)  # no content went out
    assert_not_delivered(engine, message_id)
    await assert_next_goes_over_a_new_connection(engine, mx)


@pytest.mark.parametrize("pipelining", [False, True], ids=["lockstep", "pipelining"])
async def test_a_second_reply_to_the_final_dot_makes_the_attempt_a_transient_failure(
    servers: list[FaultyMX], engines: MakeEngine, tmp_path: Path, pipelining: bool
) -> None:
    """The dot's 250 may answer something else: the attempt counts as failed and the message
    is sent again later (at-least-once; never a Delivery the MX may not have)."""
    mx = FaultyMX("double_dot_reply", pipelining=pipelining)
    engine, policy = await start(servers, engines, tmp_path, mx)
    message_id, failure = await failed_attempt(engine)
    content = DID_NOT_HAPPEN + "after final dot: unexpected reply 250 2.0.0 OK queued"
    assert (failure["response"]["code"], failure["response"]["content"]) == (400, content)
    assert hook_calls(policy) == []
    assert_not_delivered(engine, message_id)
    await assert_next_goes_over_a_new_connection(engine, mx)


@pytest.mark.parametrize(
    ("pipelining", "where"),
    [
        # one command at a time: the second reply came while nothing was outstanding
        (False, "after MAIL FROM: unexpected reply 250 2.1.0 OK"),
        # all three at once: every later reply is one behind, so DATA got RCPT's 250
        (True, "DATA: unexpected reply 250 2.1.5 OK"),
    ],
    ids=["lockstep", "pipelining"],
)
async def test_a_doubled_reply_to_mail_from_stops_the_transaction(
    servers: list[FaultyMX], engines: MakeEngine, tmp_path: Path, pipelining: bool, where: str
) -> None:
    mx = FaultyMX("double_mail_reply", pipelining=pipelining)
    engine, policy = await start(servers, engines, tmp_path, mx)
    message_id, failure = await failed_attempt(engine)
    assert (failure["response"]["code"], failure["response"]["content"]) == (
        400,
        DID_NOT_HAPPEN + where,
    )
    assert hook_calls(policy) == []
    assert mx.received == []
    assert not any(b"Subject:" in line for line in mx.lines)  # no content went out
    assert_not_delivered(engine, message_id)
    await assert_next_goes_over_a_new_connection(engine, mx)


@pytest.mark.parametrize("pipelining", [False, True], ids=["lockstep", "pipelining"])
async def test_a_reply_while_the_connection_is_idle_sends_the_next_message_elsewhere(
    servers: list[FaultyMX], engines: MakeEngine, tmp_path: Path, pipelining: bool
) -> None:
    """The first message's transaction was over when the stray reply came: it stays a
    Delivery; the next message does not read that reply as its own but gets a new
    connection."""
    mx = FaultyMX("idle_reply", pipelining=pipelining)
    engine, policy = await start(servers, engines, tmp_path, mx)
    assert (await deliver_one(engine))["type"] == "Delivery"
    with structlog.testing.capture_logs() as logged:
        mx.send_stray.set()
        await mx.stray_sent.wait()
        await assert_next_goes_over_a_new_connection(engine, mx)
    assert mx.received == [MESSAGE, MESSAGE]
    assert [r["type"] for r in records(engine) if r["type"] != "Reception"] == ["Delivery"] * 2
    assert hook_calls(policy) == []
    [discarded] = [e for e in logged if e["event"].startswith("server replied with no command")]
    assert (discarded["after"], discarded["reply"]) == ("final dot", "250 2.0.0 still here")
