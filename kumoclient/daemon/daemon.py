"""`kumoclient run`: load the policy, open spool and logs, listen, pick up drops, handle signals.

Start-up order: policy (a load error is EX_CONFIG), `pre_init`, `init`, spool (enumerated;
unreadable entries are quarantined), delivery log, SMTP listeners, HTTP listeners, the policy's
spawned tasks, the watch of configuration files. SIGHUP forgets every memoized value and bumps
the configuration epoch, which reloads the policy (a failed reload keeps the old one); a change
of a watched file bumps the epoch too. SIGTERM/SIGINT interrupt a policy handler that is
running, stop accepting (SMTP and HTTP), let in-flight transactions and requests finish for at
most STOP_GRACE seconds, and leave everything else spooled.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path

from kumoclient import logs
from kumoclient.configs import EsmtpListenerConfig, HttpListenerConfig, Rate
from kumoclient.core.listen import show_address
from kumoclient.daemon.layout import DaemonOptions, layout, ready_directory
from kumoclient.daemon.signals import install_stop_signals
from kumoclient.daemon.workers import (
    Worker,
    WorkerSetup,
    fork_workers,
    read_announcements,
    reap,
    signal_workers,
)
from kumoclient.engine.dispositions import Received
from kumoclient.engine.engine import Engine
from kumoclient.engine.reception import Reception
from kumoclient.engine.routing import resolver_for
from kumoclient.engine.smtp_policy import PolicyEvents
from kumoclient.errors import KumoClientError, StartupError
from kumoclient.http import Handlers, HttpServer, Route
from kumoclient.http.admin import admin_routes
from kumoclient.http.inject import InjectService
from kumoclient.listener import SmtpServer, bind_listener, finish_in_flight, start_listener
from kumoclient.listener.limits import raise_descriptor_limit
from kumoclient.policies import default_policy_path
from kumoclient.policy.epoch import EPOCH, MONITOR
from kumoclient.policy.modules.keysource import load_key
from kumoclient.policy.runtime import PolicyHolder
from kumoclient.records import AuthInfo, SpooledMessage
from kumoclient.throttles import SharedThrottles

log = logs.get_logger(__name__)

STOP_GRACE = 10.0
DROP_POLL_INTERVAL = 0.25
DROP_RETRY_MAX = 5.0  # seconds between two attempts at most while the pick-up fails
BIND_WAIT = 2.0
HTTPINJECT_THROTTLE = "httpinject:recipients"


def http_handlers(
    policy: PolicyHolder,
    reception: Reception,
    *,
    engine: Engine | None = None,
    routes: Sequence[Route] = (),
    inject_rate: Rate | None = None,
) -> Handlers:
    """What an HTTP listener serves: the inject API on `reception` (its recipients limited to
    `inject_rate`, kumo.set_httpinject_recipient_rate_limit), Basic auth checked by the
    policy's `http_server_validate_auth_basic` (the policy active at each request), the
    engine's metrics and spool state (liveness), and extra `routes` (the admin API)."""

    async def validate_auth(user: str, password: str) -> bool | AuthInfo:
        return await policy.current.validate_auth_basic(user, password)

    admit = None
    if inject_rate is not None:
        throttles = engine.throttles if engine is not None else SharedThrottles(None)
        admit = recipient_admission(throttles, inject_rate)
    return Handlers(
        inject=InjectService(reception, admit=admit).handle,
        metrics=engine.metrics_text if engine is not None else None,
        validate_auth=validate_auth,
        routes=tuple(routes),
        unavailable=engine.spool.low_space if engine is not None else None,
    )


def recipient_admission(throttles: SharedThrottles, rate: Rate) -> Callable[[int], Awaitable[None]]:
    """Wait until `rate` admits a request's recipients (shared through Redis unless `local:`),
    as KumoMTA's one throttle for every HTTP listener."""

    async def admit(count: int) -> None:
        wait = await throttles.throttle(HTTPINJECT_THROTTLE, rate).reserve(count)
        if wait > 0:
            await asyncio.sleep(wait)

    return admit


class Daemon:
    """One running kumoclient: an Engine, its listeners, the drop folder and signals."""

    def __init__(self, options: DaemonOptions) -> None:
        self.options = options
        # the listeners keep a share of the descriptors for the rest (docs/reception.md)
        raise_descriptor_limit()
        self.policy = PolicyHolder(options.policy or default_policy_path())
        runtime = self.policy.current
        init = runtime.run(runtime.start())  # pre_init, init: before any event loop runs
        self.layout = layout(options, init)
        self.inject_rate = init.httpinject_recipient_rate
        ready_directory(self.layout.spool_dir)  # CannotCreate: before the engine opens them
        ready_directory(self.layout.log_dir)
        self.engine = Engine(
            self.policy,
            spool_dir=self.layout.spool_dir,
            log_dir=self.layout.log_dir,
            max_segment_duration=self.layout.max_segment_duration,
            resolver=resolver_for(init.resolver),
            redis_throttles=init.redis_throttles,
            min_free=self.layout.min_free,
            accounting_db=self.layout.accounting_db,
        )
        self.spool = self.engine.spool
        self.reception = self.engine.reception
        self.events = PolicyEvents(self.policy)  # the SMTP server events, for the listeners
        self._stop = asyncio.Event()
        self._servers: list[SmtpServer] = []
        self._http_servers: list[HttpServer] = []
        self._sockets: list[tuple[EsmtpListenerConfig, socket.socket]] = []
        self.workers: list[Worker] = []
        self._readers: list[asyncio.Task[None]] = []

    def start_workers(self, loop_factory: Callable[[], asyncio.AbstractEventLoop] | None) -> None:
        """Bind the SMTP listeners and fork `options.workers` reception workers onto them.
        Call before any event loop or thread exists (StartupError when an address cannot be
        had)."""
        if self.options.workers <= 0:
            return
        for config in self.layout.listeners:
            self._sockets.append((config, _bind(config)))
        self.spool.remove_stale()  # before anyone else writes to it
        setup = WorkerSetup(
            self.policy,
            self.layout.spool_dir,
            self._sockets,
            STOP_GRACE,
            loop_factory,
            log_health=self.engine.records.health,
            min_free=self.layout.min_free,
        )
        self.workers = fork_workers(self.options.workers, setup)

    def http_routes(self) -> list[Route]:
        """Extra HTTP endpoints (the admin API) served by every HTTP listener, behind the
        same access check as the inject API unless a Route is `public`."""
        return admin_routes(self.engine)

    def request_stop(self) -> None:
        """Begin an orderly stop (SIGTERM/SIGINT)."""
        log.info("stopping")
        self._stop.set()

    def reload(self) -> None:
        """SIGHUP: forget memoized values and bump the configuration epoch, which reloads the
        policy; here and in the reception workers."""
        self.policy.refresh("SIGHUP")
        signal_workers(self.workers, signal.SIGHUP)

    async def run(self) -> None:
        """Serve until asked to stop."""
        # the spool is read in the background: delivery and reception start at once
        spooled = await self.engine.start(clean_spool=not self.workers, background_scan=True)
        log.info("spool listed", messages=spooled, spool=str(self.layout.spool_dir))
        try:
            if self.workers:
                self._readers = [
                    asyncio.create_task(self._read_worker(worker), name=f"worker-{worker.index}")
                    for worker in self.workers
                ]
            else:
                await self._listen()
            await self._start_http()
            self._install_signals()
            log.info(
                "kumoclient running",
                policy=self.policy.current.display_path,
                data=str(self.layout.spool_dir),
                logs=str(self.layout.log_dir),
                listen=[c.listen for c in self.layout.listeners],
                bound=self.smtp_addresses(),  # the ports chosen for a port 0
                http=[c.listen for c in self.layout.http_listeners],
                http_bound=[f"{h}:{p}" for s in self._http_servers for h, p in s.addresses],
            )
            drops = asyncio.create_task(self._drop_loop(), name="incoming")
            monitor = asyncio.create_task(self._monitor(), name="config-monitor")
            await self._stop.wait()
            for task in (drops, monitor):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        finally:
            await self._shutdown()

    async def _listen(self) -> None:
        """Accept SMTP here: on the sockets bound for the workers, or bind them now."""
        listeners: Sequence[tuple[EsmtpListenerConfig, socket.socket | None]] = self._sockets or [
            (config, None) for config in self.layout.listeners
        ]
        for config, sock in listeners:
            try:
                server = await start_listener(
                    config, self.reception.accept_transaction, sock=sock, events=self.events
                )
            except OSError as exc:
                raise StartupError(f"cannot listen on {config.listen}: {exc.strerror}") from exc
            self._servers.append(server)

    def smtp_addresses(self) -> list[str]:
        """The `host:port` addresses the SMTP listeners are bound to (a port 0 in the options
        is a free port the system chose)."""
        sockets = [sock for _, sock in self._sockets] or [
            sock for server in self._servers for sock in server.sockets
        ]
        return [show_address(sock.getsockname()) for sock in sockets]

    def _adopt(
        self, messages: list[SpooledMessage], content: bytes | None, received: Received
    ) -> None:
        self.reception.adopt(messages, content, messages[0].created, received)

    async def _read_worker(self, worker: Worker) -> None:
        """Take in what a worker stored until its pipe ends; then reap it. When the last
        worker is gone while the daemon runs, accept here."""
        try:
            await read_announcements(worker, self._adopt)
        finally:
            code = await reap(worker, STOP_GRACE)
        if self._stop.is_set():
            return
        log.error("reception worker exited", worker=worker.index, pid=worker.pid, code=code)
        if all(w.exit_code is not None for w in self.workers) and not self._servers:
            log.warning("no reception worker left: accepting SMTP in the main process")
            await self._listen()

    async def _start_http(self) -> None:
        handlers = http_handlers(
            self.policy,
            self.reception,
            engine=self.engine,
            routes=self.http_routes(),
            inject_rate=self.inject_rate,
        )
        for config in self.layout.http_listeners:
            http = HttpServer(await _read_vault(config), handlers, shutdown_timeout=STOP_GRACE)
            try:
                await http.start()
            except OSError as exc:
                raise StartupError(
                    f"cannot listen on {config.listen} (http): {exc.strerror or exc}"
                ) from exc
            self._http_servers.append(http)

    def _install_signals(self) -> None:
        install_stop_signals(self.request_stop)
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, self.reload)

    async def _monitor(self) -> None:
        """Watch the configuration files (policy/epoch.py): a change bumps the epoch (which
        reloads the policy) here, and reloads the reception workers' policies."""

        def changed(reason: str) -> None:
            EPOCH.bump(reason)
            signal_workers(self.workers, signal.SIGHUP)

        MONITOR.watch_policy_directory(Path(self.policy.current.path))
        await MONITOR.run(changed=changed)

    async def _drop_loop(self) -> None:
        """Pick up `incoming/` every DROP_POLL_INTERVAL seconds. While that fails (out of
        descriptors, the disk or the log failing, a bug), try again twice as long after
        each failure, at most DROP_RETRY_MAX apart: one log line when it starts failing,
        one when it works again. It never ends but with the daemon."""
        delay = 0.0  # > 0 while failing
        failures = 0
        while True:
            try:
                taken = await self.reception.pick_up_drops()
            except Exception as exc:  # (a bug too: the drop folder must not stop for good)
                if not failures:
                    log.error(
                        "drop folder pick-up failing; retrying",
                        error=str(exc) or type(exc).__name__,
                        exc_info=not isinstance(exc, KumoClientError | OSError),
                    )
                failures += 1
                delay = min(DROP_RETRY_MAX, max(DROP_POLL_INTERVAL, delay * 2))
                await asyncio.sleep(delay)
                continue
            if failures:
                log.info("drop folder pick-up recovered", failed_attempts=failures)
                failures, delay = 0, 0.0
            if taken:
                log.info("picked up injected messages", submissions=taken)
            await asyncio.sleep(DROP_POLL_INTERVAL)

    async def _shutdown(self) -> None:
        """Listeners first (no new mail), then the engine: both within STOP_GRACE."""
        deadline = time.monotonic() + STOP_GRACE
        for server in self._servers:
            server.close()
        for _, sock in self._sockets:
            sock.close()  # (the servers' own descriptors are closed with them)
        # workers finish their sessions and close their pipes; all they stored is adopted
        signal_workers(self.workers, signal.SIGTERM)
        if self._readers:
            await asyncio.wait(self._readers, timeout=STOP_GRACE + 5.0)
        # each waits for its requests in flight at most STOP_GRACE (its shutdown_timeout)
        await asyncio.gather(*(http.stop() for http in self._http_servers))
        for server in self._servers:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), max(0.1, deadline - time.monotonic()))
        unfinished = await finish_in_flight(max(0.1, deadline - time.monotonic()))
        if unfinished:
            log.warning("messages still being stored at stop", count=unfinished)
        await self.engine.stop(grace=max(0.1, deadline - time.monotonic()))
        log.info("stopped", accepted=self.reception.accepted, **self.engine.counts)


async def _read_vault(config: HttpListenerConfig) -> HttpListenerConfig:
    """The listener's configuration with its certificate and key read from Vault when they
    are Vault KeySources (as KumoMTA reads them when the listener starts)."""
    certificate, key = config.tls_certificate, config.tls_private_key
    if isinstance(certificate, tuple):
        certificate = await load_key("start_http_listener: tls_certificate", ".", dict(certificate))
    if isinstance(key, tuple):
        key = await load_key("start_http_listener: tls_private_key", ".", dict(key))
    return replace(config, tls_certificate=certificate, tls_private_key=key)


def _bind(config: EsmtpListenerConfig) -> socket.socket:
    """bind_listener, waiting up to BIND_WAIT seconds while the address is in use: right
    after a SIGKILL of a daemon with workers, they may hold it a moment longer (they die
    with it, but not in the same instant)."""
    deadline = time.monotonic() + BIND_WAIT
    while True:
        try:
            return bind_listener(config)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                raise StartupError(f"cannot listen on {config.listen}: {exc.strerror}") from exc
            time.sleep(0.05)


def event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's event loop when it is installed (the `fast` extra) and not turned off with
    KUMOCLIENT_EVENT_LOOP=asyncio; None (asyncio's own) otherwise."""
    if os.environ.get("KUMOCLIENT_EVENT_LOOP", "") == "asyncio":
        return None
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


async def run_daemon(options: DaemonOptions) -> None:
    """Build and run a daemon (raises PolicyError, StartupError)."""
    daemon = Daemon(options)
    await daemon.run()
