"""TurnBatcher: one run per loop turn, results and failures routed to their callers."""

import asyncio

import pytest

from engine.batch import TurnBatcher


async def test_one_run_per_turn_and_results_in_order():
    runs = []
    release = asyncio.Event()
    release.set()

    async def run(items):
        runs.append(list(items))
        await release.wait()
        return [i * 10 for i in items]

    b = TurnBatcher(run)
    first = await asyncio.gather(*(b.submit(i) for i in range(5)))
    assert first == [0, 10, 20, 30, 40] and runs == [[0, 1, 2, 3, 4]]
    # items submitted while a run is in flight wait for the next one
    release.clear()
    a = b.submit(1)
    while len(runs) < 2:
        await asyncio.sleep(0)      # the run for [1] is in flight
    c = b.submit(2)
    release.set()
    assert await a == 10 and await c == 20
    assert runs[1:] == [[1], [2]]


async def test_an_exception_result_fails_only_its_item_and_a_failed_run_fails_all():
    async def run(items):
        if "boom" in items:
            raise ConnectionError("down")
        return [ValueError(i) if i == "bad" else i for i in items]

    b = TurnBatcher(run)
    ok, bad = b.submit("ok"), b.submit("bad")
    assert await ok == "ok"
    with pytest.raises(ValueError):
        await bad
    x, y = b.submit("boom"), b.submit("y")
    for fut in (x, y):
        with pytest.raises(ConnectionError):
            await fut
    assert await b.submit("after") == "after", "the batcher keeps working after a failed run"


async def test_batches_are_capped():
    sizes = []

    async def run(items):
        sizes.append(len(items))
        return items

    b = TurnBatcher(run, max_items=3)
    assert await asyncio.gather(*(b.submit(i) for i in range(7))) == list(range(7))
    assert sizes == [3, 3, 1]


async def test_unbounded_runs_and_a_cancelled_run_answers_its_callers_with_the_given_error():
    sizes, started = [], asyncio.Event()

    async def run(items):
        sizes.append(len(items))
        started.set()
        await asyncio.Event().wait()          # hangs until cancelled

    b = TurnBatcher(run, max_items=None, cancelled=lambda: LookupError("closed"))
    futs = [b.submit(i) for i in range(700)]
    await started.wait()
    assert sizes == [700]                     # no cap: everything queued goes in one run
    b._task.cancel()
    await b.idle()                            # a cancelled run counts as answered
    for fut in futs:
        with pytest.raises(LookupError):
            await fut
