"""Reading files from the event loop: synchronously on it, with asyncio.to_thread, with aiofiles.

The spool reads message contents for delivery and `incoming/` drop files for pick-up; this
measures, side by side in one run, what each way of reading costs the event loop and how fast
it goes, for small (2 KB, 16 KB, 64 KB), medium (256 KB: the engine's inline-read bound) and
large (1 MB, 20 MB) files already in the page cache (a freshly spooled message is):

- `sync`: `open().read()` on the loop, as `Spool.content` does for small messages;
- `to_thread`: the same call in `asyncio.to_thread` (one hand-off to the default executor);
- `aiofiles`: `async with aiofiles.open(...)` and `await f.read()` (open, read and close are
  each a hand-off to the same executor).

Two operations: `read` (the whole file) and `read+crc` (then its CRC-32, as the spool checks a
content before delivering it: inside the thread for `to_thread`; for `aiofiles`, whose read
returns to the loop, either on the loop in 1 MiB steps with a yield between them, or in one
more hand-off, `asyncio.to_thread(zlib.crc32, data)`, for `aiofiles+t`).

Per strategy, `--concurrency` readers share the files (as deliveries in flight do, each
yielding to the loop between two reads) and report:
- `loop µs/read`: the loop thread's CPU time (time.thread_time) per read, hand-offs included:
  what every read takes from SMTP sessions and dispatch;
- `stall p99/max ms`: how late a 1 ms heartbeat on the loop was during a second pass (99th
  percentile and worst; the idle floor is printed first); on a machine with few CPUs this
  includes the loop thread waiting for a CPU while executor threads copy;
- `reads/s` and `MB/s`, wall clock.
Strategies alternate within every round (this machine is shared and noisy); the median round
is reported, with ratios to `to_thread` (the spool's way before aiofiles).

    python bench/files.py [--rounds 5] [--concurrency 8] [--loop uvloop|asyncio] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import aiofiles

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.systems import make_tmp_root

ROOT = Path(__file__).resolve().parents[1]
KB, MB = 1024, 1024 * 1024
# size label -> (bytes, files per pass): about 4 to 160 MB read per pass
SIZES = {
    "2 KB": (2 * KB, 4000),
    "16 KB": (16 * KB, 2000),
    "64 KB": (64 * KB, 1000),
    "256 KB": (256 * KB, 400),
    "1 MB": (MB, 128),
    "20 MB": (20 * MB, 12),
}
STEP = MB  # the loop's checksum step for aiofiles
HEARTBEAT = 0.001

Reader = Callable[[str], Awaitable[int]]


def _read(path: str) -> bytes:
    with open(path, "rb") as f:  # the call aiofiles makes in its thread
        return f.read()


def _read_crc(path: str) -> int:
    return zlib.crc32(_read(path))


async def sync_read(path: str) -> int:
    return len(_read(path))


async def sync_read_crc(path: str) -> int:
    return _read_crc(path)


async def thread_read(path: str) -> int:
    return len(await asyncio.to_thread(_read, path))


async def thread_read_crc(path: str) -> int:
    return await asyncio.to_thread(_read_crc, path)


async def aiofiles_read(path: str) -> int:
    async with aiofiles.open(path, "rb") as f:
        return len(await f.read())


async def aiofiles_read_crc(path: str) -> int:
    async with aiofiles.open(path, "rb") as f:
        data = await f.read()
    view, crc = memoryview(data), 0
    for start in range(0, len(view), STEP):
        crc = zlib.crc32(view[start : start + STEP], crc)
        if start + STEP < len(view):
            await asyncio.sleep(0)
    return crc


async def aiofiles_read_thread_crc(path: str) -> int:
    async with aiofiles.open(path, "rb") as f:
        data = await f.read()
    return await asyncio.to_thread(zlib.crc32, data)


STRATEGIES: dict[str, dict[str, Reader]] = {
    "read": {"sync": sync_read, "to_thread": thread_read, "aiofiles": aiofiles_read},
    "read+crc": {
        "sync": sync_read_crc,
        "to_thread": thread_read_crc,
        "aiofiles": aiofiles_read_crc,
        "aiofiles+t": aiofiles_read_thread_crc,
    },
}


async def _readers(reader: Reader, paths: list[str], concurrency: int) -> None:
    queue: Iterator[str] = iter(paths)

    async def one() -> None:
        for path in queue:
            await reader(path)
            await asyncio.sleep(0)  # a delivery does network work between two reads

    await asyncio.gather(*(one() for _ in range(concurrency)))


async def _heartbeat(stop: asyncio.Event, lags: list[float]) -> None:
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(HEARTBEAT)
        lags.append(time.perf_counter() - before - HEARTBEAT)


async def measure(reader: Reader, paths: list[str], concurrency: int) -> dict[str, float]:
    """One pass for throughput and loop CPU, one with the heartbeat for the stall."""
    cpu, wall = time.thread_time(), time.perf_counter()
    await _readers(reader, paths, concurrency)
    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    stop, lags = asyncio.Event(), [0.0]
    beat = asyncio.create_task(_heartbeat(stop, lags))
    await asyncio.sleep(0.01)
    await _readers(reader, paths, concurrency)
    stop.set()
    await beat
    lags.sort()
    return {
        "reads_s": len(paths) / wall,
        "loop_us": cpu / len(paths) * 1e6,
        "stall_ms": lags[-1] * 1e3,
        "p99_stall_ms": lags[int(len(lags) * 0.99)] * 1e3,
    }


async def idle_stall(seconds: float = 0.5) -> float:
    stop, lags = asyncio.Event(), [0.0]
    beat = asyncio.create_task(_heartbeat(stop, lags))
    await asyncio.sleep(seconds)
    stop.set()
    await beat
    return max(lags) * 1e3


def make_files(tmp: Path, labels: list[str]) -> dict[str, list[str]]:
    files: dict[str, list[str]] = {}
    for label in sorted({"2 KB", *labels}, key=list(SIZES).index):
        size, count = SIZES[label]
        folder = tmp / label.replace(" ", "")
        folder.mkdir()
        blob = os.urandom(size)
        files[label] = []
        for number in range(count):
            path = folder / f"{number:05d}"
            path.write_bytes(blob)
            files[label].append(str(path))
        for path in files[label]:
            _read(path)  # in the page cache, as a freshly spooled message is
    return files


async def run(
    files: dict[str, list[str]], labels: list[str], rounds: int, concurrency: int
) -> dict[str, object]:
    results: dict[str, dict[str, dict[str, list[dict[str, float]]]]] = {}
    for strategies in STRATEGIES.values():  # warm up: the executor starts its threads
        for reader in strategies.values():
            await measure(reader, files["2 KB"][:200], concurrency)
    for label in labels:
        paths = files[label]
        for op, strategies in STRATEGIES.items():
            runs = results.setdefault(label, {}).setdefault(op, {n: [] for n in strategies})
            names = list(strategies)
            for number in range(rounds):
                order = names[number % len(names) :] + names[: number % len(names)]
                for name in order:
                    runs[name].append(await measure(strategies[name], paths, concurrency))
        print(f"  {label} done", flush=True)
    return {"idle_stall_ms": await idle_stall(), "results": results}


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def report(measured: dict[str, object], rounds: int) -> dict[str, object]:
    summary: dict[str, object] = {"idle_stall_ms": measured["idle_stall_ms"]}
    print(f"\nidle loop: max heartbeat lateness {measured['idle_stall_ms']:.2f} ms")
    header = (
        f"{'size':>6} {'op':<8} {'strategy':<10} {'reads/s':>9} {'MB/s':>8} {'loop µs/read':>13}"
        f" {'stall p99/max ms':>17} {'thr. x':>7} {'loop x':>7}"
    )
    print(header)
    print("-" * len(header))
    results = measured["results"]
    assert isinstance(results, dict)
    for label, ops in results.items():
        size = SIZES[label][0]
        for op, strategies in ops.items():
            rows = {name: medians(runs) for name, runs in strategies.items()}
            base = rows["to_thread"]
            for name, row in rows.items():
                row["mb_s"] = row["reads_s"] * size / MB
                row["throughput_vs_to_thread"] = row["reads_s"] / base["reads_s"]
                row["loop_vs_to_thread"] = row["loop_us"] / base["loop_us"]
                print(
                    f"{label:>6} {op:<8} {name:<10} {row['reads_s']:>9,.0f} {row['mb_s']:>8,.0f}"
                    f" {row['loop_us']:>13,.1f} {row['p99_stall_ms']:>8.2f}/{row['stall_ms']:<8.2f}"
                    f" {row['throughput_vs_to_thread']:>7.2f} {row['loop_vs_to_thread']:>7.2f}"
                )
            summary[f"{label} {op}"] = rows
        print()
    print(f"median of {rounds} rounds; x: ratio to to_thread (throughput: higher is better, loop:")
    print("lower is better)")
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "files.json")
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    args = parser.parse_args()
    factory: Callable[[], asyncio.AbstractEventLoop] = asyncio.new_event_loop
    if args.loop == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    tmp = make_tmp_root("kumoclient-files-bench-")
    try:
        files = make_files(tmp, args.sizes)
        print(
            f"{args.loop}, {args.concurrency} concurrent readers, {args.rounds} rounds, "
            f"{os.cpu_count()} CPUs, files in {tmp}"
        )
        with asyncio.Runner(loop_factory=factory) as runner:
            measured = runner.run(run(files, args.sizes, args.rounds, args.concurrency))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    summary = report(measured, args.rounds)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"loop": args.loop, **summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
