"""The systems and tools `bench/run.py` drives, each started and stopped by PID.

* `KumoclientDaemon`: `python -m kumoclient run --policy P --data-dir D --listen ...` as a
  black box (extra command-line arguments passed through), its structlog stderr read by a
  thread that notes when each event first appeared; stopped with SIGTERM and reaped with
  `os.wait4()`, which gives its CPU time including the children it reaped.
* `BenchPostfix`: the private Postfix instance of `tests/integration/postfix.py` (master
  under a child subreaper), relaying to a sink; its stop reaps the subreaper with `os.wait4()`,
  whose rusage covers every Postfix daemon of the instance.
* `SmtpSink`: Postfix's `smtp-sink` (a fast C sink that accepts and discards).
* `RecordingSink`: an in-process aiosmtpd sink (own thread) recording when each message
  arrived, by its `X-Bench-Id` header.
* /proc helpers: CPU seconds and memory (VmRSS, VmHWM, Pss) of a process tree, whole-machine
  CPU counters.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.integration.postfix import PrivatePostfix, free_port  # noqa: E402
from tests.system_packages import NotInstalled, require  # noqa: E402

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# where the daemons started by the benchmarks keep their bytecode (see daemon_environment())
PYCACHE = Path("/var/tmp/kumoclient-bench-pycache")
# what the daemon logs once the spool is enumerated (kumoclient/daemon/daemon.py)
ENUMERATED_EVENT = "spool enumerated"
BENCH_ID = re.compile(rb"^X-Bench-Id: *(\d+)\r?$", re.MULTILINE | re.IGNORECASE)


class BenchError(RuntimeError):
    """A system did not do what the benchmark needs (did not start, lost mail, timed out)."""


# ------------------------------------------------------------------------------ small tools


def wait_port(port: int, timeout: float, alive: Callable[[], bool] = lambda: True) -> None:
    """Until something accepts connections on 127.0.0.1:port; BenchError after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise BenchError(f"the process meant to listen on port {port} exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.02)
    raise BenchError(f"nothing listening on 127.0.0.1:{port} after {timeout:.0f} s")


def postfix_tool(name: str) -> str:
    """The absolute path of one of Postfix's programs; BenchError naming the package if missing."""
    try:
        return require(name, package="postfix")
    except NotInstalled as exc:
        raise BenchError(str(exc)) from None


def require_tools(*names: str) -> None:
    for name in names:
        postfix_tool(name)


def count_files(*folders: Path) -> int:
    """Files (at any depth) in the folders; a missing folder counts 0."""
    total = 0
    for folder in folders:
        with contextlib.suppress(FileNotFoundError), os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    total += count_files(Path(entry.path))
                else:
                    total += 1
    return total


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.02
) -> float:
    """Poll `condition` until true; returns time.monotonic() then. BenchError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return time.monotonic()
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def make_tmp_root(prefix: str) -> Path:
    """A directory under /var/tmp, mode 0755 (unprivileged Postfix daemons must traverse it)."""
    path = Path(f"/var/tmp/{prefix}{os.getpid()}-{time.time_ns() % 10**9}")
    path.mkdir(mode=0o755)
    os.chmod(path, 0o755)
    return path


# ------------------------------------------------------------------------------ /proc


def _stat_fields(pid: int) -> list[str] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()  # fields from "state" on


def group_members(pgid: int) -> list[int]:
    """Live processes of process group `pgid` (zombies excluded)."""
    members = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None and int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry))
    return members


def kill_group(pgid: int) -> None:
    """SIGKILL, by PID, every live member of a process group we created (a daemon's session:
    start_new_session=True makes its PID the group's ID)."""
    for pid in group_members(pgid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def process_tree(root: int) -> list[int]:
    """`root` and all its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds used so far by a process tree: every live process's utime + stime, plus
    cutime + cstime (the children it has already reaped). Nothing is counted twice: a child's
    time moves to its parent's cutime only when it is reaped, and then it is no longer live."""
    ticks = 0
    for pid in process_tree(root):
        fields = _stat_fields(pid)
        if fields is not None:  # utime stime cutime cstime are fields 14-17 of stat
            ticks += sum(int(value) for value in fields[11:15])
    return ticks / CLOCK_TICKS


@dataclass(frozen=True)
class Memory:
    """Summed over the processes of a tree, in kB."""

    rss_kb: int = 0
    hwm_kb: int = 0  # sum of each process's own peak (an upper bound of the tree's peak)
    pss_kb: int = 0  # proportional: shared pages split between the processes sharing them
    processes: int = 0


def _status_kb(text: str, key: str) -> int:
    match = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) if match else 0


def tree_memory(root: int, *, pss: bool = True, skip: Sequence[int] = ()) -> Memory:
    rss = hwm = pss_total = processes = 0
    for pid in process_tree(root):
        if pid in skip:
            continue
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text() if pss else ""
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if _status_kb(status, "VmRSS") == 0:  # a zombie or a kernel thread
            continue
        processes += 1
        rss += _status_kb(status, "VmRSS")
        hwm += _status_kb(status, "VmHWM")
        pss_total += _status_kb(rollup, "Pss")
    return Memory(rss, hwm, pss_total, processes)


@dataclass(frozen=True)
class MachineCpu:
    busy: int
    total: int

    @staticmethod
    def read() -> MachineCpu:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        idle = fields[3] + fields[4]  # idle + iowait
        return MachineCpu(busy=sum(fields) - idle, total=sum(fields))

    def busy_percent_since(self, earlier: MachineCpu) -> float:
        total = self.total - earlier.total
        return 100.0 * (self.busy - earlier.busy) / total if total > 0 else 0.0


def rusage_cpu(usage: resource.struct_rusage) -> float:
    return usage.ru_utime + usage.ru_stime


def reap(pid: int, timeout: float) -> tuple[int, resource.struct_rusage] | None:
    """os.wait4() the child `pid` for up to `timeout` s: (exit status, rusage) or None."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            waited, status, usage = os.wait4(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if waited == pid:
            return status, usage
        if time.monotonic() > deadline:
            return None
        time.sleep(0.01)


# ------------------------------------------------------------------------------ kumoclient


def daemon_environment() -> dict[str, str]:
    """The daemons' environment: ours, with a bytecode cache of their own.

    With PYTHONDONTWRITEBYTECODE set (this sandbox sets it) and no __pycache__ next to the
    sources, every `kumoclient run` compiles kumoclient from source at start: seconds on a
    busy machine, which an installed package never pays. The daemons get PYTHONPYCACHEPREFIX
    (a cache under /var/tmp; nothing is written into the checkout) and may write bytecode
    there; the runner's warm-up fills it once before anything is timed.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    return env


@dataclass
class DaemonLog:
    """What a daemon printed on stderr: the first time each event appeared, error lines."""

    started: float
    events: dict[str, tuple[float, dict[str, Any]]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)


class KumoclientDaemon:
    """`python -m kumoclient run` on a policy, with a data directory of its own."""

    def __init__(
        self, workdir: Path, policy: str, extra_args: Sequence[str] = (), *, label: str = ""
    ) -> None:
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.spool_data = self.data_dir / "spool" / "data"  # one file per queued message
        self.log_dir = self.data_dir / "logs"
        self.policy_path = workdir / "policy.lua"
        self.stderr_path = workdir / "daemon.stderr"
        self.policy = policy
        self.extra_args = list(extra_args)
        self.label = label or workdir.name
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: DaemonLog | None = None
        self.usage: resource.struct_rusage | None = None
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise BenchError("the daemon is not running")
        return self.proc.pid

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "kumoclient",
            "run",
            "--policy",
            str(self.policy_path),
            "--data-dir",
            str(self.data_dir),
            "--listen",
            f"127.0.0.1:{self.port}",
            *self.extra_args,
        ]

    def start(self, timeout: float = 60.0, *, wait_listening: bool = True) -> float:
        """Start the daemon; returns its start time (time.monotonic())."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.policy_path.write_text(self.policy)
        self.port = free_port()
        started = time.monotonic()
        self.log = DaemonLog(started)
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            cwd=self.workdir,
            env=daemon_environment(),
            start_new_session=True,  # no Ctrl-C from the terminal: our finally stops it
        )
        self._reader = threading.Thread(target=self._read_stderr, name="daemon-stderr", daemon=True)
        self._reader.start()
        if wait_listening:
            try:
                wait_port(self.port, timeout, alive=lambda: self.proc is not None and self.alive())
            except BenchError as exc:
                raise BenchError(f"kumoclient ({self.label}): {exc}\n{self.stderr_tail()}") from exc
        return started

    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None and self.proc.poll() is None

    def _read_stderr(self) -> None:
        assert self.proc is not None
        assert self.proc.stderr is not None
        assert self.log is not None
        log = self.log
        with self.proc.stderr as stream, self.stderr_path.open("wb") as copy:
            for line in stream:
                now = time.monotonic()
                copy.write(line)
                try:
                    record = json.loads(line)
                except ValueError:
                    record = None
                if not isinstance(record, dict):
                    continue
                event = str(record.get("event", ""))
                with log.changed:
                    log.events.setdefault(event, (now, record))
                    if record.get("level") in ("error", "critical"):
                        log.errors.append(line.decode(errors="replace").strip())
                    log.changed.notify_all()

    def wait_event(self, event: str, timeout: float) -> tuple[float, dict[str, Any]]:
        """(monotonic time it was read, the JSON record) of the first `event` line."""
        assert self.log is not None
        deadline = time.monotonic() + timeout
        with self.log.changed:
            while event not in self.log.events:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self.alive():
                    why = "exited" if not self.alive() else f"not within {timeout:.0f} s"
                    raise BenchError(
                        f"kumoclient ({self.label}) did not log {event!r} ({why})\n"
                        f"{self.stderr_tail()}"
                    )
                self.log.changed.wait(min(remaining, 0.2))
            return self.log.events[event]

    def stderr_tail(self, lines: int = 15) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no stderr)"
        return "stderr tail:\n" + "\n".join(text.splitlines()[-lines:])

    def queued(self) -> int:
        return count_files(self.spool_data)

    def stop(self, timeout: float = 30.0) -> resource.struct_rusage | None:
        """SIGTERM, reap with wait4 (CPU of the daemon and its reaped children); SIGKILL the
        session if it does not exit in time. Safe to call twice."""
        proc = self.proc
        if proc is None:
            return self.usage
        try:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                reaped = reap(proc.pid, timeout)
                if reaped is None:
                    kill_group(proc.pid)
                    reaped = reap(proc.pid, 10.0)
                if reaped is not None:
                    proc.returncode = os.waitstatus_to_exitcode(reaped[0])
                    self.usage = reaped[1]
                else:  # somebody else reaped it
                    proc.wait(10.0)
            kill_group(proc.pid)  # workers left behind in the daemon's session
        finally:
            if self._reader is not None:
                self._reader.join(10.0)
            self.proc = None
        return self.usage

    def records(self) -> Iterator[dict[str, Any]]:
        """The delivery log records written so far (complete lines only)."""
        for path in sorted(self.log_dir.glob("*.jsonl")):
            with path.open("rb") as stream:
                for line in stream:
                    if line.endswith(b"\n"):
                        yield json.loads(line)

    def record_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for record in self.records():
            kind = str(record.get("type"))
            counts[kind] = counts.get(kind, 0) + 1
        return counts


def relay_policy(host_port: str, connection_limit: int = 20) -> str:
    """A policy sending every queue to `host_port`, in clear, loopback allowed, no init."""
    return f"""-- bench/run.py: every queue goes to {host_port}
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {{
    protocol = {{ smtp = {{ mx_list = {{ '{host_port}' }} }} }},
  }}
end)
kumo.on('get_egress_path_config', function(routing_domain, egress_source, site_name)
  return kumo.make_egress_path {{
    prohibited_hosts = {{}}, enable_tls = 'Disabled', connection_limit = {connection_limit},
  }}
end)
"""


# ------------------------------------------------------------------------------ Postfix

# the queues a message waits in before it is delivered (hold: put on hold)
POSTFIX_QUEUES = ("maildrop", "incoming", "active", "deferred", "hold")


def postfix_relay_settings(relay: str, concurrency: int = 20) -> dict[str, str]:
    """main.cf overrides: relay everything to `relay` ("[host]:port"), deliver nothing
    locally, no TLS, `concurrency` parallel deliveries like kumoclient's connection_limit."""
    return {
        "relayhost": relay,
        "default_transport": "smtp",
        "relay_transport": "smtp",
        "virtual_mailbox_domains": "",
        "smtp_tls_security_level": "none",
        "default_destination_concurrency_limit": str(concurrency),
        "smtpd_recipient_restrictions": "permit",
        "smtp_host_lookup": "native",
    }


POSTFIX_SMTP_SERVICE = "smtp unix - - n - - smtp"


class BenchPostfix(PrivatePostfix):
    """PrivatePostfix (no milter, an smtp client transport) whose stop records the rusage of
    everything the instance ran: the subreaper is reaped with os.wait4(), and it has itself
    reaped master and every orphaned daemon."""

    def __init__(self, root: Path, main_cf: Mapping[str, str]) -> None:
        super().__init__(root, milter=False, main_cf=main_cf, services=(POSTFIX_SMTP_SERVICE,))
        self.usage: resource.struct_rusage | None = None

    @property
    def reaper_pid(self) -> int | None:
        return self._reaper.pid if self._reaper is not None else None

    def stop(self, timeout: float = 20.0) -> None:
        reaper = self._reaper
        if reaper is not None and reaper.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                reaper.terminate()  # passed on to master, which stops its children
            reaped = reap(reaper.pid, timeout)
            if reaped is not None:
                reaper.returncode = os.waitstatus_to_exitcode(reaped[0])
                self.usage = reaped[1]
        super().stop(timeout)  # SIGKILLs whatever is left, checks nothing survives

    def queued(self) -> int:
        return count_files(*(self.queue_dir / name for name in POSTFIX_QUEUES))

    def queue_count(self, name: str) -> int:
        return count_files(self.queue_dir / name)

    def log_count(self, needle: str) -> int:
        return self.log().count(needle)


# ------------------------------------------------------------------------------ sinks


class SmtpSink:
    """`smtp-sink -u nobody 127.0.0.1:PORT 1024`: accepts everything, keeps nothing."""

    def __init__(self) -> None:
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> SmtpSink:
        sink = postfix_tool("smtp-sink")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sink, "-u", "nobody", f"127.0.0.1:{self.port}", "1024"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_port(
            self.port, timeout, alive=lambda: self.proc is not None and self.proc.poll() is None
        )
        return self

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
            self.proc = None


class _Recorder:
    """aiosmtpd handler: note the arrival time of every message by its X-Bench-Id."""

    def __init__(self) -> None:
        self.arrivals: dict[int, float] = {}
        self.count = 0
        self.first: float | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        now = time.monotonic()
        if self.first is None:
            self.first = now
        self.count += 1
        content = envelope.original_content or envelope.content or b""
        if isinstance(content, str):
            content = content.encode()
        header = content.split(b"\r\n\r\n", 1)[0]
        match = BENCH_ID.search(header)
        if match is not None:
            self.arrivals.setdefault(int(match.group(1)), now)
        return "250 2.0.0 Ok: recorded"


class RecordingSink:
    """An aiosmtpd server in a thread of this process, recording arrivals (time.monotonic)."""

    def __init__(self) -> None:
        self.recorder = _Recorder()
        self.port = 0
        self._controller: Any = None

    @property
    def arrivals(self) -> dict[int, float]:
        return self.recorder.arrivals

    @property
    def count(self) -> int:
        return self.recorder.count

    @property
    def first(self) -> float | None:
        return self.recorder.first

    def start(self) -> RecordingSink:
        from aiosmtpd.controller import Controller

        self.port = free_port()
        self._controller = Controller(
            self.recorder,
            hostname="127.0.0.1",
            port=self.port,
            ready_timeout=20.0,
            server_hostname="sink.bench.test",  # not socket.getfqdn() per connection
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            with contextlib.suppress(Exception):
                self._controller.stop()
            self._controller = None


def smtp_source(port: int, messages: int, sessions: int = 20, timeout: float = 900.0) -> None:
    """Postfix's load generator: `messages` 2 KB messages over `sessions` parallel sessions."""
    command = [
        postfix_tool("smtp-source"),
        "-s",
        str(sessions),
        "-m",
        str(messages),
        "-l",
        "2048",
        "-f",
        "sender@example.com",
        "-t",
        "rcpt@example.net",
        f"127.0.0.1:{port}",
    ]
    proc = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"smtp-source did not finish within {timeout:.0f} s") from exc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    if proc.returncode != 0:
        text = output.decode(errors="replace").strip()[-2000:]
        raise BenchError(f"smtp-source exited with {proc.returncode}: {text}")
