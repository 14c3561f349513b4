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
- **Retry now**: matching scheduled messages become due now, or at the next time their
  schedule allows (`msg:set_scheduling`; their stored due time is not rewritten; the
  attempt's outcome writes the next one). Held messages stay held.
- **Queue states**: per queue, how many messages and where they wait.

Everything here runs on the event loop's thread and works while deliveries run.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from kumoclient.core.disposition import admin_bounced, decide
from kumoclient.core.schedule import next_allowed
from kumoclient.core.selector import Selector
from kumoclient.core.synthesized import admin_bounce
from kumoclient.engine.dispositions import Dispositions
from kumoclient.engine.queues import Item, Stage
from kumoclient.engine.table import MessageTable
from kumoclient.records import QueueName, Reply


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
    timer: asyncio.TimerHandle | None = None


class Control:
    """The administrative operations on an engine's queues, through the message table's
    public operations. `release(item)` hands a held message back as if it came due now;
    bounces are decided by `core.disposition` and written by the engine's Dispositions."""

    def __init__(
        self,
        table: MessageTable,
        dispositions: Dispositions,
        *,
        release: Callable[[Item], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._table = table
        self._dispositions = dispositions
        self._release = release
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
        expires = None if duration is None else now + duration
        suspension = _Suspension(uuid.uuid4().hex, selector, reason, now, expires)
        self._suspensions[suspension.id] = suspension
        if duration is not None:
            loop = asyncio.get_running_loop()
            suspension.timer = loop.call_later(duration, self._lapse, suspension.id)
        for item in self._table.take_ready(lambda item: selector.matches(item.name)):
            self._table.hold(suspension.id, item)
        return self._info(suspension)

    def _info(self, suspension: _Suspension) -> SuspensionInfo:
        held = self._table.held(suspension.id)
        return SuspensionInfo(
            suspension.id,
            suspension.selector,
            suspension.reason,
            suspension.created,
            suspension.expires,
            held,
        )

    def hold(self, item: Item) -> bool:
        """Hold `item` when a suspension selects it; False when it may go."""
        for suspension in self._suspensions.values():
            if suspension.selector.matches(item.name):
                self._table.hold(suspension.id, item)
                return True
        return False

    def suspended(self, name: QueueName) -> bool:
        """True when a suspension selects the queue."""
        return any(s.selector.matches(name) for s in self._suspensions.values())

    def resume(self, selector: Selector | None = None, *, suspension_id: str | None = None) -> int:
        """Lift suspensions: the one with `suspension_id`, else those made with an equal
        `selector`, else (neither given) all. Their held messages go now (unless another
        suspension still selects them). Returns how many suspensions were lifted."""
        if suspension_id is not None:
            found = self._suspensions.get(suspension_id)
            lifted = [found] if found is not None else []
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
            released.extend(self._table.release(suspension.id))
        for item in released:
            self._release(item)

    def list_suspensions(self) -> list[SuspensionInfo]:
        """The active suspensions, oldest first."""
        return [self._info(s) for s in self._suspensions.values()]

    # --- bounce and retry -----------------------------------------------------------------

    def bounce(self, selector: Selector, reason: str) -> int:
        """AdminBounce every selected message; returns how many (in-flight ones included:
        they are bounced when their transaction ends, unless it delivered them)."""

        def chosen(item: Item) -> bool:
            return selector.matches(item.name)

        reply = admin_bounce(reason)
        flying = self._table.in_flight(chosen)
        for item in flying:
            self._doomed[item.message.id] = reply
        taken = self._table.take_waiting(chosen)
        now = self._clock()
        for item in taken:
            message = item.message
            decision = decide(
                admin_bounced(reply),
                attempts=message.attempts,
                created=message.created,
                config=item.config,
                now=now,
                schedule=message.schedule,
            )
            self._dispositions.apply(item, decision, site=item.site)
        return len(taken) + len(flying)

    def doomed(self, message_id: str) -> Reply | None:
        """The AdminBounce reply for an in-flight message bounced meanwhile (taken once)."""
        if not self._doomed:
            return None
        return self._doomed.pop(message_id, None)

    def retry_now(self, selector: Selector) -> int:
        """Make the selected scheduled messages due now (or when their schedule next allows);
        returns how many."""
        taken = self._table.take_scheduled(lambda item: selector.matches(item.name))
        now = self._clock()
        for item in taken:  # as soon as the message's schedule allows
            due = next_allowed(item.message.schedule, now)
            self._table.schedule(item, replace(item.message, due=due))
        return len(taken)

    # --- states ---------------------------------------------------------------------------

    def queue_states(self) -> list[QueueState]:
        """Every queue with messages in memory, by name."""
        states: dict[str, QueueState] = {}
        failed_due: dict[str, float] = {}
        for item in self._table.items():
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
            _count(state, item)
            message = item.message
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


_STAGE_FIELDS = {
    Stage.SCHEDULED: "scheduled",
    Stage.ROUTING: "routing",
    Stage.READY: "ready",
    Stage.HELD: "held",
    Stage.IN_FLIGHT: "in_flight",
}


def _count(state: QueueState, item: Item) -> None:
    message = item.message
    state.count += 1
    field_name = _STAGE_FIELDS[item.stage]
    setattr(state, field_name, getattr(state, field_name) + 1)
    if item.stage is Stage.SCHEDULED and (state.next_due is None or message.due < state.next_due):
        state.next_due = message.due
    if state.oldest_created is None or message.created < state.oldest_created:
        state.oldest_created = message.created
