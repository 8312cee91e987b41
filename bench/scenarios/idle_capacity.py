"""idle-capacity: how many idle authenticated sockets one gateway process holds, and its RSS
per socket.

Opens --sockets shopper sockets (JWT-authenticated, as in connection-storm, paced at --rate)
to ONE gateway process, lets them sit idle for --hold seconds (keep-alive pings flowing), and
reports the gateway's resident memory before and after (``/proc/<pid>/status`` VmRSS) divided
by the sockets, its CPU while idle, and checks that every socket is still there: the gateway's
own `convot_gateway_connections` equals the sockets that got ``ready`` and each answers a ping.
"""

from __future__ import annotations

import os
import sys
import time

from bench.loadgen import cpu_seconds
from bench.report import finish
from bench.scenarios.connection_storm import SocketParams, add_socket_arguments, run_sockets, sockets_ok, start_profile

IDLE_CPU_WINDOW = 5.0


def add_arguments(p) -> None:
    add_socket_arguments(p, sockets=10000, rate=2000.0)


def idle_cpu(pid: int):
    """The on-hold measurement: the gateway's CPU use while every socket sits idle."""
    def measure() -> dict:
        before = cpu_seconds(pid)
        time.sleep(IDLE_CPU_WINDOW)
        return {"gateway_idle_cpu_pct": round((cpu_seconds(pid) - before) * 100 / IDLE_CPU_WINDOW, 2)}
    return measure


def main(args) -> int:
    from bench.stack import EmbeddedServers, Services

    if args.gateways != 1:
        print("idle-capacity measures one gateway process: --gateways is 1", file=sys.stderr)
        return 2
    p = SocketParams(sockets=args.sockets, orgs=args.orgs, rate=args.rate, concurrency=args.concurrency,
                     processes=args.processes, hold=args.hold)
    servers = EmbeddedServers()
    cfg = servers.start().replace(database={"pool_max": args.db_pool})
    services = Services(cfg, gateways=1, workers=args.workers)
    try:
        services.start()
        time.sleep(1.0)                 # the gateway's start-up allocations settle before the baseline
        pid = services.procs["gateway-1"].pid
        print(f"idle-capacity: {p.sockets:,} idle sockets on one gateway process, {os.cpu_count()} CPUs",
              file=sys.stderr)
        result = run_sockets(cfg, p, "127.0.0.1", [cfg.gateway.port], scenario="idle-capacity", gateway_pids=[pid],
                             metrics_ports=[services.metrics_ports["gateway-1"]], on_hold=idle_cpu(pid),
                             profile=start_profile(args, pid, "idle-capacity"))
    finally:
        services.stop()
        servers.stop()
    return finish(result, args, ok=sockets_ok(result))
