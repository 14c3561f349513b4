"""Throttles shared through a real redis-server, the local fallback, and the policy's config.

Counts, not timings: a greedy loop books slots with `reserve()` and takes each one when it
opens; over `t` seconds a rate of `limit` per second lets at most `limit + t * limit` through
(the burst, then one per interval), whoever books.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis.asyncio
from structlog.testing import capture_logs

from kumoclient.configs import Rate, RedisThrottleConfig
from kumoclient.errors import ConfigError, PolicyError
from kumoclient.policy import config
from kumoclient.policy.runtime import PolicyRuntime
from kumoclient.throttles import (
    LEASES_PREFIX,
    THROTTLE_PREFIX,
    AsyncThrottle,
    LocalThrottle,
    RedisThrottle,
    SharedThrottles,
    redact,
)
from tests.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[1]
UNREACHABLE = "redis throttles unreachable; using local limits"
REACHABLE = "redis throttles reachable again; using shared limits"


def per_second(limit: int) -> Rate:
    return Rate(limit, 1.0, f"{limit}/s")


@pytest.fixture
def redis_config(redis_proc: RedisServer) -> RedisThrottleConfig:
    # timeouts longer than the defaults: on a loaded test machine a stalled process must not
    # look like an unreachable Redis (the fallback would then let more through)
    return RedisThrottleConfig(node=redis_proc.url, connect_timeout=3.0, read_timeout=3.0)


@pytest.fixture
async def peek(redis_proc: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    """A plain client on the test server, to look at what the throttles stored."""
    client = redis.asyncio.Redis.from_url(redis_proc.url, decode_responses=True)
    yield client
    await client.aclose()


async def greedy(
    throttle: AsyncThrottle,
    seconds: float,
    workers: int = 1,
    clock: Callable[[], float] = time.monotonic,
) -> list[float]:
    """`workers` tasks take every slot as it opens for `seconds`; the times of the slots.

    A slot's time is when `reserve` said it opens (the booking time plus the wait): what the
    throttle promises, whatever the scheduler does to the sleeps (on a loaded machine a sleep
    can overrun by half a second). Several workers keep slots booked ahead, so a stalled
    sleep does not leave the budget unused.
    """
    end = clock() + seconds
    slots: list[float] = []

    async def work() -> None:
        while True:
            wait = await throttle.reserve()
            slot = clock() + wait
            if slot > end:
                return
            slots.append(slot)
            await asyncio.sleep(wait)

    await asyncio.gather(*(work() for _ in range(workers)))
    return sorted(slots)


# --- one node: the Redis GCRA is the local one ------------------------------------------------


async def test_redis_gcra_books_like_the_local_one(redis_config: RedisThrottleConfig) -> None:
    """'5/5m': a burst of 5, then one every 60 s; the waits agree to the millisecond."""
    rate = Rate(5, 300.0, "5/5m")
    local = LocalThrottle(rate)
    async with SharedThrottles(redis_config) as throttles:
        shared = throttles.throttle("semantics", rate)
        assert isinstance(shared, RedisThrottle)
        shared_waits = [await shared.reserve() for _ in range(8)]
        local_waits = [await local.reserve() for _ in range(8)]
        assert not throttles.degraded
    assert shared_waits[:5] == [0.0] * 5
    assert shared_waits[5:] == pytest.approx([60.0, 120.0, 180.0], abs=0.05)
    assert shared_waits == pytest.approx(local_waits, abs=0.05)


async def test_redis_gcra_counts_like_the_local_one_over_two_seconds(
    redis_config: RedisThrottleConfig,
) -> None:
    rate, seconds = per_second(20), 2.0
    bound = rate.limit + seconds * rate.limit + 1
    async with SharedThrottles(redis_config) as throttles:
        shared_count, local_count = (
            len(taken)
            for taken in await asyncio.gather(
                greedy(throttles.throttle("count", rate), seconds, workers=20),
                greedy(LocalThrottle(rate), seconds, workers=20),
            )
        )
    assert shared_count <= bound
    # nor throttled far harder than asked (a loaded machine wastes slots in stalled sleeps:
    # a lower bound is a speed assertion, kept loose)
    assert shared_count >= 0.5 * bound
    assert 0.5 * bound <= local_count <= bound


async def test_the_throttle_state_lives_in_redis_with_an_expiry(
    redis_config: RedisThrottleConfig, peek: redis.asyncio.Redis
) -> None:
    async with SharedThrottles(redis_config) as throttles:
        await throttles.throttle("message_rate:site-a", per_second(10)).reserve()
    key = THROTTLE_PREFIX + "message_rate:site-a"
    assert float(await peek.get(key) or 0) > time.time() - 5
    assert 0 < await peek.pttl(key) <= 2000


def test_throttle_objects_are_kept_while_the_rate_is_unchanged() -> None:
    throttles = SharedThrottles(None)
    first = throttles.throttle("k", per_second(10))
    assert isinstance(first, LocalThrottle)
    assert throttles.throttle("k", per_second(10)) is first
    changed = throttles.throttle("k", per_second(20))
    assert changed is not first
    assert changed.rate == per_second(20)
    assert throttles.throttle("other", per_second(10)) is not first
    assert not throttles.configured


async def test_a_quantity_books_as_many_events_in_redis_as_locally(
    redis_config: RedisThrottleConfig,
) -> None:
    """Three events booked at once (an HTTP request's recipients) wait for the last of them,
    in Redis as in the local throttle."""
    rate = Rate(3, 3600.0, "3/h")
    local = LocalThrottle(rate)
    async with SharedThrottles(redis_config) as throttles:
        shared = throttles.throttle("quantity", rate)
        assert isinstance(shared, RedisThrottle)
        shared_waits = [await shared.reserve(3), await shared.reserve(2)]
    local_waits = [await local.reserve(3), await local.reserve(2)]
    assert shared_waits == pytest.approx([0.0, 2400.0], abs=0.05)
    assert shared_waits == pytest.approx(local_waits, abs=0.05)


async def test_a_local_rate_is_not_shared_through_redis(redis_config: RedisThrottleConfig) -> None:
    """KumoMTA's `local:` prefix: each node keeps its own budget though Redis is configured."""
    rate = Rate(1, 3600.0, "local:1/h", local=True)
    async with SharedThrottles(redis_config) as node_a, SharedThrottles(redis_config) as node_b:
        first, second = node_a.throttle("k", rate), node_b.throttle("k", rate)
        assert isinstance(first, LocalThrottle)
        assert await first.reserve() == 0.0
        assert await second.reserve() == 0.0  # shared, it would wait an hour


# --- two nodes ---------------------------------------------------------------------------------


async def test_two_nodes_share_one_budget(redis_config: RedisThrottleConfig) -> None:
    rate, seconds = per_second(20), 3.0
    bound = rate.limit + seconds * rate.limit + 2
    async with (
        SharedThrottles(redis_config) as node_a,
        SharedThrottles(redis_config) as node_b,
        SharedThrottles(None) as alone_a,
        SharedThrottles(None) as alone_b,
    ):
        shared_a, shared_b, local_a, local_b = await asyncio.gather(
            greedy(node_a.throttle("message_rate:site", rate), seconds, workers=10),
            greedy(node_b.throttle("message_rate:site", rate), seconds, workers=10),
            greedy(alone_a.throttle("message_rate:site", rate), seconds, workers=10),
            greedy(alone_b.throttle("message_rate:site", rate), seconds, workers=10),
        )
    shared = len(shared_a) + len(shared_b)
    assert shared <= bound
    assert shared >= 0.5 * bound
    assert len(shared_a) >= 15
    assert len(shared_b) >= 15
    # each node alone gets the whole budget: unshared, the two take more than the shared
    # limit allows (about twice, on a quiet machine)
    assert len(local_a) + len(local_b) > bound


_NODE_SCRIPT = """
import asyncio, json, sys, time
from kumoclient.configs import Rate, RedisThrottleConfig
from kumoclient.throttles import SharedThrottles

url, key = sys.argv[1], sys.argv[2]
limit, seconds = int(sys.argv[3]), float(sys.argv[4])
WORKERS = 25  # concurrent deliveries of one node

async def main() -> None:
    config = RedisThrottleConfig(node=url, connect_timeout=3.0, read_timeout=3.0) if url else None
    async with SharedThrottles(config) as throttles:
        await throttles.throttle("warm-up", Rate(1000, 1.0, "1000/s")).reserve()  # connected
        throttle = throttles.throttle(key, Rate(limit, 1.0, f"{limit}/s"))
        print("ready", flush=True)
        start = float(await asyncio.to_thread(sys.stdin.readline))
        await asyncio.sleep(max(0.0, start - time.time()))
        end = start + seconds
        slots = []

        async def work() -> None:
            while True:
                wait = await throttle.reserve()
                slot = time.time() + wait
                if slot > end:
                    return
                slots.append(slot)
                await asyncio.sleep(wait)

        await asyncio.gather(*(work() for _ in range(WORKERS)))
        print(json.dumps({"slots": slots, "degraded": throttles.degraded}))

asyncio.run(main())
"""


@pytest.mark.slow
def test_two_processes_share_a_redis_throttle_of_50_per_second(redis_proc: RedisServer) -> None:
    """Two node processes on one key: together within 50 + 5 s x 50; unshared, twice that."""
    limit, seconds = 50, 5.0
    runs = [
        (redis_proc.url, "message_rate:shared"),
        (redis_proc.url, "message_rate:shared"),
        ("", "message_rate:local"),  # no Redis: each process has its own local throttle
        ("", "message_rate:local"),
    ]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", _NODE_SCRIPT, url, key, str(limit), str(seconds)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for url, key in runs
    ]
    for process in processes:  # each has imported kumoclient and connected
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
    start = time.time() + 0.5
    for process in processes:
        assert process.stdin is not None
        process.stdin.write(f"{start!r}\n")
        process.stdin.flush()
    results = []
    for process in processes:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, err
        results.append(json.loads(out.splitlines()[-1]))
    shared, local = results[:2], results[2:]
    assert not any(result["degraded"] for result in shared)
    slots = sorted(t for result in shared for t in result["slots"])
    assert all(start - 0.05 <= t <= start + seconds for t in slots)
    allowed = limit + seconds * limit + 3  # the burst, one per 20 ms, rounding
    assert len(slots) <= allowed
    assert len(slots) >= 0.5 * allowed
    assert all(len(result["slots"]) >= 50 for result in shared)  # both nodes took part
    # each node alone could do far more: unshared, the two take more than the shared limit
    # allows (about twice, on a quiet machine)
    unshared = sum(len(result["slots"]) for result in local)
    assert unshared > allowed


# --- Redis unreachable: local limits, one warning, back to shared -----------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed again: connections are refused


async def test_unreachable_redis_falls_back_to_local_limits_with_one_warning() -> None:
    configured = RedisThrottleConfig(node=f"redis://:s3cret@127.0.0.1:{_closed_port()}/0")
    with capture_logs() as logs:
        async with SharedThrottles(configured, retry_interval=60.0) as throttles:
            throttle = throttles.throttle("message_rate:site", per_second(10))
            waits = [await throttle.reserve() for _ in range(12)]
            assert throttles.degraded
            lease = await throttles.acquire("connections:site", 1)
            again = await throttles.acquire("connections:site", 1)
            assert lease is not None
            assert again is not None
            assert not lease.shared
            await throttles.release(lease)
    assert waits[:10] == [0.0] * 10  # the local throttle: same burst, same spacing
    assert waits[10:] == pytest.approx([0.1, 0.2], abs=0.02)
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert [entry["event"] for entry in warnings] == [UNREACHABLE]
    assert "s3cret" not in json.dumps(warnings[0], default=str)
    assert warnings[0]["redis_node"].startswith("redis://:***@127.0.0.1:")
    assert "ConnectionError" in warnings[0]["error"]


async def test_a_silent_redis_times_out_quickly_and_is_not_retried_per_call() -> None:
    """A server that accepts connections but never answers: one short timeout, then local."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        configured = RedisThrottleConfig(
            node=f"redis://127.0.0.1:{port}/", connect_timeout=0.2, read_timeout=0.2
        )
        with capture_logs() as logs:
            async with SharedThrottles(configured, retry_interval=60.0) as throttles:
                throttle = throttles.throttle("message_rate:site", per_second(1000))
                started = time.monotonic()
                assert await throttle.reserve() == 0.0
                first = time.monotonic() - started
                started = time.monotonic()
                for _ in range(50):
                    await throttle.reserve()
                rest = time.monotonic() - started
    assert first < 2.5  # 0.2 s timeouts and no retries (redis-py's defaults: 5 s, 10 retries)
    assert rest < 1.0  # no timeout per call while Redis is skipped (50 x 0.4 s otherwise)
    assert [entry["event"] for entry in logs if entry["log_level"] == "warning"] == [UNREACHABLE]


async def test_redis_going_away_and_coming_back(
    redis_proc: RedisServer, redis_config: RedisThrottleConfig
) -> None:
    key = THROTTLE_PREFIX + "message_rate:site"
    client = redis.asyncio.Redis.from_url(redis_proc.url)
    now = [1000.0]  # the retry interval runs on this clock, not on how long a restart takes
    try:
        with capture_logs() as logs:
            async with SharedThrottles(
                redis_config, retry_interval=0.5, clock=lambda: now[0]
            ) as throttles:
                throttle = throttles.throttle("message_rate:site", per_second(100))
                await throttle.reserve()
                assert await client.exists(key) == 1
                await client.aclose()

                redis_proc.stop()
                waits = [await throttle.reserve() for _ in range(20)]  # never raises
                assert all(isinstance(wait, float) for wait in waits)
                assert throttles.degraded
                lease = await throttles.acquire("connections:site", 1)
                assert lease is not None
                assert not lease.shared

                redis_proc.start()  # same port, empty
                await throttle.reserve()  # too early to try again: still local
                assert throttles.degraded
                now[0] += 0.6
                await throttle.reserve()  # this one probes Redis, and it answers
                assert not throttles.degraded
                assert await client.exists(key) == 1
                shared_lease = await throttles.acquire("connections:site", 1)
                assert shared_lease is not None
                assert shared_lease.shared
                assert await throttles.acquire("connections:site", 1) is None
                await throttles.release(shared_lease)
    finally:
        await client.aclose()
    events = [(entry["log_level"], entry["event"]) for entry in logs]
    assert events == [("warning", UNREACHABLE), ("info", REACHABLE)]


# --- the shared connection limit ---------------------------------------------------------------


async def test_connection_leases_are_limited_across_nodes(
    redis_config: RedisThrottleConfig, peek: redis.asyncio.Redis
) -> None:
    key = "connections:site"
    async with SharedThrottles(redis_config) as node_a, SharedThrottles(redis_config) as node_b:
        a1 = await node_a.acquire(key, 3)
        a2 = await node_a.acquire(key, 3)
        b1 = await node_b.acquire(key, 3)
        assert a1 is not None
        assert a2 is not None
        assert b1 is not None
        assert all(lease.shared for lease in (a1, a2, b1))
        assert await node_b.acquire(key, 3) is None
        assert await node_a.acquire(key, 3) is None
        assert await peek.zcard(LEASES_PREFIX + key) == 3

        await node_a.release(a1)
        await node_a.release(a1)  # twice: no effect
        b2 = await node_b.acquire(key, 3)
        assert b2 is not None
        assert await node_a.acquire(key, 3) is None
        assert await node_a.acquire("connections:other-site", 3) is not None  # its own limit

        # many at once from both nodes: never more than the limit
        await node_a.release(a2)
        await node_b.release(b1)
        await node_b.release(b2)
        assert await peek.zcard(LEASES_PREFIX + key) == 0
        grants = await asyncio.gather(*(node.acquire(key, 3) for node in (node_a, node_b) * 10))
        assert sum(grant is not None for grant in grants) == 3
        assert await peek.zcard(LEASES_PREFIX + key) == 3


async def test_leases_of_a_node_that_stops_renewing_expire(
    redis_config: RedisThrottleConfig,
) -> None:
    key = "connections:site"
    crashed = SharedThrottles(redis_config, lease_seconds=2.0)  # long: this machine stalls
    for _ in range(3):
        assert await crashed.acquire(key, 3) is not None
    await crashed.aclose()  # stops renewing without releasing, as a crashed node would
    async with SharedThrottles(redis_config) as survivor:
        assert await survivor.acquire(key, 3) is None
        await asyncio.sleep(2.5)
        reclaimed = [await survivor.acquire(key, 3) for _ in range(4)]
    assert [lease is not None for lease in reclaimed] == [True, True, True, False]


async def test_held_leases_are_renewed(redis_config: RedisThrottleConfig) -> None:
    key = "connections:site"
    async with (
        SharedThrottles(redis_config, lease_seconds=2.0) as holder,
        SharedThrottles(redis_config) as other,
    ):
        leases = [await holder.acquire(key, 3) for _ in range(3)]
        await asyncio.sleep(4.0)  # well past the lease time: renewed every 0.67 s
        assert await other.acquire(key, 3) is None
        for lease in leases:
            assert lease is not None
            await holder.release(lease)
        assert await other.acquire(key, 3) is not None


async def test_without_redis_every_connection_lease_is_granted() -> None:
    async with SharedThrottles(None) as throttles:
        leases = [await throttles.acquire("connections:site", 1) for _ in range(5)]
        assert all(lease is not None and not lease.shared for lease in leases)
        for lease in leases:
            assert lease is not None
            await throttles.release(lease)


def test_redact_hides_only_the_password() -> None:
    assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redact("redis://user:pw@host:1/2") == "redis://user:***@host:1/2"
    assert redact("rediss://:pw@host/") == "rediss://:***@host/"


# --- policy: kumo.configure_redis_throttles ----------------------------------------------------


def run_init(tmp_path: Path, body: str) -> object:
    path = tmp_path / "policy.lua"
    path.write_text(
        "local kumo = require 'kumo'\n"
        "kumo.on('init', function()\n" + textwrap.indent(textwrap.dedent(body), "  ") + "end)\n"
    )
    runtime = PolicyRuntime(path)
    return runtime.run(runtime.run_init()).redis_throttles


def test_policy_configures_redis_throttles_in_init(tmp_path: Path) -> None:
    found = run_init(tmp_path, "kumo.configure_redis_throttles{ node = 'redis://127.0.0.1:1/' }\n")
    assert found == RedisThrottleConfig(node="redis://127.0.0.1:1/")


def test_policy_accepts_kumomtas_other_forms(tmp_path: Path) -> None:
    found = run_init(
        tmp_path,
        """
        kumo.configure_redis_throttles{
          node = { 'redis://redis.example:6380/2' },
          cluster = false,
          username = 'mta',
          password = 's3cret',
          pool_size = 4,
          connect_timeout = '2s',
          read_timeout = '250ms',
        }
        """,
    )
    assert found == RedisThrottleConfig(
        node="redis://redis.example:6380/2",
        username="mta",
        password="s3cret",
        pool_size=4,
        connect_timeout=2.0,
        read_timeout=0.25,
    )
    assert "s3cret" not in repr(found)


def test_policy_without_redis_throttles(tmp_path: Path) -> None:
    assert run_init(tmp_path, "kumo.configure_local_logs{ log_dir = 'logs' }\n") is None


BAD = [
    ({"nodes": "redis://h/"}, "unknown key 'nodes' (known keys: connect_timeout, node,"),
    ({}, "missing required key 'node'"),
    ({"node": 6379}, "node = 6379: expected a non-empty string"),
    ({"node": "http://h/"}, "expected a URL such as 'redis://127.0.0.1:6379/'"),
    ({"node": "redis://h:99999/"}, "is not a URL"),
    ({"node": "redis:///0"}, "names no host"),
    ({"node": "redis://h/zero"}, "database number"),
    ({"node": ["redis://a/", "redis://b/"]}, "Redis Cluster, which kumoclient does not support"),
    ({"node": "redis://h/", "cluster": True}, "cluster = True: Redis Cluster is not supported"),
    ({"node": "redis://h/", "connect_timeout": "soon"}, "connect_timeout = 'soon'"),
    ({"node": "redis://h/", "pool_size": 0}, "pool_size = 0: must be at least 1"),
    ("redis://h/", "expected a table of options"),
]


@pytest.mark.parametrize(("params", "message"), BAD)
def test_bad_redis_throttle_config_is_a_clear_error(params: object, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        config.configure_redis_throttles(params)
    assert str(info.value).startswith("configure_redis_throttles: ")
    assert message in str(info.value)


def test_bad_redis_throttle_config_in_a_policy_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as info:
        run_init(tmp_path, "kumo.configure_redis_throttles{ node = 'redis://h/', colour = 1 }\n")
    assert "policy.lua:3: configure_redis_throttles: unknown key 'colour'" in str(info.value)
