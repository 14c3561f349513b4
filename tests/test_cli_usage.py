"""Wrong usage never crashes (issue 15, item 9): every wrong value, missing or unreadable file
and unusable directory gives one line on stderr and its sysexits code, never a traceback.
Each case runs the real `kumoclient` entry point as a process."""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_POLICY = ROOT / "kumoclient" / "policies" / "default.lua"
MESSAGE = b"Subject: usage\n\nhello\n"


def kumoclient(
    *args: str | Path, cwd: Path | None = None, stdout: int | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kumoclient", *map(str, args)],
        stdin=subprocess.DEVNULL,
        stdout=stdout if stdout is not None else subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
    )


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    """The error line (operational logs, JSON lines, may come before it)."""
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if not line.startswith("{")]
    assert len(lines) == 1, done.stderr
    return lines[0]


@dataclass(frozen=True)
class Files:
    root: Path
    message: Path
    a_file: Path
    a_dir: Path

    def format(self, arg: str) -> str:
        return arg.format(root=self.root, message=self.message, file=self.a_file, dir=self.a_dir)


@pytest.fixture
def files(tmp_path: Path) -> Files:
    message = tmp_path / "message.eml"
    message.write_bytes(MESSAGE)
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory\n")
    a_dir = tmp_path / "a-dir"
    a_dir.mkdir()
    return Files(tmp_path, message, a_file, a_dir)


INJECT = ["inject", "--from", "a@example.com", "--to", "b@example.net"]
SEND = ["send", "--from", "a@example.com", "--to", "b@example.net", "--mx", "127.0.0.1:9"]
REWRITE = ["policy", "rewrite", str(DEFAULT_POLICY)]

# (case, arguments ({root}, {message}, {file} and {dir} are filled in), exit code, stderr)
CASES = [
    # a directory that cannot be written: 73 (EX_CANTCREAT)
    ("run-data-dir-is-a-file", ["run", "--data-dir", "{file}"], 73, "cannot write to {file}/"),
    ("run-data-dir-cannot-be-made", ["run", "--data-dir", "/proc/kc/x"], 73, "cannot write to"),
    (
        "inject-data-dir-is-a-file",
        [*INJECT, "--data-dir", "{file}", "{message}"],
        73,
        "cannot write to {file}/spool: a part of the path is a file",
    ),
    ("inject-data-dir-in-proc", [*INJECT, "--data-dir", "/proc", "{message}"], 73, "/proc/spool"),
    # listen addresses: 64
    (
        "run-listen-not-an-address",
        ["run", "--data-dir", "{root}/d", "--listen", "notanaddress"],
        64,
        "--listen 'notanaddress': expected HOST:PORT with a port from 0 to 65535",
    ),
    (
        "run-listen-port-over-65535",
        ["run", "--data-dir", "{root}/d", "--listen", "127.0.0.1:99999"],
        64,
        "--listen '127.0.0.1:99999': expected HOST:PORT",
    ),
    (
        "run-listen-without-port",
        ["run", "--data-dir", "{root}/d", "--listen", "127.0.0.1:"],
        64,
        "expected HOST:PORT",
    ),
    (
        "run-http-port-over-65535",
        ["run", "--data-dir", "{root}/d", "--http", "127.0.0.1:70000"],
        64,
        "--http '127.0.0.1:70000': expected HOST:PORT",
    ),
    ("run-workers-not-a-number", ["run", "--workers", "many"], 64, "--workers: expected 0..64"),
    # input files: 66 (EX_NOINPUT)
    (
        "inject-missing-file",
        [*INJECT, "--data-dir", "{root}/d", "{root}/nope.eml"],
        66,
        "cannot read {root}/nope.eml: No such file or directory",
    ),
    ("inject-file-is-a-directory", [*INJECT, "--data-dir", "{root}/d", "{dir}"], 66, "Is a dir"),
    ("send-missing-file", [*SEND, "{root}/nope.eml"], 66, "cannot read {root}/nope.eml"),
    (
        "replay-missing-log",
        [*REWRITE, "--replay", "{root}/nope.jsonl"],
        66,
        "cannot read {root}/nope.jsonl",
    ),
    ("replay-log-is-a-directory", [*REWRITE, "--replay", "{dir}"], 66, "Is a directory"),
    # bad input data: 65
    (
        "inject-control-character-in-address",
        ["inject", "--from", "a@example.com", "--to", "b\x01@example.net", "{message}"],
        65,
        "invalid address 'b\\x01@example.net': it contains CR, LF, NUL or another control",
    ),
    (
        "inject-domain-with-punctuation",
        ["inject", "--from", "a@example.com", "--to", "b@ex!ample.net", "{message}"],
        65,
        "invalid address 'b@ex!ample.net': the domain is neither a host name",
    ),
    (
        "inject-sender-without-domain",
        ["inject", "--from", "postmaster", "--to", "b@example.net", "{message}"],
        65,
        "invalid address 'postmaster': expected local-part@domain",
    ),
    (
        "inject-tenant-with-separator",
        [*INJECT, "--tenant", "a@b", "--data-dir", "{root}/d", "{message}"],
        65,
        "--tenant 'a@b': a tenant must not contain '@'",
    ),
    (
        "inject-empty-campaign",
        [*INJECT, "--campaign", "", "--data-dir", "{root}/d", "{message}"],
        65,
        "--campaign '': a campaign must not be empty",
    ),
    ("send-recipient-without-domain", [*SEND[:3], "--to", "b", "{message}"], 65, "'b': expected"),
    (
        "replay-log-not-utf8",
        [*REWRITE, "--replay", "{root}/binary.jsonl"],
        65,
        "binary.jsonl: not a delivery log: byte 0 is not UTF-8",
    ),
    (
        "replay-record-of-the-wrong-shape",
        [*REWRITE, "--replay", "{root}/list.jsonl"],
        65,
        "list.jsonl:1: not a log record this replay can read",
    ),
    (
        "replay-record-without-a-field",
        [*REWRITE, "--replay", "{root}/nofield.jsonl"],
        65,
        "nofield.jsonl:1: the log record has no 'queue' field",
    ),
    # other usage errors: 64
    ("send-mx-not-a-host", [*SEND[:-2], "--mx", "bad:port:x", "{message}"], 64, "--mx: "),
    ("send-mx-port-over-65535", [*SEND[:-2], "--mx", "h:99999", "{message}"], 64, "'99999'"),
    ("send-mx-empty", [*SEND[:-2], "--mx", "", "{message}"], 64, "--mx: expected a non-empty"),
    ("rewrite-empty-domain", [*REWRITE, "--response", "450 x", "--domain", ""], 64, "--domain"),
    ("admin-url-not-a-url", ["admin", "queues", "--url", "notaurl"], 64, "expected an http://"),
    ("admin-url-ftp", ["admin", "queues", "--url", "ftp://127.0.0.1"], 64, "expected an http://"),
    ("admin-url-no-host", ["admin", "queues", "--url", "http://"], 64, "the URL has no host"),
    (
        "admin-url-port-over-65535",
        ["admin", "queues", "--url", "http://127.0.0.1:99999"],
        64,
        "--url 'http://127.0.0.1:99999': not a URL",
    ),
    ("admin-url-with-a-space", ["admin", "queues", "--url", "http://a b"], 64, "white space"),
    ("unknown-option", ["queue", "list", "--frobnicate"], 64, "unrecognized arguments"),
    ("log-level-not-a-level", ["--log-level", "loud", "queue", "list"], 64, "--log-level"),
    # configuration (78) stays: a policy that is not there
    ("run-policy-missing", ["run", "--policy", "{root}/nope.lua"], 78, "cannot read policy file"),
]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [(args, code, message) for _, args, code, message in CASES],
    ids=[name for name, _, _, _ in CASES],
)
def test_wrong_usage_is_one_line_and_its_exit_code(
    files: Files, args: list[str], code: int, message: str
) -> None:
    (files.root / "binary.jsonl").write_bytes(b"\xff\xfe\n")
    (files.root / "list.jsonl").write_text(json.dumps({"type": "Bounce", "response": [1]}) + "\n")
    (files.root / "nofield.jsonl").write_text(
        json.dumps({"type": "Bounce", "response": {"code": 550, "content": "no"}}) + "\n"
    )
    done = kumoclient(*(files.format(arg) for arg in args), cwd=files.root)
    line = one_error_line(done)
    assert done.returncode == code, done.stderr
    assert files.format(message) in line
    assert not list(files.root.rglob("*.msg"))  # nothing was dropped


def test_global_options_work_after_the_sub_command(files: Files) -> None:
    before = kumoclient("--log-format", "console", "policy", "check", DEFAULT_POLICY)
    after = kumoclient("policy", "check", DEFAULT_POLICY, "--log-format", "console")
    assert before.returncode == after.returncode == 0, after.stderr
    assert after.stdout == before.stdout
    rewrite = kumoclient(*REWRITE, "--response", "450 x", "--log-level", "error")
    assert rewrite.returncode == 0, rewrite.stderr
    moved = kumoclient("run", "--log-format", "console", "--data-dir", files.a_file)
    assert moved.returncode == 73  # parsed: the data directory is what is wrong


def test_version_and_help_exit_0() -> None:
    version = kumoclient("--version")
    assert version.returncode == 0
    assert re.fullmatch(r"kumoclient \S+\n", version.stdout)
    assert kumoclient("inject", "--help").returncode == 0


def test_a_reader_that_goes_away_is_not_an_error(files: Files) -> None:
    read, write = os.pipe()
    os.close(read)  # every write to stdout fails with EPIPE
    try:
        done = kumoclient("policy", "check", DEFAULT_POLICY, stdout=write)
        helped = kumoclient("--help", stdout=write)
    finally:
        os.close(write)
    assert done.returncode == 141  # 128 + SIGPIPE, as a shell shows a command it stopped
    assert helped.returncode in (0, 141)  # argparse itself ignores the failed write
    assert done.stderr == helped.stderr == ""


class _Answer(http.server.BaseHTTPRequestHandler):
    """A web server that is not kumoclient: 200 with HTML for /html, an HTML 404 otherwise."""

    def do_GET(self) -> None:
        if self.path.startswith("/html"):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html>hello</html>")
        else:
            self.send_error(404)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def web_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def smtp_port() -> Iterator[int]:
    """A port that answers like an SMTP server: a greeting, then it closes."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"220 smtp.example ESMTP\r\n")
                time.sleep(0.2)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def test_admin_pointed_at_something_else_is_unavailable(web_server: str, smtp_port: int) -> None:
    smtp = kumoclient("admin", "queues", "--url", f"http://127.0.0.1:{smtp_port}")
    assert smtp.returncode == 69
    assert "the server did not answer in HTTP: is this the HTTP listener's port?" in (
        one_error_line(smtp)
    )
    html = kumoclient("admin", "queues", "--url", f"{web_server}/html")
    assert html.returncode == 69
    assert "the answer is not JSON" in one_error_line(html)
    not_found = kumoclient("admin", "queues", "--url", web_server)
    assert not_found.returncode == 69
    assert "the server answered 404" in one_error_line(not_found)


def test_run_on_port_0_logs_the_port_it_bound(tmp_path: Path) -> None:
    """`--listen HOST:0` binds a free port and says which (here with the global option
    `--log-format` given after the sub-command)."""
    stderr = tmp_path / "stderr"
    with stderr.open("wb") as err:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "kumoclient", "run", "--data-dir", tmp_path / "data"),
                *("--listen", "127.0.0.1:0", "--log-format", "console"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + 30
        while not (found := re.search(r"bound=\['127\.0\.0\.1:(\d+)'\]", stderr.read_text())):
            assert process.poll() is None, stderr.read_text()
            assert time.monotonic() < deadline, stderr.read_text()
            time.sleep(0.05)
        port = int(found[1])
        assert port != 0
        with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
            assert client.recv(100).startswith(b"220 ")
        assert "kumoclient running" in stderr.read_text()
        assert not stderr.read_text().lstrip().startswith("{")  # console, not JSON
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="chattr +i needs root")
def test_a_data_directory_nobody_may_write_is_73(tmp_path: Path, files: Files) -> None:
    locked = tmp_path / "locked"
    (locked / "spool").mkdir(parents=True)
    made = subprocess.run(["chattr", "+i", str(locked / "spool")], check=False)
    if made.returncode != 0:
        pytest.skip("this file system does not take chattr +i")
    try:
        done = kumoclient(*INJECT, "--data-dir", locked, files.message)
        run = kumoclient("run", "--data-dir", locked, "--listen", "127.0.0.1:0")
    finally:
        subprocess.run(["chattr", "-i", str(locked / "spool")], check=True)
    for result in (done, run):
        assert result.returncode == 73, result.stderr
        assert f"cannot write to {locked}/spool: the directory is not writable" in (
            one_error_line(result)
        )


def test_a_closed_stdin_is_no_input(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "kumoclient", *INJECT, "--data-dir", str(tmp_path), "-"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        preexec_fn=lambda: os.close(0),  # started as `kumoclient inject ... - <&-`
    )
    assert done.returncode == 66
    assert one_error_line(done) == "kumoclient: cannot read stdin: standard input is closed"


def test_a_log_directory_the_policy_names_that_cannot_be_made_is_73(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("in the way\n")
    policy = tmp_path / "policy.lua"
    policy.write_text(
        "kumo.on('init', function()\n"
        f"  kumo.configure_local_logs {{ log_dir = '{blocker}/logs' }}\n"
        "end)\n"
    )
    done = kumoclient("run", "--policy", policy, "--listen", "127.0.0.1:0", cwd=tmp_path)
    assert done.returncode == 73
    assert one_error_line(done) == (
        f"kumoclient: cannot write to {blocker}/logs: a part of the path is a file, not a directory"
    )
