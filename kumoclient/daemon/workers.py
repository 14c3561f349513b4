"""Reception workers: more processes taking SMTP mail in, sharing the spool with the daemon.

`kumoclient run --workers N` forks N processes before the event loop starts. Each one
accepts connections on the listening sockets the main process bound (one accept queue per
socket, shared: whichever process is free takes the next connection), runs the reception
policy (`smtp_server_message_received`) in its own copy of the Lua state, and writes the
messages durably to the spool with its own group commit. Before it answers `250` it hands
them to the main process over a pipe: the bytes are in the kernel by then, so a worker dying
after its `250` loses nothing the main process will not read. The main process writes their
Reception records, counts them and queues them for delivery; it also delivers, serves HTTP
and the drop folder. Python runs one core per process, so this is how reception and delivery
use more than one core. While the main process's delivery log cannot be written, a worker
answers `451 4.3.0` and stores nothing: the log's health is in memory shared across the fork.

Lifecycle: a worker dies with the main process (PR_SET_PDEATHSIG: even a SIGKILLed daemon
leaves no worker behind); SIGHUP is passed on (each worker reloads its policy); at stop the
main process sends SIGTERM, reads each pipe to its end and reaps the workers, and only then
stops the engine. A worker that dies on its own is logged; when none is left, the main
process accepts on the sockets itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import fcntl
import os
import signal
import socket
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from kumoclient import logs
from kumoclient.configs import EsmtpListenerConfig
from kumoclient.core.listener_domain import Report
from kumoclient.core.schedule import parse_schedule, schedule_json
from kumoclient.daemon.signals import install_stop_signals
from kumoclient.engine.dispositions import Received
from kumoclient.engine.reception import Reception
from kumoclient.engine.smtp_policy import PolicyEvents
from kumoclient.listener import finish_in_flight, start_listener
from kumoclient.logs import LogHealth
from kumoclient.policy.runtime import PolicyHolder
from kumoclient.records import Arrival, SpooledMessage
from kumoclient.spool import Spool
from kumoclient.spool.space import SpaceLimits

log = logs.get_logger(__name__)

_FRAME = struct.Struct("!II")  # header length, content length (_NO_CONTENT: read it later)
_NO_CONTENT = 0xFFFFFFFF
_SEND_CONTENT_UP_TO = 256 * 1024  # larger messages are read from the spool when delivered
_PIPE_SIZE = 1 << 20
_PR_SET_PDEATHSIG = 1
_F_SETPIPE_SZ = 1031


@dataclass(slots=True)
class Worker:
    """A forked reception worker, as the main process sees it."""

    index: int
    pid: int
    fd: int  # the read end of its pipe
    exit_code: int | None = None


Announcement = tuple[list[SpooledMessage], bytes | None, Received]


def encode_frame(messages: list[SpooledMessage], content: bytes, received: Received) -> bytes:
    """One announcement: the messages of one content, what their records say, and the
    content when it is small or read for a report. A message's schedule travels in its JSON
    form (core.schedule)."""
    ids = {message.id for message in messages}
    arrival = received.arrival
    header = orjson.dumps(
        {
            "messages": [_fields(message) for message in messages],
            "peer_address": arrival.peer_address if arrival is not None else None,
            "tls": arrival.tls if arrival is not None else None,
            "reports": {i: r.value for i, r in received.reports.items() if i in ids},
            "dropped": [i for i in received.dropped if i in ids],
        }
    )
    send = len(content) <= _SEND_CONTENT_UP_TO or any(i in ids for i in received.reports)
    size = len(content) if send else _NO_CONTENT
    return _FRAME.pack(len(header), size) + header + (content if send else b"")


async def read_frame(reader: asyncio.StreamReader) -> Announcement:
    """The next announcement (IncompleteReadError at the end of the pipe)."""
    header_size, content_size = _FRAME.unpack(await reader.readexactly(_FRAME.size))
    header = orjson.loads(await reader.readexactly(header_size))
    messages = [_message(fields) for fields in header["messages"]]
    peer, tls = header["peer_address"], header["tls"]
    received = Received(
        Arrival(tuple(peer) if peer else None, tuple(tls) if tls else None),
        {i: Report(value) for i, value in header["reports"].items()},
        frozenset(header["dropped"]),
    )
    if content_size == _NO_CONTENT:
        return messages, None, received
    return messages, await reader.readexactly(content_size), received


def _fields(message: SpooledMessage) -> dict[str, Any]:
    fields = {name.name: getattr(message, name.name) for name in dataclasses.fields(message)}
    if message.schedule is not None:
        fields["schedule"] = schedule_json(message.schedule)
    return fields


def _message(fields: dict[str, Any]) -> SpooledMessage:
    schedule = fields.get("schedule")
    return SpooledMessage(**{**fields, "schedule": schedule and parse_schedule(schedule)})


@dataclass(frozen=True, slots=True)
class WorkerSetup:
    """What every worker shares: the policy, the spool, the bound listeners, the stop grace
    and the event loop to run."""

    policy: PolicyHolder
    spool_dir: Path
    listeners: Sequence[tuple[EsmtpListenerConfig, socket.socket]]
    grace: float
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    # the main process's delivery log health (shared memory): no mail is taken while it is down
    log_health: LogHealth | None = None
    # the least free space of the spool's disk (kumo.define_spool): no mail taken below it
    min_free: SpaceLimits | None = None


def fork_workers(count: int, setup: WorkerSetup) -> list[Worker]:
    """Fork `count` workers (call before any event loop or thread exists)."""
    workers: list[Worker] = []
    for index in range(count):
        read_fd, write_fd = os.pipe()
        with contextlib.suppress(OSError):  # a larger pipe: fewer waits for the reader
            fcntl.fcntl(write_fd, _F_SETPIPE_SZ, _PIPE_SIZE)
        pid = os.fork()
        if pid == 0:  # the worker: never returns into the parent's code
            code = 1
            try:
                os.close(read_fd)
                for worker in workers:
                    os.close(worker.fd)
                code = _worker_main(index, setup, write_fd)
            except BaseException:
                log.exception("reception worker failed", worker=index)
            finally:
                os._exit(code)
        os.close(write_fd)
        workers.append(Worker(index, pid, read_fd))
    return workers


def _worker_main(index: int, setup: WorkerSetup, write_fd: int) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() == 1:  # the main process died before prctl: nobody to hand mail to
        return 1
    with asyncio.Runner(loop_factory=setup.loop_factory) as runner:
        runner.run(_serve(index, setup, write_fd))
    return 0


async def _serve(index: int, setup: WorkerSetup, write_fd: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    install_stop_signals(stop.set)  # Ctrl-C reaches the whole group
    loop.add_signal_handler(signal.SIGHUP, setup.policy.refresh, "SIGHUP")

    async def announce(groups: dict[bytes, list[SpooledMessage]], received: Received) -> None:
        # a blocking write: when it returns, the bytes are the main process's to read
        data = b"".join(
            encode_frame(messages, content, received) for content, messages in groups.items()
        )
        view = memoryview(data)
        while view:
            view = view[os.write(write_fd, view) :]

    spool = Spool(setup.spool_dir, min_free=setup.min_free)
    await spool.start(clean=False)  # the main process cleaned it before forking
    reception = Reception(
        setup.policy, spool, dispositions=None, announce=announce, log_health=setup.log_health
    )
    events = PolicyEvents(setup.policy)
    servers = [
        await start_listener(config, reception.accept_transaction, sock=sock, events=events)
        for config, sock in setup.listeners
    ]
    log.info("reception worker started", worker=index, pid=os.getpid())
    try:
        await stop.wait()
    finally:
        for server in servers:
            server.close()
        for server in servers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), setup.grace)
        await finish_in_flight(setup.grace)
        await spool.close()
        os.close(write_fd)
    log.info("reception worker stopped", worker=index, accepted=reception.accepted)


async def read_announcements(
    worker: Worker, adopt: Callable[[list[SpooledMessage], bytes | None, Received], None]
) -> None:
    """Hand every announcement of `worker` to `adopt` until its pipe ends."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_SEND_CONTENT_UP_TO * 4)
    pipe = os.fdopen(worker.fd, "rb", buffering=0)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    try:
        while True:
            try:
                messages, content, received = await read_frame(reader)
            except asyncio.IncompleteReadError as exc:
                if exc.partial:
                    log.error("reception worker's pipe ended mid-message", worker=worker.index)
                return
            adopt(messages, content, received)
    finally:
        transport.close()


async def reap(worker: Worker, timeout: float) -> int:
    """Wait for the worker to exit (SIGKILL after `timeout`); its exit code."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        pid, status = os.waitpid(worker.pid, os.WNOHANG)
        if pid:
            worker.exit_code = os.waitstatus_to_exitcode(status)
            return worker.exit_code
        if loop.time() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signal.SIGKILL)
            deadline = loop.time() + 5.0
        await asyncio.sleep(0.02)


def signal_workers(workers: Sequence[Worker], signum: int) -> None:
    for worker in workers:
        if worker.exit_code is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker.pid, signum)
