"""Start and stop `kumoclient run` as a real process on a free loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.ports import free_port


def kumoclient(
    *args: str | Path, cwd: Path | None = None, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a kumoclient command to completion."""
    return subprocess.run(
        [sys.executable, "-m", "kumoclient", *map(str, args)],
        capture_output=True,
        text=stdin is None,
        input=stdin,
        timeout=60,
        check=False,
        cwd=cwd,
    )


class DaemonProcess:
    """`kumoclient run --data-dir DIR --listen 127.0.0.1:PORT [--policy FILE]`."""

    def __init__(
        self,
        data_dir: Path,
        policy: Path | None = None,
        port: int | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.policy = policy
        self.port = port or free_port()
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.extra_args: list[str] = []  # more `kumoclient run` options, e.g. --http
        self.nofile: int | None = None  # RLIMIT_NOFILE (soft and hard) of the daemon
        self.listen_option = True  # False: the policy's listeners as they are (port among them)
        home = data_dir.parent if data_dir is not None else (cwd or Path.cwd())
        self.stderr_path = home / f"daemon-{self.port}.stderr"

    def start(self, wait: bool = True) -> DaemonProcess:
        args = [sys.executable, "-m", "kumoclient", "run"]
        if self.listen_option:
            args += ["--listen", f"127.0.0.1:{self.port}"]
        if self.data_dir is not None:
            args += ["--data-dir", str(self.data_dir)]
        if self.policy is not None:
            args += ["--policy", str(self.policy)]
        args += self.extra_args
        if self.nofile:  # util-linux's prlimit: no preexec_fn in a test process with threads
            args = ["prlimit", f"--nofile={self.nofile}:{self.nofile}", "--", *args]
        self.stderr_path.parent.mkdir(parents=True, exist_ok=True)
        with self.stderr_path.open("ab") as stderr:
            self.proc = subprocess.Popen(
                args, stdout=subprocess.DEVNULL, stderr=stderr, cwd=self.cwd
            )
        if wait:
            self.wait_listening()
        return self

    def wait_listening(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}: {self.stderr()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"daemon not listening on {self.port}: {self.stderr()}")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signum)

    def kill(self) -> None:
        """SIGKILL and reap."""
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM and wait for the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)
