"""Memory a `kumoclient run` daemon takes for concurrent large DATA sections.

Starts a real daemon (a policy allowing `--size` messages and setting `max_data_in_memory`
to `--budget`), sends `--clients` messages of `--size` MiB at once over SMTP, waits for every
`250`, and reports the daemon's resident memory before (VmRSS) and at its peak (VmHWM, from
/proc). The final dots go out once every client has sent all its data or made no progress
for 2 s (the daemon stopped reading from it): the time includes those 2 s when it did. With
`--source DIR` it measures another checkout of kumoclient (for instance the listener before
the memory budget: `git archive <commit> kumoclient | tar -x -C DIR`).

    python bench/data_memory.py [--clients 12] [--size 25] [--budget 64MiB] [--source DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as `python bench/data_memory.py`
    sys.path.insert(0, str(ROOT))

from tests.ports import free_port  # noqa: E402


def status(pid: int, field: str) -> int:
    """A /proc/<pid>/status memory field, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


async def send(port: int, content: bytes, sent: asyncio.Barrier) -> str:
    """One message; its final dot only once every client has sent (or tried to send) all
    of its data: the worst case, every session holding a whole message at once."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:

        async def reply() -> str:
            line = await reader.readline()
            while line[3:4] == b"-":
                line = await reader.readline()
            return line.decode().rstrip()

        await reply()
        for command in (b"EHLO bench", b"MAIL FROM:<a@example.com>", b"RCPT TO:<b@example.net>"):
            writer.write(command + b"\r\n")
            await reply()
        writer.write(b"DATA\r\n")
        await reply()
        writer.write(content)
        transport = writer.transport
        while transport.get_write_buffer_size():
            left = transport.get_write_buffer_size()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(writer.drain(), 2)
            if transport.get_write_buffer_size() == left:
                break  # no progress for 2 s: the daemon stopped reading (its memory budget)
        await sent.wait()
        writer.write(b".\r\n")
        await writer.drain()
        return await reply()
    finally:
        writer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--size", type=int, default=25, help="MiB per message")
    parser.add_argument("--budget", default="64MiB", help="max_data_in_memory ('' for none)")
    parser.add_argument("--source", type=Path, help="a kumoclient checkout to run instead")
    args = parser.parse_args()
    line = b"x" * 76 + b"\r\n"
    content = b"Subject: big\r\n\r\n" + line * (args.size * 1024 * 1024 // len(line))
    budget = f", max_data_in_memory = '{args.budget}'" if args.budget else ""
    with tempfile.TemporaryDirectory() as tmp:
        policy = Path(tmp) / "policy.lua"
        policy.write_text(
            "kumo.on('init', function()\n"
            f"  kumo.start_esmtp_listener {{ max_message_size = '{args.size + 5}MiB'{budget} }}\n"
            "end)\n"
        )
        port = free_port()
        env = dict(os.environ)
        if args.source:
            env["PYTHONPATH"] = str(args.source)
        daemon = subprocess.Popen(
            [
                *(sys.executable, "-m", "kumoclient", "run", "--data-dir", f"{tmp}/data"),
                *("--listen", f"127.0.0.1:{port}", "--policy", str(policy)),
            ],
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=tmp,  # (not this checkout's directory: `--source` would not be the one run)
        )
        try:
            for _ in range(300):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.1)
            time.sleep(0.5)
            before = status(daemon.pid, "VmRSS")

            async def all_of_them() -> list[str]:
                sent = asyncio.Barrier(args.clients)
                return await asyncio.gather(
                    *(send(port, content, sent) for _ in range(args.clients))
                )

            started = time.monotonic()
            replies = asyncio.run(all_of_them())
            took = time.monotonic() - started
            peak = status(daemon.pid, "VmHWM")
        finally:
            daemon.terminate()
            daemon.wait(30)
    accepted = sum(r.startswith("250") for r in replies)
    if accepted < len(replies):
        print("refused:", sorted(set(replies) - {r for r in replies if r.startswith("250")}))
    print(
        f"{args.clients} x {args.size} MiB, budget {args.budget or 'none'}: "
        f"{accepted} accepted in {took:.1f} s; RSS before {before / 1024:.0f} MiB, "
        f"peak {peak / 1024:.0f} MiB (+{(peak - before) / 1024:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
