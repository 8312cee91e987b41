"""connection-storm: N shopper sockets connect and authenticate (JWT) as fast as asked.

Each socket does what the widget does: TCP connect, WebSocket handshake, ``authenticate`` with
its own short-lived widget JWT (Ed25519, checked against revocations in Redis and the contact
in PostgreSQL), until ``ready``.  The generator paces connects at --rate per second in total
(0 = as fast as the gateways accept, at most --concurrency handshakes in flight per process),
in several processes.  Reports authenticated connects per second, the connect latency (first
byte -> ready) percentiles and timeline, failures by reason, the gateways' CPU per connect, and
checks every socket is really there: the gateways' own `convot_gateway_connections` must equal
the sockets that got ``ready``, and each of them must answer a ping (no socket lost).

The shared part (:func:`socket_part`, :func:`run_sockets`) also drives idle-capacity.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
import urllib.request
from dataclasses import dataclass

import orjson

from bench.loadgen import PartPool, cpu_seconds, established_tcp, machine_busy_seconds, own_cpu_seconds, rss_bytes, split
from bench.report import Timeline, add_report_arguments, distribution, finish, merge_timelines
from bench.results import RunResult, environment, latency_summary, merge_encoded, new_histogram

FIELDS = ("ready", "failed", "finished", "pongs", "closed")


@dataclass(frozen=True)
class SocketParams:
    sockets: int = 5000
    orgs: int = 10
    rate: float = 0.0             # connects per second in total; 0 = unpaced
    concurrency: int = 256        # handshakes in flight per process
    processes: int = 2
    hold: float = 2.0             # seconds all sockets stay open before the ping check
    ping_check: bool = True


def add_socket_arguments(p, *, sockets: int, rate: float, processes: int = 2) -> None:
    p.add_argument("--sockets", type=int, default=sockets, help="sockets to open")
    p.add_argument("--orgs", type=int, default=10)
    p.add_argument("--rate", type=float, default=rate, help="connects per second in total (0 = unpaced)")
    p.add_argument("--concurrency", type=int, default=256, help="handshakes in flight per generator process")
    p.add_argument("--processes", type=int, default=processes, help="load-generator processes")
    p.add_argument("--gateways", type=int, default=1, help="gateway processes to start (sharing one port)")
    p.add_argument("--workers", type=int, default=1, help="engine worker processes to start")
    p.add_argument("--hold", type=float, default=2.0, help="seconds all sockets stay open before the ping check")
    p.add_argument("--profile", action="store_true", help="CPU profile of gateway-1 during the run (py-spy)")
    p.add_argument("--db-pool", type=int, default=40,
                   help="database.pool_max of the gateways: each new subject is checked in PostgreSQL, and "
                        "10 connections cap a storm at ~110 connects/s")
    add_report_arguments(p)


# ---- one load-generator process ------------------------------------------------------------

async def socket_part(tokens: list[str], common: dict, ctl) -> dict:
    from bench.client import connect

    host, ports = common["host"], common["ports"]
    loop = asyncio.get_running_loop()
    hist = new_histogram()
    timeline = Timeline(common["start_at"])
    errors: dict[str, int] = {}
    live: list = []
    pongs: dict[int, asyncio.Future] = {}
    state = {"closing": False, "first": None, "last": None}
    timeout = 30.0
    slots = asyncio.Semaphore(common["concurrency"])
    interval = common["processes"] / common["rate"] if common["rate"] else 0.0

    def error(kind: str) -> None:
        errors[kind] = errors.get(kind, 0) + 1

    def expire(ready: asyncio.Future) -> None:
        if not ready.done():
            ready.set_exception(asyncio.TimeoutError())

    async def one(i: int, token: str) -> None:
        # Lean on purpose: the generator shares the machine's cores with the gateways, so every
        # microsecond here is one the system under test does not get (a timer handle, not
        # asyncio.wait_for, for the ready timeout).
        ready = loop.create_future()

        def on_frame(payload: bytes) -> None:
            frame = orjson.loads(payload)
            t = frame.get("type")
            if t == "ready" or (t == "error" and not ready.done()):
                if not ready.done():
                    ready.set_result(frame)
            elif t == "pong":
                fut = pongs.get(frame.get("ref"))
                if fut is not None and not fut.done():
                    fut.set_result(True)

        def on_close(code: int) -> None:
            if not ready.done():
                ready.set_exception(ConnectionError(f"close_{code}"))
                ready.exception()       # marked seen: nobody awaits it when the handshake itself failed
            elif not state["closing"]:
                error(f"unexpected_close_{code}")
                ctl.add("closed")

        async with slots:
            started = time.perf_counter()
            wall = time.time()
            state["first"] = wall if state["first"] is None else min(state["first"], wall)
            try:
                sock = await connect(host, ports[i % len(ports)], on_frame, on_close)
                sock.send(b'{"type":"authenticate","ref":1,"token":' + orjson.dumps(token) + b"}")
                deadline = loop.call_later(timeout, expire, ready)
                try:
                    frame = await ready
                finally:
                    deadline.cancel()
            except (OSError, ConnectionError, asyncio.TimeoutError) as exc:
                error(str(exc)[:40] if isinstance(exc, ConnectionError) else type(exc).__name__)
                ctl.add("failed")
                return
            if frame["type"] != "ready":
                error(frame.get("code", "refused"))
                ctl.add("failed")
                sock.close()
                return
            elapsed_us = int((time.perf_counter() - started) * 1e6)
            hist.record_value(max(1, elapsed_us))
            timeline.record(time.time(), elapsed_us)
            state["last"] = time.time()
            live.append(sock)
            ctl.add("ready")

    await asyncio.sleep(max(0.0, common["start_at"] - time.time()) + random.random() * min(interval, 0.01))
    cpu_at_start = own_cpu_seconds()
    tasks = []
    next_at = time.monotonic()
    for i, token in enumerate(tokens):
        tasks.append(loop.create_task(one(i, token)))
        if interval:
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        elif i % 64 == 63:
            await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    storm_cpu_s = own_cpu_seconds() - cpu_at_start
    ctl.set("finished", 1)

    # hold: the parent measures (RSS, CPU, the gateways' gauges), then every socket must answer
    await ctl.phase_at_least(1)
    answered = 0
    if common["ping_check"]:
        waiters = []
        for n, sock in enumerate(live):
            fut = loop.create_future()
            pongs[n] = fut
            sock.send(orjson.dumps({"type": "ping", "ref": n}))
            waiters.append(fut)
            if n % 256 == 255:
                await asyncio.sleep(0)
        done, _ = await asyncio.wait(waiters, timeout=60) if waiters else (set(), set())
        answered = sum(1 for f in done if f.result() is True)
        for f in waiters:
            if not f.done():
                f.cancel()
        ctl.set("pongs", answered)
    await ctl.phase_at_least(2)
    state["closing"] = True
    for sock in live:
        sock.close()
    await asyncio.sleep(0.2)
    return {"ready": len(live), "attempted": len(tokens), "pongs": answered, "errors": errors,
            "histogram": hist.encode(), "timeline": timeline.encode(), "first": state["first"], "last": state["last"],
            "cpu_s": own_cpu_seconds(), "storm_cpu_s": storm_cpu_s}


# ---- orchestration ---------------------------------------------------------------------------

def plan_tokens(cfg, tenants) -> list[str]:
    from convot.tokens import TokenIssuer

    issuer = TokenIssuer(cfg)
    tokens = [issuer.widget_token(t.org, c, t.app)[0] for t in tenants for c in t.contacts]
    random.Random(11).shuffle(tokens)
    return tokens


def gateway_connections(metrics_ports: list[int]) -> int | None:
    """Sum of the gateways' own `convot_gateway_connections` (None when not scrapeable)."""
    from prometheus_client.parser import text_string_to_metric_families

    if not metrics_ports:
        return None
    total = 0
    try:
        for port in metrics_ports:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
            for fam in text_string_to_metric_families(text):
                if fam.name == "convot_gateway_connections":
                    total += sum(s.value for s in fam.samples)
    except OSError:
        return None
    return int(total)


def run_sockets(cfg, p: SocketParams, host: str, ports: list[int], *, scenario: str, gateway_pids: list[int],
                metrics_ports: list[int], quiet: bool = False, on_hold=None, profile=None) -> RunResult:
    """Open ``p.sockets`` authenticated sockets, hold them, check them, close them."""
    import asyncio as aio

    from bench.seed import seed

    per_org = [p.sockets // p.orgs + (1 if i < p.sockets % p.orgs else 0) for i in range(p.orgs)]
    tenants = aio.run(seed(cfg.database.migrate_url, p.orgs, 0, per_org))
    tokens = plan_tokens(cfg, tenants)
    rss_before = {pid: rss_bytes(pid) for pid in gateway_pids}
    start_at = time.time() + 3.0
    common = {"host": host, "ports": ports, "rate": p.rate, "concurrency": p.concurrency, "start_at": start_at,
              "processes": p.processes, "ping_check": p.ping_check}
    pool = PartPool(socket_part, split(tokens, p.processes), common, FIELDS)
    # CPU is counted from the storm's start (the generator processes start up before it)
    time.sleep(max(0.0, start_at - time.time()))
    cpu_before = {pid: cpu_seconds(pid) for pid in gateway_pids}
    machine_before = machine_busy_seconds()
    last = {"t": time.monotonic(), "ready": 0}

    def describe(t: dict) -> str:
        now = time.monotonic()
        rate = (t["ready"] - last["ready"]) / max(1e-3, now - last["t"])
        last.update(t=now, ready=t["ready"])
        return (f"{scenario}: ready {t['ready']:>7,}/{p.sockets:,} (+{rate:,.0f}/s) failed {t['failed']:,} "
                f"lost {t['closed']:,}")

    expected_time = p.sockets / p.rate if p.rate else p.sockets / 500
    pool.wait(lambda t: t["finished"] == p.processes, 60 + expected_time * 3, describe, quiet)
    storm_end = time.time()
    cpu_after = {pid: cpu_seconds(pid) for pid in gateway_pids}
    machine_cpu = machine_busy_seconds() - machine_before
    top = profile.stop() if profile is not None else None
    time.sleep(p.hold)
    figures: dict = {}
    rss_after = {pid: rss_bytes(pid) for pid in gateway_pids}
    reported = gateway_connections(metrics_ports)
    established = sum(established_tcp(port) for port in set(ports))
    if on_hold is not None:
        figures.update(on_hold())
    pool.set_phase(1)
    pool.wait(lambda t: t["pongs"] >= t["ready"] or not p.ping_check, 90, describe, quiet)
    pool.set_phase(2)
    parts = pool.finish(quiet=quiet)

    result = RunResult(scenario, {**p.__dict__, "gateways": len(gateway_pids) or "external"},
                       environment=environment())
    ready = sum(part["ready"] for part in parts)
    result.sent = sum(part["attempted"] for part in parts)
    result.acked = ready
    result.expected_deliveries = ready                       # one pong per ready socket
    result.delivered = sum(part["pongs"] for part in parts) if p.ping_check else ready
    result.lost = (result.sent - ready) + (result.expected_deliveries - result.delivered)
    for part in parts:
        for k, v in part["errors"].items():
            result.errors[k] = result.errors.get(k, 0) + v
    hist = merge_encoded([part["histogram"] for part in parts])
    result.latency = latency_summary(hist)
    result.latency_distribution = distribution(hist)
    result.timeline = merge_timelines([part["timeline"] for part in parts])
    firsts = [part["first"] for part in parts if part["first"]]
    lasts = [part["last"] for part in parts if part["last"]]
    span = (max(lasts) - min(firsts)) if firsts and lasts else 0.0
    result.duration_s = round(span, 3)
    result.deliveries_per_s = round(ready / span, 1) if span else 0.0
    figures["authenticated_connects_per_s"] = result.deliveries_per_s
    figures["sockets_ready"] = ready
    if reported is not None:
        figures["gateway_reported_connections"] = reported
    figures["established_tcp_on_gateway_port"] = established
    if gateway_pids:
        cpu = sum(cpu_after[pid] - cpu_before[pid] for pid in gateway_pids)
        figures["gateway_cpu_ms_per_connect"] = round(cpu * 1000 / max(1, ready), 3)
        figures["gateway_cpu_busy_pct_during_storm"] = round(cpu * 100 / max(1e-3, storm_end - start_at), 1)
        grown = sum(rss_after[pid] - rss_before[pid] for pid in gateway_pids)
        figures["gateway_rss_mib_before"] = round(sum(rss_before.values()) / 2**20, 1)
        figures["gateway_rss_mib_after"] = round(sum(rss_after.values()) / 2**20, 1)
        figures["gateway_rss_kib_per_socket"] = round(grown / 1024 / max(1, ready), 2)
    figures["generator_cpu_s"] = round(sum(part["cpu_s"] for part in parts), 2)
    # Where a connect's CPU goes, from the storm's start to its last `ready`: the gateways, the
    # generator, and the whole machine (the rest: Redis, PostgreSQL, the kernel, the worker).
    # On a machine of C cores the authenticated-connect rate cannot exceed C * 1000 / machine ms.
    figures["generator_cpu_ms_per_connect"] = round(sum(part["storm_cpu_s"] for part in parts) * 1000 / max(1, ready), 3)
    figures["machine_cpu_ms_per_connect"] = round(machine_cpu * 1000 / max(1, ready), 3)
    figures["machine_cpu_busy_pct_during_storm"] = round(
        machine_cpu * 100 / max(1e-3, (storm_end - start_at) * (os.cpu_count() or 1)), 1)
    result.figures = figures
    if top:
        result.figures["gateway_profile_top"] = top
    return result


def start_profile(args, pid: int, scenario: str):
    """py-spy on gateway-1 when --profile: collapsed stacks next to the results."""
    if not getattr(args, "profile", False):
        return None
    from pathlib import Path

    from bench.loadgen import GatewayProfile

    return GatewayProfile(pid, Path(args.out) / f"{scenario}-{time.strftime('%Y%m%d-%H%M%S')}-gateway.collapsed")


def sockets_ok(result: RunResult) -> bool:
    reported = result.figures.get("gateway_reported_connections")
    return result.ok() and (reported is None or reported == result.acked)


def start_floor(cfg, n: int) -> tuple[list, int]:
    """``n`` floor servers (bench/floor.py) sharing one free port: (processes, port)."""
    import subprocess

    from bench.stack import config_env
    from convot.embedded import free_port

    port = free_port()
    procs = [subprocess.Popen([sys.executable, "-m", "bench.floor", "--port", str(port)], env=config_env(cfg),
                              stdout=subprocess.PIPE, stdin=subprocess.DEVNULL) for _ in range(n)]
    for proc in procs:
        if proc.stdout.readline().strip() != b"ready":
            raise RuntimeError("floor server did not start")
    return procs, port


def run_floor(args, p: SocketParams, servers) -> RunResult:
    """--floor: the same storm against bench/floor.py servers instead of the gateways."""
    cfg = servers.start()
    procs, port = start_floor(cfg, args.gateways)
    try:
        print(f"connection-storm --floor: {p.sockets:,} sockets, {args.gateways} floor server(s) "
              f"(handshake + JWT only), {p.processes} generator processes, {os.cpu_count()} CPUs", file=sys.stderr)
        result = run_sockets(cfg, p, "127.0.0.1", [port], scenario="connection-storm-floor",
                             gateway_pids=[proc.pid for proc in procs], metrics_ports=[])
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)
    return result


def main(args) -> int:
    from bench.stack import EmbeddedServers, Services

    p = SocketParams(sockets=args.sockets, orgs=args.orgs, rate=args.rate, concurrency=args.concurrency,
                     processes=args.processes, hold=args.hold)
    servers = EmbeddedServers()
    if args.floor:
        try:
            result = run_floor(args, p, servers)
        finally:
            servers.stop()
        return finish(result, args, ok=sockets_ok(result))
    cfg = servers.start().replace(database={"pool_max": args.db_pool})
    services = Services(cfg, gateways=args.gateways, workers=args.workers)
    try:
        services.start()
        print(f"connection-storm: {p.sockets:,} sockets, rate {p.rate or 'unpaced'}, {args.gateways} gateway(s), "
              f"{p.processes} generator processes, {os.cpu_count()} CPUs", file=sys.stderr)
        gws = [n for n in services.procs if n.startswith("gateway")]
        profile = start_profile(args, services.procs["gateway-1"].pid, "connection-storm")
        result = run_sockets(cfg, p, "127.0.0.1", [cfg.gateway.port], scenario="connection-storm",
                             gateway_pids=[services.procs[n].pid for n in gws],
                             metrics_ports=[services.metrics_ports[n] for n in gws], profile=profile)
    finally:
        services.stop()
        servers.stop()
    return finish(result, args, ok=sockets_ok(result))


def add_arguments(p) -> None:
    add_socket_arguments(p, sockets=5000, rate=0.0)
    p.add_argument("--floor", action="store_true",
                   help="storm bench/floor.py servers (handshake + JWT verification only, --gateways of them) "
                        "instead of the gateways: this machine's ceiling for an authenticated connect")
