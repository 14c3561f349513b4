"""The summary of a `bench/run.py` run: rows (metric | kumoclient | Postfix | ratio), printed
as a text table, written as a markdown fragment, and drawn with matplotlib (optional)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KUMOCLIENT = "kumoclient"
POSTFIX = "postfix"
MARK_BEGIN = "<!-- bench/run.py table: begin -->"
MARK_END = "<!-- bench/run.py table: end -->"
TARGET_RSS_MB = 300.0
TARGET_FIRST_DELIVERY_S = 2.0
TARGET_QUEUED = 100_000


@dataclass(frozen=True)
class Row:
    metric: str
    unit: str
    kumoclient: float | None
    postfix: float | None
    note: str = ""  # why a cell is n/a, or what differs between the two columns
    comparable: bool = True  # False: no ratio (e.g. different queue sizes)
    digits: int = 0
    sub: bool = False  # a detail of the row above

    def cell(self, value: float | None) -> str:
        if value is None or math.isnan(value):
            return "n/a"
        return f"{value:,.{self.digits}f}"

    @property
    def ratio(self) -> str:
        if not self.comparable or self.kumoclient is None or self.postfix is None:
            return "—"
        if math.isnan(self.kumoclient) or math.isnan(self.postfix) or self.postfix == 0:
            return "—"
        ratio = self.kumoclient / self.postfix
        return f"{ratio:.2f}" if abs(ratio) >= 0.1 else f"{ratio:.2g}"

    @property
    def label(self) -> str:
        text = f"{self.metric} ({self.unit})" if self.unit else self.metric
        return f"  {text}" if self.sub else text

    @property
    def markdown_label(self) -> str:
        return f"↳ {self.label.strip()}" if self.sub else self.label


def _median(rounds: Sequence[dict[str, Any]], key: str) -> float | None:
    values = [float(r[key]) for r in rounds if key in r and r[key] is not None]
    return statistics.median(values) if values else None


def summary_rows(result: dict[str, Any]) -> list[Row]:
    """The table: medians over the rounds; memory and start-up from the memory runs."""
    rows: list[Row] = []
    throughput: dict[str, list[dict[str, Any]]] = result.get("throughput", {})
    if throughput:
        kc, pf = throughput.get(KUMOCLIENT, []), throughput.get(POSTFIX, [])
        n = result["settings"]["messages"]

        def add(metric: str, unit: str, key: str, digits: int = 0, **more: Any) -> None:
            kc_value, pf_value = _median(kc, key), _median(pf, key)
            rows.append(Row(metric, unit, kc_value, pf_value, digits=digits, **more))

        add(f"Throughput, {n:,} msgs, smtp-source → system → smtp-sink", "msg/s", "msg_per_s")
        add("time until the queue is empty", "s", "seconds", 1, sub=True)
        add("CPU per 1,000 msgs during the run", "CPU s", "cpu_per_1k", 2, sub=True)
        add("CPU per 1,000 msgs, whole process life", "CPU s", "lifetime_cpu_per_1k", 2, sub=True)
        add(
            "machine CPU busy during the run",
            "%",
            "machine_busy_percent",
            sub=True,
            comparable=False,
        )
    latency: dict[str, list[dict[str, Any]]] = result.get("latency", {})
    if latency:
        kc, pf = latency.get(KUMOCLIENT, []), latency.get(POSTFIX, [])
        rate = result["settings"]["latency_rate"]
        short = [
            f"{name} {value:.0f}"
            for name, runs in (("kumoclient", kc), ("Postfix", pf))
            if (value := _median(runs, "achieved_rate") or 0.0) < 0.9 * rate
        ]
        note = (
            f"offered {rate:g} msg/s not sustained ({', '.join(short)} msg/s achieved): "
            "the latencies include the system's backlog"
            if short
            else ""
        )
        p50, p99 = _pair(kc, pf, "p50_ms"), _pair(kc, pf, "p99_ms")
        rows.append(Row(f"Latency p50 at {rate:g} msg/s", "ms", *p50, note, digits=1))
        rows.append(Row("Latency p99", "ms", *p99, note, digits=1))
        achieved = _pair(kc, pf, "achieved_rate")
        rows.append(Row("injection rate achieved", "msg/s", *achieved, note, sub=True))
    memory: dict[str, Any] = result.get("memory", {})
    if memory:
        rows.extend(_memory_rows(memory))
    return rows


def _pair(
    kc: Sequence[dict[str, Any]], pf: Sequence[dict[str, Any]], key: str
) -> tuple[float | None, float | None]:
    return _median(kc, key), _median(pf, key)


def _memory(system: dict[str, Any], phase: str, key: str) -> float | None:
    """Median over the memory rounds of rounds[i][phase][key]."""
    return _median([r.get(phase, {}) for r in system.get("rounds", [])], key)


def _memory_rows(memory: dict[str, Any]) -> list[Row]:
    kc: dict[str, Any] = memory.get(KUMOCLIENT, {})
    pf: dict[str, Any] = memory.get(POSTFIX, {})
    kc_queued = int(kc.get("queued", 0))
    pf_queued = 0 if "skipped" in pf else int(pf.get("queued", 0))
    same = kc_queued == pf_queued
    counts = (
        f"queue for the memory and start-up rows: kumoclient {kc_queued:,} messages, "
        f"Postfix {pf_queued:,} (no ratio)"
        if pf_queued
        else ""
    )
    note = str(pf.get("skipped", "")) or ("" if same else counts)
    rows = []
    for label, key, sub in (
        ("RSS, queue full for a closed port, steady (sum of VmRSS)", "steady_rss_mb", False),
        ("peak (sum of each process's VmHWM)", "peak_hwm_mb", True),
        ("PSS, steady (shared pages split between processes)", "steady_pss_mb", True),
    ):
        kc_value, pf_value = _memory(kc, "unreachable", key), _memory(pf, "unreachable", key)
        rows.append(Row(label, "MB", kc_value, pf_value, note, same, sub=sub))
    enumerated = _memory(kc, "unreachable", "start_to_enumerated_s")
    why = "Postfix has no such step: qmgr reads its queue incrementally"
    rows.append(Row("Start → spool enumerated", "s", enumerated, None, why, False, 2))
    first = (
        _memory(kc, "reachable", "start_to_first_delivery_s"),
        _memory(pf, "reachable", "start_to_first_delivery_s"),
    )
    rows.append(Row("Start → first delivery, queue full", "s", *first, note, same, 2))
    return rows


def targets(result: dict[str, Any]) -> list[str]:
    """The must-show targets for kumoclient, PASS/FAIL."""
    kc = result.get("memory", {}).get(KUMOCLIENT, {})
    lines: list[str] = []
    peak = _memory(kc, "unreachable", "peak_hwm_mb")
    steady = _memory(kc, "unreachable", "steady_rss_mb")
    queued = kc.get("queued")
    if peak is not None and steady is not None:
        verdict = "PASS" if max(peak, steady) <= TARGET_RSS_MB else "FAIL"
        lines.append(
            f"target RSS <= {TARGET_RSS_MB:.0f} MB with {queued:,} queued: {verdict} "
            f"(steady {steady:.0f} MB, peak {peak:.0f} MB)"
        )
    first = _memory(kc, "reachable", "start_to_first_delivery_s")
    if first is not None:
        verdict = "PASS" if first <= TARGET_FIRST_DELIVERY_S else "FAIL"
        lines.append(
            f"target first delivery within {TARGET_FIRST_DELIVERY_S:.0f} s of start with "
            f"{queued:,} queued: {verdict} ({first:.2f} s)"
        )
    if lines and isinstance(queued, int) and queued < TARGET_QUEUED:
        lines = [f"{line} [the targets are for {TARGET_QUEUED:,} queued]" for line in lines]
    return lines


def text_table(rows: Sequence[Row]) -> str:
    header = ("metric", "kumoclient", "Postfix", "ratio kc/pf")
    body = [(r.label, r.cell(r.kumoclient), r.cell(r.postfix), r.ratio) for r in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(4)]
    lines = []
    for number, line in enumerate([header, *body]):
        cells = [line[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True)
        ]
        lines.append(" | ".join(cells))
        if number == 0:
            lines.append("-+-".join("-" * w for w in widths))
    notes = sorted({r.note for r in rows if r.note})
    return "\n".join(lines + [f"  note: {note}" for note in notes])


def markdown_table(rows: Sequence[Row], result: dict[str, Any]) -> str:
    settings = result["settings"]
    env = result.get("environment", {})
    lines = [
        f"Run of {result.get('started', '?')} on {env.get('cpus', '?')} CPUs "
        f"(load average {env.get('loadavg_start', '?')} at start), "
        f"kumoclient {env.get('kumoclient_commit', '?')}, Postfix {env.get('postfix', '?')}, "
        f"{settings['rounds']} round(s), medians; "
        f"kumoclient arguments: `{' '.join(settings['kumoclient_args']) or '(none)'}`.",
        "",
        "| metric | kumoclient | Postfix | ratio kc/pf |",
        "| --- | ---: | ---: | ---: |",
    ]
    lines += [
        f"| {r.markdown_label} | {r.cell(r.kumoclient)} | {r.cell(r.postfix)} | {r.ratio} |"
        for r in rows
    ]
    notes = sorted({r.note for r in rows if r.note}) + targets(result)
    if notes:
        lines.append("")
        lines += [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def strict_json(value: Any) -> Any:
    """`value` with every NaN or infinity replaced by None (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: strict_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(item) for item in value]
    return value


def write_markdown(path: Path, fragment: str) -> str:
    """Replace the table between the markers if `path` has them (docs/performance.md),
    otherwise write the fragment as the whole file. Returns what was done."""
    if path.exists():
        text = path.read_text()
        if MARK_BEGIN in text and MARK_END in text:
            head, rest = text.split(MARK_BEGIN, 1)
            _, tail = rest.split(MARK_END, 1)
            path.write_text(f"{head}{MARK_BEGIN}\n{fragment}{MARK_END}{tail}")
            return f"table replaced in {path}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(fragment)
    return f"table written to {path}"


def plot(result: dict[str, Any], path: Path) -> str:
    """Throughput per round, latency CDFs, p50/p99, memory over time; a message if
    matplotlib is missing (pip install matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "plot skipped: matplotlib is not installed (pip install 'matplotlib>=3.8')"
    colors = {KUMOCLIENT: "tab:blue", POSTFIX: "tab:orange"}
    names = {KUMOCLIENT: "kumoclient", POSTFIX: "Postfix"}
    figure, axes = plt.subplots(2, 2, figsize=(12, 8.5))
    panels: list[tuple[Any, Callable[[Any, dict[str, Any], dict[str, str], dict[str, str]], None]]]
    panels = [
        (axes[0][0], _plot_throughput),
        (axes[0][1], _plot_cdf),
        (axes[1][0], _plot_percentiles),
        (axes[1][1], _plot_memory),
    ]
    for axis, draw in panels:
        draw(axis, result, colors, names)
        if not axis.has_data():
            axis.text(0.5, 0.5, "not measured in this run", ha="center", transform=axis.transAxes)
    figure.suptitle(
        f"kumoclient vs Postfix, {result.get('started', '')} "
        f"({result.get('environment', {}).get('cpus', '?')} CPUs; ratios only)"
    )
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return f"plot written to {path}"


def _plot_throughput(
    axis: Any, result: dict[str, Any], colors: dict[str, str], names: dict[str, str]
) -> None:
    data = result.get("throughput", {})
    axis.set_title("end-to-end throughput per round")
    axis.set_ylabel("msg/s")
    for offset, system in ((-0.2, KUMOCLIENT), (0.2, POSTFIX)):
        rates = [r["msg_per_s"] for r in data.get(system, [])]
        axis.bar(
            [i + 1 + offset for i in range(len(rates))],
            rates,
            width=0.4,
            color=colors[system],
            label=names[system],
        )
    axis.set_xlabel("round")
    axis.set_xticks(range(1, 1 + max((len(v) for v in data.values()), default=0)))
    _legend(axis)


def _plot_cdf(
    axis: Any, result: dict[str, Any], colors: dict[str, str], names: dict[str, str]
) -> None:
    data = result.get("latency", {})
    rate = result["settings"]["latency_rate"]
    axis.set_title(f"injection → delivery latency at {rate:g} msg/s (CDF, every round)")
    axis.set_xlabel("ms (log scale)")
    axis.set_ylabel("fraction delivered")
    for system in (KUMOCLIENT, POSTFIX):
        for number, run in enumerate(data.get(system, [])):
            values = run.get("latencies_ms", [])
            if values:
                fractions = [(i + 1) / len(values) for i in range(len(values))]
                axis.plot(
                    values,
                    fractions,
                    color=colors[system],
                    alpha=0.8,
                    label=names[system] if number == 0 else None,
                )
    if any(run.get("latencies_ms") for runs in data.values() for run in runs):
        axis.set_xscale("log")
    _legend(axis)


def _plot_percentiles(
    axis: Any, result: dict[str, Any], colors: dict[str, str], names: dict[str, str]
) -> None:
    data = result.get("latency", {})
    axis.set_title("latency p50 / p99 (median of rounds)")
    axis.set_ylabel("ms (log scale)")
    for offset, system in ((-0.2, KUMOCLIENT), (0.2, POSTFIX)):
        runs = data.get(system, [])
        values = [_median(runs, "p50_ms") or math.nan, _median(runs, "p99_ms") or math.nan]
        axis.bar([0 + offset, 1 + offset], values, width=0.4, color=colors[system])
        axis.bar([0], [math.nan], color=colors[system], label=names[system])
    axis.set_xticks([0, 1], ["p50", "p99"])
    if any(data.get(system) for system in (KUMOCLIENT, POSTFIX)):
        axis.set_yscale("log")
    _legend(axis)


def _plot_memory(
    axis: Any, result: dict[str, Any], colors: dict[str, str], names: dict[str, str]
) -> None:
    memory = result.get("memory", {})
    axis.set_title("memory, full queue for a closed port (round 1)")
    axis.set_xlabel("s since start")
    axis.set_ylabel("MB")
    for system in (KUMOCLIENT, POSTFIX):
        rounds = memory.get(system, {}).get("rounds", [])
        series = rounds[0].get("unreachable", {}).get("series", []) if rounds else []
        queued = memory.get(system, {}).get("queued", 0)
        if series:
            times = [s["t"] for s in series]
            axis.plot(
                times,
                [s["rss_mb"] for s in series],
                color=colors[system],
                label=f"{names[system]} RSS ({queued:,} queued)",
            )
            axis.plot(
                times,
                [s["pss_mb"] for s in series],
                color=colors[system],
                linestyle="--",
                label=f"{names[system]} PSS",
            )
    axis.axhline(TARGET_RSS_MB, color="grey", linewidth=0.8, linestyle=":")
    _legend(axis)


def _legend(axis: Any) -> None:
    if axis.get_legend_handles_labels()[0]:
        axis.legend()
