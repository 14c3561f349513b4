"""One SMTP connection: an asyncio.Protocol driven by the bytes that arrive.

No task and no stream per session: every complete command is handled as it is read
(commands.py; a data section, data.py), and the replies to pipelined commands are written
together. A command the policy has a say in (a handler of its event is registered) is
answered once its handler has run: the session waits, and commands that arrive meanwhile wait
in the buffer, as they do while a message is stored, to be answered in order after it (reading
pauses when they grow). With an `smtp_server_rewrite_response` handler every reply goes
through it before it is written. A session ends after `client_timeout` with nothing received,
and at `max_session_duration` whatever it does (a client trickling bytes keeps no connection
for ever); its DATA bytes count against the listener's memory budget (limits.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from typing import Any, cast

from kumoclient import logs
from kumoclient.core.listener_domain import RelayDisposition
from kumoclient.core.smtp_server import MailFrom
from kumoclient.errors import CommandError
from kumoclient.listener import opening, replies
from kumoclient.listener.commands import line_step
from kumoclient.listener.connection import Connection
from kumoclient.listener.data import data_step
from kumoclient.listener.shared import Keys, Listener

log = logs.get_logger(__name__)

# messages being stored (and TLS handshakes, policy events) of every listener in this process
IN_FLIGHT: set[asyncio.Task[None]] = set()
_PAUSE_AT = 256 * 1024  # buffered bytes (pipelined while a message is stored) that pause reading


class Session(asyncio.Protocol):
    """One SMTP connection, from a client `peer` the listener admitted."""

    def __init__(self, listener: Listener, peer: str) -> None:
        self.listener = listener
        self.handled = listener.events.handled()  # the events this session asks the policy
        self.transport: asyncio.Transport | None = None
        self.peer = peer
        self.keys: Keys = listener.base
        self.relay = listener.may_relay(peer)
        self.conn = Connection("", peer, 0, listener.hostname)
        self.buffer = bytearray()
        self.out: list[str] = []  # replies not yet written
        self.answered: list[str | None] = []  # the command each of them answers
        self.command: str | None = None  # the command being answered (None: unsolicited)
        self.helo: str | None = None
        self.extended = False
        self.secure = False
        self.mail: MailFrom | None = None
        self.rcpts: list[str] = []
        self.dispositions: list[RelayDisposition] = []  # the listener domains' word per rcpt
        self.rcpt_count = 0  # recipients taken on this connection (max_messages_per_connection)
        self.sasl: Any = None  # an AUTH exchange waiting for the client's response (auth.py)
        self.in_data = False
        self.scanned = 0  # how far the data was searched for its end
        self.data_error: str | None = None  # the data is being dropped, with this reply
        self.busy = False  # a message is being stored, TLS set up, the policy asked
        self.skipping = False  # an over-long command line is being dropped
        self.paused = False  # reading paused (see _hold_reading)
        self.write_paused = False  # the client is not reading its replies
        self.waiting = False  # the memory budget is spent: wait for other sessions
        self.eof = False  # the client will send nothing more
        self.before_tls = False  # STARTTLS answered, the handshake not begun: bytes are plaintext
        self.closed = False  # nothing more is read or answered
        self.closing = False  # close once the replies being rewritten are written
        self.ended = False  # its place and memory given back (end)
        self.held = 0  # bytes counted against the listener's budget
        self.storing = 0  # size of the message being stored
        self.last_seen = 0.0
        self.ends_at = 0.0  # max_session_duration
        self.timer: asyncio.TimerHandle | None = None

    # --- transport events ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio.Transport subclasses, but behave as one)
        self.transport = cast(asyncio.Transport, transport)
        opening.connection_meta(self, transport)
        loop = asyncio.get_running_loop()
        self.last_seen = loop.time()
        self.ends_at = self.last_seen + self.listener.config.max_session_duration
        self._arm(loop)
        if opening.DYNAMIC in self.handled or opening.ACCEPTED in self.handled:
            self.wait_for(opening.open_events(self))
        else:
            self.say(self.keys.greeting)
            self.flush()

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
        idle_at = self.last_seen + self.keys.config.client_timeout
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
        idle = now >= self.last_seen + self.keys.config.client_timeout
        if self.busy or not (expired or (idle and not self.waiting)):
            self._arm(loop)
            return
        if self.write_paused and self.transport is not None:  # it reads nothing: no goodbye
            self.closed = True
            self.transport.abort()
            return
        why = "session time limit exceeded" if expired else "timeout exceeded"
        self.command = None
        self.say(f"421 4.4.2 {self.keys.hostname} Error: {why}")
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

    # --- replies --------------------------------------------------------------------------

    def say(self, reply: str) -> None:
        """Add a reply (`NNN text`, lines joined by CRLF) to those to write, answering the
        command being handled."""
        self.out.append(reply)
        self.answered.append(self.command)

    def flush(self) -> None:
        """Write the replies gathered so far (through the policy's rewrite handler, when it
        has one: the session then waits for them to be written)."""
        if not self.out or self.transport is None or self.ended:
            self.out.clear()
            self.answered.clear()
            return
        if replies.rewriting(self):
            if not self.busy:  # (else the work in flight flushes when it is done)
                self.busy = True
                self.spawn(replies.write_then_go_on(self))
            return
        self.transport.write(("\r\n".join(self.out) + "\r\n").encode())
        self.out.clear()
        self.answered.clear()

    def close(self) -> None:
        """Write the replies gathered so far, then close the connection."""
        self.closed = True
        if self.out and replies.rewriting(self) and not self.ended:
            if not self.closing:
                self.closing = True
                self.spawn(replies.write_then_go_on(self))
            return
        self.flush()
        self.shut()

    def shut(self) -> None:
        """Close the connection now."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def reset(self) -> None:
        """Forget the transaction (RSET, HELO, a message taken)."""
        self.mail = None
        self.rcpts = []
        self.dispositions = []

    # --- waiting ------------------------------------------------------------------------

    def resume(self) -> None:
        """A message was stored, TLS set up, the policy answered: read and answer again."""
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

    def wait_for(self, work: Coroutine[Any, Any, None]) -> None:
        """Answer the command being handled once `work` (the policy's part) is done: its
        CommandError is the reply; meanwhile nothing more is read."""
        self.busy = True
        self.spawn(self._awaited(work))

    async def _awaited(self, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except CommandError as error:
            replies.refuse(self, error)
        except Exception:  # a bug of ours: the client may try again
            log.exception("smtp command failed", peer=self.peer, command=self.command)
            self.say("451 4.3.0 Local error in processing, try again later")
        self.resume()

    def spawn(self, work: Awaitable[None]) -> None:
        """Run `work` (storing, a TLS handshake, the policy) as a task the listener waits for."""
        task = asyncio.ensure_future(work)
        IN_FLIGHT.add(task)
        task.add_done_callback(IN_FLIGHT.discard)
