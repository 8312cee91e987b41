"""Reports of a bench run: per-second timeline, JSON, Markdown summary, PNG plots, and the
comparison of a run with a saved baseline (``--compare baseline.json``).

Every scenario ends with :func:`finish`; the pure parts (timeline merge, comparison rows,
Markdown) are what tests drive.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from hdrh.histogram import HdrHistogram

from bench.results import RunResult, new_histogram

DISTRIBUTION_PERCENTILES = (0, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 100)
# fields compared with a baseline: (key path, label, True when higher is better)
COMPARED = (
    (("latency", "p50_ms"), "latency p50 (ms)", False),
    (("latency", "p90_ms"), "latency p90 (ms)", False),
    (("latency", "p99_ms"), "latency p99 (ms)", False),
    (("latency", "p99_9_ms"), "latency p99.9 (ms)", False),
    (("latency", "max_ms"), "latency max (ms)", False),
    (("deliveries_per_s",), "deliveries / s", True),
    (("lost",), "lost", False),
    (("duplicated",), "duplicated", False),
    (("out_of_order",), "out of order", False),
)


# ---- timeline: one HDR histogram per second, per process, merged in the parent ----------------

class Timeline:
    """Latencies bucketed by the second of the run they were observed in (``t0`` = start)."""

    __slots__ = ("t0", "seconds")

    def __init__(self, t0: float):
        self.t0 = t0
        self.seconds: dict[int, HdrHistogram] = {}

    def record(self, now: float, latency_us: int) -> None:
        second = int(now - self.t0)
        h = self.seconds.get(second)
        if h is None:
            h = self.seconds[second] = new_histogram()
        h.record_value(max(1, latency_us))

    def encode(self) -> dict[int, bytes]:
        return {s: h.encode() for s, h in self.seconds.items()}


def merge_timelines(parts: list[dict[int, bytes]]) -> list[dict]:
    """Per second: count, p50/p99/max latency in ms (seconds without events are listed as 0)."""
    merged: dict[int, HdrHistogram] = {}
    for part in parts:
        for second, blob in (part or {}).items():
            h = merged.get(int(second))
            if h is None:
                h = merged[int(second)] = new_histogram()
            h.add(HdrHistogram.decode(blob))
    if not merged:
        return []
    out = []
    for second in range(min(0, min(merged)), max(merged) + 1):
        h = merged.get(second)
        if h is None or h.get_total_count() == 0:
            out.append({"t": second, "count": 0})
            continue
        out.append({"t": second, "count": h.get_total_count(), "p50_ms": h.get_value_at_percentile(50) / 1000,
                    "p99_ms": h.get_value_at_percentile(99) / 1000, "max_ms": h.get_max_value() / 1000})
    return out


def distribution(h: HdrHistogram) -> list[list[float]]:
    """[percentile, latency ms] pairs for the percentile-distribution plot."""
    if h.get_total_count() == 0:
        return []
    return [[p, h.get_value_at_percentile(p) / 1000] for p in DISTRIBUTION_PERCENTILES]


# ---- comparison with a baseline -------------------------------------------------------------

def _get(d: dict, path: tuple):
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d if isinstance(d, (int, float)) and not isinstance(d, bool) else None


def compare(current: dict, baseline: dict) -> list[dict]:
    """Rows of numbers present in both runs: the fixed fields above plus every ``figures``
    entry (scenario-specific: connects/s, RSS per socket, ...). ``better`` is True/False/None."""
    rows = []
    fields = list(COMPARED)
    for key in sorted(set(current.get("figures", {})) & set(baseline.get("figures", {}))):
        fields.append((("figures", key), key.replace("_", " "), not any(w in key for w in _LOWER_IS_BETTER)))
    for path, label, higher_better in fields:
        a, b = _get(baseline, path), _get(current, path)
        if a is None or b is None:
            continue
        change = None if a == 0 else (b - a) / abs(a) * 100
        better = None if a == b else ((b > a) == higher_better)
        rows.append({"metric": label, "baseline": a, "current": b, "change_pct": change, "better": better})
    return rows


_LOWER_IS_BETTER = ("ms", "bytes", "rss", "failed", "lost", "kib", "errors", "seconds", "cpu")


def comparison_markdown(rows: list[dict], baseline_name: str) -> str:
    lines = [f"### Compared with `{baseline_name}`", "", "| metric | baseline | this run | change |", "|---|---:|---:|---:|"]
    for r in rows:
        change = "=" if r["change_pct"] is None and r["better"] is None else (
            "new" if r["change_pct"] is None else f"{r['change_pct']:+.1f} %")
        mark = {True: " (better)", False: " (worse)", None: ""}[r["better"]]
        lines.append(f"| {r['metric']} | {_fmt(r['baseline'])} | {_fmt(r['current'])} | {change}{mark} |")
    return "\n".join(lines) + "\n"


def _fmt(v) -> str:
    return f"{v:,.0f}" if isinstance(v, int) or (isinstance(v, float) and v >= 1000) else f"{v:,.3g}"


# ---- Markdown summary -----------------------------------------------------------------------

def summary_markdown(result: dict) -> str:
    lat = result.get("latency") or {}
    ok = (result["lost"], result["duplicated"], result["out_of_order"]) == (0, 0, 0)
    lines = [
        f"# Bench: {result['scenario']}", "",
        f"Correctness: **{'OK' if ok and result['sent'] == result['acked'] else 'FAILED'}** "
        f"(lost {result['lost']}, duplicated {result['duplicated']}, out of order {result['out_of_order']}, "
        f"sent {result['sent']}, acked {result['acked']})", "",
        "## Parameters", "", "| parameter | value |", "|---|---|",
        *(f"| {k} | {v} |" for k, v in result["parameters"].items()),
        "", "## Figures", "", "| figure | value |", "|---|---:|",
        f"| deliveries expected / unique | {result['expected_deliveries']:,} / {result['delivered']:,} |",
        f"| deliveries per second | {result['deliveries_per_s']:,.0f} |",
        *(f"| {k.replace('_', ' ')} | {_fmt(v) if isinstance(v, (int, float)) else v} |"
          for k, v in (result.get("figures") or {}).items() if not isinstance(v, list)),
    ]
    top = (result.get("figures") or {}).get("gateway_profile_top")
    if top:
        lines += ["", "## Gateway CPU profile (py-spy, innermost frames)", "",
                  "| function | self % | on stack % |", "|---|---:|---:|",
                  *(f"| `{frame}` | {self_pct} | {incl_pct} |" for frame, self_pct, incl_pct in top)]
    if lat.get("count"):
        lines += ["", "## Latency (HDR histogram)", "", "| count | p50 | p90 | p99 | p99.9 | max |",
                  "|---:|---:|---:|---:|---:|---:|",
                  f"| {lat['count']:,} | {lat['p50_ms']:.2f} ms | {lat['p90_ms']:.2f} ms | {lat['p99_ms']:.2f} ms "
                  f"| {lat['p99_9_ms']:.2f} ms | {lat['max_ms']:.2f} ms |"]
    if result.get("errors"):
        lines += ["", "## Errors", "", *(f"- {k}: {v}" for k, v in result["errors"].items())]
    env = result.get("environment") or {}
    if env:
        lines += ["", "## Environment", "", ", ".join(f"{k} {v}" for k, v in env.items())]
    return "\n".join(lines) + "\n"


# ---- plots ----------------------------------------------------------------------------------

def plot(result: dict, path_prefix: Path, baseline: dict | None = None) -> list[Path]:
    """latency-over-time and percentile-distribution PNGs (when the run has latencies)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    timeline = result.get("timeline") or []
    if any(t["count"] for t in timeline):
        fig, ax = plt.subplots(figsize=(9, 4.5))
        xs = [t["t"] for t in timeline if t["count"]]
        for key, label in (("p50_ms", "p50"), ("p99_ms", "p99"), ("max_ms", "max")):
            ax.plot(xs, [t[key] for t in timeline if t["count"]], label=label)
        ax.set_yscale("log")
        ax.set_xlabel("seconds since start")
        ax.set_ylabel("latency (ms)")
        ax2 = ax.twinx()
        ax2.bar([t["t"] for t in timeline], [t["count"] for t in timeline], alpha=0.15, color="grey", width=1.0)
        ax2.set_ylabel("events per second")
        ax.set_title(f"{result['scenario']}: latency over time")
        ax.legend(loc="upper left")
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        p = path_prefix.with_name(path_prefix.name + "-latency-over-time.png")
        fig.savefig(p, dpi=100)
        plt.close(fig)
        written.append(p)
    dist = result.get("latency_distribution") or []
    if dist:
        fig, ax = plt.subplots(figsize=(9, 4.5))
        for data, label in ((dist, "this run"), ((baseline or {}).get("latency_distribution") or [], "baseline")):
            if not data:
                continue
            # x = 1 / (1 - percentile): the usual HDR "percentile distribution" axis
            xs = [1 / (1 - min(p, 99.999) / 100) for p, _ in data]
            ax.plot(xs, [ms for _, ms in data], marker="o", label=label)
        ax.set_xscale("log")
        ax.set_xticks([1, 2, 10, 100, 1000, 10000], ["0%", "50%", "90%", "99%", "99.9%", "99.99%"])
        ax.set_xlabel("percentile")
        ax.set_ylabel("latency (ms)")
        ax.set_title(f"{result['scenario']}: latency by percentile")
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        p = path_prefix.with_name(path_prefix.name + "-percentiles.png")
        fig.savefig(p, dpi=100)
        plt.close(fig)
        written.append(p)
    return written


# ---- the end of every scenario ----------------------------------------------------------------

def add_report_arguments(p) -> None:
    p.add_argument("--out", default="bench-results", help="folder for JSON, Markdown and PNG results")
    p.add_argument("--compare", metavar="BASELINE_JSON", help="set this run beside a saved result")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")


def finish(result: RunResult, args, *, ok: bool | None = None) -> int:
    """Write JSON + Markdown (+ PNGs), print the table and the comparison; exit code 0 if correct."""
    path = result.write(args.out)
    data = asdict(result)
    baseline = None
    md = summary_markdown(data)
    if getattr(args, "compare", None):
        baseline = json.loads(Path(args.compare).read_text())
        md += "\n" + comparison_markdown(compare(data, baseline), Path(args.compare).name)
    md_path = path.with_suffix(".md")
    md_path.write_text(md)
    pngs = [] if getattr(args, "no_plots", False) else plot(data, path.with_suffix(""), baseline)
    print(result.table())
    for key, value in (data.get("figures") or {}).items():
        if isinstance(value, list):
            continue
        print(f"  {key.replace('_', ' '):<34} {_fmt(value) if isinstance(value, (int, float)) else value}")
    if baseline is not None:
        print(comparison_markdown(compare(data, baseline), Path(args.compare).name))
    print(f"  results: {path}, {md_path.name}" + "".join(f", {p.name}" for p in pngs))
    good = result.ok() if ok is None else ok
    return 0 if good else 1
