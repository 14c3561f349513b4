"""`require 'redis'`: `redis.open{...}` and the connection's `conn:query(CMD, ...)`, on
redis-py's asyncio client (one pool per set of parameters on each event loop, closed when the
loop ends: `loop_resources`).

Arguments are sent as Redis takes them: strings as they are, numbers as their decimal text,
booleans as `1`/`0`, nil as nothing, a list as its items and a table as key, value pairs.
Replies come back as KumoMTA gives them: integers, strings (exact bytes), nil, arrays as
lists; an error reply is a Lua error. A status reply (`OK`, `PONG`) is its text (KumoMTA
gives `true` for `OK`: redis-py does not tell a status reply from a string).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from kumoclient.errors import ConfigError, PolicyIoError
from kumoclient.policy import config_values
from kumoclient.policy.api import LuaObject, kumo_function
from kumoclient.policy.modules import loop_resources

WHAT = "redis.open"
DEFAULT_RESPONSE_TIMEOUT = 60.0  # KumoMTA waits without a limit


@dataclass(frozen=True, slots=True)
class _Params:
    node: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    pool_size: int = 10
    connect_timeout: float = 30.0
    wait_timeout: float = 30.0
    response_timeout: float = DEFAULT_RESPONSE_TIMEOUT


_DURATIONS = ("connect_timeout", "wait_timeout", "response_timeout")
_ACCEPTED = {"read_from_replicas", "recycle_timeout", "cluster"}  # checked, no effect here


def _param(key: str, value: Any) -> Any:
    """One parameter's value (None: checked, not used here)."""
    if key == "node":
        return config_values.redis_node(value)
    if key in ("username", "password"):
        return config_values.string(value)
    if key == "pool_size":
        return config_values.integer(1)(value)
    if key in _DURATIONS or key == "recycle_timeout":
        seconds = config_values.duration(value)
        return None if key == "recycle_timeout" else seconds
    if key == "cluster" and value is True:
        raise config_values.Bad("Redis Cluster is not supported")
    if key == "read_from_replicas":
        config_values.boolean(value)  # read for a cluster only
        return None
    if key not in _ACCEPTED:
        raise config_values.Bad("unknown key")
    return None


def _params(params: Any) -> _Params:
    if not isinstance(params, dict) or "node" not in params:
        raise ConfigError(f"{WHAT}: expected a table with node = 'redis://host:port/'")
    values: dict[str, Any] = {}
    for key, value in params.items():
        try:
            converted = _param(key, value)
        except (ValueError, ConfigError) as exc:  # config_values.Bad, DurationError
            raise ConfigError(f"{WHAT}: {key} = {value!r}: {exc}", key=key) from None
        if converted is not None:
            values[key] = converted
    return _Params(**values)


def _argument(value: Any) -> list[str | bytes]:
    if value is None:
        return []
    if isinstance(value, bool):
        return ["1" if value else "0"]
    if isinstance(value, int):
        return [str(value)]
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"redis.query: cannot send {value} to Redis")
        return [repr(value)]
    if isinstance(value, str | bytes):
        return [value]
    if isinstance(value, list):
        return [part for item in value for part in _argument(item)]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in (*_argument(k), *_argument(v))]
    raise ConfigError(f"redis.query: cannot send a {type(value).__name__} to Redis")


def _reply(value: Any) -> Any:
    if isinstance(value, redis.exceptions.ResponseError):
        raise PolicyIoError("redis.query", str(value))
    if isinstance(value, list | tuple | set):
        return [_reply(item) for item in value]
    if isinstance(value, dict):
        return {_reply(k): _reply(v) for k, v in value.items()}
    return value


def _client(params: _Params) -> redis.asyncio.Redis:
    pool = redis.asyncio.BlockingConnectionPool.from_url(
        params.node,
        max_connections=params.pool_size,
        timeout=params.wait_timeout,
        username=params.username,
        password=params.password,
        socket_connect_timeout=params.connect_timeout,
        socket_timeout=params.response_timeout,
        retry=Retry(NoBackoff(), 0),
        protocol=2,  # replies shaped as KumoMTA's client gets them (RESP2) by default
    )
    client = redis.asyncio.Redis.from_pool(pool)
    client.response_callbacks.clear()  # replies as the server gives them
    return client


async def _close(client: redis.asyncio.Redis) -> None:
    await client.aclose()


class RedisConnection(LuaObject):
    """The handle `redis.open` returns."""

    lua_name = "RedisConnection"
    lua_methods: ClassVar[frozenset[str]] = frozenset({"query"})

    def __init__(self, params: _Params) -> None:
        self.params = params

    async def query(self, *arguments: Any) -> Any:
        """`conn:query(CMD, ...)`: the command's reply."""
        words = _argument(list(arguments))
        if not words:
            raise ConfigError("redis.query: a command is required")
        client = loop_resources.shared(("redis", self.params), lambda: _client(self.params), _close)
        try:
            reply = await client.execute_command(*words)  # type: ignore[no-untyped-call]
            return _reply(reply)
        except redis.exceptions.ResponseError as exc:
            raise PolicyIoError("redis.query", str(exc)) from exc
        except (redis.exceptions.RedisError, OSError, TimeoutError) as exc:
            reason = str(exc) or type(exc).__name__
            raise PolicyIoError("redis.query", f"{self.params.node}: {reason}") from exc

    def lua_tostring(self) -> str:
        return f"RedisConnection({self.params.node})"


@kumo_function("open", module="redis")
def open_connection(params: Any) -> RedisConnection:
    """`redis.open{node=, ...}`: a connection handle (connections are made when used)."""
    return RedisConnection(_params(params))
