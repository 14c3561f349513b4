"""One SMTP connection: an asyncio.Protocol driven by the bytes that arrive.

No task and no stream per session: every complete command is handled as it is read
(commands.py; a data section, data.py), and the replies to pipelined commands are written
together. Commands that arrive while a message is being stored wait in the buffer (reading
pauses when it grows) and are answered, in order, after its reply. A session ends after
`client_timeout` with nothing received, and at `max_session_duration` whatever it does (a
client trickling bytes keeps no connection for ever); its DATA bytes count against the
listener's memory budget (limits.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import cast

from kumoclient import logs
from kumoclient.core.smtp_server import MailFrom
from kumoclient.listener.commands import line_step
from kumoclient.listener.data import data_step
from kumoclient.listener.shared import Listener

log = logs.get_logger(__name__)

# messages being stored (and TLS handshakes) of every listener in this process
IN_FLIGHT: set[asyncio.Task[None]] = set()
_PAUSE_AT = 256 * 1024  # buffered bytes (pipelined while a message is stored) that pause reading


class Session(asyncio.Protocol):
    """One SMTP connection, from a client `peer` the listener admitted."""

    def __init__(self, listener: Listener, peer: str) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.peer = peer
        self.relay = listener.may_relay(peer)
        self.buffer = bytearray()
        self.out: list[str] = []
        self.helo: str | None = None
        self.extended = False
        self.secure = False
        self.mail: MailFrom | None = None
        self.rcpts: list[str] = []
        self.in_data = False
        self.scanned = 0  # how far the data was searched for its end
        self.data_error: str | None = None  # the data is being dropped, with this reply
        self.busy = False  # a message is being stored, or TLS being set up
        self.skipping = False  # an over-long command line is being dropped
        self.paused = False  # reading paused (see _hold_reading)
        self.write_paused = False  # the client is not reading its replies
        self.waiting = False  # the memory budget is spent: wait for other sessions
        self.eof = False  # the client will send nothing more
        self.before_tls = False  # STARTTLS answered, the handshake not begun: bytes are plaintext
        self.closed = False
        self.ended = False  # its place and memory given back (end)
        self.held = 0  # bytes counted against the listener's budget
        self.storing = 0  # size of the message being stored
        self.last_seen = 0.0
        self.ends_at = 0.0  # max_session_duration
        self.timer: asyncio.TimerHandle | None = None

    # --- transport events ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio.Transport subclasses, but behave as one)
        transport = self.transport = cast(asyncio.Transport, transport)
        transport.write(self.listener.greeting)
        loop = asyncio.get_running_loop()
        self.last_seen = loop.time()
        self.ends_at = self.last_seen + self.listener.config.max_session_duration
        self._arm(loop)

    def data_received(self, data: bytes) -> None:
        if self.before_tls:
            return  # RFC 3207: nothing sent before the handshake counts
        self.buffer += data
        self.last_seen = asyncio.get_running_loop().time()
        if self.busy or self.write_paused or self.waiting:
            if len(self.buffer) > _PAUSE_AT:
                self._hold_reading()
            return
        self._run()

    def eof_received(self) -> bool:
        # answer what was sent before the end (a message being stored gets its 250), then
        # close: see _run
        self.eof = True
        if not self.busy and not self.write_paused:
            self._run()
        return True

    def pause_writing(self) -> None:
        # the client does not read its replies: read no more commands from it until it does
        self.write_paused = True
        self._hold_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        self._continue()

    def _hold_reading(self) -> None:
        if not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.end()

    def end(self) -> None:
        """The connection is gone: give back its place and its memory (once)."""
        if self.ended:
            return
        self.ended = self.closed = True
        if self.timer is not None:
            self.timer.cancel()
        self.buffer.clear()
        self.storing = 0  # (a message being stored is the spool's now)
        self.listener.budget.set(self, 0)
        self.listener.limits.release(self.peer)

    # --- time limits ---------------------------------------------------------------------

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        idle_at = self.last_seen + self.listener.config.client_timeout
        if self.busy or self.waiting:  # not the client's idleness: look again in a second
            idle_at = max(idle_at, now + 1.0)
        at = min(idle_at, self.ends_at)
        if self.busy:  # the reply of a message being stored goes out first
            at = max(at, now + 1.0)
        self.timer = loop.call_at(at, self._timed_out)

    def _timed_out(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        expired = now >= self.ends_at
        idle = now >= self.last_seen + self.listener.config.client_timeout
        if self.busy or not (expired or (idle and not self.waiting)):
            self._arm(loop)
            return
        if self.write_paused and self.transport is not None:  # it reads nothing: no goodbye
            self.closed = True
            self.transport.abort()
            return
        why = "session time limit exceeded" if expired else "timeout exceeded"
        self.out.append(f"421 4.4.2 {self.listener.hostname} Error: {why}")
        self.close()

    # --- the command loop --------------------------------------------------------------

    def _run(self) -> None:
        """Handle every complete command (or data section) in the buffer, then reply."""
        while not self.busy and not self.closed and not self.write_paused:
            if not (data_step(self) if self.in_data else line_step(self)):
                break
            if len(self.out) >= 64:  # a long pipeline: let the transport push back
                self.flush()
        self.flush()
        if self.eof and not self.busy and not self.write_paused and not self.closed:
            self.close()  # everything sent before the end is answered
        self._account()

    def _account(self) -> None:
        """Tell the budget what this session holds; wait when it says so."""
        size = self.storing + (len(self.buffer) if self.in_data and not self.data_error else 0)
        if size != self.held and not self.closed and not self.listener.budget.set(self, size):
            self.waiting = True
            self._hold_reading()

    def budget_resumed(self) -> None:
        """The budget has room again (or this session may go past it)."""
        self.waiting = False
        self.last_seen = asyncio.get_running_loop().time()  # the wait was not the client's
        self._continue()

    def flush(self) -> None:
        """Write the replies gathered so far."""
        if self.out and self.transport is not None and not self.closed:
            self.transport.write(("\r\n".join(self.out) + "\r\n").encode())
        self.out.clear()

    def close(self) -> None:
        """Write the replies gathered so far, then close the connection."""
        self.flush()
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def reset(self) -> None:
        """Forget the transaction (RSET, HELO, a message taken)."""
        self.mail = None
        self.rcpts = []

    def resume(self) -> None:
        """A message was stored, or TLS set up: read and answer again."""
        self.busy = False
        self._continue()
        self._account()  # (when _continue did not run: the message's bytes are freed)

    def _continue(self) -> None:
        """Read and answer again, unless a message is being stored or replies wait."""
        if self.closed or self.busy or self.write_paused or self.waiting:
            return
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        self._run()

    def spawn(self, work: Awaitable[None]) -> None:
        """Run `work` (storing, a TLS handshake) as a task the listener can wait for."""
        task = asyncio.ensure_future(work)
        IN_FLIGHT.add(task)
        task.add_done_callback(IN_FLIGHT.discard)
