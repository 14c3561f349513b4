"""What becomes of a message after an attempt, or after a decision made without one: the one
home of dispositions (KumoMTA's `log_disposition` decides in one place too).

Input: what happened (`Attempt`), the rewrite hook's answer for a rejection, the message's
attempts and creation time, its queue config and `now`. Output: a `Decision` — the log
records to write, in order, and whether the message is requeued (and when) or leaves the spool.

| what happened                       | records                               | then          |
|-------------------------------------|---------------------------------------|---------------|
| ACCEPTED (final dot answered 250)   | Delivery                              | leaves        |
| REJECTED (SPEC 2.3)                 | the rewrite hook's answer is applied, | by the code:  |
|                                     | then the code decides (core.classify) | see below     |
| FAILED (a made-up reply, no server  | the code decides; no rewrite hook     | see below     |
| answer to judge: core.synthesized)  | (connection phase, DNS, prohibited...)|               |
| ADMIN_BOUNCED                       | AdminBounce                           | leaves        |
| EXPIRED (max_age reached waiting)   | Expiration, no attempt                | leaves        |
| OUT_OF_SCHEDULE (taken when its     | none, no attempt                      | requeued at   |
| schedule allows no attempt)         |                                       | the next time |
|                                     |                                       | it allows     |

By the (possibly rewritten) code: 2xx Delivery and 5xx Bounce leave the spool; a transient
code writes TransientFailure and counts an attempt; then, in this order: a message an operator
bounced during the attempt gets AdminBounce and leaves; a message whose next attempt
(`core.retry.next_delay`) would come after `max_age` gets Expiration and leaves; any other is
requeued at `now + delay`. Records after the TransientFailure carry the new attempt count.

A message with a schedule (`msg:set_scheduling`, core.schedule) has every due time moved to
the next time its schedule allows; when its schedule has `expires`, that time replaces
`max_age`: it expires when its next due time would be at or after `expires` (KumoMTA's rule),
and when it is taken for an attempt at or after it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from kumoclient.configs import QueueConfig
from kumoclient.core.classify import classify
from kumoclient.core.reply import apply_rewrite, single_line
from kumoclient.core.retry import expires, next_delay
from kumoclient.core.schedule import expiry, next_allowed
from kumoclient.core.synthesized import Synthesized, iso_time, synthesize
from kumoclient.records import RecordType, Reply, RewriteOutcome, Schedule


class Result(enum.Enum):
    """What happened to the message (see the module's table)."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    FAILED = "failed"
    ADMIN_BOUNCED = "admin_bounced"
    EXPIRED = "expired"
    OUT_OF_SCHEDULE = "out_of_schedule"


@dataclass(frozen=True, slots=True)
class Attempt:
    """What happened, with the reply it came with (None for EXPIRED: made up when decided)."""

    result: Result
    reply: Reply | None = None


def accepted(reply: Reply) -> Attempt:
    """The server took the message."""
    return Attempt(Result.ACCEPTED, reply)


def rejected(reply: Reply) -> Attempt:
    """The server refused the message (MAIL, RCPT, DATA or the final dot)."""
    return Attempt(Result.REJECTED, reply)


def failed(reply: Reply) -> Attempt:
    """No server answer to judge: `reply` is made up (core.synthesized)."""
    return Attempt(Result.FAILED, reply)


def admin_bounced(reply: Reply) -> Attempt:
    """An operator bounced the message before its attempt."""
    return Attempt(Result.ADMIN_BOUNCED, reply)


EXPIRED = Attempt(Result.EXPIRED)
OUT_OF_SCHEDULE = Attempt(Result.OUT_OF_SCHEDULE)


@dataclass(frozen=True, slots=True)
class HookAnswer:
    """What `smtp_client_rewrite_delivery_status` answered: a new code, or None for no change;
    `error` when it failed or returned something that is not a code (the reply then stands)."""

    code: int | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Logged:
    """One record to write: its type, response and `num_attempts`."""

    type: RecordType
    reply: Reply
    num_attempts: int


@dataclass(frozen=True, slots=True)
class Decision:
    """The records to write in order; `due` is the next attempt's time, None when the
    message leaves the spool; `rewrite` tells what the rewrite hook did, when it ran."""

    records: tuple[Logged, ...]
    attempts: int
    due: float | None = None
    last_response: str | None = None
    rewrite: RewriteOutcome | None = None

    @property
    def final(self) -> Logged | None:
        """The record that ends the message's life, None when it is requeued."""
        return None if self.due is not None else self.records[-1]


def rewrite(reply: Reply, hook: HookAnswer | None) -> RewriteOutcome:
    """SPEC 2.3 step 3: the hook's code replaces the reply's (with KumoMTA's note) unless it
    is absent, the same, or the hook failed; the resulting code is classified."""
    original = reply.code
    if hook is None or hook.error is not None or hook.code is None or hook.code == original:
        error = hook.error if hook is not None else None
        return RewriteOutcome(reply, original, False, classify(original), error=error)
    return RewriteOutcome(apply_rewrite(reply, hook.code), original, True, classify(hook.code))


def decide(
    attempt: Attempt,
    *,
    attempts: int,
    created: float,
    config: QueueConfig,
    now: float,
    jitter: float = 0.5,
    hook: HookAnswer | None = None,
    doomed: Reply | None = None,
    schedule: Schedule | None = None,
) -> Decision:
    """The disposition of `attempt` for a message with `attempts` earlier attempts, created
    at `created`. `jitter` is a draw in [0, 1) for the retry delay (0.5: none); `doomed` is
    the AdminBounce reply when an operator bounced the message during a transient attempt;
    `schedule` the message's scheduling constraints."""
    result, reply = attempt.result, attempt.reply
    if result is Result.EXPIRED:
        return Decision(
            (Logged(RecordType.EXPIRATION, _expired(created, config, schedule), attempts),),
            attempts,
        )
    if result is Result.OUT_OF_SCHEDULE:
        return Decision((), attempts, next_allowed(schedule, now))
    assert reply is not None
    if result is Result.ADMIN_BOUNCED:
        return Decision((Logged(RecordType.ADMIN_BOUNCE, reply, attempts),), attempts)
    if result is Result.ACCEPTED:
        return Decision((Logged(RecordType.DELIVERY, reply, attempts),), attempts)
    outcome = None
    if result is Result.REJECTED:
        outcome = rewrite(reply, hook)
        reply, kind = outcome.reply, outcome.disposition
    else:
        kind = classify(reply.code)
    if kind is not RecordType.TRANSIENT_FAILURE:
        return Decision((Logged(kind, reply, attempts),), attempts, rewrite=outcome)
    retry = _Retry(attempts, created, config, schedule, now=now, jitter=jitter)
    return _transient(reply, retry, doomed=doomed, outcome=outcome)


def _expired(created: float, config: QueueConfig, schedule: Schedule | None) -> Reply:
    """The Expiration reply of a message that reached its expiry time while waiting."""
    own = expiry(schedule)
    if own is not None:
        return synthesize(Synthesized.EXPIRED_SCHEDULED, limit=iso_time(own))
    return synthesize(Synthesized.EXPIRED, limit=iso_time(created + config.max_age))


@dataclass(frozen=True, slots=True)
class _Retry:
    """What decides a transient failure's retry: the message's attempts, age, queue config
    and schedule, the time and the jitter draw."""

    attempts: int
    created: float
    config: QueueConfig
    schedule: Schedule | None
    now: float
    jitter: float

    @property
    def delay(self) -> float:
        """Seconds until the next attempt (core.retry), before the schedule moves it."""
        config = self.config
        return next_delay(
            self.attempts, config.retry_interval, config.max_retry_interval, self.jitter
        )

    def due(self) -> float:
        """The next attempt's time: after the delay, moved into the schedule."""
        return next_allowed(self.schedule, self.now + self.delay)

    def expiry_reply(self) -> Reply | None:
        """The Expiration reply when the next attempt would come too late, else None."""
        own = expiry(self.schedule)
        if own is not None:  # the message's own expiry replaces max_age (KumoMTA's rule)
            due = self.due()
            if due < own:
                return None
            return synthesize(
                Synthesized.EXPIRED_NEXT_DUE_SCHEDULED, next_due=iso_time(due), limit=iso_time(own)
            )
        config, delay = self.config, self.delay
        if not expires(self.now - self.created, delay, config.max_age):
            return None
        return synthesize(
            Synthesized.EXPIRED_NEXT_DUE,
            next_due=iso_time(self.now + delay),
            limit=iso_time(self.created + config.max_age),
        )


def _transient(
    reply: Reply,
    retry: _Retry,
    *,
    doomed: Reply | None,
    outcome: RewriteOutcome | None,
) -> Decision:
    attempts = retry.attempts
    after = attempts + 1
    failure = Logged(RecordType.TRANSIENT_FAILURE, reply, attempts)
    if doomed is not None:
        bounced = Logged(RecordType.ADMIN_BOUNCE, doomed, after)
        return Decision((failure, bounced), after, rewrite=outcome)
    expired = retry.expiry_reply()
    if expired is not None:
        ending = Logged(RecordType.EXPIRATION, expired, after)
        return Decision((failure, ending), after, rewrite=outcome)
    return Decision((failure,), after, retry.due(), single_line(reply, " "), outcome)
