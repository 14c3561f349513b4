"""`require 'redis'` through a real policy against a private redis-server: the reference
page's examples, how arguments and replies cross, a handler waiting on a blocking command
while another runs, one pooled connection, and a server that goes away and comes back."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from kumoclient.errors import PolicyError
from kumoclient.policy.runtime import PolicyRuntime
from tests.policy.conftest import LoadPolicy
from tests.redis_server import RedisServer, free_port


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path / "redis") as server:
        yield server


def policy(load_policy: LoadPolicy, server: RedisServer, body: str) -> PolicyRuntime:
    return load_policy(
        f"local redis = require 'redis'\n"
        f"local conn = redis.open {{ node = 'redis://127.0.0.1:{server.port}/' }}\n{body}"
    )


async def fire(runtime: PolicyRuntime, event: str, *args: object) -> object:
    fired = await runtime.fire(event, *args)
    assert fired.status == "ok", fired.value
    return fired.value


async def test_the_reference_examples(load_policy: LoadPolicy, redis_server: RedisServer) -> None:
    runtime = policy(
        load_policy,
        redis_server,
        """
        kumo.on('example', function()
          local first = conn:query('incr', 'test-count')
          print(first)
          return kumo.json_encode { first, conn:query('incr', 'test-count'),
            conn:query('INCRBY', 'my-key', 2), conn:query('INCRBY', 'my-key', 2) }
        end)
        """,
    )
    assert json.loads(str(await fire(runtime, "example"))) == [1, 2, 2, 4]


async def test_arguments_and_replies(load_policy: LoadPolicy, redis_server: RedisServer) -> None:
    runtime = policy(
        load_policy,
        redis_server,
        """
        kumo.on('example', function(binary)
          return kumo.json_encode {
            set = conn:query('SET', 'n', 2.5),
            n = conn:query('GET', 'n'),
            int = (conn:query('SET', 'i', 7) and conn:query('GET', 'i')),
            bool = (conn:query('SET', 'b', true) and conn:query('GET', 'b')),
            missing = conn:query('GET', 'missing') == nil,
            pushed = conn:query('RPUSH', 'l', { 'a', 'b' }, 'c'),
            list = conn:query('LRANGE', 'l', 0, -1),
            hash = (conn:query('HSET', 'h', { f = 'v' }) and conn:query('HGETALL', 'h')),
            binary = (conn:query('SET', 'bin', binary) and conn:query('GET', 'bin') == binary),
          }
        end)
        """,
    )
    reply = json.loads(str(await fire(runtime, "example", b"\x00\xff\xfe")))
    assert reply == {
        "set": "OK",
        "n": "2.5",
        "int": "7",
        "bool": "1",
        "missing": True,
        "pushed": 3,
        "list": ["a", "b", "c"],
        "hash": ["f", "v"],
        "binary": True,
    }


async def test_a_handler_waits_on_a_blocking_command_while_another_runs(
    load_policy: LoadPolicy, redis_server: RedisServer
) -> None:
    runtime = policy(
        load_policy,
        redis_server,
        """
        kumo.on('pop', function() return conn:query('BLPOP', 'queue', 0)[2] end)
        kumo.on('push', function(v) return conn:query('RPUSH', 'queue', v) end)
        kumo.on('waiting', function()
          return conn:query('CLIENT', 'LIST'):find('cmd=blpop', 1, true) ~= nil
        end)
        """,
    )
    popper = asyncio.ensure_future(runtime.fire("pop"))
    while not await fire(runtime, "waiting"):
        await asyncio.sleep(0.01)
    assert not popper.done()
    assert await fire(runtime, "push", "job-1") == 1
    popped = await popper
    assert (popped.status, popped.value) == ("ok", "job-1")


async def test_queries_share_one_pooled_connection(
    load_policy: LoadPolicy, redis_server: RedisServer
) -> None:
    runtime = policy(
        load_policy,
        redis_server,
        """
        kumo.on('example', function()
          for i = 1, 20 do conn:query('INCR', 'counter') end
          local other = redis.open { node = 'redis://127.0.0.1:%d/' }
          other:query('INCR', 'counter')
          return conn:query('INFO', 'clients')
        end)
        """.replace("%d", str(redis_server.port)),
    )
    # one connection: reused by the 20 queries and by the other handle of the same node
    assert "connected_clients:1\r\n" in str(await fire(runtime, "example"))


async def test_errors_name_the_policy_line_and_a_restarted_server_serves_again(
    load_policy: LoadPolicy, redis_server: RedisServer
) -> None:
    runtime = policy(
        load_policy,
        redis_server,
        """
        kumo.on('example', function(...)
          return conn:query(...)
        end)
        """,
    )
    assert await fire(runtime, "example", "SET", "k", "v") == "OK"
    wrong = await runtime.fire("example", "LPUSH", "k", "x")
    assert wrong.status == "error"
    assert "policy.lua:5: redis.query: WRONGTYPE" in str(wrong.value)
    redis_server.stop()
    down = await runtime.fire("example", "GET", "k")
    assert down.status == "error"
    assert f"policy.lua:5: redis.query: redis://127.0.0.1:{redis_server.port}/" in str(down.value)
    redis_server.start()  # empty again (no persistence)
    assert await fire(runtime, "example", "SET", "k", "w") == "OK"
    assert await fire(runtime, "example", "GET", "k") == "w"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("{}", "redis.open: expected a table with node"),
        ("{ node = 'http://x/' }", "expected a URL such as 'redis://127.0.0.1:6379/'"),
        ("{ node = { 'redis://a/', 'redis://b/' } }", "Redis Cluster, which kumoclient does"),
        ("{ node = 'redis://a/', cluster = true }", "Redis Cluster is not supported"),
        ("{ node = 'redis://a/', pool = 3 }", "redis.open: pool = 3: unknown key"),
        ("{ node = 'redis://a/', connect_timeout = 'soon' }", "redis.open: connect_timeout"),
    ],
)
def test_bad_parameters_are_refused_at_the_policy_line(
    load_policy: LoadPolicy, params: str, message: str
) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy(f"\nrequire('redis').open {params}\n")
    assert "/policy.lua:2: " in str(caught.value)
    assert message in str(caught.value)


def test_documented_keys_are_accepted(load_policy: LoadPolicy) -> None:
    load_policy(
        f"""
        require('redis').open {{
          node = {{ 'redis://127.0.0.1:{free_port()}/' }}, pool_size = 2,
          read_from_replicas = false, username = 'u', password = 'p', connect_timeout = '1s',
          wait_timeout = '1s', response_timeout = 5, recycle_timeout = '1s', cluster = false,
        }}
        """
    )
