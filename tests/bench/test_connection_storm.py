"""connection-storm and idle-capacity in short mode against a real gateway process:
correctness only (every socket authenticated, counted by the gateway, alive, answering) --
the connect rate and RSS figures are the bench's business, never asserted here."""

import asyncio

import pytest

from bench.scenarios.connection_storm import SocketParams, run_sockets, sockets_ok, start_floor
from bench.scenarios.idle_capacity import idle_cpu
from bench.stack import Services

pytestmark = pytest.mark.slow


async def test_short_connection_storm_authenticates_every_socket(config):
    services = Services(config, gateways=2, workers=0)
    await asyncio.to_thread(services.start)
    try:
        p = SocketParams(sockets=300, orgs=3, rate=0.0, concurrency=64, processes=2, hold=0.5)
        gws = ["gateway-1", "gateway-2"]
        result = await asyncio.to_thread(
            run_sockets, config, p, "127.0.0.1", [config.gateway.port], scenario="connection-storm",
            gateway_pids=[services.procs[n].pid for n in gws], metrics_ports=[services.metrics_ports[n] for n in gws],
            quiet=True)
    finally:
        await asyncio.to_thread(services.stop)
    assert (result.sent, result.acked, result.delivered, result.lost) == (300, 300, 300, 0), result.errors
    assert result.figures["gateway_reported_connections"] == 300        # both gateways' gauges together
    assert result.errors == {} and sockets_ok(result)
    assert result.latency["count"] == 300 and sum(t["count"] for t in result.timeline) == 300
    assert result.figures["gateway_cpu_ms_per_connect"] > 0
    assert result.figures["generator_cpu_ms_per_connect"] > 0 and result.figures["machine_cpu_ms_per_connect"] > 0
    assert not services.log_dir.exists()            # a clean run leaves no log folder behind


async def test_short_storm_against_the_floor_servers(config):
    """--floor: the same storm against bench/floor.py (handshake + JWT only), two processes."""
    procs, port = await asyncio.to_thread(start_floor, config, 2)
    try:
        p = SocketParams(sockets=200, orgs=2, rate=0.0, concurrency=64, processes=2, hold=0.2)
        result = await asyncio.to_thread(
            run_sockets, config, p, "127.0.0.1", [port], scenario="connection-storm-floor",
            gateway_pids=[proc.pid for proc in procs], metrics_ports=[], quiet=True)
    finally:
        for proc in procs:
            proc.terminate()
            await asyncio.to_thread(proc.wait, 10)
    assert (result.sent, result.acked, result.delivered, result.lost) == (200, 200, 200, 0), result.errors
    assert sockets_ok(result) and "gateway_reported_connections" not in result.figures
    assert result.figures["established_tcp_on_gateway_port"] == 200


async def test_short_idle_capacity_holds_and_measures_one_gateway(config):
    services = Services(config, gateways=1, workers=0)
    await asyncio.to_thread(services.start)
    try:
        pid = services.procs["gateway-1"].pid
        p = SocketParams(sockets=400, orgs=2, rate=400.0, processes=2, hold=0.5)
        result = await asyncio.to_thread(
            run_sockets, config, p, "127.0.0.1", [config.gateway.port], scenario="idle-capacity",
            gateway_pids=[pid], metrics_ports=[services.metrics_ports["gateway-1"]], quiet=True,
            on_hold=idle_cpu(pid))
    finally:
        await asyncio.to_thread(services.stop)
    assert (result.acked, result.delivered, result.lost) == (400, 400, 0) and sockets_ok(result)
    assert result.figures["gateway_reported_connections"] == 400
    assert result.figures["gateway_rss_kib_per_socket"] > 0
    assert result.figures["gateway_rss_mib_after"] > result.figures["gateway_rss_mib_before"]
    assert result.figures["gateway_idle_cpu_pct"] >= 0


async def test_a_refused_token_is_a_failure_not_a_socket(config):
    services = Services(config, gateways=1, workers=0)
    await asyncio.to_thread(services.start)
    try:
        p = SocketParams(sockets=20, orgs=1, rate=0.0, processes=1, hold=0.2)
        # a gateway that trusts other keys refuses every token: nothing may count as connected
        import bench.scenarios.connection_storm as cs

        real = cs.plan_tokens
        cs.plan_tokens = lambda cfg, tenants: [t[:-4] + "AAAA" for t in real(cfg, tenants)]
        try:
            result = await asyncio.to_thread(
                run_sockets, config, p, "127.0.0.1", [config.gateway.port], scenario="connection-storm",
                gateway_pids=[services.procs["gateway-1"].pid], metrics_ports=[services.metrics_ports["gateway-1"]],
                quiet=True)
        finally:
            cs.plan_tokens = real
    finally:
        await asyncio.to_thread(services.stop)
    assert result.acked == 0 and result.lost == 20 and not sockets_ok(result)
    assert sum(result.errors.values()) == 20 and all(k.startswith("close_4401") for k in result.errors)
    assert result.figures["gateway_reported_connections"] == 0
