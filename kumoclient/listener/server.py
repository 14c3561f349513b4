"""Listening: the accept loop that admits each connection (limits.py) before it becomes a
session, and the listener's lifecycle.

The loop is the listener's own (a reader callback on the listening socket), not asyncio's
create_server, so that the limits are checked as each connection is accepted: a connection
refused is told `421 4.7.0` and closed on the spot, and the descriptors in use never exceed
the sessions admitted plus one. asyncio's and uvloop's servers accept every connection waiting
in the kernel's queue (up to the listen backlog) before any protocol sees one.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket

from kumoclient import logs
from kumoclient.configs import EsmtpListenerConfig
from kumoclient.core.listen import show_address, split_listen
from kumoclient.listener.connection import Accept, ServerEvents
from kumoclient.listener.session import IN_FLIGHT, Session
from kumoclient.listener.shared import Listener

log = logs.get_logger(__name__)

BACKLOG = 1024
ACCEPT_BATCH = 64  # connections accepted in one turn of the event loop, at most
# accept(2) errors that say the process or the system is out of something: wait, then retry
_EXHAUSTED = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
EXHAUSTED_PAUSE = 1.0  # seconds without accepting after such an error


class SmtpServer:
    """One listener accepting on its sockets until `close()`."""

    def __init__(self, listener: Listener, sockets: list[socket.socket]) -> None:
        self.listener = listener
        self.sockets = tuple(sockets)
        self._opening: set[asyncio.Task[None]] = set()
        self._closed = False
        self._loop = asyncio.get_running_loop()
        for sock in self.sockets:
            sock.setblocking(False)
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def close(self) -> None:
        """Stop accepting and close the listening sockets (sessions go on)."""
        if self._closed:
            return
        self._closed = True
        for sock in self.sockets:
            with contextlib.suppress(ValueError, OSError):  # (already closed by its owner)
                self._loop.remove_reader(sock.fileno())
            sock.close()

    async def wait_closed(self) -> None:
        """Return once `close()` was called and the connections being opened are sessions."""
        if self._opening:
            await asyncio.wait(set(self._opening))

    def _accept(self, sock: socket.socket) -> None:
        limits = self.listener.limits
        for _ in range(ACCEPT_BATCH):
            try:
                conn, address = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _EXHAUSTED:
                    self._pause(sock, exc)
                    return
                continue  # ECONNABORTED and the like: that client is gone
            host = address[0] if isinstance(address, tuple) else str(address)
            refusal = limits.admit(host)
            if refusal is not None:
                with contextlib.suppress(OSError):  # best effort: it is closed either way
                    conn.setblocking(False)
                    conn.send(refusal.encode())
                conn.close()
                continue
            task = asyncio.ensure_future(self._open(conn, host))
            self._opening.add(task)
            task.add_done_callback(self._opening.discard)

    async def _open(self, conn: socket.socket, host: str) -> None:
        session = Session(self.listener, host)
        try:
            await self._loop.connect_accepted_socket(lambda: session, conn)
        except Exception as exc:  # the connection failed before it became a session
            log.info("smtp connection failed", peer=host, error=str(exc))
            conn.close()
            session.end()

    def _pause(self, sock: socket.socket, exc: OSError) -> None:
        """Out of descriptors or memory: stop accepting for a moment (the connections wait in
        the kernel's queue), instead of spinning on the error."""
        log.error("smtp listener cannot accept", error=exc.strerror, pause=EXHAUSTED_PAUSE)
        self._loop.remove_reader(sock.fileno())
        self._loop.call_later(EXHAUSTED_PAUSE, self._unpause, sock)

    def _unpause(self, sock: socket.socket) -> None:
        if not self._closed:
            self._loop.add_reader(sock.fileno(), self._accept, sock)


def bind_listener(config: EsmtpListenerConfig) -> socket.socket:
    """A listening socket on `config.listen` (OSError when the address cannot be had,
    ConfigError when it is not HOST:PORT), to share between the processes that accept on it."""
    host, port = split_listen(config.listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=BACKLOG)
    sock.setblocking(False)
    return sock


def _bind_all(config: EsmtpListenerConfig) -> list[socket.socket]:
    """What asyncio's create_server binds for `config.listen`: a listening socket for each
    address its host resolves to (`localhost`: 127.0.0.1 and ::1)."""
    host, port = split_listen(config.listen)
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


async def finish_in_flight(timeout: float) -> int:
    """Wait up to `timeout` seconds for the messages being stored when the listeners were
    closed, so that each gets its reply before the spool and the log close; returns how many
    were still unfinished."""
    if not IN_FLIGHT:
        return 0
    _, pending = await asyncio.wait(set(IN_FLIGHT), timeout=timeout)
    return len(pending)


async def start_listener(
    config: EsmtpListenerConfig,
    accept: Accept,
    sock: socket.socket | None = None,
    events: ServerEvents | None = None,
) -> SmtpServer:
    """Listen on `config.listen` (OSError when the address cannot be had, ConfigError when it
    is not HOST:PORT), or accept on `sock` (from bind_listener); `events` answers for the
    policy (None: a listener without one)."""
    listener = Listener(config, accept, events)
    server = SmtpServer(listener, [sock] if sock is not None else _bind_all(config))
    log.info(
        "esmtp listener started",
        listen=config.listen,
        bound=[show_address(sock.getsockname()) for sock in server.sockets],
        relay_hosts=config.relay_hosts,
        max_sessions=listener.limits.cap,
        descriptor_limit=listener.descriptors,
    )
    return server
