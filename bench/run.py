"""kumoclient against Postfix, side by side in one run: throughput, latency, CPU, memory.

For both systems, on loopback, in the same run (rounds alternate which system goes first;
the median of the rounds is reported with the ratio kumoclient / Postfix):

1. End-to-end throughput: `smtp-source -s 20 -m N -l 2048` into the system, which relays
   everything to Postfix's `smtp-sink`; from smtp-source's start until the system's queue is
   empty (kumoclient: DATA_DIR/spool/data; Postfix: maildrop, incoming, active, deferred, hold).
2. Injection → delivery latency p50/p99 at a fixed rate (200 msg/s): a paced aiosmtplib client
   over persistent connections → system → an aiosmtpd sink in this process, matched by an
   X-Bench-Id header; latency = arrival - start of the submission.
3. Memory with a full queue for a closed port (kumoclient: 100,000 messages written into the
   spool with the library before start; Postfix: a smaller number, via hold and
   `postsuper -H`): sum of VmRSS / VmHWM / Pss over the processes; start → `spool enumerated`;
   start → first delivery when the same queue goes to a sink.
4. CPU seconds per 1,000 messages during the throughput run (/proc, the whole process tree)
   and over the process's life (os.wait4: kumoclient, and Postfix's subreaper, which reaps
   every Postfix daemon); whole-machine CPU busy % (/proc/stat).

kumoclient is a black box: `python -m kumoclient run --policy P --data-dir D --listen ...`
plus `--workers auto` (reception in its own process, as Postfix uses several: both systems use
the machine's cores), or instead the `--kumoclient-arg=ARG`s given (repeatable, e.g.
--kumoclient-arg=--workers --kumoclient-arg=2); `--single-process` runs it with neither.
Postfix is tests/integration/postfix.py's private instance (master under a subreaper, its own
configuration and queue under /var/tmp), never the system one. Needs root and Debian's postfix.

    python bench/run.py [--messages 20000] [--rounds 3] [--latency-seconds 20] [--queued 100000]
                        [--json FILE] [--plot FILE] [--markdown FILE] [--smoke]

Only ratios from one run mean something: the absolute figures move with the machine's load.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# `python bench/run.py` puts bench/ first on sys.path, where its modules (spool, report, ...)
# would shadow top-level ones: the repository root takes its place
if sys.path and Path(sys.path[0] or ".").resolve() == ROOT / "bench":
    sys.path[0] = str(ROOT)
elif str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import measure, report  # noqa: E402
from bench.systems import (  # noqa: E402
    PYCACHE,
    BenchError,
    daemon_environment,
    make_tmp_root,
    relay_policy,
    require_tools,
)

RESULTS = ROOT / "bench" / "results"
SMOKE: dict[str, Any] = {
    "messages": 200,
    "rounds": 1,
    "latency_seconds": 3.0,
    "latency_rate": 50.0,  # 150 messages: a busy machine cannot take 200 msg/s
    "queued": 2000,
    "postfix_queued": 200,
    "memory_seconds": 1.0,
}
PARTS = ("throughput", "latency", "memory")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = measure.Settings()
    parser = argparse.ArgumentParser(
        prog="python bench/run.py",
        description=(__doc__ or "").split("\n\n")[0],
        epilog="--smoke: 200 messages, 3 s latency at 50 msg/s, 2,000 queued (Postfix 200), "
        "1 round",
    )
    parser.add_argument(
        "--messages", type=int, help=f"throughput run (default {defaults.messages})"
    )
    parser.add_argument("--rounds", type=int, help=f"default {defaults.rounds}")
    parser.add_argument(
        "--latency-seconds", type=float, help=f"default {defaults.latency_seconds:g}"
    )
    parser.add_argument(
        "--latency-rate", type=float, help=f"msg/s offered (default {defaults.latency_rate:g})"
    )
    parser.add_argument(
        "--latency-connections",
        type=int,
        help=f"persistent connections of the paced client (default {defaults.latency_connections})",
    )
    parser.add_argument("--queued", type=int, help=f"memory test (default {defaults.queued})")
    parser.add_argument(
        "--postfix-queued",
        type=int,
        help=f"Postfix's memory test (default min(--queued, {defaults.postfix_queued}); "
        "0 skips it)",
    )
    parser.add_argument(
        "--memory-seconds",
        type=float,
        help=f"observe memory this long after enumeration (default {defaults.memory_seconds:g})",
    )
    parser.add_argument(
        "--kumoclient-arg",
        action="append",
        metavar="ARG",
        help="extra argument of `kumoclient run`, instead of the default "
        f"{' '.join(DEFAULT_KUMOCLIENT_ARGS)} (repeatable; --kumoclient-arg=--workers)",
    )
    parser.add_argument(
        "--single-process",
        action="store_true",
        help="run `kumoclient run` without extra arguments (no reception workers)",
    )
    parser.add_argument(
        "--only", action="append", choices=PARTS, help="run only these parts (repeatable)"
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the runner")
    parser.add_argument("--json", type=Path, default=RESULTS / "run.json")
    parser.add_argument("--plot", type=Path, default=RESULTS / "run.png")
    parser.add_argument(
        "--markdown",
        type=Path,
        help="write the table as markdown; a file with the table markers "
        "(docs/performance.md) gets its table replaced",
    )
    parser.add_argument("--keep-tmp", action="store_true", help="keep the work directory")
    return parser.parse_args(argv)


# reception in a worker process beside the delivering main process: both cores, as Postfix
DEFAULT_KUMOCLIENT_ARGS = ("--workers", "auto")


def settings_from(args: argparse.Namespace) -> measure.Settings:
    base = replace(measure.Settings(), **SMOKE) if args.smoke else measure.Settings()
    chosen: dict[str, Any] = {
        name: getattr(args, name)
        for name in (
            "messages",
            "rounds",
            "latency_seconds",
            "latency_rate",
            "latency_connections",
            "queued",
            "memory_seconds",
        )
        if getattr(args, name) is not None
    }
    if args.single_process and args.kumoclient_arg:
        raise SystemExit("--single-process and --kumoclient-arg exclude each other")
    kumoclient_args: tuple[str, ...] = (
        () if args.single_process else tuple(args.kumoclient_arg or DEFAULT_KUMOCLIENT_ARGS)
    )
    settings = replace(base, **chosen, kumoclient_args=kumoclient_args, keep=args.keep_tmp)
    postfix_queued = args.postfix_queued
    if postfix_queued is None:
        postfix_queued = min(settings.queued, base.postfix_queued)
    settings = replace(settings, postfix_queued=postfix_queued)
    for name in ("messages", "rounds", "queued", "latency_connections"):
        if getattr(settings, name) < 1:
            raise SystemExit(f"--{name.replace('_', '-')} must be at least 1")
    if settings.latency_rate <= 0 or settings.latency_seconds <= 0:
        raise SystemExit("--latency-rate and --latency-seconds must be positive")
    return settings


def warm_up(settings: measure.Settings) -> float:
    """Run `kumoclient policy check` once with the daemons' environment (imports what `run`
    imports, fills their bytecode cache: see daemon_environment()); returns seconds."""
    PYCACHE.mkdir(exist_ok=True)
    policy = PYCACHE / "warm-up.lua"
    policy.write_text(relay_policy("127.0.0.1:25"))
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "kumoclient", "policy", "check", str(policy)],
        capture_output=True,
        text=True,
        timeout=settings.start_timeout,
        check=False,
        env=daemon_environment(),
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise BenchError(f"kumoclient policy check failed: {done.stderr.strip()}")
    return time.monotonic() - started


def environment() -> dict[str, Any]:
    def output(*command: str) -> str:
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=30, check=False, cwd=ROOT
            )
        except OSError:
            return "?"
        return done.stdout.strip() or "?"

    # --no-optional-locks: a read-only look, git does not refresh its index
    dirty = output(
        "git", "--no-optional-locks", "status", "--porcelain", "--untracked-files=no", "kumoclient"
    )
    return {
        "cpus": os.cpu_count(),
        "loadavg_start": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "postfix": output("postconf", "-dh", "mail_version"),
        "kumoclient_commit": output("git", "rev-parse", "--short", "HEAD")
        + ("+dirty" if dirty not in ("", "?") else ""),
    }


def run_parts(tmp: Path, settings: measure.Settings, parts: tuple[str, ...]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    log = _progress
    for part in ("throughput", "latency"):
        if part not in parts:
            continue
        rounds: dict[str, list[dict[str, Any]]] = {s: [] for s in measure.SYSTEMS}
        result[part] = rounds
        do_round: Callable[[Path, tuple[str, ...], measure.Settings], dict[str, Any]]
        do_round = measure.throughput_round if part == "throughput" else measure.latency_round
        for number in range(settings.rounds):
            order = measure.SYSTEMS if number % 2 == 0 else measure.SYSTEMS[::-1]
            done = do_round(tmp, order, settings)
            for system in order:
                rounds[system].append(done[system])
                log(f"{part} round {number + 1}: {system:<10} {_brief(part, done[system])}")
    if "memory" in parts:
        result["memory"] = run_memory(tmp, settings)
    return result


def run_memory(tmp: Path, settings: measure.Settings) -> dict[str, Any]:
    """Fill each system's queue once; every round starts both on copies of it."""
    kc: dict[str, Any] = {"queued": settings.queued, "rounds": []}
    pf: dict[str, Any] = {"queued": settings.postfix_queued, "rounds": []}
    bases: dict[str, Path] = {}
    try:
        _progress(f"memory: filling kumoclient's spool with {settings.queued:,} messages")
        bases[measure.KUMOCLIENT], kc["fill_seconds"] = measure.prepare_memory_kumoclient(
            tmp, settings
        )
        if settings.postfix_queued > 0:
            _progress(f"memory: filling Postfix's deferred queue with {settings.postfix_queued:,}")
            bases[measure.POSTFIX], pf["fill_seconds"] = measure.prepare_memory_postfix(
                tmp, settings
            )
        else:
            pf["skipped"] = "Postfix memory test skipped (--postfix-queued 0)"
        for number in range(settings.rounds):
            order = measure.SYSTEMS if number % 2 == 0 else measure.SYSTEMS[::-1]
            for system in order:
                if system not in bases:
                    continue
                run = (
                    measure.memory_kumoclient
                    if system == measure.KUMOCLIENT
                    else (measure.memory_postfix)
                )
                done = run(bases[system], tmp / f"memory-{system}-{number}", settings)
                (kc if system == measure.KUMOCLIENT else pf)["rounds"].append(done)
                _progress(f"memory round {number + 1}: {system:<10} {_brief('memory', done)}")
    finally:
        for base in bases.values():
            settings.discard(base.parent)
    return {measure.KUMOCLIENT: kc, measure.POSTFIX: pf}


def _brief(part: str, data: dict[str, Any]) -> str:
    if part == "throughput":
        return (
            f"{data['msg_per_s']:8.1f} msg/s, {data['seconds']:.1f} s, "
            f"{data['cpu_per_1k']:.2f} CPU s/1k, machine {data['machine_busy_percent']:.0f}% busy"
        )
    if part == "latency":
        return (
            f"p50 {data['p50_ms']:.1f} ms, p99 {data['p99_ms']:.1f} ms, "
            f"{data['achieved_rate']:.0f} msg/s achieved, {data['error_count']} errors"
        )
    unreachable, reachable = data.get("unreachable", {}), data.get("reachable", {})
    enumerated = unreachable.get("start_to_enumerated_s")
    return (
        f"steady RSS {unreachable.get('steady_rss_mb', math.nan):.0f} MB, "
        f"peak {unreachable.get('peak_hwm_mb', math.nan):.0f} MB, "
        + (f"enumerated after {enumerated:.2f} s, " if enumerated is not None else "")
        + f"first delivery after {reachable.get('start_to_first_delivery_s', math.nan):.2f} s"
    )


def _progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _terminate(signum: int, frame: FrameType | None) -> None:
    """SIGTERM: what Ctrl-C does, so that every finally runs and stops what was started.

    Handed to the current SIGINT handler: inside asyncio.run() that is the runner's, which
    cancels its task cleanly; elsewhere Python's, which raises KeyboardInterrupt."""
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:  # SIGINT ignored (a background job of a script): interrupt all the same
        raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = settings_from(args)
    parts = tuple(args.only) if args.only else PARTS
    if os.geteuid() != 0:
        print("bench/run.py needs root (a private Postfix instance)", file=sys.stderr)
        return 77
    try:
        require_tools("smtp-source", "smtp-sink", "postconf", "postsuper")
    except BenchError as exc:
        print(exc, file=sys.stderr)
        return 69
    signal.signal(signal.SIGTERM, _terminate)
    result: dict[str, Any] = {
        "started": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "settings": asdict(settings),
        "parts": list(parts),
        "environment": environment(),
    }
    began = time.monotonic()
    tmp = make_tmp_root("kumoclient-bench-")
    try:
        _progress(f"work directory {tmp}; warm-up {warm_up(settings):.1f} s")
        result.update(run_parts(tmp, settings, parts))
    except BenchError as exc:
        print(f"bench/run.py: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench/run.py: interrupted; everything started was stopped", file=sys.stderr)
        return 130
    finally:
        if args.keep_tmp:
            print(f"work directory kept: {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    result["environment"]["loadavg_end"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    result["duration_s"] = round(time.monotonic() - began, 1)
    rows = report.summary_rows(result)
    result["summary"] = [
        {**asdict(row), "ratio": row.ratio, "label": row.label.strip()} for row in rows
    ]
    result["targets"] = report.targets(result)
    print(report.text_table(rows))
    for line in result["targets"]:
        print(line)
    print(f"({result['duration_s']:.0f} s; only the ratios of one run compare)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report.strict_json(result), indent=1, allow_nan=False) + "\n")
    print(f"results written to {args.json}")
    if args.markdown is not None:
        print(report.write_markdown(args.markdown, report.markdown_table(rows, result)))
    try:
        print(report.plot(result, args.plot))
    except Exception as exc:  # the figure is an extra: the results are written already
        print(f"plot failed: {type(exc).__name__}: {exc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
