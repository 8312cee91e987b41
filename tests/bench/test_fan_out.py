"""fan-out in short mode: one organisation, many agents; every agent gets every message once,
in order (correctness only)."""

import asyncio

import pytest

from bench.scenarios.fan_out import run_fan_out
from bench.scenarios.steady_chat import Params
from bench.stack import Services

pytestmark = pytest.mark.slow


async def test_short_fan_out_reaches_every_agent(config):
    cfg = config.replace(gateway={"rate_limit_per_second": 100.0})
    services = Services(cfg, gateways=1, workers=1)
    await asyncio.to_thread(services.start)
    try:
        p = Params(shoppers=6, orgs=1, agents=30, rate=30.0, duration=3.0, settle=1.0, processes=2)
        result = await asyncio.to_thread(run_fan_out, cfg, p, "127.0.0.1", [cfg.gateway.port], quiet=True)
    finally:
        await asyncio.to_thread(services.stop)
    assert result.scenario == "fan-out"
    assert result.sent > 50 and result.acked == result.sent
    assert result.expected_deliveries == result.acked * 31               # 30 agents + the sender's echo
    assert (result.lost, result.duplicated, result.out_of_order) == (0, 0, 0) and result.ok()
    assert result.figures["deliveries_per_message"] == 31
    assert sum(t["count"] for t in result.timeline) == result.delivered
    assert [p for p, _ in result.latency_distribution][:3] == [0, 10, 25]
