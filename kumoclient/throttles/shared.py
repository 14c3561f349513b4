"""Shared throttles and connection leases (`SharedThrottles`), through Redis or local; the
package's text (throttles/__init__.py) says how they behave."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, Protocol

import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript

from kumoclient import logs
from kumoclient.configs import Rate, RedisThrottleConfig
from kumoclient.core.throttle import Throttle, tolerance
from kumoclient.throttles import redis_scripts

log = logs.get_logger(__name__)

KEY_PREFIX = "kumoclient:"
THROTTLE_PREFIX = KEY_PREFIX + "throttle:"
LEASES_PREFIX = KEY_PREFIX + "leases:"
DEFAULT_RETRY_INTERVAL = 5.0
DEFAULT_LEASE_SECONDS = 60.0

# what a failing Redis call can raise: refused or lost connections, timeouts, error replies
_REDIS_FAILURES = (redis.exceptions.RedisError, OSError, TimeoutError, EOFError)


class AsyncThrottle(Protocol):
    """One rate limit; `reserve` books the next event."""

    @property
    def rate(self) -> Rate: ...

    async def reserve(self, quantity: int = 1) -> float:
        """Book `quantity` events; seconds to wait before the last may happen (0.0: now)."""
        ...


@dataclass(frozen=True, slots=True)
class Lease:
    """One held slot of a shared connection limit; `shared` is false for a local grant."""

    key: str
    id: str
    shared: bool


class LocalThrottle:
    """`core.throttle.Throttle` behind the async interface."""

    def __init__(self, rate: Rate, clock: Callable[[], float] = time.monotonic) -> None:
        self._throttle = Throttle(rate, clock)

    @property
    def rate(self) -> Rate:
        return self._throttle.rate

    async def reserve(self, quantity: int = 1) -> float:
        return self._throttle.reserve(quantity)


class RedisThrottle:
    """A GCRA kept in Redis under `kumoclient:throttle:{key}`, local while Redis fails."""

    def __init__(self, owner: SharedThrottles, key: str, rate: Rate) -> None:
        self._owner = owner
        self.key = key
        self.redis_key = THROTTLE_PREFIX + key
        self._args = (repr(rate.period / rate.limit), repr(tolerance(rate)))
        self._local = LocalThrottle(rate, owner.clock)

    @property
    def rate(self) -> Rate:
        return self._local.rate

    async def reserve(self, quantity: int = 1) -> float:
        args = (*self._args, quantity)
        answer = await self._owner.run_script("gcra", [self.redis_key], args)
        if answer is None:
            return await self._local.reserve(quantity)
        return max(0.0, float(answer))


Mode = Literal["normal", "probe"]


class SharedThrottles:
    """The throttles and connection limits of one node; shared through Redis when configured.

    Use as `async with SharedThrottles(config) as throttles:` or call `aclose()`; a node should
    release its leases before closing (the ones it still holds expire after `lease_seconds`).
    """

    def __init__(
        self,
        config: RedisThrottleConfig | None,
        *,
        retry_interval: float = DEFAULT_RETRY_INTERVAL,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.retry_interval = retry_interval
        self.lease_seconds = lease_seconds
        self.clock = clock
        self._throttles: dict[str, AsyncThrottle] = {}
        self._client: redis.asyncio.Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._degraded = False
        self._retry_at = 0.0
        self._node_id = uuid.uuid4().hex[:16]
        self._lease_numbers = itertools.count(1)
        self._held: dict[str, set[str]] = {}  # key -> ids of the shared leases held
        self._renewer: asyncio.Task[None] | None = None
        self._closed = False

    # --- state ---------------------------------------------------------------------------

    @property
    def configured(self) -> bool:
        """True when the policy configured Redis throttles."""
        return self.config is not None

    @property
    def degraded(self) -> bool:
        """True while Redis is configured but failing: local limits are in force."""
        return self._degraded

    @property
    def node(self) -> str | None:
        """The Redis URL, password removed (for logs)."""
        return None if self.config is None else redact(self.config.node)

    # --- rate limits ---------------------------------------------------------------------

    def throttle(self, key: str, rate: Rate) -> AsyncThrottle:
        """The throttle for `key` at `rate`: the same object while the rate is unchanged.

        Nodes share the budget of a key (e.g. `message_rate:{site}`) whatever their rates;
        each booking uses the rate of the node that books. A `local` rate (KumoMTA's `local:`
        prefix) is never shared.
        """
        current = self._throttles.get(key)
        if current is not None and current.rate == rate:
            return current
        made: AsyncThrottle = (
            LocalThrottle(rate, self.clock)
            if self.config is None or rate.local
            else RedisThrottle(self, key, rate)
        )
        self._throttles[key] = made
        return made

    # --- connection limits ---------------------------------------------------------------

    async def acquire(self, key: str, limit: int) -> Lease | None:
        """A slot of the connection limit `key`, or None when `limit` slots are held.

        None only comes from Redis: try again later (e.g. after a connection of this node
        closes, or in a fraction of a second). Without Redis, or while it fails, every
        acquire is granted a local lease.
        """
        lease_id = f"{self._node_id}:{next(self._lease_numbers)}"
        if self.config is None:
            return Lease(key, lease_id, shared=False)
        answer = await self.run_script(
            "acquire", [LEASES_PREFIX + key], (lease_id, limit, repr(self.lease_seconds))
        )
        if answer is None:
            return Lease(key, lease_id, shared=False)
        if int(answer) != 1:
            return None
        self._held.setdefault(key, set()).add(lease_id)
        self._start_renewer()
        return Lease(key, lease_id, shared=True)

    async def release(self, lease: Lease) -> None:
        """Give the slot back; a failure to tell Redis leaves it to expire."""
        if not lease.shared:
            return
        held = self._held.get(lease.key)
        if held is None or lease.id not in held:
            return
        held.discard(lease.id)
        if not held:
            del self._held[lease.key]
        await self._call(lambda client: client.zrem(LEASES_PREFIX + lease.key, lease.id))

    def _start_renewer(self) -> None:
        if self._renewer is None and not self._closed:
            self._renewer = asyncio.get_running_loop().create_task(
                self._renew_forever(), name="kumoclient-lease-renewer"
            )

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                await self.renew()
            except Exception:  # keep renewing; Redis failures never get here
                log.exception("renewing connection leases failed", redis_node=self.node)

    async def renew(self) -> None:
        """Extend every shared lease this node holds (run every `lease_seconds / 3`)."""
        for key, ids in list(self._held.items()):
            if ids:
                args = (repr(self.lease_seconds), *sorted(ids))
                await self.run_script("renew", [LEASES_PREFIX + key], args)

    # --- Redis ---------------------------------------------------------------------------

    def _redis(self) -> redis.asyncio.Redis:
        if self._client is None:
            assert self.config is not None
            config = self.config
            # callers wait for one of `pool_size` connections (within the call's timeout)
            # rather than failing when all are busy; no retries: failing over is quicker
            pool = redis.asyncio.BlockingConnectionPool.from_url(
                config.node,
                max_connections=config.pool_size,
                timeout=config.connect_timeout + config.read_timeout,
                username=config.username,
                password=config.password,
                socket_connect_timeout=config.connect_timeout,
                socket_timeout=config.read_timeout,
                retry=Retry(NoBackoff(), 0),
            )
            self._client = redis.asyncio.Redis.from_pool(pool)
            self._scripts = {
                "gcra": self._client.register_script(redis_scripts.GCRA),
                "acquire": self._client.register_script(redis_scripts.ACQUIRE),
                "renew": self._client.register_script(redis_scripts.RENEW),
            }
        return self._client

    def _mode(self) -> Mode | None:
        """How to use Redis now: normally, as the one probe after a failure, or not at all."""
        if self.config is None or self._closed:
            return None
        if not self._degraded:
            return "normal"
        now = self.clock()
        if now < self._retry_at:
            return None
        self._retry_at = now + self.retry_interval  # the others stay local meanwhile
        return "probe"

    async def run_script(self, name: str, keys: list[str], args: tuple[Any, ...]) -> Any:
        """Run one of the registered scripts; None when Redis is not to be used or failed."""
        return await self._call(lambda client: self._scripts[name](keys=keys, args=args))

    async def _call(self, command: Callable[[redis.asyncio.Redis], Any]) -> Any:
        mode = self._mode()
        if mode is None:
            return None
        assert self.config is not None
        client = self._redis()
        try:
            async with asyncio.timeout(self.config.connect_timeout + self.config.read_timeout):
                answer = await command(client)
        except _REDIS_FAILURES as exc:
            self._failed(exc)
            return None
        if mode == "probe":
            self._recovered()
        return answer

    def _failed(self, exc: BaseException) -> None:
        self._retry_at = self.clock() + self.retry_interval
        if self._degraded:
            return
        self._degraded = True
        log.warning(
            "redis throttles unreachable; using local limits",
            redis_node=self.node,
            error=f"{type(exc).__name__}: {exc}",
            retry_seconds=self.retry_interval,
        )

    def _recovered(self) -> None:
        if self._degraded:
            self._degraded = False
            log.info("redis throttles reachable again; using shared limits", redis_node=self.node)

    # --- life cycle ----------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop renewing leases and close the Redis connections."""
        self._closed = True
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def __aenter__(self) -> SharedThrottles:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


def redact(url: str) -> str:
    """`url` without its password."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urllib.parse.urlunsplit(parts._replace(netloc=user + netloc))
