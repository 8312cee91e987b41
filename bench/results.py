"""Results of a bench run: counts, HDR-histogram latency percentiles, JSON on disk."""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from hdrh.histogram import HdrHistogram

PERCENTILES = (50, 90, 99, 99.9)


def new_histogram() -> HdrHistogram:
    return HdrHistogram(1, 60_000_000, 3)        # microseconds, 1 us .. 60 s, 3 significant digits


def merge_encoded(encoded: list[bytes]) -> HdrHistogram:
    total = new_histogram()
    for blob in encoded:
        if blob:
            total.add(HdrHistogram.decode(blob))
    return total


def latency_summary(h: HdrHistogram) -> dict:
    if h.get_total_count() == 0:
        return {"count": 0}
    out = {"count": h.get_total_count(), "min_ms": h.get_min_value() / 1000, "max_ms": h.get_max_value() / 1000,
           "mean_ms": round(h.get_mean_value() / 1000, 3)}
    for pct in PERCENTILES:
        out[f"p{pct:g}_ms".replace(".", "_")] = h.get_value_at_percentile(pct) / 1000
    return out


@dataclass
class RunResult:
    scenario: str
    parameters: dict
    sent: int = 0                 # sends attempted
    acked: int = 0                # acknowledged by the gateway
    expected_deliveries: int = 0
    delivered: int = 0            # unique deliveries
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    errors: dict = field(default_factory=dict)
    duration_s: float = 0.0
    deliveries_per_s: float = 0.0
    latency: dict = field(default_factory=dict)
    environment: dict = field(default_factory=dict)
    figures: dict = field(default_factory=dict)          # scenario-specific numbers (bench/report.py compares them)
    timeline: list = field(default_factory=list)         # per second: count, p50/p99/max ms (bench/report.py)
    latency_distribution: list = field(default_factory=list)   # [percentile, ms] pairs

    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.out_of_order == 0 and self.acked == self.sent

    def write(self, directory: str | Path) -> Path:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        path = d / f"{self.scenario}-{time.strftime('%Y%m%d-%H%M%S')}.json"
        path.write_text(json.dumps(asdict(self), indent=2))
        return path

    def table(self) -> str:
        lat = self.latency
        rows = [
            ("sent / acked", f"{self.sent} / {self.acked}"),
            ("deliveries expected / unique", f"{self.expected_deliveries} / {self.delivered}"),
            ("lost / duplicated / out of order", f"{self.lost} / {self.duplicated} / {self.out_of_order}"),
            ("delivery rate", f"{self.deliveries_per_s:,.0f} /s over {self.duration_s:.1f} s"),
            ("latency p50 / p90 / p99 / p99.9",
             " / ".join(f"{lat.get(k, float('nan')):.2f}" for k in ("p50_ms", "p90_ms", "p99_ms", "p99_9_ms")) + " ms"),
            ("errors", ", ".join(f"{k}={v}" for k, v in self.errors.items()) or "none"),
        ]
        return "\n".join(f"  {k:<34} {v}" for k, v in rows)


def environment() -> dict:
    import os

    return {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "platform": platform.platform()}
