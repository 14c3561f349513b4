"""The two waiting rooms of a message: the scheduled queue (until its due time) and the ready
queue of its site (until a connection is free).

The scheduler is one heap of due times for every queue name; when a message comes due it is
handed to the engine, which looks up its queue config and puts it in its site's ready queue.
A site hands ready messages to idle dispatchers first (so connections are reused) and asks for
a new dispatcher while fewer than `connection_limit` are running.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from kumoclient.configs import EgressPathConfig, MxHost, QueueConfig
from kumoclient.records import QueueName, SpooledMessage
from kumoclient.throttles import AsyncThrottle, SharedThrottles

PENALTY_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Route:
    """The destination of a queue: `site` is the ready-queue name used in records."""

    site: str
    site_name: str
    routing_domain: str
    hosts: tuple[MxHost, ...]
    from_dns: bool = False  # MX hosts: addresses come from the DNS resolver


class Stage(enum.Enum):
    """Where an item waits (for queue states and administrative operations)."""

    SCHEDULED = "scheduled"  # in the scheduler until its due time
    ROUTING = "routing"  # awaiting its routing domain's MX lookup
    READY = "ready"  # in its site's ready queue
    IN_FLIGHT = "in_flight"  # taken by a dispatcher
    HELD = "held"  # held by a suspension


@dataclass(slots=True, eq=False)
class Item:
    """A message on its way: the spooled message, its queue and the queue's config."""

    message: SpooledMessage
    queue: str
    name: QueueName
    config: QueueConfig = field(default_factory=QueueConfig)
    content: bytes | None = None  # kept from reception or enumeration, within a budget
    stage: Stage = Stage.SCHEDULED
    site: str = ""  # the site's name once it has one


class Scheduler:
    """Messages waiting for their due time; `run` hands each to `on_due` when it comes."""

    def __init__(self, on_due: Callable[[Item], None], clock: Callable[[], float] = time.time):
        self._on_due = on_due
        self._clock = clock
        self._heap: list[tuple[float, int, Item]] = []
        self._counter = itertools.count()
        self._wake = asyncio.Event()
        self._stopped = False

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, item: Item) -> None:
        """Schedule an item at its message's due time (now or earlier: at once)."""
        due = item.message.due
        if not self._heap or due < self._heap[0][0]:
            self._wake.set()
        item.stage = Stage.SCHEDULED
        heapq.heappush(self._heap, (due, next(self._counter), item))

    def remove(self, predicate: Callable[[Item], bool]) -> list[Item]:
        """Take every scheduled item that `predicate` selects out of the heap (O(n)), in
        due order."""
        taken: list[tuple[float, int, Item]] = []
        kept: list[tuple[float, int, Item]] = []
        for entry in self._heap:
            if predicate(entry[2]):
                taken.append(entry)
            else:
                kept.append(entry)
        if taken:
            heapq.heapify(kept)
            self._heap = kept
            taken.sort(key=lambda entry: entry[:2])
        return [entry[2] for entry in taken]

    def stop(self) -> None:
        """End `run`; what is left stays in the spool."""
        self._stopped = True
        self._wake.set()

    async def run(self) -> None:
        """Release due items until stopped."""
        while not self._stopped:
            now = self._clock()
            released = 0
            while self._heap and self._heap[0][0] <= now and not self._stopped:
                _, _, item = heapq.heappop(self._heap)
                self._on_due(item)
                released += 1
                if released % 1000 == 0:
                    await asyncio.sleep(0)  # a big backlog must not starve the loop
            self._wake.clear()
            timeout = None if not self._heap else max(0.0, self._heap[0][0] - self._clock())
            if timeout is None or timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)


class Site:
    """The ready queue of one site, its egress settings and its open-connection count."""

    def __init__(
        self,
        route: Route,
        egress: EgressPathConfig,
        generation: int,
        throttles: SharedThrottles | None = None,
    ) -> None:
        self.route = route
        self.name = route.site
        self.egress = egress
        self.generation = generation
        self.ready: deque[Item] = deque()
        self.waiters: deque[asyncio.Future[Item | None]] = deque()
        self.active = 0  # dispatchers running (connected, connecting or idle)
        self._penalties: dict[tuple[str, int], float] = {}
        throttles = throttles if throttles is not None else SharedThrottles(None)
        self.message_throttle: AsyncThrottle | None = None
        self.connection_throttle: AsyncThrottle | None = None
        self.throttles = throttles
        self.configure(egress, generation)

    def configure(self, egress: EgressPathConfig, generation: int) -> None:
        """Take (possibly reloaded) egress settings; rate limits keep their state when
        their setting did not change (local, or shared through Redis: `throttles`)."""
        self.egress, self.generation = egress, generation
        message_rate, connection_rate = egress.max_message_rate, egress.max_connection_rate
        self.message_throttle = (
            None
            if message_rate is None
            else self.throttles.throttle(f"message_rate:{self.name}", message_rate)
        )
        self.connection_throttle = (
            None
            if connection_rate is None
            else self.throttles.throttle(f"connection_rate:{self.name}", connection_rate)
        )

    def put(self, item: Item) -> bool:
        """Queue an item; True when the engine should start another dispatcher."""
        item.site = self.name
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                item.stage = Stage.IN_FLIGHT  # handed to an idle dispatcher
                waiter.set_result(item)
                return False
        item.stage = Stage.READY
        self.ready.append(item)
        return self.active < self.egress.connection_limit

    async def take(self, idle_timeout: float) -> Item | None:
        """The next ready item, waiting up to `idle_timeout` seconds; None when none came."""
        if self.ready:
            item = self.ready.popleft()
            item.stage = Stage.IN_FLIGHT
            return item
        if idle_timeout <= 0:
            return None
        waiter: asyncio.Future[Item | None] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            return await asyncio.wait_for(waiter, idle_timeout)
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                return waiter.result()  # handed over just as the wait ended
            return None
        finally:
            if waiter in self.waiters:
                self.waiters.remove(waiter)

    def drain(self) -> list[Item]:
        """Take every waiting item (when the whole site failed)."""
        items = list(self.ready)
        self.ready.clear()
        for item in items:
            item.stage = Stage.IN_FLIGHT
        return items

    def remove(self, predicate: Callable[[Item], bool]) -> list[Item]:
        """Take the ready items that `predicate` selects out of the ready queue, in order."""
        taken: list[Item] = []
        kept: list[Item] = []
        for item in self.ready:
            (taken if predicate(item) else kept).append(item)
        if taken:
            self.ready.clear()
            self.ready.extend(kept)
        return taken

    def release_waiters(self) -> None:
        """Wake every idle dispatcher with nothing (at stop)."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def penalize(self, address: str, port: int, now: float) -> None:
        """A target failed: try it after the others for a while."""
        self._penalties[(address, port)] = now + PENALTY_SECONDS

    def penalized(self, address: str, port: int, now: float) -> bool:
        """True while a failed target is tried last."""
        until = self._penalties.get((address, port))
        if until is None:
            return False
        if until <= now:
            del self._penalties[(address, port)]
            return False
        return True
