"""bench/loadgen.py: the process pool's counters and phases, /proc readings, profile summary."""

import os

from bench.loadgen import PartPool, cpu_seconds, profile_top, rss_bytes, split


async def _count_part(part, common, ctl) -> dict:
    for _ in part:
        ctl.add("done")
    await ctl.phase_at_least(1)
    return {"n": len(part), "base": common["base"]}


def test_parts_report_counters_wait_for_the_phase_and_return_results():
    pool = PartPool(_count_part, split(list(range(10)), 3), {"base": 7}, ("done",))
    assert pool.wait(lambda t: t["done"] == 10, 60)
    assert not pool.done()                 # parts are held at phase 0
    pool.set_phase(1)
    results = pool.finish(timeout=60, quiet=True)
    assert [r["n"] for r in results] == [4, 3, 3] and {r["base"] for r in results} == {7}


async def _failing_part(part, common, ctl) -> dict:
    raise ValueError("broken generator")


def test_a_failing_part_fails_the_run():
    pool = PartPool(_failing_part, [[1]], {}, ("x",))
    assert pool.wait(lambda t: False, 60) is False
    try:
        pool.finish(timeout=30, quiet=True)
    except RuntimeError as exc:
        assert "broken generator" in str(exc)
    else:
        raise AssertionError("a failed part must fail the run")


def test_proc_readings_of_this_process():
    assert rss_bytes(os.getpid()) > 1_000_000
    assert cpu_seconds(os.getpid()) > 0


def test_profile_top_ranks_innermost_frames():
    collapsed = "main;a;b 6\nmain;a;c 3\nmain;d 1\nnot a stack line\n"
    top = profile_top(collapsed)
    assert top[0] == ["b", 60.0, 60.0] and top[1] == ["c", 30.0, 30.0] and top[2] == ["d", 10.0, 10.0]
    assert profile_top("") == []
