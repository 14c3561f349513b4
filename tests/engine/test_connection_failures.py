"""SPEC 2.1/2.2: connection-phase failures and transport failures are TransientFailures that
never reach the rewrite hook, and the next host of the mx_list is tried."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.engine.conftest import (
    MakeEngine,
    ScriptedMX,
    deliver_one,
    hook_calls,
    next_record,
    write_policy,
)
from tests.engine.faults import FaultyMX

FAST = "connect_timeout = '2s', banner_timeout = '1s', mail_from_timeout = '1s'"


def closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"  # nothing listens once it is closed


@pytest.fixture
async def faulty() -> AsyncIterator[Callable[[str], Awaitable[FaultyMX]]]:
    servers: list[FaultyMX] = []

    async def make(fault: str) -> FaultyMX:
        server = await FaultyMX(fault).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.stop()


CONNECT_PHASE = [
    ("refused", "connect: Connection refused"),
    ("greeting_421", "banner: 421 4.3.2 mx.test too busy, try later"),
    ("ehlo_rejected", "ehlo: 554 5.7.1 you are not welcome here"),
    ("silent", "banner: timed out after 1s"),
]


async def bad_host(kind: str, faulty: Callable[[str], Awaitable[FaultyMX]]) -> str:
    if kind == "refused":
        return closed_port()
    return (await faulty(kind)).address


@pytest.mark.parametrize(("kind", "reason"), CONNECT_PHASE)
async def test_a_connection_phase_failure_alone_is_a_transient_failure_without_the_hook(
    engines: MakeEngine,
    tmp_path: Path,
    faulty: Callable[[str], Awaitable[FaultyMX]],
    kind: str,
    reason: str,
) -> None:
    host = await bad_host(kind, faulty)
    policy = write_policy(tmp_path / "p.lua", [host], rewrite="return 500", egress=FAST)
    engine = engines(policy)
    await engine.start()
    [message_id] = await engine.submit(
        "a@example.com", ["b@example.net"], b"Subject: x\r\n\r\nx\r\n"
    )
    record = await next_record(engine, "TransientFailure", message_id)
    response = record["response"]
    assert response["code"] == 400
    assert response["enhanced_code"] is None
    assert response["command"] is None
    assert response["content"].startswith("failed to connect to any candidate hosts: ")
    assert f"[{host.replace(':', ']:')}: {reason}" in response["content"]
    assert hook_calls(policy) == []  # a 500 from the hook would have bounced it


@pytest.mark.parametrize(("kind", "reason"), CONNECT_PHASE)
async def test_a_connection_phase_failure_moves_on_to_the_next_host(
    engines: MakeEngine,
    tmp_path: Path,
    faulty: Callable[[str], Awaitable[FaultyMX]],
    mx: ScriptedMX,
    kind: str,
    reason: str,
) -> None:
    host = await bad_host(kind, faulty)
    policy = write_policy(tmp_path / "p.lua", [host, mx.address], rewrite="return 500", egress=FAST)
    engine = engines(policy)
    await engine.start()
    record = await deliver_one(engine)
    assert record["type"] == "Delivery"
    assert record["peer_address"]["addr"] == mx.address
    assert record["num_attempts"] == 0  # the same attempt
    assert hook_calls(policy) == []


@pytest.mark.parametrize(
    ("kind", "code", "content"),
    [
        ("stall_mail", 421, "Timed Out waiting 1s for response to MAIL FROM:<a@example.com>"),
        ("drop_in_data", 400, "failed to send message: message content: "),
    ],
)
async def test_a_transport_failure_in_a_transaction_is_transient_and_the_next_host_follows(
    engines: MakeEngine,
    tmp_path: Path,
    faulty: Callable[[str], Awaitable[FaultyMX]],
    mx: ScriptedMX,
    kind: str,
    code: int,
    content: str,
) -> None:
    bad = await faulty(kind)
    policy = write_policy(
        tmp_path / "p.lua",
        [bad.address, mx.address],
        rewrite="return 500",
        egress=FAST,
        queue="retry_interval = '1s',",
    )
    engine = engines(policy)
    await engine.start()
    [message_id] = await engine.submit(
        "a@example.com", ["b@example.net"], b"Subject: x\r\n\r\nx\r\n"
    )
    failure = await next_record(engine, "TransientFailure", message_id)
    assert failure["response"]["code"] == code
    assert content in failure["response"]["content"]
    assert failure["response"]["command"] is None
    assert failure["peer_address"]["addr"] == bad.address
    # the retry goes to the next host: the failed one is tried last for a while
    delivered = await engine.outcome(message_id)
    assert delivered["type"] == "Delivery"
    assert delivered["peer_address"]["addr"] == mx.address
    assert delivered["num_attempts"] == 1
    assert hook_calls(policy) == []
