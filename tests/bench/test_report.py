"""bench/report.py: the per-second timeline, the comparison with a baseline, the Markdown
summary, the PNG plots and `finish` (files written, exit code from correctness)."""

import argparse
import json

import pytest

from bench.report import Timeline, compare, comparison_markdown, distribution, finish, merge_timelines, plot, summary_markdown
from bench.results import RunResult, latency_summary, new_histogram


def test_timelines_of_several_processes_merge_per_second():
    a, b = Timeline(100.0), Timeline(100.0)
    a.record(100.2, 1000)
    a.record(100.7, 3000)
    b.record(100.5, 2000)
    b.record(102.1, 9000)
    merged = merge_timelines([a.encode(), b.encode(), {}])
    assert [t["t"] for t in merged] == [0, 1, 2]
    assert merged[0]["count"] == 3 and merged[0]["p50_ms"] == pytest.approx(2.0, rel=0.01)
    assert merged[0]["max_ms"] == pytest.approx(3.0, rel=0.01)
    assert merged[1] == {"t": 1, "count": 0}
    assert merged[2]["p99_ms"] == pytest.approx(9.0, rel=0.01)
    assert merge_timelines([]) == []


def test_distribution_is_monotonic():
    h = new_histogram()
    for v in range(1, 10001):
        h.record_value(v)
    d = distribution(h)
    assert d[0][0] == 0 and d[-1][0] == 100
    assert all(x[1] <= y[1] for x, y in zip(d, d[1:]))
    assert distribution(new_histogram()) == []


def test_compare_marks_better_and_worse_by_direction():
    base = {"latency": {"p50_ms": 2.0, "p99_ms": 10.0}, "deliveries_per_s": 1000.0, "lost": 0,
            "figures": {"gateway_rss_kib_per_socket": 20.0, "authenticated_connects_per_s": 1500.0}}
    cur = {"latency": {"p50_ms": 1.0, "p99_ms": 12.0}, "deliveries_per_s": 900.0, "lost": 0,
           "figures": {"gateway_rss_kib_per_socket": 18.0, "authenticated_connects_per_s": 2000.0, "new": 1}}
    rows = {r["metric"]: r for r in compare(cur, base)}
    assert rows["latency p50 (ms)"]["better"] is True and rows["latency p50 (ms)"]["change_pct"] == -50
    assert rows["latency p99 (ms)"]["better"] is False
    assert rows["deliveries / s"]["better"] is False
    assert rows["lost"]["better"] is None
    assert rows["gateway rss kib per socket"]["better"] is True
    assert rows["authenticated connects per s"]["better"] is True
    assert "new" not in rows                            # only numbers both runs have
    md = comparison_markdown(list(rows.values()), "base.json")
    assert "| latency p50 (ms) | 2 | 1 | -50.0 % (better) |" in md


def _result() -> RunResult:
    h = new_histogram()
    for v in (1000, 2000, 5000):
        h.record_value(v)
    t = Timeline(0.0)
    t.record(0.5, 1000)
    t.record(1.5, 5000)
    return RunResult("fan-out", {"agents": 3}, sent=3, acked=3, expected_deliveries=3, delivered=3,
                     latency=latency_summary(h), latency_distribution=distribution(h),
                     timeline=merge_timelines([t.encode()]), figures={"deliveries_per_message": 4})


def test_summary_markdown_says_whether_the_run_was_correct():
    from dataclasses import asdict

    r = asdict(_result())
    md = summary_markdown(r)
    assert "Correctness: **OK**" in md and "| agents | 3 |" in md and "| deliveries per message | 4 |" in md
    r["lost"] = 2
    assert "Correctness: **FAILED**" in summary_markdown(r)


def test_finish_writes_json_markdown_plots_and_compares(tmp_path, capsys):
    args = argparse.Namespace(out=str(tmp_path / "a"), compare=None, no_plots=False)
    assert finish(_result(), args) == 0
    files = sorted(p.name.split("-", 2)[-1] for p in (tmp_path / "a").iterdir())
    assert any(f.endswith(".json") for f in files) and any(f.endswith(".md") for f in files)
    pngs = sorted((tmp_path / "a").glob("*.png"))
    assert len(pngs) == 2 and pngs[0].name.endswith("-latency-over-time.png") and pngs[1].name.endswith("-percentiles.png")
    for png in pngs:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    baseline = next((tmp_path / "a").glob("*.json"))
    bad = _result()
    bad.lost = 1
    args = argparse.Namespace(out=str(tmp_path / "b"), compare=str(baseline), no_plots=True)
    assert finish(bad, args) == 1                                  # incorrect run: non-zero exit
    md = next((tmp_path / "b").glob("*.md")).read_text()
    assert f"Compared with `{baseline.name}`" in md and "| lost | 0 | 1 | new (worse) |" in md
    assert not list((tmp_path / "b").glob("*.png"))
    assert json.loads(next((tmp_path / "b").glob("*.json")).read_text())["lost"] == 1


def test_plot_without_latencies_writes_nothing(tmp_path):
    from dataclasses import asdict

    r = asdict(RunResult("idle-capacity", {}))
    assert plot(r, tmp_path / "x") == []
