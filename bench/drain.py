"""Delivery rate: the engine draining a pre-filled spool, against a bare aiosmtplib client.

Both send the same N 2 KB messages to Postfix's `smtp-sink` on loopback over the same number
of connections. The bare client sends from memory with `SMTP.sendmail()` and nothing else;
the engine does all of its work: enumerate the spool, schedule, read each message from disk,
run the transaction, write a Delivery log record, and remove the message from the spool
(log fsync first). Rounds alternate between the two; the median round is reported, with the
ratio engine / bare client. The target (issue 4) is a ratio of at least 0.70.

    python bench/drain.py [--messages 20000] [--connections 20] [--rounds 3] [--json FILE]

Needs `smtp-sink` (Debian package postfix).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiosmtplib

from kumoclient.engine.engine import Engine
from kumoclient.policy.runtime import PolicyHolder
from kumoclient.spool import Spool, Submission

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.systems import BenchError, postfix_tool, wait_port
from tests.integration.postfix import free_port

SENDER = "bench@example.com"


def content(index: int) -> bytes:
    head = f"From: {SENDER}\r\nTo: r{index}@example.net\r\nSubject: drain {index}\r\n\r\n"
    line = b"x" * 76 + b"\r\n"
    return head.encode() + line * ((2048 - len(head)) // len(line))


POLICY = """
kumo.on('get_queue_config', function(domain, tenant, campaign, routing_domain)
  return kumo.make_queue_config {{
    protocol = {{ smtp = {{ mx_list = {{ '127.0.0.1:{port}' }} }} }},
  }}
end)
kumo.on('get_egress_path_config', function(routing_domain, egress_source, site_name)
  return kumo.make_egress_path {{
    prohibited_hosts = {{}}, enable_tls = 'Disabled', connection_limit = {connections},
  }}
end)
"""


async def fill(spool_dir: Path, messages: int) -> None:
    spool = Spool(spool_dir)
    await spool.start()
    batch = 500
    for start in range(0, messages, batch):
        stores = []
        for index in range(start, min(messages, start + batch)):
            body = content(index)
            submission = Submission(SENDER, (f"r{index}@example.net",), body)
            stores.append(spool.store(spool.prepare(submission), body))
        await asyncio.gather(*stores)
    await spool.close()


async def run_engine(work: Path, port: int, messages: int, connections: int) -> float:
    policy = work / "policy.lua"
    policy.write_text(POLICY.format(port=port, connections=connections))
    engine = Engine(PolicyHolder(policy), data_dir=work)
    done = asyncio.get_running_loop().create_future()
    delivered = 0

    def count(record: dict[str, object]) -> None:
        nonlocal delivered
        if record["type"] == "Delivery":
            delivered += 1
            if delivered == messages and not done.done():
                done.set_result(None)
        elif record["type"] != "Reception":
            raise SystemExit(f"unexpected record: {record}")

    engine.subscribe(count)
    started = time.perf_counter()
    await engine.start()
    await asyncio.wait_for(done, 600)
    elapsed = time.perf_counter() - started
    await engine.stop()
    left = len(engine.spool.ids())
    if left:
        raise SystemExit(f"{left} messages left in the spool after the drain")
    return elapsed


async def run_bare(port: int, messages: int, connections: int) -> float:
    bodies = [content(i) for i in range(messages)]
    queue = list(range(messages))

    async def worker() -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await smtp.connect()
        while queue:
            index = queue.pop()
            await smtp.sendmail(SENDER, [f"r{index}@example.net"], bodies[index])
        await smtp.quit()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    return time.perf_counter() - started


def start_sink(port: int) -> subprocess.Popen[bytes]:
    try:
        program = postfix_tool("smtp-sink")
    except BenchError as exc:
        raise SystemExit(str(exc)) from None
    sink = subprocess.Popen(
        [program, "-u", "nobody", f"127.0.0.1:{port}", "1024"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port, 30.0)
    return sink


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    port = free_port()
    sink = start_sink(port)
    engine_rates: list[float] = []
    bare_rates: list[float] = []
    try:
        for round_number in range(1, args.rounds + 1):
            with tempfile.TemporaryDirectory(prefix="kc-drain-") as tmp:
                work = Path(tmp)
                asyncio.run(fill(work / "spool", args.messages))
                engine = args.messages / asyncio.run(
                    run_engine(work, port, args.messages, args.connections)
                )
            bare = args.messages / asyncio.run(run_bare(port, args.messages, args.connections))
            engine_rates.append(engine)
            bare_rates.append(bare)
            print(
                f"round {round_number}: engine {engine:,.0f} msg/s, bare aiosmtplib "
                f"{bare:,.0f} msg/s, ratio {engine / bare:.2f}",
                flush=True,
            )
    finally:
        sink.terminate()
        sink.wait(10)
    ratios = [e / b for e, b in zip(engine_rates, bare_rates, strict=True)]
    result = {
        "messages": args.messages,
        "connections": args.connections,
        "engine_msg_per_s": statistics.median(engine_rates),
        "bare_aiosmtplib_msg_per_s": statistics.median(bare_rates),
        "ratio_median": statistics.median(ratios),
        "ratios": ratios,
    }
    print(
        f"\nmedian of {args.rounds}: engine {result['engine_msg_per_s']:,.0f} msg/s, "
        f"bare aiosmtplib {result['bare_aiosmtplib_msg_per_s']:,.0f} msg/s, "
        f"ratio {result['ratio_median']:.2f} (target >= 0.70)"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
