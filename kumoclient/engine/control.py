"""Queue administration: suspend, resume, administrative bounce, retry now, queue states.

Modeled on Postfix's `postqueue`/`postsuper` and KumoMTA's `kcli` (suspend, suspend-cancel,
bounce, rebind/retry). Every operation picks messages with a `Selector` — `domain`, `tenant`,
`campaign`, any combination, none = every message — matched against the parts of each
message's queue name (SPEC 1, `parse_queue_name`): `domain` against the queue's domain
(case-insensitive), `tenant` and `campaign` exactly.

- **Suspend**: messages of matching queues are not attempted. A message that comes due, or
  that waited in a site's ready queue, is *held* in the suspension's list (no polling, no
  busy loop); a transaction already in flight finishes. Resuming (or the suspension's
  `duration` running out, as KumoMTA's suspensions expire) hands every held message back to
  the engine at once. Suspensions live in memory only, as in KumoMTA: after a restart they
  are gone, and the held messages — which never left the spool — are scheduled by their
  stored due time like every other message. A held message is not expired while held: when
  it is released past its `max_age` it expires at once (SPEC 2.4), without an attempt.
- **Bounce**: every matching message that is scheduled, awaiting its MX lookup, ready or
  held gets an `AdminBounce` record, `551 5.7.1 Administrative bounce: <reason>` (KumoMTA's
  code and wording; no command, no peer), and leaves the spool through the engine's state
  writer, after its record is fsynced (SPEC 1, invariant 2). A message in flight is marked:
  if its transaction has not started yet it is bounced instead, otherwise it ends as the
  server decides (a Delivery stays a Delivery) and is bounced instead of being requeued.
  Unlike KumoMTA's bounce rules, which keep bouncing new arrivals for a while, a bounce acts
  on the messages present when it is made.
- **Retry now**: matching scheduled messages become due now (their stored due time is not
  rewritten; the attempt's outcome writes the next one). Held messages stay held.
- **Queue states**: per queue, how many messages and where they wait.

Everything here runs on the event loop's thread and works while deliveries run.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from kumoclient.core.selector import Selector
from kumoclient.engine.queues import Item, Scheduler, Site, Stage
from kumoclient.records import EnhancedCode, QueueName, Reply

ADMIN_BOUNCE_CODE = 551
ADMIN_BOUNCE_ENHANCED = EnhancedCode(5, 7, 1)


def admin_bounce_reply(reason: str) -> Reply:
    """The response of an AdminBounce record (KumoMTA's: `551 5.7.1 Administrative bounce`)."""
    text = " ".join(reason.split())  # a record's content has no line break (SPEC 6)
    return Reply(ADMIN_BOUNCE_CODE, ADMIN_BOUNCE_ENHANCED, f"Administrative bounce: {text}")


@dataclass(frozen=True, slots=True)
class SuspensionInfo:
    """A suspension as reported: `created`/`expires` are Unix seconds, `held` a count."""

    id: str
    selector: Selector
    reason: str
    created: float
    expires: float | None
    held: int

    def as_dict(self) -> dict[str, object]:
        """JSON-ready fields."""
        return {
            "id": self.id,
            **self.selector.as_dict(),
            "reason": self.reason,
            "created": self.created,
            "expires": self.expires,
            "held": self.held,
        }


@dataclass(slots=True)
class QueueState:
    """One queue: its messages by where they wait, and when they were made and are due."""

    queue: str
    domain: str
    tenant: str | None
    campaign: str | None
    routing_domain: str | None
    count: int = 0
    scheduled: int = 0
    routing: int = 0  # awaiting the routing domain's MX lookup
    ready: int = 0
    held: int = 0
    in_flight: int = 0
    suspended: bool = False
    oldest_created: float | None = None
    next_due: float | None = None  # the earliest due time of a scheduled message
    last_response: str | None = None  # of the message that failed most recently

    def as_dict(self) -> dict[str, object]:
        """JSON-ready fields."""
        return {
            "queue": self.queue,
            "domain": self.domain,
            "tenant": self.tenant,
            "campaign": self.campaign,
            "routing_domain": self.routing_domain,
            "count": self.count,
            "scheduled": self.scheduled,
            "routing": self.routing,
            "ready": self.ready,
            "held": self.held,
            "in_flight": self.in_flight,
            "suspended": self.suspended,
            "oldest_created": self.oldest_created,
            "next_due": self.next_due,
            "last_response": self.last_response,
        }


@dataclass(slots=True, eq=False)
class _Suspension:
    id: str
    selector: Selector
    reason: str
    created: float
    expires: float | None
    held: list[Item] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None

    def info(self) -> SuspensionInfo:
        return SuspensionInfo(
            self.id, self.selector, self.reason, self.created, self.expires, len(self.held)
        )


class Control:
    """The administrative operations on an engine's in-memory queues.

    It sees the engine's containers (scheduler, sites, MX-lookup waiting lists, live items)
    and acts through two callbacks: `release(item)` hands a message back as if it came due
    now, `admin_bounce(item, reply)` writes its AdminBounce record and removes it.
    """

    def __init__(
        self,
        *,
        scheduler: Scheduler,
        sites: dict[str, Site],
        resolving: dict[str, list[Item]],
        live: dict[str, Item],
        release: Callable[[Item], None],
        admin_bounce: Callable[[Item, Reply], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._scheduler = scheduler
        self._sites = sites
        self._resolving = resolving
        self._live = live
        self._release = release
        self._admin_bounce = admin_bounce
        self._clock = clock
        self._suspensions: dict[str, _Suspension] = {}
        self._doomed: dict[str, Reply] = {}  # in-flight message id -> its AdminBounce reply

    # --- suspensions ----------------------------------------------------------------------

    def suspend(
        self, selector: Selector, reason: str, duration: float | None = None
    ) -> SuspensionInfo:
        """Stop attempting the selected messages (for `duration` seconds, or until resumed);
        the messages waiting in ready queues are held at once."""
        if duration is not None and duration <= 0:
            raise ValueError("duration must be positive")
        now = self._clock()
        suspension = _Suspension(
            uuid.uuid4().hex,
            selector,
            reason,
            now,
            None if duration is None else now + duration,
        )
        self._suspensions[suspension.id] = suspension
        if duration is not None:
            loop = asyncio.get_running_loop()
            suspension.timer = loop.call_later(duration, self._lapse, suspension.id)
        for site in list(self._sites.values()):
            for item in site.remove(lambda item: selector.matches(item.name)):
                self._hold(suspension, item)
        return suspension.info()

    def hold(self, item: Item) -> bool:
        """Hold `item` when a suspension selects it; False when it may go."""
        if not self._suspensions:
            return False
        for suspension in self._suspensions.values():
            if suspension.selector.matches(item.name):
                self._hold(suspension, item)
                return True
        return False

    def _hold(self, suspension: _Suspension, item: Item) -> None:
        item.stage = Stage.HELD
        suspension.held.append(item)

    def suspended(self, name: QueueName) -> bool:
        """True when a suspension selects the queue."""
        return any(s.selector.matches(name) for s in self._suspensions.values())

    def resume(self, selector: Selector | None = None, *, suspension_id: str | None = None) -> int:
        """Lift suspensions: the one with `suspension_id`, else those made with an equal
        `selector`, else (neither given) all. Their held messages go now (unless another
        suspension still selects them). Returns how many suspensions were lifted."""
        if suspension_id is not None:
            lifted = (
                [self._suspensions[suspension_id]] if suspension_id in self._suspensions else []
            )
        elif selector is not None:
            lifted = [s for s in self._suspensions.values() if s.selector == selector]
        else:
            lifted = list(self._suspensions.values())
        self._lift(lifted)
        return len(lifted)

    def _lapse(self, suspension_id: str) -> None:
        suspension = self._suspensions.get(suspension_id)
        if suspension is not None:
            suspension.timer = None
            self._lift([suspension])

    def _lift(self, lifted: Iterable[_Suspension]) -> None:
        released: list[Item] = []
        for suspension in lifted:
            del self._suspensions[suspension.id]
            if suspension.timer is not None:
                suspension.timer.cancel()
            released.extend(suspension.held)
            suspension.held = []
        for item in released:
            if self._live.get(item.message.id) is item:  # not bounced meanwhile
                self._release(item)

    def list_suspensions(self) -> list[SuspensionInfo]:
        """The active suspensions, oldest first."""
        return [s.info() for s in self._suspensions.values()]

    # --- bounce and retry -----------------------------------------------------------------

    def bounce(self, selector: Selector, reason: str) -> int:
        """AdminBounce every selected message; returns how many (in-flight ones included:
        they are bounced when their transaction ends, unless it delivered them)."""
        picked = selector.matches

        def chosen(item: Item) -> bool:
            return picked(item.name)

        reply = admin_bounce_reply(reason)
        taken = self._scheduler.remove(chosen)
        for site in list(self._sites.values()):
            taken.extend(site.remove(chosen))
        for waiting in self._resolving.values():
            taken.extend(item for item in waiting if chosen(item))
            waiting[:] = [item for item in waiting if not chosen(item)]
        for suspension in self._suspensions.values():
            taken.extend(item for item in suspension.held if chosen(item))
            suspension.held = [item for item in suspension.held if not chosen(item)]
        flying = [
            item for item in self._live.values() if item.stage is Stage.IN_FLIGHT and chosen(item)
        ]
        for item in flying:
            self._doomed[item.message.id] = reply
        bounced = 0
        for item in taken:
            if self._live.get(item.message.id) is item:
                self._admin_bounce(item, reply)
                bounced += 1
        return bounced + len(flying)

    def doomed(self, message_id: str) -> Reply | None:
        """The AdminBounce reply for an in-flight message bounced meanwhile (taken once)."""
        if not self._doomed:
            return None
        return self._doomed.pop(message_id, None)

    def forget(self, message_id: str) -> None:
        """A message reached its final disposition: no bounce is pending for it."""
        if self._doomed:
            self._doomed.pop(message_id, None)

    def retry_now(self, selector: Selector) -> int:
        """Make the selected scheduled messages due now; returns how many."""
        taken = self._scheduler.remove(lambda item: selector.matches(item.name))
        now = self._clock()
        for item in taken:
            item.message = replace(item.message, due=now)
            self._scheduler.add(item)
        return len(taken)

    # --- states ---------------------------------------------------------------------------

    def queue_states(self) -> list[QueueState]:
        """Every queue with messages in memory, by name."""
        states: dict[str, QueueState] = {}
        failed_due: dict[str, float] = {}
        for item in self._live.values():
            state = states.get(item.queue)
            if state is None:
                name = item.name
                state = states[item.queue] = QueueState(
                    item.queue,
                    name.domain,
                    name.tenant,
                    name.campaign,
                    name.routing_domain,
                    suspended=self.suspended(name),
                )
            message = item.message
            state.count += 1
            stage = item.stage
            if stage is Stage.SCHEDULED:
                state.scheduled += 1
                if state.next_due is None or message.due < state.next_due:
                    state.next_due = message.due
            elif stage is Stage.ROUTING:
                state.routing += 1
            elif stage is Stage.READY:
                state.ready += 1
            elif stage is Stage.HELD:
                state.held += 1
            else:
                state.in_flight += 1
            if state.oldest_created is None or message.created < state.oldest_created:
                state.oldest_created = message.created
            # the latest stored due time among failed messages marks the latest failure
            if message.last_response is not None and message.due >= failed_due.get(
                item.queue, float("-inf")
            ):
                failed_due[item.queue] = message.due
                state.last_response = message.last_response
        return [states[name] for name in sorted(states)]

    def close(self) -> None:
        """Cancel the expiry timers (at engine stop); held messages stay spooled."""
        for suspension in self._suspensions.values():
            if suspension.timer is not None:
                suspension.timer.cancel()
                suspension.timer = None
