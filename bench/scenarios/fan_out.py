"""fan-out: one organisation, many agents: every message goes to every agent's socket.

The steady-chat machinery (bench/scenarios/steady_chat.py) with all shoppers and --agents
agents in a single organisation, so each acknowledged message is written to agents + 1 sockets
(the agents and the sender's own echo).  The gateway frames each stream entry once and writes
the same bytes to every recipient; this scenario measures that path: deliveries per second,
append -> receipt latency percentiles, zero loss, duplicates and reordering at every agent.
"""

from __future__ import annotations

import os
import sys

from bench.report import add_report_arguments, finish
from bench.scenarios.steady_chat import Params, add_warmup_argument, run


def add_arguments(p) -> None:
    p.add_argument("--agents", type=int, default=200, help="agents of the one organisation (all connected)")
    p.add_argument("--shoppers", type=int, default=50, help="shoppers sending")
    p.add_argument("--rate", type=float, default=50.0, help="messages per second in total")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of sending")
    add_warmup_argument(p)
    p.add_argument("--processes", type=int, default=2, help="load-generator processes")
    p.add_argument("--gateways", type=int, default=1, help="gateway processes to start (sharing one port)")
    p.add_argument("--workers", type=int, default=1)
    add_report_arguments(p)


def params(args) -> Params:
    return Params(shoppers=args.shoppers, orgs=1, agents=args.agents, rate=args.rate, duration=args.duration,
                  processes=args.processes, warmup=args.warmup)


def run_fan_out(cfg, p: Params, host: str, ports: list[int], *, quiet: bool = False):
    result = run(cfg, p, host, ports, quiet=quiet)
    result.scenario = "fan-out"
    result.figures = {**result.figures, "recipients_per_message": p.agents + 1,
                      "deliveries_per_message": round(result.delivered / max(1, result.acked), 2)}
    return result


def main(args) -> int:
    from bench.stack import EmbeddedServers, Services

    p = params(args)
    servers = EmbeddedServers()
    cfg = servers.start()
    services = Services(cfg, gateways=args.gateways, workers=args.workers)
    try:
        services.start()
        print(f"fan-out: 1 organisation, {p.agents} agents, {p.shoppers} shoppers, {p.rate:g} msg/s "
              f"(x{p.agents + 1} deliveries), {p.duration:g} s, {os.cpu_count()} CPUs", file=sys.stderr)
        result = run_fan_out(cfg, p, "127.0.0.1", [cfg.gateway.port])
    finally:
        services.stop()
        servers.stop()
    return finish(result, args)
