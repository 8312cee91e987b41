"""steady-chat: S shoppers across O organisations with A agents each, R messages/s in total.

Every shopper opens a conversation and sends at R/S messages per second; every agent of the
organisation and the shopper itself (echo) must receive each acknowledged message exactly
once, in sequence order.  Reports sent, acked, delivered, lost, duplicated and out-of-order
counts and the end-to-end latency (send -> receipt, both clocks of this machine)
percentiles from an HDR histogram.  The first --warmup seconds of sending (default 5), in which
every shopper opens its conversation, are checked like the rest but kept out of the latency
percentiles: the figure is the steady state.

The clients run in several processes (each its own uvloop) so the generator is not the
bottleneck; the system under test is either started here (embedded PostgreSQL and Redis,
gateway and worker processes) or given by --gateway host:port[,host:port] plus the
CONVOT_* environment of the running system.

With --partner-api-hang every organisation also gets a Shopify connection, due at once, and
the engine workers point at a local Partner API that never answers (bench/partner_hang.py):
their sync runs hang on it (each until shopify.request_timeout, then the next due connection)
while chat is measured (issue #8). The sending
starts only once the hanging server holds a request; the result records the option, what the
server received and held, the share of the sending time with a request held, and the
workers' own sync metrics. A run whose hanging server saw no request is flagged and fails.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import os
import random
import sys
import time
from dataclasses import dataclass

import orjson

from bench.report import Timeline, add_report_arguments, distribution, finish, merge_timelines
from bench.results import RunResult, environment, latency_summary, merge_encoded, new_histogram


@dataclass(frozen=True)
class Params:
    shoppers: int = 1000
    orgs: int = 50
    agents: int = 3
    rate: float = 1000.0          # messages per second, all shoppers together
    duration: float = 30.0
    settle: float = 5.0           # seconds without a new delivery that end a run
    processes: int = 2
    body_bytes: int = 64
    partner_api_hang: bool = False   # the engines' Shopify sync hangs on a local Partner API throughout
    warmup: float = 0.0           # seconds of sending before the measured window (not in the latency)


@dataclass
class ClientPlan:
    kind: str                     # "shopper" | "agent"
    org: str
    subject: str
    token: str


def add_arguments(p) -> None:
    p.add_argument("--shoppers", type=int, default=1000)
    p.add_argument("--orgs", type=int, default=50)
    p.add_argument("--agents", type=int, default=3, help="agents per organisation")
    p.add_argument("--rate", type=float, default=1000.0, help="messages per second in total")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of sending")
    add_warmup_argument(p)
    p.add_argument("--processes", type=int, default=2, help="load-generator processes")
    p.add_argument("--gateways", type=int, default=1, help="gateway processes to start (sharing one port)")
    p.add_argument("--workers", type=int, default=1, help="engine worker processes to start")
    p.add_argument("--shards", type=int, default=16)
    p.add_argument("--redis-cluster", type=int, default=0, metavar="N",
                   help="run on a local N-node Redis Cluster (N >= 3) instead of one Redis")
    p.add_argument("--partner-api-hang", action="store_true",
                   help="give every organisation a Shopify connection and point the engine workers at a local "
                        "Partner API that never answers (isolation of the revenue sync from chat)")
    add_report_arguments(p)          # --out, --compare, --no-plots


def add_warmup_argument(p) -> None:
    p.add_argument("--warmup", type=float, default=5.0,
                   help="seconds of sending before the measured window: every shopper opens its conversation "
                        "then (a burst of conversation starts); those messages are checked for loss, "
                        "duplicates and order but kept out of the latency percentiles (0: measure from the "
                        "first message)")


# ---- one load-generator process ------------------------------------------------------------

class Receiver:
    __slots__ = ("org", "ids", "dups", "ooo", "last")

    def __init__(self, org: str):
        self.org = org
        self.ids: set[str] = set()
        self.dups = 0
        self.ooo = 0
        self.last: dict[str, int] = {}


async def _run_part(host: str, ports: list[int], plans: list[ClientPlan], p: Params, start_at: float,
                    progress, slot: int) -> dict:
    from bench.client import connect

    hist = new_histogram()
    timeline = Timeline(start_at)
    receivers: list[tuple[ClientPlan, Receiver]] = []
    acked: list[tuple[str, str, int]] = []          # (org, message id, shopper index in this part)
    errors: dict[str, int] = {}
    counters = {"sent": 0, "delivered": 0}
    sockets = []
    measure_from = [2 ** 63]     # send time (ns) from which latency is recorded: set at the start barrier

    def on_frame_for(rcv: Receiver, waiters: dict):
        def on_frame(payload: bytes) -> None:
            frame = orjson.loads(payload)
            t = frame.get("type")
            if t == "message":
                msg = frame["message"]
                mid = msg["id"]
                if mid in rcv.ids:
                    rcv.dups += 1
                    return
                rcv.ids.add(mid)
                conv, seq = msg["conversation_id"], msg["seq"]
                if seq <= rcv.last.get(conv, 0):
                    rcv.ooo += 1
                rcv.last[conv] = seq
                sent_ns = (msg.get("meta") or {}).get("t")
                if sent_ns and sent_ns >= measure_from[0]:
                    now_ns = time.time_ns()
                    hist.record_value(max(1, (now_ns - sent_ns) // 1000))
                    timeline.record(now_ns / 1e9, (now_ns - sent_ns) // 1000)
                counters["delivered"] += 1
            elif t == "ack" or t == "ready":
                w = waiters.pop(frame.get("ref"), None)
                if w is not None and not w.done():
                    w.set_result(frame)
            elif t == "error":
                errors[frame["code"]] = errors.get(frame["code"], 0) + 1
                w = waiters.pop(frame.get("ref"), None)
                if w is not None and not w.done():
                    w.set_result(frame)
        return on_frame

    def on_close(code: int) -> None:
        if code not in (1000, 1005):
            errors[f"close_{code}"] = errors.get(f"close_{code}", 0) + 1

    loop = asyncio.get_running_loop()
    shopper_states = []
    for i, plan in enumerate(plans):
        rcv = Receiver(plan.org)
        waiters: dict = {}
        port = ports[i % len(ports)]
        for attempt in range(20):
            try:
                sock = await connect(host, port, on_frame_for(rcv, waiters), on_close)
                break
            except OSError:
                await asyncio.sleep(0.1 * (attempt + 1))
        else:
            raise ConnectionError(f"cannot connect to {host}:{port}")
        ready = loop.create_future()
        waiters["auth"] = ready
        sock.send(orjson.dumps({"type": "authenticate", "token": plan.token, "ref": "auth"}))
        frame = await asyncio.wait_for(ready, 30)
        if frame["type"] != "ready":
            raise RuntimeError(f"authentication refused: {frame}")
        sockets.append(sock)
        receivers.append((plan, rcv))
        if plan.kind == "shopper":
            shopper_states.append((i, plan, sock, waiters))

    # Start barrier: nobody sends before every process has connected all its sockets (a
    # message sent before an agent is connected would count as lost for that agent).
    n_parts = len(progress) // 3
    progress[2 * n_parts + slot] = 1
    while progress[len(progress) - 1] == 0:
        await asyncio.sleep(0.02)
    start_at = progress[len(progress) - 1] / 1000
    measure_from[0] = int((start_at + p.warmup) * 1e9)
    timeline.t0 = start_at + p.warmup
    body = "x" * p.body_bytes
    interval = p.shoppers / p.rate
    stop_at = start_at + p.warmup + p.duration

    async def shopper(index: int, plan: ClientPlan, sock, waiters: dict) -> None:
        conv = None
        n = 0
        await asyncio.sleep(max(0.0, start_at - time.time()) + random.random() * interval)
        next_at = time.monotonic()
        while time.time() < stop_at:
            n += 1
            ref = n
            fut = loop.create_future()
            waiters[ref] = fut
            frame = {"type": "send", "client_msg_id": f"{plan.subject[:8]}-{n}", "body": body, "ref": ref,
                     "meta": {"t": time.time_ns()}}
            if conv is not None:
                frame["conversation_id"] = conv
            sock.send(orjson.dumps(frame))
            counters["sent"] += 1
            if conv is None:
                reply = await asyncio.wait_for(fut, 30)
                if reply["type"] == "ack":
                    conv = reply["conversation_id"]
                    acked.append((plan.org, reply["id"], index))
            else:
                fut.add_done_callback(lambda f, org=plan.org: f.result()["type"] == "ack"
                                      and acked.append((org, f.result()["id"], index)))
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def report() -> None:
        while True:  # runs until the settle ends, so the other processes see our deliveries
            progress[slot * 2] = counters["sent"]
            progress[slot * 2 + 1] = counters["delivered"]
            await asyncio.sleep(0.25)

    reporter = loop.create_task(report())
    await asyncio.gather(*(shopper(*s) for s in shopper_states))
    # Settle: wait until no process has received anything for p.settle seconds (the shared
    # progress counters), at most 60 s.
    def everyone() -> int:
        return sum(progress[i] for i in range(1, 2 * n_parts, 2))

    quiet_since, last_count = time.monotonic(), -1
    settle_deadline = time.monotonic() + p.settle + 60
    while time.monotonic() < settle_deadline:
        now_count = everyone()
        if now_count != last_count:
            last_count, quiet_since = now_count, time.monotonic()
        elif time.monotonic() - quiet_since >= p.settle:
            break
        await asyncio.sleep(0.1)
    reporter.cancel()
    progress[slot * 2] = counters["sent"]
    progress[slot * 2 + 1] = counters["delivered"]
    for sock in sockets:
        sock.close()
    return {
        "sent": counters["sent"], "acked": acked, "errors": errors, "histogram": hist.encode(),
        "timeline": timeline.encode(),
        "receivers": [(plan.kind, plan.org, plan.subject, rcv.ids, rcv.dups, rcv.ooo) for plan, rcv in receivers],
        "shoppers": {i: plans[i].subject for i, _, _, _ in shopper_states},
    }


def _part_main(host, ports, plans, p, start_at, progress, slot, queue) -> None:
    import uvloop

    try:
        queue.put((slot, uvloop.run(_run_part(host, ports, plans, p, start_at, progress, slot))))
    except BaseException as exc:  # reported to the parent, which fails the run
        queue.put((slot, {"failed": repr(exc)}))


# ---- orchestration --------------------------------------------------------------------------

def plan_clients(cfg, tenants, p: Params) -> list[ClientPlan]:
    from convot.tokens import TokenIssuer

    issuer = TokenIssuer(cfg)
    plans = []
    for t in tenants:
        for a in t.agents:
            plans.append(ClientPlan("agent", t.org, a, issuer.member_token(t.org, a, "agent", 0)[0]))
        for c in t.contacts:
            plans.append(ClientPlan("shopper", t.org, c, issuer.widget_token(t.org, c, t.app)[0]))
    return plans


HANG_WAIT_SECONDS = 30.0   # for the first hanging request before sending (the sync loop polls every 5 s)


def run(cfg, p: Params, host: str, ports: list[int], *, quiet: bool = False, partner_hang=None,
        engine_metrics_ports: list[int] = ()) -> RunResult:
    """``partner_hang`` (a started bench.partner_hang.HangingPartnerApi the engines point at) is
    required with ``p.partner_api_hang``; ``engine_metrics_ports`` are scraped for its evidence."""
    from bench.seed import seed, seed_shopify_connections

    if p.partner_api_hang != (partner_hang is not None):
        raise ValueError("partner_api_hang needs the hanging Partner API the engines point at, and only then")
    per_org = [p.shoppers // p.orgs + (1 if i < p.shoppers % p.orgs else 0) for i in range(p.orgs)]
    tenants = asyncio.run(seed(cfg.database.migrate_url, p.orgs, p.agents, per_org))
    if partner_hang is not None:
        from convot.crypto import Encryptor

        asyncio.run(seed_shopify_connections(cfg.database.migrate_url, Encryptor.from_config(cfg), tenants,
                                             partner_hang.partner_org_id, partner_hang.token))
    hang_deadline = time.monotonic() + HANG_WAIT_SECONDS
    plans = plan_clients(cfg, tenants, p)
    random.Random(7).shuffle(plans)
    parts = [plans[i::p.processes] for i in range(p.processes)]
    ctx = mp.get_context("spawn")
    # [sent, delivered] per process, then a connected flag per process, then the start time (ms).
    progress = ctx.Array("q", p.processes * 3 + 1, lock=False)
    queue = ctx.Queue()
    planned = time.time() + 3600   # replaced by the start barrier below
    procs = [ctx.Process(target=_part_main, args=(host, ports, part, p, planned, progress, i, queue), daemon=True)
             for i, part in enumerate(parts)]
    for proc in procs:
        proc.start()
    results: dict[int, dict] = {}
    connect_deadline = time.time() + 600
    while not all(progress[2 * p.processes + i] for i in range(p.processes)) and time.time() < connect_deadline:
        if not queue.empty():          # a part failed while connecting
            slot, res = queue.get()
            results[slot] = res
            break
        time.sleep(0.05)
    if partner_hang is not None:   # measure only with the hang in force
        from bench.stack import wait_until

        wait_until(lambda: partner_hang.stats().received > 0, max(0.0, hang_deadline - time.monotonic()), 0.1)
    start_at = time.time() + 1.0
    progress[3 * p.processes] = int(start_at * 1000)
    last = (0, 0)
    deadline = start_at + p.warmup + p.duration + p.settle + 120
    sync_metrics, scraped = None, False     # the workers' sync metrics, read as the sending ends
    while len(results) < len(procs) and time.time() < deadline:
        if partner_hang is not None and engine_metrics_ports and not scraped and time.time() >= start_at + p.warmup + p.duration:
            sync_metrics, scraped = _scrape_sync(engine_metrics_ports), True
        try:
            slot, res = queue.get(timeout=1.0)
            results[slot] = res
        except Exception:
            pass
        sent = sum(progress[i * 2] for i in range(p.processes))
        delivered = sum(progress[i * 2 + 1] for i in range(p.processes))
        if not quiet and time.time() > start_at:
            print(f"\r  t={time.time() - start_at:5.1f}s sent {sent:>9,} (+{sent - last[0]:,}/s) "
                  f"delivered {delivered:>10,} (+{delivered - last[1]:,}/s)   ", end="", flush=True, file=sys.stderr)
        last = (sent, delivered)
    for proc in procs:
        proc.join(5)
    if not quiet:
        print(file=sys.stderr)
    failed = [r["failed"] for r in results.values() if "failed" in r]
    if failed or len(results) < len(procs):
        raise RuntimeError(f"load generator failed: {failed or 'timeout'}")
    result = aggregate(p, results.values())
    if partner_hang is not None:
        from bench.partner_hang import hang_figures, held_seconds

        if engine_metrics_ports and not scraped:
            sync_metrics = _scrape_sync(engine_metrics_ports)
        measured = start_at + p.warmup
        covered = held_seconds(partner_hang.changes(), measured, measured + p.duration)
        figures, errors = hang_figures(partner_hang.stats(), covered, p.duration, sync_metrics)
        if engine_metrics_ports and sync_metrics is None:
            figures["engine_shopify_metrics"] = "unreachable"
        result.figures.update(figures)
        result.errors.update(errors)
    return result


def _scrape_sync(ports) -> dict | None:
    from bench.partner_hang import scrape_engine_sync

    return scrape_engine_sync(list(ports))


def aggregate(p: Params, parts) -> RunResult:
    result = RunResult("steady-chat", p.__dict__.copy(), environment=environment())
    acked_by_org: dict[str, set[str]] = {}
    acked_by_shopper: dict[str, set[str]] = {}
    receivers = []
    for part in parts:
        result.sent += part["sent"]
        for code, n in part["errors"].items():
            result.errors[code] = result.errors.get(code, 0) + n
        for org, mid, index in part["acked"]:
            acked_by_org.setdefault(org, set()).add(mid)
            acked_by_shopper.setdefault(part["shoppers"][index], set()).add(mid)
        receivers.extend(part["receivers"])
    result.acked = sum(len(v) for v in acked_by_org.values())
    for kind, org, subject, ids, dups, ooo in receivers:
        expected = acked_by_org.get(org, set()) if kind == "agent" else acked_by_shopper.get(subject, set())
        result.expected_deliveries += len(expected)
        result.delivered += len(ids & expected)
        missing = len(expected - ids)
        result.lost += missing
        if missing:
            result.errors[f"lost_at_{kind}"] = result.errors.get(f"lost_at_{kind}", 0) + missing
        result.duplicated += dups
        result.out_of_order += ooo
    hist = merge_encoded([part["histogram"] for part in parts])
    result.latency = latency_summary(hist)
    result.latency_distribution = distribution(hist)
    result.timeline = merge_timelines([part.get("timeline") for part in parts])
    result.duration_s = p.warmup + p.duration        # sending time: every delivery of it is checked
    result.deliveries_per_s = round(result.delivered / result.duration_s, 1) if result.duration_s else 0.0
    if p.warmup:
        result.figures["latency_window"] = f"messages sent after the first {p.warmup:g} s (warm-up) of sending"
    return result


def main(args) -> int:
    from bench.stack import EmbeddedServers, Services

    p = Params(shoppers=args.shoppers, orgs=args.orgs, agents=args.agents, rate=args.rate, duration=args.duration,
               processes=args.processes, partner_api_hang=args.partner_api_hang, warmup=args.warmup)
    servers = EmbeddedServers(redis_cluster=args.redis_cluster)
    cfg = servers.start().replace(engine={"shards": args.shards})
    hang = services = None
    try:
        if p.partner_api_hang:   # before the workers start: they read shopify.api_base once
            from bench.partner_hang import HangingPartnerApi

            hang = HangingPartnerApi()
            cfg = cfg.replace(shopify={"api_base": hang.start()})
        services = Services(cfg, gateways=args.gateways, workers=args.workers)
        services.start()
        print(f"steady-chat: {p.shoppers} shoppers, {p.orgs} orgs x {p.agents} agents, {p.rate:g} msg/s, "
              f"{p.duration:g} s (+{p.warmup:g} s warm-up), {args.gateways} gateway(s), {args.workers} worker(s), {os.cpu_count()} CPUs"
              + (f", Partner API hanging at {hang.base_url}" if hang else ""), file=sys.stderr)
        engine_ports = [port for name, port in services.metrics_ports.items() if name.startswith("engine")]
        result = run(cfg, p, "127.0.0.1", [cfg.gateway.port], partner_hang=hang, engine_metrics_ports=engine_ports)
    finally:
        if services is not None:
            services.stop()
        if hang is not None:     # after the workers: their requests are released by their own shutdown
            hang.stop()
        servers.stop()
    return finish(result, args, ok=result.ok() and "partner_api_hang_not_exercised" not in result.errors)
