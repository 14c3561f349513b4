"""The measurements of `bench/run.py`, one function per (metric, system); each starts what it
needs and stops it again by PID in a `finally`, whatever happens.

Times are `time.monotonic()` in this process (the sinks record arrivals in a thread of this
process, on the same clock).
"""

from __future__ import annotations

import asyncio
import math
import os
import resource
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.systems import (
    ENUMERATED_EVENT,
    POSTFIX_QUEUES,
    BenchError,
    BenchPostfix,
    KumoclientDaemon,
    MachineCpu,
    Memory,
    RecordingSink,
    SmtpSink,
    postfix_relay_settings,
    relay_policy,
    rusage_cpu,
    smtp_source,
    tree_cpu_seconds,
    tree_memory,
    wait_until,
)
from tests.integration.postfix import free_port

SENDER = "sender@example.com"
KUMOCLIENT = "kumoclient"
POSTFIX = "postfix"
SYSTEMS = (KUMOCLIENT, POSTFIX)
HOLD = "check_client_access static:HOLD"


@dataclass(frozen=True)
class Settings:
    """What the command line chose."""

    messages: int = 20000
    sessions: int = 20  # smtp-source -s, and both systems' parallel deliveries
    rounds: int = 3
    latency_seconds: float = 20.0
    latency_rate: float = 200.0
    latency_connections: int = 8
    queued: int = 100000
    postfix_queued: int = 20000
    memory_seconds: float = 10.0
    kumoclient_args: tuple[str, ...] = ()
    start_timeout: float = 120.0
    keep: bool = False  # keep every work directory (spools, logs, stderr) for a look

    def discard(self, path: Path) -> None:
        if not self.keep:
            shutil.rmtree(path, ignore_errors=True)

    def drain_timeout(self, messages: int) -> float:
        """How long a run of `messages` may take: at least 10 msg/s on a busy machine."""
        return 120.0 + messages / 10.0


def new_daemon(workdir: Path, policy: str, settings: Settings, label: str) -> KumoclientDaemon:
    return KumoclientDaemon(workdir, policy, settings.kumoclient_args, label=label)


# ------------------------------------------------------------------------------ throughput


@dataclass
class Window:
    """CPU and time of one throughput run, from smtp-source's start to an empty queue."""

    started: float = 0.0
    cpu_start: float = 0.0
    machine_start: MachineCpu | None = None

    def open(self, root_pid: int) -> None:
        self.cpu_start = tree_cpu_seconds(root_pid)
        self.machine_start = MachineCpu.read()
        self.started = time.monotonic()

    def close(self, root_pid: int, ended: float, messages: int) -> dict[str, float]:
        cpu = tree_cpu_seconds(root_pid) - self.cpu_start
        assert self.machine_start is not None
        seconds = ended - self.started
        return {
            "seconds": seconds,
            "msg_per_s": messages / seconds,
            "cpu_seconds": cpu,
            "cpu_per_1k": 1000.0 * cpu / messages,
            "machine_busy_percent": MachineCpu.read().busy_percent_since(self.machine_start),
        }


def throughput_kumoclient(workdir: Path, sink_port: int, settings: Settings) -> dict[str, Any]:
    """smtp-source → `kumoclient run` → smtp-sink; until DATA_DIR/spool/data is empty."""
    n = settings.messages
    daemon = new_daemon(
        workdir, relay_policy(f"127.0.0.1:{sink_port}", settings.sessions), settings, "throughput"
    )
    try:
        daemon.start(settings.start_timeout)
        window = Window()
        window.open(daemon.pid)
        smtp_source(daemon.port, n, settings.sessions, timeout=settings.drain_timeout(n))
        injected = time.monotonic() - window.started
        ended = wait_until(
            lambda: daemon.queued() == 0,
            settings.drain_timeout(n),
            f"kumoclient to empty its spool ({daemon.spool_data})",
        )
        result = window.close(daemon.pid, ended, n)
        usage = daemon.stop()
    finally:
        daemon.stop()
    counts = daemon.record_counts()
    if counts.get("Delivery", 0) != n:
        raise BenchError(f"kumoclient throughput: {n} sent, log records {counts}")
    result["injection_seconds"] = injected
    result["lifetime_cpu_seconds"] = rusage_cpu(usage) if usage is not None else float("nan")
    result["lifetime_cpu_per_1k"] = 1000.0 * result["lifetime_cpu_seconds"] / n
    result["delivered"] = counts.get("Delivery", 0)
    result["log_errors"] = len(daemon.log.errors) if daemon.log else 0
    return result


def throughput_postfix(workdir: Path, sink_port: int, settings: Settings) -> dict[str, Any]:
    """smtp-source → private Postfix → smtp-sink; until its queues are empty."""
    n = settings.messages
    postfix = BenchPostfix(
        workdir, postfix_relay_settings(f"[127.0.0.1]:{sink_port}", settings.sessions)
    )
    try:
        postfix.start(settings.start_timeout)
        master = postfix.master_pid
        if master is None:
            raise BenchError("Postfix master has no PID")
        window = Window()
        window.open(master)
        smtp_source(postfix.port, n, settings.sessions, timeout=settings.drain_timeout(n))
        injected = time.monotonic() - window.started
        ended = wait_until(
            lambda: postfix.queued() == 0,
            settings.drain_timeout(n),
            f"Postfix to empty its queues ({postfix.queue_dir})",
        )
        result = window.close(master, ended, n)
    finally:
        postfix.stop()
    sent = postfix.log_count("status=sent")
    if sent != n:
        raise BenchError(f"Postfix throughput: {n} sent, {sent} relayed; {postfix.log_tail()}")
    usage = postfix.usage
    result["injection_seconds"] = injected
    result["lifetime_cpu_seconds"] = rusage_cpu(usage) if usage is not None else float("nan")
    result["lifetime_cpu_per_1k"] = 1000.0 * result["lifetime_cpu_seconds"] / n
    result["delivered"] = sent
    return result


def throughput_round(tmp: Path, order: tuple[str, ...], settings: Settings) -> dict[str, Any]:
    """Both systems, one after the other, into one smtp-sink started for this round."""
    sink = SmtpSink()
    results: dict[str, Any] = {}
    try:
        sink.start()
        for system in order:
            run = throughput_kumoclient if system == KUMOCLIENT else throughput_postfix
            results[system] = run(tmp / f"throughput-{system}", sink.port, settings)
            settings.discard(tmp / f"throughput-{system}")
    finally:
        sink.stop()
    return results


# ------------------------------------------------------------------------------ latency


def bench_message(number: int, size: int = 2048) -> bytes:
    head = (
        f"From: {SENDER}\r\nTo: bench{number}@example.net\r\nSubject: latency {number}\r\n"
        f"Message-ID: <{number}.bench@example.com>\r\nX-Bench-Id: {number}\r\n\r\n"
    ).encode()
    line = b"x" * 76 + b"\r\n"
    return head + line * max(1, (size - len(head)) // len(line))


@dataclass
class Paced:
    scheduled: dict[int, float] = field(default_factory=dict)
    submitted: dict[int, float] = field(default_factory=dict)  # MAIL FROM about to be sent
    accepted: dict[int, float] = field(default_factory=dict)  # 250 after the final dot
    errors: list[str] = field(default_factory=list)
    first: float = 0.0
    last: float = 0.0


async def paced_client(port: int, rate: float, seconds: float, connections: int) -> Paced:
    """Send rate*seconds 2 KB messages at a fixed rate over persistent connections."""
    import aiosmtplib

    total = max(1, round(rate * seconds))
    bodies = [bench_message(n) for n in range(total)]
    paced = Paced()
    queue: asyncio.Queue[int | None] = asyncio.Queue()
    clients = [
        aiosmtplib.SMTP(
            hostname="127.0.0.1",
            port=port,
            start_tls=False,
            timeout=120,
            local_hostname="client.bench.test",
        )
        for _ in range(connections)
    ]
    await asyncio.gather(*(client.connect() for client in clients))

    async def feeder(origin: float) -> None:
        for number in range(total):
            due = origin + number / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            paced.scheduled[number] = due
            queue.put_nowait(number)
        for _ in clients:
            queue.put_nowait(None)

    async def worker(client: aiosmtplib.SMTP) -> None:
        while (number := await queue.get()) is not None:
            started = time.monotonic()
            try:
                await client.sendmail(SENDER, [f"bench{number}@example.net"], bodies[number])
            except (aiosmtplib.SMTPException, OSError) as exc:
                paced.errors.append(f"{number}: {exc}")
                client.close()
                await client.connect()
                continue
            paced.submitted[number] = started
            paced.accepted[number] = time.monotonic()
        await client.quit()

    paced.first = time.monotonic() + 0.05
    try:
        await asyncio.gather(feeder(paced.first), *(worker(client) for client in clients))
    finally:
        for client in clients:
            client.close()
    paced.last = time.monotonic()
    return paced


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of sorted `values`."""
    if not values:
        return float("nan")
    index = min(len(values) - 1, max(0, math.ceil(fraction * len(values)) - 1))
    return values[index]


def latency_result(paced: Paced, sink: RecordingSink, settings: Settings) -> dict[str, Any]:
    sent = sorted(paced.submitted)
    latencies = sorted(1000.0 * (sink.arrivals[n] - paced.submitted[n]) for n in sent)
    accepts = sorted(1000.0 * (paced.accepted[n] - paced.submitted[n]) for n in sent)
    lag = [paced.submitted[n] - paced.scheduled[n] for n in sent]
    duration = max(paced.submitted.values()) - paced.first if sent else float("nan")
    return {
        "offered_rate": settings.latency_rate,
        "sent": len(sent),
        "errors": paced.errors[:20],
        "error_count": len(paced.errors),
        "achieved_rate": len(sent) / duration if duration > 0 else float("nan"),
        "client_lag_max_ms": 1000.0 * max(lag, default=0.0),
        "accept_ms_p50": percentile(accepts, 0.5),
        "accept_ms_p99": percentile(accepts, 0.99),
        "accept_ms_mean": statistics.fmean(accepts) if accepts else float("nan"),
        "p50_ms": percentile(latencies, 0.50),
        "p90_ms": percentile(latencies, 0.90),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": latencies[-1] if latencies else float("nan"),
        "latencies_ms": [round(value, 2) for value in latencies],
    }


def run_paced(port: int, sink: RecordingSink, settings: Settings, label: str) -> dict[str, Any]:
    started, cpu = time.monotonic(), resource.getrusage(resource.RUSAGE_SELF)
    try:
        paced = asyncio.run(
            paced_client(
                port, settings.latency_rate, settings.latency_seconds, settings.latency_connections
            )
        )
    except Exception as exc:  # cannot connect, a connection lost for good
        raise BenchError(f"{label}: the paced client failed: {exc!r}") from exc
    wanted = set(paced.submitted)

    def arrived() -> int:  # membership only: the sink's thread is adding to the dict
        return sum(1 for number in wanted if number in sink.arrivals)

    try:
        wait_until(
            lambda: arrived() == len(wanted),
            settings.drain_timeout(len(wanted)),
            f"{label} to deliver {len(wanted)} latency messages",
            interval=0.05,
        )
    except BenchError as exc:
        raise BenchError(f"{exc} ({arrived()} arrived)") from None
    result = latency_result(paced, sink, settings)
    # this process (the paced client and the sink) must not be the bottleneck: its share of
    # one CPU while sending and waiting; near 1.0 means the harness limited the rate
    used = rusage_cpu(resource.getrusage(resource.RUSAGE_SELF)) - rusage_cpu(cpu)
    result["harness_cpu_share"] = used / (time.monotonic() - started)
    return result


def latency_kumoclient(workdir: Path, settings: Settings) -> dict[str, Any]:
    sink = RecordingSink()
    daemon: KumoclientDaemon | None = None
    try:
        sink.start()
        policy = relay_policy(f"127.0.0.1:{sink.port}", settings.sessions)
        daemon = new_daemon(workdir, policy, settings, "latency")
        daemon.start(settings.start_timeout)
        return run_paced(daemon.port, sink, settings, "kumoclient")
    finally:
        if daemon is not None:
            daemon.stop()
        sink.stop()


def latency_postfix(workdir: Path, settings: Settings) -> dict[str, Any]:
    sink = RecordingSink()
    postfix: BenchPostfix | None = None
    try:
        sink.start()
        postfix = BenchPostfix(
            workdir, postfix_relay_settings(f"[127.0.0.1]:{sink.port}", settings.sessions)
        )
        postfix.start(settings.start_timeout)
        return run_paced(postfix.port, sink, settings, "Postfix")
    finally:
        if postfix is not None:
            postfix.stop()
        sink.stop()


def latency_round(tmp: Path, order: tuple[str, ...], settings: Settings) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for system in order:
        run = latency_kumoclient if system == KUMOCLIENT else latency_postfix
        results[system] = run(tmp / f"latency-{system}", settings)
        settings.discard(tmp / f"latency-{system}")
    return results


# ------------------------------------------------------------------------------ memory


class Sampler:
    """Samples the memory of a process tree every `interval` s in a thread of its own."""

    def __init__(self, root: Callable[[], int | None], origin: float, interval: float = 0.5):
        self.root = root
        self.origin = origin
        self.interval = interval
        self.samples: list[tuple[float, Memory]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> Memory | None:
        pid = self.root()
        if pid is None:
            return None
        memory = tree_memory(pid)
        if memory.processes:
            self.samples.append((time.monotonic() - self.origin, memory))
        return memory

    def summary(self, after: float = 0.0) -> dict[str, Any]:
        """Peak over the whole run; steady = median of the samples after `after` s."""
        if not self.samples:
            return {}
        steady = [m for t, m in self.samples if t >= after] or [self.samples[-1][1]]
        mb = 1 / 1024
        return {
            "peak_hwm_mb": max(m.hwm_kb for _, m in self.samples) * mb,
            "peak_rss_mb": max(m.rss_kb for _, m in self.samples) * mb,
            "steady_rss_mb": statistics.median(m.rss_kb for m in steady) * mb,
            "steady_pss_mb": statistics.median(m.pss_kb for m in steady) * mb,
            "processes": steady[-1].processes,
            "series": [
                {
                    "t": round(t, 3),
                    "rss_mb": round(m.rss_kb * mb, 1),
                    "pss_mb": round(m.pss_kb * mb, 1),
                }
                for t, m in self.samples
            ],
        }


async def _fill_spool(spool_dir: Path, count: int, batch: int = 2000) -> None:
    from kumoclient.spool import Spool, Submission

    spool = Spool(spool_dir)
    await spool.start()
    try:
        for start in range(0, count, batch):
            stores = []
            for number in range(start, min(count, start + batch)):
                body = bench_message(number)
                submission = Submission(SENDER, (f"bench{number}@example.net",), body)
                stores.append(spool.store(spool.prepare(submission), body))
            await asyncio.gather(*stores)
    finally:
        await spool.close()


def fill_kumoclient_spool(data_dir: Path, count: int) -> float:
    """Write `count` 2 KB messages into DATA_DIR/spool with the library; returns seconds."""
    started = time.monotonic()
    asyncio.run(_fill_spool(data_dir / "spool", count))
    return time.monotonic() - started


def link_copy(source: Path, target: Path, timeout: float) -> None:
    """A copy of a spool made of hard links, so that two daemons can each consume their own
    copy: kumoclient writes over a message's file only after the message left the spool and
    the file was recycled (spool/free/) for a new message, and these daemons receive none."""
    subprocess.run(["cp", "-al", str(source), str(target)], check=True, timeout=timeout)


def memory_unreachable(workdir: Path, settings: Settings) -> dict[str, Any]:
    """Start on a full spool whose destination refuses connections: enumeration time, then
    peak and steady memory while every message is being attempted."""
    daemon = new_daemon(workdir, relay_policy(f"127.0.0.1:{free_port()}"), settings, "unreachable")
    timeout = settings.start_timeout + settings.queued / 100.0
    try:
        started = daemon.start(timeout, wait_listening=False)
        with Sampler(lambda: daemon.pid if daemon.alive() else None, started) as sampler:
            enumerated_at, record = daemon.wait_event(ENUMERATED_EVENT, timeout)
            time.sleep(settings.memory_seconds)
            sampler.sample()
        enumerated = enumerated_at - started
        result: dict[str, Any] = {
            "queued": settings.queued,
            "enumerated_messages": record.get("messages"),
            "start_to_enumerated_s": enumerated,
            **sampler.summary(after=enumerated + settings.memory_seconds / 2),
        }
        result["still_queued"] = daemon.queued()
    finally:
        daemon.stop()
    counts = daemon.record_counts()
    result["attempts_during_window"] = counts.get("TransientFailure", 0)
    result["record_counts"] = counts
    if result["enumerated_messages"] != settings.queued:
        raise BenchError(f"kumoclient enumerated {record.get('messages')} of {settings.queued}")
    return result


def memory_reachable(workdir: Path, settings: Settings) -> dict[str, Any]:
    """Start on a full spool whose destination is a sink: time to the first arrival."""
    sink = RecordingSink()
    daemon: KumoclientDaemon | None = None
    timeout = settings.start_timeout + settings.queued / 100.0
    try:
        sink.start()
        policy = relay_policy(f"127.0.0.1:{sink.port}", settings.sessions)
        daemon = new_daemon(workdir, policy, settings, "reachable")
        started = daemon.start(timeout, wait_listening=False)
        with Sampler(lambda: daemon.pid if daemon.alive() else None, started) as sampler:
            wait_until(
                lambda: sink.first is not None or not daemon.alive(),
                timeout,
                "the first delivery from kumoclient's full spool",
            )
            if sink.first is None:
                raise BenchError(f"kumoclient exited before delivering\n{daemon.stderr_tail()}")
            enumerated_at, _ = daemon.wait_event(ENUMERATED_EVENT, timeout)
            time.sleep(1.0)  # a little delivery, for the memory figure
        first = sink.first - started
        return {
            "queued": settings.queued,
            "start_to_first_delivery_s": first,
            "start_to_enumerated_s": enumerated_at - started,
            "delivered_before_stop": sink.count,
            **sampler.summary(after=first),  # steady: while delivering
        }
    finally:
        if daemon is not None:
            daemon.stop()
        sink.stop()


def prepare_memory_kumoclient(tmp: Path, settings: Settings) -> tuple[Path, float]:
    """The data directory every round copies: `queued` messages in its spool."""
    data = tmp / "memory-kumoclient-base" / "data"
    return data, fill_kumoclient_spool(data, settings.queued)


def memory_kumoclient(base: Path, workdir: Path, settings: Settings) -> dict[str, Any]:
    """One round: a start on a copy whose destination is closed, one on a copy whose
    destination is a sink."""
    unreachable, reachable = workdir / "unreachable", workdir / "reachable"
    try:
        for target in (unreachable, reachable):
            target.mkdir(parents=True)
            link_copy(base, target / "data", settings.drain_timeout(settings.queued))
        return {
            "unreachable": memory_unreachable(unreachable, settings),
            "reachable": memory_reachable(reachable, settings),
        }
    finally:
        settings.discard(workdir)


def _backdate_deferred(queue_dir: Path) -> int:
    """Make every deferred message due now (qmgr skips queue files whose mtime, the next
    retry time, is in the future); returns how many there are."""
    past = time.time() - 3600
    count = 0
    for folder, _, files in os.walk(queue_dir / "deferred"):
        for name in files:
            os.utime(os.path.join(folder, name), (past, past))
            count += 1
    return count


def prepare_memory_postfix(tmp: Path, settings: Settings) -> tuple[Path, float]:
    """A Postfix queue directory with `postfix_queued` deferred messages, cheaply: smtp-source
    into an instance that puts everything on hold, then `postsuper -H ALL` (hold → deferred).
    Returns the queue directory (each round runs on a copy) and the seconds it took."""
    root = tmp / "memory-postfix-base"
    relay = postfix_relay_settings(f"[127.0.0.1]:{free_port()}", settings.sessions)
    postfix = BenchPostfix(root, {**relay, "smtpd_end_of_data_restrictions": HOLD})
    count = settings.postfix_queued
    started = time.monotonic()
    try:
        postfix.start(settings.start_timeout)
        smtp_source(postfix.port, count, settings.sessions, settings.drain_timeout(count))
        wait_until(
            lambda: postfix.queue_count("hold") >= count,
            settings.drain_timeout(count),
            "Postfix to put the messages on hold",
        )
    finally:
        postfix.stop()
    # postsuper logs to the instance's log file after releasing, which it may not be allowed
    # to open (exit 1): the deferred queue is checked instead
    released = subprocess.run(
        ["postsuper", "-c", str(postfix.conf_dir), "-H", "ALL"],
        capture_output=True,
        text=True,
        timeout=settings.drain_timeout(count),
        check=False,
    )
    deferred = _backdate_deferred(postfix.queue_dir)
    if deferred != count:
        raise BenchError(f"postsuper -H: {deferred} of {count} deferred; {released.stderr}")
    return postfix.queue_dir, time.monotonic() - started


def _copy_queue(base: Path, root: Path, timeout: float) -> None:
    """A real copy (Postfix rewrites queue files in place), without the old instance's pid
    file and sockets."""
    root.mkdir(parents=True)
    subprocess.run(["cp", "-a", str(base), str(root / "queue")], check=True, timeout=timeout)
    for folder in ("pid", "public", "private"):
        for entry in (root / "queue" / folder).iterdir():
            entry.unlink()


def memory_postfix(base: Path, workdir: Path, settings: Settings) -> dict[str, Any]:
    """One round on a copy of the deferred queue: relaying to a closed port (memory while
    the messages are attempted), then restarted relaying to a sink (first delivery)."""
    closed_port = free_port()
    try:
        _copy_queue(base, workdir, settings.drain_timeout(settings.postfix_queued))
        postfix = BenchPostfix(
            workdir, postfix_relay_settings(f"[127.0.0.1]:{closed_port}", settings.sessions)
        )
        _backdate_deferred(postfix.queue_dir)
        started = time.monotonic()
        try:
            with Sampler(lambda: postfix.master_pid, started) as sampler:
                postfix.start(settings.start_timeout)
                time.sleep(settings.memory_seconds)
                sampler.sample()
            queues = {name: postfix.queue_count(name) for name in POSTFIX_QUEUES}
        finally:
            postfix.stop()
        return {
            "unreachable": {
                "queued": settings.postfix_queued,
                "queues_at_end": queues,
                "attempts_during_window": postfix.log_count("status=deferred"),
                **sampler.summary(after=settings.memory_seconds / 2),
            },
            "reachable": _postfix_first_delivery(workdir, settings),
        }
    finally:
        settings.discard(workdir)


def _postfix_first_delivery(root: Path, settings: Settings) -> dict[str, Any]:
    sink = RecordingSink()
    postfix: BenchPostfix | None = None
    try:
        sink.start()
        postfix = BenchPostfix(
            root, postfix_relay_settings(f"[127.0.0.1]:{sink.port}", settings.sessions)
        )
        _backdate_deferred(postfix.queue_dir)
        started = time.monotonic()
        postfix.start(settings.start_timeout)
        wait_until(
            lambda: sink.first is not None,
            settings.start_timeout,
            "the first delivery from Postfix's deferred queue",
        )
        assert sink.first is not None
        return {
            "queued": settings.postfix_queued,
            "start_to_first_delivery_s": sink.first - started,
        }
    finally:
        if postfix is not None:
            postfix.stop()
        sink.stop()
