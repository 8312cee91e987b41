"""reconnect-storm in short mode: gateway-1 drained (or killed) and restarted under load; every
client reconnects, resumes and resends -- zero loss, duplicates and reordering (no timings)."""

import asyncio

import pytest

from bench.scenarios.reconnect_storm import Params, aggregate, run
from bench.results import new_histogram
from bench.stack import Services

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("kill", [False, True], ids=["drained", "killed"])
async def test_short_reconnect_storm_loses_nothing(config, kill):
    cfg = config.replace(gateway={"rate_limit_per_second": 100.0, "drain_seconds": 3.0})
    services = Services(cfg, gateways=2, workers=1)
    await asyncio.to_thread(services.start)
    try:
        p = Params(shoppers=16, orgs=4, agents=2, rate=40.0, duration=6.0, settle=1.0, processes=2, gateways=2,
                   kill=kill)
        result = await asyncio.to_thread(run, cfg, p, services, quiet=True)
    finally:
        await asyncio.to_thread(services.stop)
    assert result.figures["reconnects"] > 0                      # some clients were on gateway-1
    assert result.sent > 100 and result.acked == result.sent, result.errors
    assert result.expected_deliveries == result.acked * 3         # 2 agents + the sender's own echo
    assert (result.lost, result.duplicated, result.out_of_order) == (0, 0, 0)
    assert result.delivered == result.expected_deliveries and result.ok()
    assert "unacknowledged_sends" not in result.errors
    assert not any(k.startswith("resume_") for k in result.errors)


def test_aggregate_counts_what_agents_and_shoppers_missed():
    h = new_histogram()
    h.record_value(500)
    part = {"sent": 2, "errors": {}, "histogram": h.encode(), "reconnect_histogram": h.encode(), "timeline": {},
            "people": [("shopper", "o1", "s1", {"m1"}, 0, 0, ["m1", "m2"]),        # missed its own m2
                       ("agent", "o1", "a1", {"m1", "m2"}, 1, 1, [])]}
    r = aggregate(Params(duration=1.0), [part])
    assert (r.sent, r.acked, r.expected_deliveries, r.delivered, r.lost) == (2, 2, 4, 3, 1)
    assert (r.duplicated, r.out_of_order) == (1, 1) and not r.ok()
    assert r.figures["reconnects"] == 1 and r.figures["reconnect_p50_ms"] == pytest.approx(0.5, rel=0.01)
