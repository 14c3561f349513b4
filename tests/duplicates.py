"""The duplicate window, measured: a real daemon drains N spooled messages (one recipient each)
to a counting sink and is killed with SIGKILL at random moments, restarted after each kill,
until everything is delivered; then the sink's acceptances are judged.

The sink (aiosmtpd in a thread) keeps, for every message it accepts, the recipient, the time
it answered the final dot with 250, and the daemon *life* (0, 1, ...: the daemon process)
that carried it: the life of the connection, fixed when the connection was made, so a
message is counted in the life whose process sent it, however late the sink reads it.

SPEC 1 invariant 3 says a message comes twice only if the daemon died between the server's
final 250 and the spool removal. What `judge` checks:
  - every message was accepted (nothing lost);
  - no message was accepted twice in one life (a duplicate needs a kill);
  - every copy of a duplicate but the last was accepted in a life that ended with SIGKILL:
    its transaction had completed at the sink before that daemon died (the next copy comes in
    a later life, not always the next: a life may be killed before it reaches the message);
    a message whose transaction had not completed is simply delivered later, once.
and what it measures: duplicates per kill, and for each duplicate how long before the kill
its first 250 was sent (the age at the kill), against the same for the messages that were
accepted just as late and were not duplicated. Run by tests/test_duplicate_window.py (the
invariants) and bench/duplicates.py (the figures).
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from kumoclient.spool import Spool, Submission
from tests.daemon_process import DaemonProcess, free_port
from tests.sink_policy import write_sink_policy


@dataclass(frozen=True)
class Acceptance:
    """The sink answered `recipient`'s final dot with 250 at `at`, on a connection of `life`."""

    recipient: str
    life: int
    at: float


class LifeSink:
    """aiosmtpd handler: accepts everything and keeps an Acceptance per message."""

    def __init__(self) -> None:
        self.life = 0  # the daemon life that new connections belong to
        self.accepted: list[Acceptance] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        life: int = getattr(session, "life", -1)
        with self.lock:
            for recipient in envelope.rcpt_tos:
                self.accepted.append(Acceptance(recipient, life, time.time()))
        return "250 2.0.0 OK"

    def count(self, life: int | None = None) -> int:
        with self.lock:
            return sum(1 for a in self.accepted if life is None or a.life == life)


class _LifeSMTP(SMTP):
    def _create_session(self) -> Session:
        session = super()._create_session()
        session.life = self.event_handler.life  # type: ignore[attr-defined]
        return session


class _LifeController(Controller):
    def factory(self) -> SMTP:
        return _LifeSMTP(self.handler, hostname="sink.test")


@contextmanager
def running_sink() -> Iterator[tuple[LifeSink, int]]:
    """A LifeSink on a free loopback port, stopped at the end."""
    handler = LifeSink()
    port = free_port()
    controller = _LifeController(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def prefill(spool_dir: Path, count: int) -> list[str]:
    """`count` 2 KB messages in the spool, to r<index>@example.net; their recipients."""

    async def fill() -> list[str]:
        spool = Spool(spool_dir)
        await spool.start()
        recipients = [f"r{index}@example.net" for index in range(count)]
        for start in range(0, count, 100):
            stores = []
            for rcpt in recipients[start : start + 100]:
                body = f"Subject: {rcpt}\r\n\r\n".encode() + (b"x" * 70 + b"\r\n") * 28
                submission = Submission("a@example.com", (rcpt,), body)
                stores.append(spool.store(spool.prepare(submission), body))
            await asyncio.gather(*stores)
        await spool.close()
        return recipients

    return asyncio.run(fill())


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.002)


@dataclass
class Run:
    """What a kill loop saw: the recipients, the sink's acceptances, when each life was
    killed (time.time() just before SIGKILL), and the data directory."""

    recipients: list[str]
    accepted: list[Acceptance]
    kills: list[float]
    data: Path


def kill_loop(
    data: Path,
    sink: LifeSink,
    port: int,
    *,
    messages: int,
    kills: int,
    rng: random.Random,
    after: tuple[int, int] = (20, 150),
) -> Run:
    """Drain `messages` with `kills` SIGKILLs, each after a random number (`after`) of
    acceptances in its life; then a last life drains the rest and stops with SIGTERM."""
    recipients = prefill(data / "spool", messages)
    policy = write_sink_policy(data.parent / "duplicates.lua", port, connection_limit=8)
    kill_times: list[float] = []
    for life in range(kills):
        sink.life = life
        daemon = DaemonProcess(data, policy).start()
        try:
            wanted = rng.randint(*after)
            _wait(lambda: sink.count(life) >= wanted, 300, f"{wanted} deliveries")  # noqa: B023
            kill_times.append(time.time())
            daemon.signal(signal.SIGKILL)
            assert daemon.proc is not None
            daemon.proc.wait(timeout=20)
        finally:
            daemon.kill()  # never leave a daemon behind, whatever failed
    sink.life = kills
    daemon = DaemonProcess(data, policy).start()
    try:
        _wait(lambda: not Spool(data / "spool").ids(), 600, "the last drain")
    finally:
        code = daemon.stop()
    assert code == 0, daemon.stderr()
    with sink.lock:
        accepted = list(sink.accepted)
    return Run(recipients, accepted, kill_times, data)


@dataclass
class Judgement:
    """`violations` of the invariants (empty when they hold) and the figures."""

    violations: list[str]
    duplicates_per_kill: list[int]
    duplicate_ages_ms: list[float]  # first 250 → kill, per duplicate
    survivor_ages_ms: list[float]  # 250 → kill of messages of killed lives not sent again
    rates: list[float]  # acceptances per second in each killed life
    # duplicates whose Delivery record from before the kill is in the log: it had reached the
    # OS (a SIGKILL keeps what was written), so a start that read it could have skipped them
    record_survived: int


def judge(run: Run) -> Judgement:
    """Check the invariants of the module's text and take the figures."""
    copies: dict[str, list[Acceptance]] = defaultdict(list)
    for acceptance in run.accepted:
        copies[acceptance.recipient].append(acceptance)
    killed = len(run.kills)
    violations = [f"{r}: never delivered" for r in run.recipients if r not in copies]
    per_kill = [0] * killed
    ages: list[float] = []
    for recipient, seen in copies.items():
        lives = [a.life for a in seen]
        if len(set(lives)) != len(lives):
            violations.append(f"{recipient}: accepted twice in one life: {lives}")
        for first in seen[:-1]:  # each copy but the last must have been cut off by a kill
            if first.life >= killed:
                violations.append(f"{recipient}: copies in lives {lives} ({killed} kills)")
                continue
            per_kill[first.life] += 1
            ages.append((run.kills[first.life] - first.at) * 1000)
    again = {r for r, seen in copies.items() if len(seen) > 1}
    survivors = [
        (run.kills[a.life] - a.at) * 1000
        for a in run.accepted
        if a.life < killed and a.recipient not in again
    ]
    return Judgement(
        violations,
        per_kill,
        sorted(ages),
        sorted(survivors)[:50],
        _rates(run.accepted, run.kills),
        _record_survived(run.data, again),
    )


def _rates(accepted: list[Acceptance], kills: list[float]) -> list[float]:
    rates = []
    for life, killed_at in enumerate(kills):
        times = [a.at for a in accepted if a.life == life]
        if len(times) > 1 and killed_at > min(times):
            rates.append(len(times) / (killed_at - min(times)))
    return rates


def _record_survived(data: Path, again: set[str]) -> int:
    """How many re-delivered messages have two Delivery records (the first one, from before
    the kill, had been written to the OS)."""
    count: dict[str, int] = defaultdict(int)
    for path in sorted((data / "logs").glob("*.jsonl")):
        for line in path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # the last line a killed daemon left half written
                continue
            if record.get("type") == "Delivery":
                count[record["recipient"]] += 1
    return sum(1 for r in again if count[r] > 1)


def mean_per_kill(judgement: Judgement) -> float:
    """Duplicates per SIGKILL."""
    per_kill = judgement.duplicates_per_kill
    return statistics.mean(per_kill) if per_kill else 0.0


def window_ms(judgement: Judgement) -> float | None:
    """How long a message that got its 250 stays in the spool on average: duplicates per kill
    over the delivery rate (Little's law)."""
    if not judgement.rates:
        return None
    return 1000 * mean_per_kill(judgement) / statistics.median(judgement.rates)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def summary(judgement: Judgement) -> dict[str, object]:
    """The figures as plain values (for bench/duplicates.py's JSON and the test's message)."""
    ages = judgement.duplicate_ages_ms
    survivors = judgement.survivor_ages_ms
    return {
        "kills": len(judgement.duplicates_per_kill),
        "duplicates": sum(judgement.duplicates_per_kill),
        "duplicates_per_kill": judgement.duplicates_per_kill,
        "mean_per_kill": _rounded(mean_per_kill(judgement)),
        "window_ms": _rounded(window_ms(judgement)),
        "duplicate_age_ms_median": _rounded(statistics.median(ages) if ages else None),
        "duplicate_age_ms_max": _rounded(max(ages) if ages else None),
        "youngest_survivor_ms": _rounded(survivors[0] if survivors else None),
        "rate_per_s_median": round(statistics.median(judgement.rates)) if judgement.rates else 0,
        "record_survived": judgement.record_survived,
        "violations": judgement.violations[:10],
    }
