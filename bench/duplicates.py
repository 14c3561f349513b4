"""The duplicate window: how many messages a SIGKILL during delivery sends twice, and why.

A real daemon (`kumoclient run`) drains N spooled 2 KB messages to a counting aiosmtpd sink
over 8 connections and is killed with SIGKILL after a random number of deliveries, restarted,
killed again, ..., then left to finish. tests/duplicates.py does the work and checks SPEC 1
invariant 3 (a message comes twice only if the sink had sent its final 250 before the kill);
this script reports the figures, over several rounds:

  duplicates per kill        messages the sink accepted twice, per SIGKILL
  age at kill (ms)           for each duplicate: kill time - the time its first 250 was sent
  youngest survivor (ms)     the same, for the youngest message accepted before a kill that was
                             NOT sent again (its removal beat the kill)
  rate                       deliveries per second while the daemon ran
  window (ms)                duplicates per kill / rate: how long, on average, a message that
                             got its 250 stays removable only by a restart (Little's law)
  record survived            duplicates whose Delivery record from before the kill is in the
                             log (it had reached the OS; SIGKILL keeps that): a start that
                             read the log's tail could have skipped them

The data directory is under --root (default /var/tmp: the machine's disk; a tmpfs there
gives the window without disk latency, the software's share).

    python bench/duplicates.py [--messages 2000] [--kills 10] [--rounds 3] [--seed 15]
                               [--root DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.duplicates import (
    Judgement,
    judge,
    kill_loop,
    mean_per_kill,
    running_sink,
    summary,
    window_ms,
)


def one_round(messages: int, kills: int, seed: int, under: Path) -> Judgement:
    root = under / f"kumoclient-dup-{os.getpid()}-{seed}"
    root.mkdir()
    try:
        with running_sink() as (sink, port):
            run = kill_loop(
                root / "data", sink, port, messages=messages, kills=kills, rng=random.Random(seed)
            )
        return judge(run)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--root", type=Path, default=Path("/var/tmp"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    judgements = []
    for index in range(args.rounds):
        judgement = one_round(args.messages, args.kills, args.seed + index, args.root)
        judgements.append(judgement)
        print(json.dumps(summary(judgement)), flush=True)
    windows = [w for j in judgements if (w := window_ms(j)) is not None]
    violations = sum(len(j.violations) for j in judgements)
    result = {
        "messages": args.messages,
        "kills": args.kills,
        "root": str(args.root),
        "rounds": [summary(j) for j in judgements],
        "duplicates_per_kill_median": round(
            statistics.median(mean_per_kill(j) for j in judgements), 2
        ),
        "window_ms_median": round(statistics.median(windows), 2) if windows else None,
        "violations": violations,
    }
    print(
        f"duplicates per kill {result['duplicates_per_kill_median']:.2f} (median of "
        f"{args.rounds} rounds of {args.kills} kills, {args.messages} messages); "
        f"window {result['window_ms_median']} ms; invariant violations {violations}"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
