"""Durable acceptance rate over SMTP: kumoclient against Postfix, side by side in one run.

Both systems get the same load from Postfix's own generator, `smtp-source -s 20` (20 parallel
sessions, 2 KB messages), on loopback; each acknowledges a message only once it is on disk
(kumoclient: write, fsync, rename, directory fsync, grouped; Postfix: cleanup's fsynced queue
file). Postfix is the private instance of bench/systems.py (its own config, queue and data
directories, a loopback port, every accepted message put on hold); kumoclient is `kumoclient
run` with its deliveries suspended (`kumoclient admin suspend`), extra options passed with
`--kumoclient-arg` (e.g. `--kumoclient-arg=--workers --kumoclient-arg=2`). Both are started
and stopped by PID. Rounds alternate between the systems; the median round is reported.

kumoclient's policy registers no SMTP server event; `--rcpt-handler` adds one
`smtp_server_rcpt_to` handler (KumoMTA's reference example, which refuses no recipient of this
load) to measure what a handler at RCPT costs: the listener then asks the policy once per
recipient and answers that RCPT when the handler has run.

A second table measures the spool alone, in process: 20 concurrent submitters storing 2 KB
messages with group commit on and off (the choice the spool makes).

    python bench/spool.py [--messages 5000] [--rounds 3] [--json FILE] [--kumoclient-arg ARG]
                          [--rcpt-handler]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.systems import (
    BenchError,
    BenchPostfix,
    KumoclientDaemon,
    make_tmp_root,
    relay_policy,
    require_tools,
    smtp_source,
)
from kumoclient.spool import Spool, Submission
from tests.integration.postfix import free_port

ROOT = Path(__file__).resolve().parents[1]
# Postfix holds every message it accepts (nothing is delivered)
HOLD = {
    "smtpd_end_of_data_restrictions": "check_client_access static:HOLD",
    "smtpd_recipient_restrictions": "permit",
    "default_process_limit": "200",
}


def postfix_round(base: Path, messages: int) -> float:
    postfix = BenchPostfix(base, HOLD)
    postfix.start()
    try:
        started = time.perf_counter()
        smtp_source(postfix.port, messages)
        seconds = time.perf_counter() - started
        time.sleep(0.5)
        held = postfix.queue_count("hold")
    finally:
        postfix.stop()
    if held < messages:
        raise RuntimeError(f"postfix holds {held} of {messages} messages")
    return messages / seconds


# docs/reference/events/smtp_server_rcpt_to.md's example (smtp-source's recipients pass)
RCPT_HANDLER = """
kumo.on('smtp_server_rcpt_to', function(recipient)
  if recipient.domain == 'bad.domain' then
    kumo.reject(420, 'not thanks')
  end
end)
"""


def kumoclient_round(base: Path, messages: int, extra_args: list[str], policy_extra: str) -> float:
    """Its deliveries suspended (`kumoclient admin suspend`), as Postfix holds its mail."""
    http = f"127.0.0.1:{free_port()}"
    policy = relay_policy("127.0.0.1:1") + policy_extra
    daemon = KumoclientDaemon(base, policy, [*extra_args, "--http", http])
    daemon.start()
    try:
        subprocess.run(
            [
                *(sys.executable, "-m", "kumoclient", "admin", "suspend"),
                *("--domain", "example.net", "--reason", "bench", "--url", f"http://{http}"),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        started = time.perf_counter()
        smtp_source(daemon.port, messages)
        seconds = time.perf_counter() - started
    finally:
        daemon.stop()
    if daemon.queued() < messages:
        raise RuntimeError(f"kumoclient holds {daemon.queued()} of {messages} messages")
    return messages / seconds


def acceptance(
    messages: int, rounds: int, tmp: Path, extra_args: list[str], policy_extra: str = ""
) -> dict[str, float]:
    rates: dict[str, list[float]] = {"kumoclient": [], "postfix": []}
    for number in range(rounds):
        rates["postfix"].append(postfix_round(tmp / f"pf{number}", messages))
        kc = kumoclient_round(tmp / f"kc{number}", messages, extra_args, policy_extra)
        rates["kumoclient"].append(kc)
        for name in ("postfix", "kumoclient"):
            print(f"  round {number + 1}: {name:<10} {rates[name][-1]:8.0f} msg/s", flush=True)
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
    parser.add_argument(
        "--kumoclient-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument of `kumoclient run` (repeatable: --kumoclient-arg=--workers "
        "--kumoclient-arg=2)",
    )
    parser.add_argument(
        "--rcpt-handler",
        action="store_true",
        help="register one smtp_server_rcpt_to handler in kumoclient's policy",
    )
    args = parser.parse_args()
    try:
        require_tools("smtp-source", "postconf")
    except BenchError as exc:
        print(exc, file=sys.stderr)
        return 69
    tmp = make_tmp_root("kumoclient-spool-bench-")
    try:
        print(f"SMTP acceptance, smtp-source -s 20, {args.messages} x 2 KB, {args.rounds} rounds")
        if args.rcpt_handler:
            print("kumoclient's policy has one smtp_server_rcpt_to handler")
        extra = RCPT_HANDLER if args.rcpt_handler else ""
        smtp = acceptance(args.messages, args.rounds, tmp, args.kumoclient_arg, extra)
        print("spool alone, 20 concurrent submitters, group commit on / off")
        modes = {}
        for mode in (True, False):
            runs = [asyncio.run(spool_only(tmp, mode, 2000)) for _ in range(args.rounds)]
            modes["group_commit" if mode else "per_message_fsync"] = statistics.median(runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
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
