"""steady-chat in its short mode against real gateway and worker processes: correctness only
(zero loss, duplication and reordering); speed is measured by the bench itself, never here."""

import asyncio

import pytest

from bench.partner_hang import HangingPartnerApi, HangStats, hang_figures, held_seconds
from bench.results import RunResult, latency_summary, new_histogram
from bench.scenarios.steady_chat import Params, aggregate, run
from bench.stack import Services

pytestmark = pytest.mark.slow


async def test_short_steady_chat_has_no_loss_duplicates_or_reordering(config):
    cfg = config.replace(gateway={"rate_limit_per_second": 100.0})
    services = Services(cfg, gateways=2, workers=1).start()
    try:
        p = Params(shoppers=12, orgs=3, agents=2, rate=60.0, duration=3.0, settle=1.0, processes=2, warmup=1.0)
        result = await asyncio.to_thread(run, cfg, p, "127.0.0.1", [cfg.gateway.port], quiet=True)
    finally:
        await asyncio.to_thread(services.stop)
    assert result.sent > 150 and result.acked == result.sent   # warm-up and measured window: 4 s at 60/s
    assert result.expected_deliveries == result.acked * 3      # 2 agents + the sender's own echo
    assert (result.lost, result.duplicated, result.out_of_order) == (0, 0, 0)
    assert result.delivered == result.expected_deliveries and result.ok()
    # every delivery is checked; only those of messages sent after the warm-up are timed
    assert 0 < result.latency["count"] < result.delivered
    assert "warm-up" in result.figures["latency_window"]


async def test_short_steady_chat_with_the_partner_api_hanging(config):
    hang = HangingPartnerApi()
    base_url = await asyncio.to_thread(hang.start)
    # A request timeout longer than the run: the same requests stay held from before the sending to the end.
    cfg = config.replace(gateway={"rate_limit_per_second": 100.0},
                         shopify={"api_base": base_url, "request_timeout": 300.0})
    services = Services(cfg, gateways=1, workers=1).start()
    try:
        p = Params(shoppers=8, orgs=2, agents=2, rate=40.0, duration=3.0, settle=1.0, processes=1,
                   partner_api_hang=True)
        result = await asyncio.to_thread(run, cfg, p, "127.0.0.1", [cfg.gateway.port], quiet=True, partner_hang=hang,
                                         engine_metrics_ports=[services.metrics_ports["engine-1"]])
    finally:
        await asyncio.to_thread(services.stop)
        await asyncio.to_thread(hang.stop)
    assert result.parameters["partner_api_hang"] is True
    assert result.sent > 50 and result.acked == result.sent
    assert (result.lost, result.duplicated, result.out_of_order) == (0, 0, 0)
    assert result.delivered == result.expected_deliveries == result.acked * 3 and result.ok()
    figures = result.figures
    assert figures["partner_api_hang"] == "exercised" and "partner_api_hang_not_exercised" not in result.errors
    assert figures["partner_api_requests_received"] >= 1
    # held from before the sending began to its end, and the worker itself reports a sync in flight
    assert figures["partner_api_hang_coverage_pct"] == 100.0
    assert figures["engine_shopify_syncs_running_at_end_of_sending"] >= 1
    assert hang.stats().held == 0                 # stopping released every held request


async def test_hanging_partner_api_holds_requests_until_the_client_gives_up_or_it_stops():
    import aiohttp

    from bench.stack import wait_until

    hang = HangingPartnerApi()
    base_url = await asyncio.to_thread(hang.start)
    url = f"{base_url}/{hang.partner_org_id}/api/2025-07/graphql.json"
    try:
        async with aiohttp.ClientSession() as session:
            with pytest.raises(asyncio.TimeoutError):      # never answered: the client's own timeout ends it
                await session.post(url, data=b"{}", headers={"X-Shopify-Access-Token": hang.token},
                                   timeout=aiohttp.ClientTimeout(total=0.5))
            assert await asyncio.to_thread(wait_until, lambda: hang.stats().abandoned == 1, 10)
            held = asyncio.ensure_future(session.post(url, data=b"{}", headers={"X-Shopify-Access-Token": "other"}))
            assert await asyncio.to_thread(wait_until, lambda: hang.stats().held == 1, 10)
            await asyncio.to_thread(hang.stop)
            async with await held as resp:                   # stopping answers what is still held
                assert resp.status == 503
    finally:
        await asyncio.to_thread(hang.stop)
    assert hang.stats() == HangStats(received=2, bench_requests=1, held=0, max_held=1, abandoned=1)


def test_held_seconds_counts_only_time_with_a_request_held_inside_the_window():
    changes = [(5.0, 1), (8.0, 2), (12.0, 0), (15.0, 1)]
    assert held_seconds(changes, 0.0, 20.0) == 12.0     # 5-12 and 15-20
    assert held_seconds(changes, 10.0, 16.0) == 3.0     # 10-12 and 15-16
    assert held_seconds(changes, 12.0, 15.0) == 0.0
    assert held_seconds([], 0.0, 10.0) == 0.0


def test_a_hang_run_whose_server_received_nothing_is_flagged():
    figures, errors = hang_figures(HangStats(0, 0, 0, 0, 0), 0.0, 30.0)
    assert figures["partner_api_hang"].startswith("NOT EXERCISED") and errors == {"partner_api_hang_not_exercised": 1}
    figures, errors = hang_figures(HangStats(3, 3, 0, 2, 1), 27.0, 30.0, {"engine_shopify_sync_runs_failed": 1})
    assert figures["partner_api_hang"] == "exercised" and errors == {}
    assert figures["partner_api_hang_coverage_pct"] == 90.0 and figures["engine_shopify_sync_runs_failed"] == 1


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
