"""Durable acceptance rate over SMTP: kumoclient against Postfix, side by side in one run.

Both systems get the same load from Postfix's own generator, `smtp-source -s 20` (20 parallel
sessions, 2 KB messages), on loopback; each acknowledges a message only once it is on disk
(kumoclient: write, fsync, rename, directory fsync, grouped; Postfix: cleanup's fsynced queue
file). Postfix is a private instance (its own config, queue and data directories under a
temporary directory, a loopback port, mail put on hold so nothing is delivered) started and
stopped by PID. Rounds alternate between the systems; the median round is reported.

A second table measures the spool alone, in process: 20 concurrent submitters storing 2 KB
messages with group commit on and off (the choice the spool makes).

    python bench/spool.py [--messages 5000] [--rounds 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from kumoclient.spool import Spool, Submission

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {port}")


def smtp_source(port: int, messages: int) -> float:
    """Seconds `smtp-source -s 20` takes to send `messages` 2 KB messages."""
    started = time.perf_counter()
    subprocess.run(
        [
            "smtp-source",
            "-s",
            "20",
            "-m",
            str(messages),
            "-l",
            "2048",
            "-f",
            "sender@example.com",
            "-t",
            "rcpt@example.net",
            f"127.0.0.1:{port}",
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return time.perf_counter() - started


class PrivatePostfix:
    """A Postfix instance of its own, holding every accepted message in its queue."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.etc = base / "etc"

    def start(self) -> None:
        for sub in ("etc", "queue", "data"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        master = Path("/etc/postfix/master.cf").read_text().splitlines()
        lines = [line for line in master if not line.startswith("smtp      inet")]
        lines.append(f"127.0.0.1:{self.port} inet n - n - - smtpd")
        (self.etc / "master.cf").write_text("\n".join(lines) + "\n")
        (self.etc / "main.cf").write_text(
            "\n".join(
                [
                    "compatibility_level = 3.6",
                    f"queue_directory = {self.base / 'queue'}",
                    f"data_directory = {self.base / 'data'}",
                    "mail_owner = postfix",
                    "setgid_group = postdrop",
                    "inet_interfaces = 127.0.0.1",
                    "inet_protocols = ipv4",
                    "myhostname = bench.localdomain",
                    "mydestination =",
                    "mynetworks = 127.0.0.0/8",
                    "alias_maps =",
                    "alias_database =",
                    "smtpd_recipient_restrictions = permit_mynetworks, reject",
                    "smtpd_end_of_data_restrictions = check_client_access static:HOLD",
                    f"maillog_file = {self.base / 'maillog'}",
                    "default_process_limit = 200",
                ]
            )
            + "\n"
        )
        shutil.chown(self.base / "data", user="postfix")
        subprocess.run(["postfix", "-c", str(self.etc), "check"], check=True, timeout=60)
        subprocess.run(
            ["postfix", "-c", str(self.etc), "start"], check=True, timeout=60, capture_output=True
        )
        wait_port(self.port)

    def stop(self) -> None:
        pid_file = self.base / "queue" / "pid" / "master.pid"
        if pid_file.exists():
            pid = int(pid_file.read_text().split()[0])
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    return
                time.sleep(0.1)
            os.kill(pid, signal.SIGKILL)

    def queued(self) -> int:
        return sum(1 for p in (self.base / "queue" / "hold").rglob("*") if p.is_file())


class Kumoclient:
    """`kumoclient run` on its default policy with a private data directory."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kumoclient",
                "run",
                "--data-dir",
                str(self.base),
                "--listen",
                f"127.0.0.1:{self.port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)

    def queued(self) -> int:
        return len(list((self.base / "spool" / "data").iterdir()))


def acceptance(messages: int, rounds: int, tmp: Path) -> dict[str, float]:
    rates: dict[str, list[float]] = {"kumoclient": [], "postfix": []}
    for round_number in range(rounds):
        for name, system in (
            ("postfix", PrivatePostfix(tmp / f"pf{round_number}")),
            ("kumoclient", Kumoclient(tmp / f"kc{round_number}")),
        ):
            system.start()
            try:
                seconds = smtp_source(system.port, messages)
                time.sleep(0.5)
                stored = system.queued()
            finally:
                system.stop()
            if stored < messages:
                raise RuntimeError(f"{name} holds {stored} of {messages} messages")
            rates[name].append(messages / seconds)
            print(
                f"  round {round_number + 1}: {name:<10} {messages / seconds:8.0f} msg/s",
                flush=True,
            )
    kc, pf = statistics.median(rates["kumoclient"]), statistics.median(rates["postfix"])
    return {"kumoclient_msg_per_s": kc, "postfix_msg_per_s": pf, "ratio": kc / pf}


async def spool_only(tmp: Path, group_commit: bool, messages: int) -> float:
    spool = Spool(tmp / f"spool-{group_commit}-{time.monotonic_ns()}", group_commit=group_commit)
    await spool.start()
    content = b"Subject: bench\r\n\r\n" + b"x" * 2030
    per_writer = messages // 20

    async def writer(index: int) -> None:
        for n in range(per_writer):
            sub = Submission("a@example.com", (f"r{index}-{n}@example.net",), content)
            await spool.store(spool.prepare(sub), content)

    started = time.perf_counter()
    await asyncio.gather(*(writer(i) for i in range(20)))
    elapsed = time.perf_counter() - started
    await spool.close()
    return per_writer * 20 / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "spool.json")
    args = parser.parse_args()
    for tool in ("smtp-source", "postfix"):
        if shutil.which(tool) is None:
            print(f"{tool} not found: apt-get install postfix", file=sys.stderr)
            return 69
    with tempfile.TemporaryDirectory(dir="/var/tmp") as name:
        tmp = Path(name)
        os.chmod(tmp, 0o755)
        print(f"SMTP acceptance, smtp-source -s 20, {args.messages} x 2 KB, {args.rounds} rounds")
        smtp = acceptance(args.messages, args.rounds, tmp)
        print("spool alone, 20 concurrent submitters, group commit on / off")
        modes = {}
        for mode in (True, False):
            runs = [asyncio.run(spool_only(tmp, mode, 2000)) for _ in range(args.rounds)]
            modes["group_commit" if mode else "per_message_fsync"] = statistics.median(runs)
    print(f"\n{'system':<12} {'msg/s (median)':>15}")
    print(f"{'kumoclient':<12} {smtp['kumoclient_msg_per_s']:>15,.0f}")
    print(f"{'postfix':<12} {smtp['postfix_msg_per_s']:>15,.0f}")
    print(f"ratio kumoclient/postfix: {smtp['ratio']:.2f}x (target >= 1.0x)")
    print(
        f"spool alone: group commit {modes['group_commit']:,.0f} msg/s, "
        f"per-message fsync {modes['per_message_fsync']:,.0f} msg/s"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"smtp": smtp, "spool_alone": modes}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
