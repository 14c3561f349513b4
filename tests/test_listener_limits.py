"""The listener's limits over real sockets: connections in all and per client address, the
session deadline, and the memory budget of DATA in flight (the flood tests against a real
daemon process are in test_floods.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from kumoclient.errors import ConfigError
from kumoclient.listener.limits import DataBudget, session_cap
from kumoclient.policy import config
from tests.conftest import without_trace
from tests.smtp_client import Client
from tests.test_listener import MESSAGE, Rig, make_rig, open_data


async def greeted(rig: Rig, source: str = "127.0.0.1") -> Client:
    """A client from `source` that got its 220 (a place just given back may take a moment to
    be seen: the server learns of a closed connection in its own time)."""
    for _ in range(50):
        client = await rig.connect_from(source)
        greeting = await client.reply()
        if greeting.startswith("220"):
            return client
        assert greeting.startswith("421 4.7.0"), greeting
        await asyncio.sleep(0.05)
    raise AssertionError("no place for a new session")


async def refused(rig: Rig, source: str = "127.0.0.1") -> str:
    """The reply of a connection the listener refuses, which it then closes."""
    client = await rig.connect_from(source)
    reply = await client.reply()
    assert await asyncio.wait_for(client.reader.read(), 5) == b""
    return reply


async def test_connections_past_max_connections_get_421_and_a_freed_place_is_taken(
    tmp_path: Path,
) -> None:
    async for rig in make_rig(tmp_path, max_connections=3):
        clients = [await greeted(rig) for _ in range(3)]
        reply = await refused(rig)
        assert reply.startswith("421 4.7.0 ")
        assert "too many concurrent sessions" in reply
        await clients[0].close()
        client = await greeted(rig)
        assert (await client.cmd("EHLO me")).startswith("250")
        assert (await client.transaction("a@example.com", ["b@example.net"], MESSAGE)).startswith(
            "250"
        )
        assert len(rig.spool.ids()) == 1


async def test_a_client_address_past_its_limit_gets_421_while_others_go_on(
    tmp_path: Path,
) -> None:
    async for rig in make_rig(tmp_path, max_connections_per_client=2):
        [await greeted(rig, "127.0.0.2") for _ in range(2)]
        reply = await refused(rig, "127.0.0.2")
        assert reply.startswith("421 4.7.0 ")
        assert "too many connections from 127.0.0.2" in reply
        await greeted(rig, "127.0.0.3")  # another address has its own count
        # relay_hosts (127.0.0.1 by default) have no per-address limit, as Postfix's
        # $mynetworks: three sessions, and mail from one of them is taken
        local = [await greeted(rig) for _ in range(3)]
        assert (await local[2].cmd("EHLO me")).startswith("250")
        reply = await local[2].transaction("a@example.com", ["b@example.net"], MESSAGE)
        assert reply.startswith("250")


async def test_a_client_trickling_data_is_cut_off_at_max_session_duration(
    tmp_path: Path,
) -> None:
    """Slowloris: a byte every 50 ms keeps `client_timeout` (60 s) from ever firing; the
    session deadline ends it, and nothing of the half-sent message is stored."""
    async for rig in make_rig(tmp_path, max_session_duration=1.0):
        client = await rig.client()
        await open_data(client)

        async def trickle(writer: asyncio.StreamWriter) -> None:
            while True:
                writer.write(b"x")
                await writer.drain()
                await asyncio.sleep(0.05)

        trickling = asyncio.ensure_future(trickle(client.writer))
        try:
            reply = await client.reply()
        finally:
            trickling.cancel()
        assert reply.startswith("421 4.4.2 ")
        assert "session time limit exceeded" in reply
        assert await asyncio.wait_for(client.reader.read(), 5) == b""
        assert rig.spool.ids() == []


async def test_an_idle_client_between_transactions_is_cut_off_at_the_deadline_too(
    tmp_path: Path,
) -> None:
    async for rig in make_rig(tmp_path, max_session_duration=0.5):
        client = await rig.client()
        reply = await client.transaction("a@example.com", ["b@example.net"], MESSAGE)
        assert reply.startswith("250")
        assert "session time limit exceeded" in await client.reply()
        assert len(rig.spool.ids()) == 1  # what was acknowledged stays


async def test_sessions_past_the_memory_budget_wait_and_then_all_get_their_250(
    tmp_path: Path,
) -> None:
    """Six 400 kB messages at once against a 64 kB budget: the sessions take turns (one
    goes past the budget, the others wait) and every message is stored intact."""
    async for rig in make_rig(tmp_path, max_data_in_memory=64 * 1024, max_message_size=1 << 20):
        clients = [await rig.client() for _ in range(6)]
        contents = [
            f"Subject: {i}\r\n\r\n".encode() + (f"{i}".encode() * 78 + b"\r\n") * 5000
            for i in range(6)
        ]

        async def send(client: Client, content: bytes) -> str:
            return await client.transaction("a@example.com", ["b@example.net"], content)

        replies = await asyncio.gather(*map(send, clients, contents))
        assert all(reply.startswith("250") for reply in replies), replies
        stored = {without_trace(await rig.spool.read_content(m.id)) for m in rig.spool.enumerate()}
        assert stored == set(contents)
        assert rig.server is not None
        assert rig.server.listener.budget.held == 0  # all given back


async def test_a_session_past_the_budget_stops_reading_until_the_holder_is_done(
    tmp_path: Path,
) -> None:
    budget_size = 64 * 1024
    async for rig in make_rig(tmp_path, max_data_in_memory=budget_size, max_message_size=4 << 20):
        assert rig.server is not None
        budget = rig.server.listener.budget
        first, second = await rig.client(), await rig.client()
        body = b"Subject: big\r\n\r\n" + (b"y" * 78 + b"\r\n") * 20_000  # 1.6 MB
        await open_data(first)
        first.writer.write(body)  # past the budget: the first session is let through
        await open_data(second)
        second.writer.write(body)  # the budget is spent: the second one must wait
        for _ in range(200):
            if budget.waiting and budget.holder is not None and budget.holder.held >= len(body):
                break
            await asyncio.sleep(0.02)
        assert len(budget.waiting) == 1
        assert budget.holder is not budget.waiting[0]
        # the waiting session holds what one read brought, not its 1.6 MB
        assert budget.waiting[0].held < len(body) // 2
        assert (await first.send(b".\r\n")).startswith("250")
        assert (await second.send(b".\r\n")).startswith("250")
        assert len(rig.spool.ids()) == 2
        assert budget.held == 0
        assert budget.holder is None


def test_the_limits_are_listener_keys_with_documented_defaults() -> None:
    defaults = config.start_esmtp_listener({})
    assert (
        defaults.max_connections,
        defaults.max_connections_per_client,
        defaults.max_session_duration,
        defaults.max_data_in_memory,
    ) == (32768, 50, 1800.0, 64 * 1024 * 1024)
    listener = config.start_esmtp_listener(
        {
            "max_connections": 10,
            "max_connections_per_client": 2,
            "max_session_duration": "5m",
            "max_data_in_memory": "8MiB",
        }
    )
    assert (
        listener.max_connections,
        listener.max_connections_per_client,
        listener.max_session_duration,
        listener.max_data_in_memory,
    ) == (10, 2, 300.0, 8 * 1024 * 1024)
    with pytest.raises(ConfigError, match="max_connections_per_client = 0: must be at least 1"):
        config.start_esmtp_listener({"max_connections_per_client": 0})


def test_sessions_are_capped_by_the_descriptors_less_a_reserve() -> None:
    assert [session_cap(32768, limit) for limit in (256, 1024, 65536, 1 << 20)] == [
        192,
        768,
        32768,
        32768,
    ]
    assert session_cap(100, 1024) == 100  # max_connections, when it is lower
    assert session_cap(32768, 64) == 1  # never none


class Sessionish:
    """What the budget sees of a session (the budget is a pure bookkeeper: its rules are
    tested here directly, and over real sockets above)."""

    def __init__(self) -> None:
        self.held = 0
        self.closed = False
        self.resumed = 0

    def budget_resumed(self) -> None:
        self.resumed += 1


def test_the_budget_lets_one_session_past_it_and_hands_that_on_in_turn() -> None:
    budget = DataBudget(100)
    a, b, c = Sessionish(), Sessionish(), Sessionish()
    assert budget.set(a, 60)
    assert budget.set(b, 30)
    assert budget.set(a, 150)  # past the budget: the first to meet it goes on
    assert budget.holder is a
    assert not budget.set(b, 60)  # the others wait, in turn
    assert not budget.set(c, 10)
    assert list(budget.waiting) == [b, c]
    # a pipelining holder keeps its place for one message only
    budget.finished(a)
    assert budget.holder is b
    assert (b.resumed, c.resumed) == (1, 0)
    c.closed = True  # gone while waiting: skipped
    assert budget.set(c, 0)
    assert budget.set(a, 0)
    assert budget.set(b, 0)  # all given back: nothing waits, nobody holds
    assert (budget.held, budget.holder, list(budget.waiting)) == (0, None, [])
    assert c.resumed == 0
