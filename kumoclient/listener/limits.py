"""What one listener's clients may hold: connections (in all, per client address, within the
process's descriptor limit) and the memory of the DATA sections in flight.

Connections: a listener takes at most `max_connections` sessions, and the listeners of a
process never so many that its descriptors (RLIMIT_NOFILE, read when a listener starts) run
short for the spool, the log, the drop folder and outbound SMTP: a quarter of them (at least
RESERVE_MIN) is kept for those. A client address holds at most `max_connections_per_client`
sessions of a listener, unless it is one of `relay_hosts` (Postfix exempts `$mynetworks` the
same way). A connection past a limit is told `421 4.7.0` and closed at once.

Memory: a session's DATA bytes count against the listener's budget (`max_data_in_memory`) from
their arrival until the message is stored or dropped. A session that would grow past the
budget stops reading (the kernel's socket buffer and TCP flow control hold the rest) until
others have finished, except one: the first to meet the full budget goes on past it until its
message is done, so something always finishes and nothing deadlocks. The memory held is then at
most the budget, one message more, and the last read of each session (`docs/reception.md`).
"""

from __future__ import annotations

import resource
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from kumoclient import logs

log = logs.get_logger(__name__)

RESERVE_MIN = 64  # descriptors kept for everything but SMTP sessions, at the least
RESERVE_SHARE = 4  # ... or a quarter of the limit, when that is more
REFUSAL_LOG_INTERVAL = 60.0  # seconds between two "connections refused" log lines


def descriptor_limit() -> int:
    """The process's soft RLIMIT_NOFILE (a large number when it is unlimited)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1 << 20 if soft == resource.RLIM_INFINITY else soft


def raise_descriptor_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one, as KumoMTA does at start; the new limit.
    (A failure leaves the limit as it was: the listener sizes itself from what there is.)"""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the descriptor limit", soft=soft, hard=hard, error=str(exc))
    return descriptor_limit()


def descriptor_reserve(limit: int) -> int:
    """Descriptors kept out of the SMTP sessions' reach, with `limit` in all."""
    return max(RESERVE_MIN, limit // RESERVE_SHARE)


def session_cap(max_connections: int, limit: int) -> int:
    """How many sessions a listener takes: `max_connections`, or fewer when the descriptor
    `limit` less its reserve is smaller (at least one)."""
    return max(1, min(max_connections, limit - descriptor_reserve(limit)))


class ProcessSessions:
    """The sessions of every listener of this process, against what the descriptors allow
    (one object per process: the reserve is the process's, however many listeners)."""

    def __init__(self) -> None:
        self.open = 0
        self.cap = 1 << 30

    def size(self, limit: int) -> int:
        """Size the cap from the descriptor `limit` (each listener does at its start)."""
        self.cap = max(1, limit - descriptor_reserve(limit))
        return self.cap


PROCESS = ProcessSessions()


class ConnectionLimits:
    """Counts a listener's sessions, in all and per client address, and admits new ones."""

    def __init__(
        self, max_connections: int, per_client: int, exempt: Callable[[str], bool], hostname: str
    ) -> None:
        self.max_connections = max_connections
        self.per_client = per_client
        self.exempt = exempt  # client addresses with no per-address limit (relay_hosts)
        self.open = 0
        self.by_client: dict[str, int] = {}
        self.full_reply = f"421 4.7.0 {hostname} too many concurrent sessions, try later\r\n"
        self.hostname = hostname
        self.refused = 0  # since the last log line
        self.logged_at = -REFUSAL_LOG_INTERVAL

    @property
    def cap(self) -> int:
        """The most sessions this listener may have now."""
        return min(self.max_connections, PROCESS.cap)

    def admit(self, host: str) -> str | None:
        """Count a new session from `host`: None, or the 421 reply refusing it."""
        if self.open >= self.max_connections or PROCESS.open >= PROCESS.cap:
            return self._refuse(host, "max_connections", self.full_reply)
        if not self.exempt(host):
            count = self.by_client.get(host, 0)
            if count >= self.per_client:
                reply = f"421 4.7.0 {self.hostname} Error: too many connections from {host}\r\n"
                return self._refuse(host, "max_connections_per_client", reply)
            self.by_client[host] = count + 1
        self.open += 1
        PROCESS.open += 1
        return None

    def release(self, host: str) -> None:
        """A session `admit` counted has ended."""
        self.open -= 1
        PROCESS.open -= 1
        count = self.by_client.get(host)
        if count is not None:  # (an exempt host is not in by_client)
            if count <= 1:
                del self.by_client[host]
            else:
                self.by_client[host] = count - 1

    def _refuse(self, host: str, limit: str, reply: str) -> str:
        self.refused += 1
        now = time.monotonic()
        if now - self.logged_at >= REFUSAL_LOG_INTERVAL:  # one line a minute, not one a client
            log.warning(
                "smtp connections refused",
                limit=limit,
                client=host,
                refused=self.refused,
                sessions=self.open,
                max_sessions=self.cap,
            )
            self.refused, self.logged_at = 0, now
        return reply


class Holder(Protocol):
    """A session as the budget sees it."""

    held: int  # bytes it holds, as last told to the budget
    closed: bool

    def budget_resumed(self) -> None:
        """It may read again."""


class DataBudget:
    """The bytes of DATA that a listener's sessions hold in memory, kept near `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self.holder: Holder | None = None  # the one session allowed past the limit
        self.waiting: deque[Holder] = deque()

    def set(self, who: Holder, size: int) -> bool:
        """`who` now holds `size` bytes. False: it must stop reading until `budget_resumed`
        (it is queued); True: it may go on."""
        old = who.held
        who.held = size
        self.held += size - old
        if size < old:
            if size == 0 and self.holder is who:
                self.holder = None
            self._wake()
            return True
        if size == old or self.held <= self.limit or self.holder is who:
            return True
        if self.holder is None:
            self.holder = who
            return True
        self.waiting.append(who)
        return False

    def finished(self, who: Holder) -> None:
        """`who` has stored (or refused) a message: it goes past the budget no longer (a client
        pipelining its messages does not keep that for ever)."""
        if self.holder is who:
            self.holder = None
            self._wake()

    def _wake(self) -> None:
        """Let waiting sessions read again: all of them while the budget has room, else the
        first as the new holder."""
        while self.waiting and (self.held < self.limit or self.holder is None):
            who = self.waiting.popleft()
            if who.closed:  # gone while waiting (it released what it held)
                continue
            if self.held >= self.limit:
                self.holder = who
            who.budget_resumed()
