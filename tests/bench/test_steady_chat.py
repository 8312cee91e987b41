"""steady-chat in its short mode against real gateway and worker processes: correctness only
(zero loss, duplication and reordering); speed is measured by the bench itself, never here."""

import asyncio

import pytest

from bench.results import RunResult, latency_summary, new_histogram
from bench.scenarios.steady_chat import Params, aggregate, run
from bench.stack import Services

pytestmark = pytest.mark.slow


async def test_short_steady_chat_has_no_loss_duplicates_or_reordering(config):
    cfg = config.replace(gateway={"rate_limit_per_second": 100.0})
    services = Services(cfg, gateways=2, workers=1).start()
    try:
        p = Params(shoppers=12, orgs=3, agents=2, rate=60.0, duration=3.0, settle=1.0, processes=2)
        result = await asyncio.to_thread(run, cfg, p, "127.0.0.1", [cfg.gateway.port], quiet=True)
    finally:
        await asyncio.to_thread(services.stop)
    assert result.sent > 100 and result.acked == result.sent
    assert result.expected_deliveries == result.acked * 3      # 2 agents + the sender's own echo
    assert (result.lost, result.duplicated, result.out_of_order) == (0, 0, 0)
    assert result.delivered == result.expected_deliveries and result.ok()
    assert result.latency["count"] == result.delivered


def test_aggregate_counts_loss_duplicates_and_reordering():
    h = new_histogram()
    h.record_value(1000)
    part = {
        "sent": 3, "errors": {"rate_limited": 1}, "histogram": h.encode(),
        "acked": [("o1", "m1", 0), ("o1", "m2", 0), ("o1", "m3", 0)],
        "shoppers": {0: "s1"},
        "receivers": [("agent", "o1", "a1", {"m1", "m2"}, 1, 0),      # lost m3, one duplicate
                      ("agent", "o1", "a2", {"m1", "m2", "m3"}, 0, 2),  # two out of order
                      ("shopper", "o1", "s1", {"m1", "m2", "m3"}, 0, 0)],
    }
    r = aggregate(Params(duration=1.0), [part])
    assert (r.sent, r.acked, r.expected_deliveries, r.delivered) == (3, 3, 9, 8)
    assert (r.lost, r.duplicated, r.out_of_order) == (1, 1, 2) and not r.ok()
    assert r.errors == {"rate_limited": 1, "lost_at_agent": 1} and r.latency["p50_ms"] == pytest.approx(1.0, rel=0.01)


def test_results_are_written_as_json(tmp_path):
    r = RunResult("steady-chat", {"shoppers": 1}, sent=1, acked=1, latency=latency_summary(new_histogram()))
    path = r.write(tmp_path)
    assert path.suffix == ".json" and '"scenario": "steady-chat"' in path.read_text()
    assert "lost / duplicated / out of order" in r.table()
