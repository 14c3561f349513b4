"""A private, throwaway Postfix instance: a real remote MX for integration tests.

`PrivatePostfix(root)` writes its own main.cf/master.cf, queue directory, data directory,
mailbox and log under `root` (the test's tmp_path), runs the Postfix `master` daemon as a
child process listening on 127.0.0.1 on a free port, and stops it again, leaving no process
of the instance behind. The system Postfix (/etc/postfix, /var/spool/postfix) is neither used
nor touched: the instance is started with `master -c CONFDIR`, never with the `postfix`
command, whose start/check/set-permissions steps also re-apply ownership and modes to the
shared Postfix files (/usr/sbin/postdrop, /usr/lib/postfix, ...) when the configuration
directory is not a registered secondary instance.

What the MX does:

* Every recipient of every domain is accepted and delivered by the virtual(8) agent into one
  catch-all Maildir; nothing is ever relayed or sent out (no smtp transport in master.cf,
  every other transport is `error:`). `messages()` reads the delivered files back byte for
  byte; `strip_postfix_headers()` removes what Postfix added (Return-Path, X-Original-To,
  Delivered-To and its own Received header) and restores CRLF line ends.
* `replies` ({address: "NNN X.Y.Z text"}) are answered to RCPT TO exactly as given: they are
  sent by a small in-process milter (Postfix passes a milter's reply through unchanged).
  The dict is live: change it while the instance runs.
* `access` ({address: access(5) action}) goes into a `check_recipient_access` texthash
  table: Postfix itself answers, and for "4NN/5NN text" actions it always formats the reply
  as "NNN X.Y.Z <address>: Recipient address rejected: text".

Postfix daemons that are not root cannot cross the 0700 pytest base directories
(/tmp/pytest-of-root/pytest-N/...), so everything an unprivileged daemon must reach (the
data directory, the mailbox) lives inside the queue directory and is named through
/proc/self/cwd: every Postfix daemon runs with the queue directory as its working directory,
and virtual(8) refuses a relative virtual_mailbox_base.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pytest

from tests.ports import free_port
from tests.system_packages import NotInstalled, missing_message, require

DEBIAN_PACKAGE = "postfix"
NEEDS_ROOT = "a private Postfix instance needs root (master, chown)"

# Ready-made replies (for `replies`, i.e. exactly these lines on the wire).
OVER_QUOTA = "452 4.2.2 The email account that you tried to reach is over quota."
USER_UNKNOWN = "550 5.1.1 The email account that you tried to reach does not exist."
TEMPORARY_FAILURE = "451 4.3.0 Temporary lookup failure"
# An access(5) action (for `access`): Postfix answers
# "450 4.2.1 <addr>: Recipient address rejected: this mailbox is inactive and has been disabled"
INACTIVE_ACTION = "450 4.2.1 this mailbox is inactive and has been disabled"

# postfix-files: queue directories owned by mail_owner, mode 0700
_QUEUES: tuple[str, ...] = ("active", "bounce", "corrupt", "defer", "deferred", "flush")
_QUEUES += ("hold", "incoming", "private", "saved", "trace")
_REPLY = re.compile(r"^([45])\d\d(?: ([245])\.\d{1,3}\.\d{1,3})?(?: [^\r\n]*)?$")
# headers the delivery adds in front of the message; the first Received is smtpd's own
_DELIVERY_HEADERS = (b"return-path", b"x-original-to", b"delivered-to")


# Runs `master ARGS...` as its child, as a child subreaper (prctl PR_SET_CHILD_SUBREAPER):
# master's children, orphaned when master exits, become its children instead of init's, so
# it reaps every one of them, then exits. SIGTERM is passed on to master. Without it, the
# orphans wait as zombies until PID 1 reaps them (seconds here, never in some containers).
_REAPER = """
import ctypes, os, signal, sys
if ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) != 0:
    sys.exit(f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")
master = None
def forward(signum, frame):
    if master is not None:
        try:
            os.kill(master, signum)
        except ProcessLookupError:
            pass
signal.signal(signal.SIGTERM, forward)
signal.signal(signal.SIGINT, signal.SIG_IGN)
master = os.fork()
if master == 0:
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.dup2(os.open(os.devnull, os.O_RDWR), 1)
        os.execv(sys.argv[1], sys.argv[1:])
    finally:
        os._exit(127)
print(master, flush=True)
status = 1
while True:
    try:
        pid, wait_status = os.wait()
    except ChildProcessError:
        break
    if pid == master:
        status = os.waitstatus_to_exitcode(wait_status)
sys.exit(status if status >= 0 else 128 - status)
"""


class PostfixNotInstalled(NotInstalled):
    """Postfix (postconf, master) is missing from this machine."""


class PostfixError(RuntimeError):
    """The instance could not be started or stopped."""


@dataclass(frozen=True)
class ProcessInfo:
    pid: int
    ppid: int
    pgid: int
    state: str
    cmdline: str


def postfix_daemon_directory() -> Path:
    """Where master(8) and the other daemons live; PostfixNotInstalled if Postfix is missing."""
    try:
        postconf = require("postconf", package=DEBIAN_PACKAGE)
    except NotInstalled as exc:
        raise PostfixNotInstalled(str(exc)) from None
    result = subprocess.run(
        [postconf, "-dh", "daemon_directory"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    daemon_directory = Path(result.stdout.strip())
    if result.returncode != 0 or not (daemon_directory / "master").is_file():
        raise PostfixNotInstalled(
            f"{missing_message('master', DEBIAN_PACKAGE)} ({result.stderr.strip()!r})"
        )
    return daemon_directory


def require_postfix() -> Path:
    """postfix_daemon_directory(), or fail the test with one line naming the package, or saying
    that it needs root (never skip: `scripts/test` installs Postfix, so a missing one must not go
    unnoticed)."""
    try:
        daemon_directory = postfix_daemon_directory()
    except PostfixNotInstalled as exc:
        pytest.fail(str(exc), pytrace=False)
    if os.geteuid() != 0:
        pytest.fail(f"{NEEDS_ROOT}: run the tests as root", pytrace=False)
    return daemon_directory


def check_reply(reply: str) -> str:
    """A single-line SMTP reply "4NN/5NN [X.Y.Z] text" whose enhanced code (if any) matches."""
    match = _REPLY.match(reply)
    if match is None or (match.group(2) is not None and match.group(2) != match.group(1)):
        raise ValueError(f"not a single-line 4xx/5xx SMTP reply: {reply!r}")
    return reply


def strip_postfix_headers(raw: bytes, *, crlf: bool = True) -> bytes:
    """The message as the client sent it (after dot-unstuffing), from a delivered file.

    Drops the leading Return-Path, X-Original-To and Delivered-To fields and the first
    Received field (smtpd's own), and turns Postfix's LF line ends back into CRLF.
    """
    lines = raw.splitlines(keepends=True)

    def field_end(start: int) -> int:  # the line after this header field's continuations
        end = start + 1
        while end < len(lines) and lines[end][:1] in (b" ", b"\t"):
            end += 1
        return end

    def name(line: bytes) -> bytes:
        return line.split(b":", 1)[0].strip().lower()

    while lines and name(lines[0]) in _DELIVERY_HEADERS:
        del lines[: field_end(0)]
    if lines and name(lines[0]) == b"received":
        del lines[: field_end(0)]
    message = b"".join(lines)
    if crlf:
        message = re.sub(rb"\r?\n", b"\r\n", message)
    return message


def delivered_to(raw: bytes) -> list[str]:
    """The (lower-cased) Delivered-To addresses in a delivered message's header."""
    header = raw.split(b"\n\n", 1)[0]
    return [
        line.split(b":", 1)[1].strip().decode(errors="replace").lower()
        for line in header.split(b"\n")
        if line.lower().startswith(b"delivered-to:")
    ]


def _read_process(pid: int) -> tuple[ProcessInfo, bytes] | None:
    proc = Path("/proc") / str(pid)
    try:
        stat = (proc / "stat").read_text()
        cmdline = (proc / "cmdline").read_bytes()
        try:
            environ = (proc / "environ").read_bytes()
        except OSError:
            environ = b""
    except (FileNotFoundError, ProcessLookupError):
        return None
    # "pid (comm) state ppid pgrp ..." - comm may contain spaces and parentheses
    fields = stat.rsplit(")", 1)[1].split()
    info = ProcessInfo(
        pid=pid,
        ppid=int(fields[1]),
        pgid=int(fields[2]),
        state=fields[0],
        cmdline=cmdline.replace(b"\0", b" ").decode(errors="replace").strip(),
    )
    return info, environ


# milter protocol: the steps we ask the MTA to skip, and the commands that get no reply
_SMFIP_SKIP_ALL_BUT_RCPT = (
    0x01  # NOCONNECT
    | 0x02  # NOHELO
    | 0x04  # NOMAIL
    | 0x10  # NOBODY
    | 0x20  # NOHDRS
    | 0x40  # NOEOH
    | 0x100  # NOUNKNOWN
    | 0x200  # NODATA
)
_NO_REPLY_COMMANDS = frozenset(b"DAK")  # macros, abort, quit-new-connection


class _Milter:
    """Answers RCPT TO with the configured reply (milter protocol 6, RCPT stage only).

    Runs in threads of the test process: one accepting, one per smtpd session.
    """

    def __init__(self, reply_for: Callable[[str], str | None]) -> None:
        self.reply_for = reply_for
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sessions: dict[socket.socket, threading.Thread] = {}
        self._acceptor = threading.Thread(target=self._accept, name="milter", daemon=True)
        self._acceptor.start()

    def close(self, timeout: float = 5.0) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        self._acceptor.join(timeout)
        self._listener.close()
        with self._lock:
            sessions = dict(self._sessions)
        for connection, thread in sessions.items():
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)  # wakes the blocked recv()
            thread.join(timeout)

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            thread = threading.Thread(
                target=self._session, args=(connection,), name="milter-session", daemon=True
            )
            with self._lock:
                self._sessions[connection] = thread
            thread.start()

    def _session(self, connection: socket.socket) -> None:
        try:
            with connection, contextlib.suppress(OSError):
                connection.settimeout(120)
                self._serve(connection)
        finally:
            with self._lock:
                self._sessions.pop(connection, None)

    @staticmethod
    def _read(connection: socket.socket, size: int) -> bytes | None:
        data = b""
        while len(data) < size:
            chunk = connection.recv(size - len(data))
            if not chunk:
                return None
            data += chunk
        return data

    def _serve(self, connection: socket.socket) -> None:
        def send(command: bytes, data: bytes = b"") -> None:
            connection.sendall(struct.pack("!I", len(command) + len(data)) + command + data)

        while True:
            header = self._read(connection, 4)
            if header is None:
                return
            packet = self._read(connection, struct.unpack("!I", header)[0])
            if not packet:
                return
            command, data = packet[:1], packet[1:]
            if command == b"O":  # option negotiation: version, actions, protocol steps
                _version, _actions, offered = struct.unpack("!III", data[:12])
                send(b"O", struct.pack("!III", 6, 0, offered & _SMFIP_SKIP_ALL_BUT_RCPT))
            elif command == b"R":  # RCPT TO: "<address>\0[esmtp args\0...]"
                address = data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape").strip()
                reply = self.reply_for(address.removeprefix("<").removesuffix(">"))
                if reply is None:
                    send(b"c")  # continue
                else:  # SMFIR_REPLYCODE; "%" is the milter reply's escape character
                    send(b"y", reply.replace("%", "%%").encode() + b"\0")
            elif command == b"Q":
                return
            elif command[0] not in _NO_REPLY_COMMANDS:
                send(b"c")


class PrivatePostfix:
    """A Postfix MX of its own under `root`; see the module docstring.

    Use as a context manager or call start()/stop(). `host`/`port` is where it listens.
    """

    hostname = "mx.postfix.test"

    def __init__(
        self,
        root: Path,
        *,
        replies: Mapping[str, str] | None = None,
        access: Mapping[str, str] | None = None,
        main_cf: Mapping[str, str] | None = None,
        delivery_user: str = "nobody",
        milter: bool = True,
        services: tuple[str, ...] = (),
    ) -> None:
        self.root = root
        self.conf_dir = root / "conf"
        self.queue_dir = root / "queue"
        self.data_dir = self.queue_dir / "data"
        self.mailbox_dir = self.queue_dir / "mailbox"
        self.maildir = self.mailbox_dir / "inbox"
        self.log_path = root / "postfix.log"
        self.host = "127.0.0.1"
        self.port = 0
        self.replies: dict[str, str] = {}
        for address, reply in (replies or {}).items():
            self.set_reply(address, reply)
        self.access = dict(access or {})
        for address, action in self.access.items():
            if "\n" in address + action or not address.strip() or not action.strip():
                raise ValueError(f"bad access entry: {address!r} {action!r}")
        self.main_cf_overrides = dict(main_cf or {})
        self.delivery_user = delivery_user
        self.use_milter = milter  # False: no milter, so `replies` cannot be answered
        self.extra_services = services  # more master.cf lines (e.g. an smtp client transport)
        self.start_seconds: float | None = None
        self.stop_seconds: float | None = None
        self._reaper: subprocess.Popen[bytes] | None = None
        self._master_pid: int | None = None
        self._milter: _Milter | None = None

    # ---------------------------------------------------------------- configuration

    def reply_for(self, address: str) -> str | None:
        """The exact reply for RCPT TO:<address>, if any (address case does not matter)."""
        replies = dict(self.replies)  # a snapshot: the milter asks from its own threads
        reply = replies.get(address)
        if reply is None:
            lowered = {key.lower(): value for key, value in replies.items()}
            reply = lowered.get(address.lower())
        return reply

    def set_reply(self, address: str, reply: str | None) -> None:
        """Answer RCPT TO:<address> with exactly `reply` (None: accept again). Live."""
        if reply is None:
            self.replies.pop(address, None)
        else:
            self.replies[address] = check_reply(reply)

    def _main_cf(self, milter_port: int | None) -> dict[str, str]:
        delivery = pwd.getpwnam(self.delivery_user)
        error = "error:5.7.1 this test MX delivers nothing outside its own mailbox"
        settings = {
            "compatibility_level": "3.6",
            "queue_directory": str(self.queue_dir),
            # reachable by unprivileged daemons: see the module docstring
            "data_directory": f"/proc/self/cwd/{self.data_dir.name}",
            "maillog_file": str(self.log_path),
            "maillog_file_prefixes": str(self.root),
            "myhostname": self.hostname,
            "mydomain": "postfix.test",
            "myorigin": "$myhostname",
            "mydestination": "",
            "relay_domains": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "smtputf8_enable": "yes",
            "message_size_limit": str(50 * 1024 * 1024),
            "alias_maps": "",
            "alias_database": "",
            "local_recipient_maps": "",
            "biff": "no",
            "notify_classes": "",
            # no DNS: no reverse lookup of the client, native lookups if anything asks
            "smtpd_peername_lookup": "no",
            "smtp_host_lookup": "native",
            # keep the message as sent: no Message-ID/Date/From added for "local" clients
            "local_header_rewrite_clients": "",
            "in_flow_delay": "0s",
            "smtpd_error_sleep_time": "0s",
            "smtpd_soft_error_limit": "1000",
            "smtpd_hard_error_limit": "1000",
            "smtpd_client_restrictions": "",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "smtpd_recipient_restrictions": (
                f"check_recipient_access texthash:{self.conf_dir / 'recipient_access'}, permit"
            ),
            "smtpd_milters": f"inet:127.0.0.1:{milter_port}" if milter_port else "",
            "milter_default_action": "tempfail",
            "milter_connect_timeout": "10s",
            # every domain is ours: one catch-all Maildir, delivered as `delivery_user`
            "virtual_mailbox_domains": "static:all",
            "virtual_mailbox_base": f"/proc/self/cwd/{self.mailbox_dir.name}",
            "virtual_mailbox_maps": f"static:{self.maildir.name}/",
            "virtual_uid_maps": f"static:{delivery.pw_uid}",
            "virtual_gid_maps": f"static:{delivery.pw_gid}",
            "virtual_minimum_uid": "1",
            "virtual_mailbox_limit": "0",
            "default_transport": error,
            "relay_transport": error,
            "local_transport": error,
        }
        settings.update(self.main_cf_overrides)
        return settings

    def _master_cf(self) -> str:
        services = [
            f"{self.host}:{self.port} inet n - n - - smtpd",
            "cleanup unix n - n - 0 cleanup",
            "qmgr unix n - n 300 1 qmgr",
            "rewrite unix - - n - - trivial-rewrite",
            "bounce unix - - n - 0 bounce",
            "defer unix - - n - 0 bounce",
            "trace unix - - n - 0 bounce",
            "verify unix - - n - 1 verify",
            "flush unix n - n 1000? 0 flush",
            "proxymap unix - - n - - proxymap",
            "showq unix n - n - - showq",
            "error unix - - n - - error",
            "retry unix - - n - - error",
            "discard unix - - n - - discard",
            "virtual unix - n n - - virtual",
            "anvil unix - - n - 1 anvil",
            "scache unix - - n - 1 scache",
            "postlog unix-dgram n - n - 1 postlogd",
            *self.extra_services,
        ]
        return "".join(line + "\n" for line in services)

    def _make_directories(self) -> None:
        postfix = pwd.getpwnam("postfix")
        postdrop = grp.getgrnam("postdrop").gr_gid
        delivery = pwd.getpwnam(self.delivery_user)
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        # the queue directory tree as postfix-files describes it
        layout: list[tuple[Path, int, int, int]] = [(self.queue_dir, 0, 0, 0o755)]
        layout += [(self.queue_dir / name, postfix.pw_uid, 0, 0o700) for name in _QUEUES]
        layout += [
            (self.queue_dir / "maildrop", postfix.pw_uid, postdrop, 0o730),
            (self.queue_dir / "public", postfix.pw_uid, postdrop, 0o710),
            (self.queue_dir / "pid", 0, 0, 0o755),
            (self.data_dir, postfix.pw_uid, 0, 0o700),
            (self.mailbox_dir, delivery.pw_uid, delivery.pw_gid, 0o700),
        ]
        for path, uid, gid, mode in layout:
            path.mkdir(exist_ok=True)
            os.chown(path, uid, gid)
            os.chmod(path, mode)

    # ---------------------------------------------------------------- start / stop

    def start(self, timeout: float = 20.0) -> PrivatePostfix:
        if self._reaper is not None:
            raise PostfixError("already started")
        master = postfix_daemon_directory() / "master"
        if os.geteuid() != 0:
            raise PostfixError(NEEDS_ROOT)
        started = time.monotonic()
        try:
            self._make_directories()
            if self.use_milter:
                self._milter = _Milter(self.reply_for)
            settings = self._main_cf(self._milter.port if self._milter else None)
            (self.conf_dir / "main.cf").write_text(
                "".join(f"{name} = {value}\n" for name, value in settings.items())
            )
            (self.conf_dir / "recipient_access").write_text(
                "".join(f"{address.lower()} {action}\n" for address, action in self.access.items())
            )
            # the port may be taken between free_port() and master's bind(): try another
            for _attempt in range(3):
                self.port = free_port()
                (self.conf_dir / "master.cf").write_text(self._master_cf())
                self._backdate_configuration()
                self._spawn(master)
                if self._wait_ready(started + timeout):
                    self.start_seconds = time.monotonic() - started
                    return self
                if self._reaper is not None and self._reaper.poll() is None:
                    break  # alive but not answering in time
                # master exited during startup; its early errors go to syslog, not the log
                self._reaper = None
        except BaseException:
            self.stop()
            raise
        self.stop()
        reaper_stderr = (self.root / "reaper.stderr").read_text(errors="replace").strip()
        raise PostfixError(
            f"Postfix did not start listening on {self.host}:{self.port} "
            f"(configuration {self.conf_dir}); {reaper_stderr}\nlog:\n{self.log_tail()}"
        )

    def _spawn(self, master: Path) -> None:
        """Run `master -c CONFDIR` under a subreaper child of ours (see _REAPER)."""
        with (self.root / "reaper.stderr").open("ab") as stderr:
            self._reaper = subprocess.Popen(
                # -I -S: no site-packages, .pth files or environment: a quick start
                [sys.executable, "-I", "-S", "-c", _REAPER, str(master), "-c", str(self.conf_dir)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                start_new_session=True,  # no Ctrl-C for it: the fixture's teardown stops it
            )
        assert self._reaper.stdout is not None
        with self._reaper.stdout:
            line = self._reaper.stdout.readline()
        self._master_pid = int(line) if line.strip() else None

    def _backdate_configuration(self) -> None:
        """Postfix re-reads a main.cf or table file modified within the last ~2 s, in 300 ms
        steps, until it is that old (dict_load_file waits for the file to "stabilize"):
        over a second of every start. Files written in the past skip that wait."""
        past = time.time() - 60
        for path in self.conf_dir.iterdir():
            os.utime(path, (past, past))

    def _wait_ready(self, deadline: float) -> bool:
        """True once smtpd answers 220 on the port; False if master exits or time runs out."""
        while time.monotonic() < deadline:
            if self._reaper is None or self._reaper.poll() is not None:
                return False
            try:
                with socket.create_connection((self.host, self.port), timeout=5) as sock:
                    banner = b""
                    while not banner.endswith(b"\n") and (chunk := sock.recv(512)):
                        banner += chunk
                    if banner.startswith(b"220"):
                        sock.sendall(b"QUIT\r\n")
                        return True
            except OSError:
                pass
            time.sleep(0.02)
        return False

    def stop(self, timeout: float = 10.0) -> None:
        """Stop master and its children and reap them; SIGKILL whatever is left."""
        started = time.monotonic()
        try:
            if self._reaper is not None:
                # the reaper passes SIGTERM to master, which passes it to its children
                # and exits; the reaper exits once it has reaped all of them
                if self._reaper.poll() is None:
                    self._reaper.terminate()
                try:
                    self._reaper.wait(timeout)
                except subprocess.TimeoutExpired:
                    if self._master_pid is not None:
                        with contextlib.suppress(ProcessLookupError):
                            os.killpg(self._master_pid, signal.SIGKILL)
                    self._reaper.kill()
                    self._reaper.wait(timeout)
                self._reaper = None
            deadline = time.monotonic() + timeout
            while stragglers := self.processes():
                if time.monotonic() > deadline:
                    raise PostfixError(f"processes of {self.conf_dir} survive: {stragglers}")
                for process in stragglers:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(process.pid, signal.SIGKILL)
                time.sleep(0.02)
        finally:
            if self._milter is not None:
                self._milter.close(timeout)
                self._milter = None
        self.stop_seconds = time.monotonic() - started

    def __enter__(self) -> PrivatePostfix:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # ---------------------------------------------------------------- inspection

    @property
    def master_pid(self) -> int | None:
        """master's PID: the one we started, or the one in queue/pid/master.pid."""
        if self._master_pid is not None:
            return self._master_pid
        with contextlib.suppress(OSError, ValueError):
            return int((self.queue_dir / "pid" / "master.pid").read_text().split()[0])
        return None

    def processes(self, *, zombies: bool = False) -> list[ProcessInfo]:
        """Live processes of this instance: master, its process group and its children, and
        anything whose environment names this configuration directory (MAIL_CONFIG)."""
        master_pid = self.master_pid
        marker = b"MAIL_CONFIG=" + os.fsencode(self.conf_dir)
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            read = _read_process(int(entry))
            if read is None:
                continue
            info, environ = read
            ours = master_pid is not None and master_pid in (info.pid, info.ppid, info.pgid)
            # a zombie runs nothing: it only waits for its parent to reap it
            if (ours or marker in environ.split(b"\0")) and (zombies or info.state != "Z"):
                found.append(info)
        return found

    def message_paths(self) -> list[Path]:
        """Delivered Maildir files, oldest first."""
        paths = [
            path
            for sub in ("new", "cur")
            if (self.maildir / sub).is_dir()
            for path in (self.maildir / sub).iterdir()
        ]
        return sorted(paths, key=lambda path: (path.stat().st_mtime_ns, path.name))

    def messages(self, recipient: str | None = None) -> list[bytes]:
        """Delivered messages exactly as stored (LF line ends, Postfix's headers in front);
        with `recipient`, only the copies whose Delivered-To is that address."""
        raw = [path.read_bytes() for path in self.message_paths()]
        if recipient is None:
            return raw
        return [message for message in raw if recipient.lower() in delivered_to(message)]

    def wait_for_messages(self, count: int, timeout: float = 10.0) -> list[bytes]:
        """Poll until at least `count` messages are delivered; AssertionError after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            messages = self.messages()
            if len(messages) >= count:
                return messages
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{len(messages)} of {count} messages delivered after {timeout}s; "
                    f"log:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    strip_postfix_headers = staticmethod(strip_postfix_headers)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:]) or "(empty)"
