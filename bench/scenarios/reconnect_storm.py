"""reconnect-storm: a gateway restarted under load; every client reconnects and resumes.

Shoppers and agents (as in steady-chat) are spread over --gateways processes sharing one port.
After every conversation has carried a message, gateway-1 is stopped -- SIGTERM (drain: its
sockets are told 4000 "reconnect") or, with --kill, SIGKILL (the sockets just drop) -- and
started again.  Each client does what the widget and the inbox do: reconnect with exponential
backoff and jitter, authenticate, ``resume`` every conversation from the last sequence number
it saw, and send again, with the same client_msg_id, whatever was not acknowledged.

Checked exactly like steady-chat: every acknowledged message reaches every agent of the
organisation and its shopper exactly once, in sequence order, across the reconnect.  Reports
the reconnect time (close -> ready and resumed) percentiles, the delivery latency over time
(the restart shows as a spike) and the usual counts.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from dataclasses import dataclass

import orjson

from bench.loadgen import PartPool, split
from bench.report import Timeline, add_report_arguments, distribution, finish, merge_timelines
from bench.results import RunResult, environment, latency_summary, merge_encoded, new_histogram
from bench.scenarios.steady_chat import ClientPlan, plan_clients

FIELDS = ("sent", "delivered", "reconnects", "finished", "connected")
RECONNECT_CLOSES = set(range(4000, 4100)) | {1001, 1006, 1011, 1012, 1013}


@dataclass(frozen=True)
class Params:
    shoppers: int = 400
    orgs: int = 20
    agents: int = 2
    rate: float = 200.0           # messages per second in total
    duration: float = 20.0
    settle: float = 4.0
    processes: int = 2
    gateways: int = 2
    kill: bool = False            # SIGKILL instead of a draining SIGTERM


def add_arguments(p) -> None:
    p.add_argument("--shoppers", type=int, default=400)
    p.add_argument("--orgs", type=int, default=20)
    p.add_argument("--agents", type=int, default=2, help="agents per organisation")
    p.add_argument("--rate", type=float, default=200.0, help="messages per second in total")
    p.add_argument("--duration", type=float, default=20.0, help="seconds of sending")
    p.add_argument("--processes", type=int, default=2, help="load-generator processes")
    p.add_argument("--gateways", type=int, default=2, help="gateway processes sharing one port (>= 2)")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--kill", action="store_true", help="SIGKILL the gateway instead of draining it")
    add_report_arguments(p)


# ---- one participant: a reconnecting, resuming client ------------------------------------------

class Participant:
    def __init__(self, plan: ClientPlan, port: int, host: str, part):
        self.plan = plan
        self.port, self.host = port, host
        self.part = part
        self.sock = None
        self.ready = False
        self.ids: set[str] = set()
        self.dups = 0
        self.ooo = 0
        self.last: dict[str, int] = {}          # conversation -> last seq seen
        self.conv: str | None = None            # a shopper's conversation
        self.pending: dict[str, dict] = {}      # client_msg_id -> send frame, until acked
        self.acked: list[str] = []
        self.n = 0
        self.waiter: asyncio.Future | None = None
        self.closed_at: float | None = None
        self.stopping = False
        self.resuming = False
        self.held: list[dict] = []              # messages between ready and resumed (see open)

    # frames in
    def on_frame(self, payload: bytes) -> None:
        frame = orjson.loads(payload)
        t = frame.get("type")
        if t == "message":
            if self.resuming:
                self.held.append(frame["message"])
            else:
                self.on_message(frame["message"])
        elif t == "ack":
            cmid = frame.get("client_msg_id")
            if cmid in self.pending:
                del self.pending[cmid]
                self.acked.append(frame["id"])
                if self.conv is None:
                    self.conv = frame["conversation_id"]
        elif t in ("ready", "resumed") or (t == "error" and frame.get("ref") in ("auth", "resume")):
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(frame)
        elif t == "error":
            self.part.error(frame.get("code", "error"))

    def on_message(self, msg: dict, *, replay: bool = False) -> None:
        mid = msg["id"]
        if mid in self.ids:
            if replay:
                # delivered live between `ready` and the gateway reading `resume`, then replayed:
                # the protocol has clients drop it by id (docs/protocol.md); counted, not a duplicate
                self.part.redelivered += 1
            else:
                self.dups += 1
            return
        self.ids.add(mid)
        conv, seq = msg["conversation_id"], msg["seq"]
        if seq <= self.last.get(conv, 0):
            self.ooo += 1
        else:
            self.last[conv] = seq
        sent_ns = (msg.get("meta") or {}).get("t")
        if sent_ns:
            self.part.latency((time.time_ns() - sent_ns) // 1000)
        self.part.delivered += 1

    def end_resume(self) -> None:
        """Apply what came between `ready` and `resumed` in sequence order, as a client does."""
        held, self.held, self.resuming = self.held, [], False
        for msg in sorted(held, key=lambda m: (m["conversation_id"], m["seq"])):
            self.on_message(msg, replay=True)

    def on_close(self, code: int) -> None:
        was_ready, self.ready, self.sock = self.ready, False, None
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"close_{code}"))
            self.waiter.exception()     # marked seen: nobody awaits it when the handshake itself failed
        if self.stopping:
            return
        if code not in RECONNECT_CLOSES:
            self.part.error(f"close_{code}")
        if was_ready:
            self.closed_at = time.perf_counter()
            self.part.spawn(self.reconnect())

    # connecting
    async def open(self) -> None:
        from bench.client import connect

        loop = asyncio.get_running_loop()
        self.waiter = loop.create_future()
        self.resuming, self.held = bool(self.last), []
        sock = await connect(self.host, self.port, self.on_frame, self.on_close)
        sock.send(orjson.dumps({"type": "authenticate", "token": self.plan.token, "ref": "auth"}))
        frame = await asyncio.wait_for(self.waiter, 30)
        if frame["type"] != "ready":
            raise ConnectionError(f"refused: {frame.get('code')}")
        if self.last:
            self.waiter = loop.create_future()
            sock.send(orjson.dumps({"type": "resume", "conversations": self.last, "ref": "resume"}))
            frame = await asyncio.wait_for(self.waiter, 30)
            if frame["type"] != "resumed":
                raise ConnectionError(f"resume refused: {frame.get('code')}")
            for kind in ("incomplete", "not_found"):
                if frame.get(kind):
                    self.part.error(f"resume_{kind}", len(frame[kind]))
            self.end_resume()
        self.sock = sock
        self.ready = True
        for frame in list(self.pending.values()):        # unacknowledged: same client_msg_id again
            self._send(frame)

    async def reconnect(self) -> None:
        delay = 0.05
        while not self.stopping:
            await asyncio.sleep(delay * (0.5 + random.random()))      # backoff with jitter
            try:
                await self.open()
            except (OSError, ConnectionError, asyncio.TimeoutError) as exc:
                self.part.error("reconnect_attempt_failed_" + (str(exc)[:24] if isinstance(exc, ConnectionError)
                                                               else type(exc).__name__))
                delay = min(delay * 2, 2.0)
                continue
            self.part.reconnected(time.perf_counter() - self.closed_at)
            return

    # frames out
    def _send(self, frame: dict) -> None:
        if self.sock is not None and self.ready:
            self.sock.send(orjson.dumps(frame))

    def send_next(self) -> None:
        self.n += 1
        cmid = f"{self.plan.subject[:8]}-{self.n}"
        frame = {"type": "send", "client_msg_id": cmid, "body": "x" * 64, "ref": self.n,
                 "meta": {"t": time.time_ns()}}
        if self.conv is not None:
            frame["conversation_id"] = self.conv
        elif self.pending:
            return        # the conversation-starting send is not acknowledged yet: wait for it
        self.pending[cmid] = frame
        self.part.sent += 1
        self._send(frame)


class Part:
    def __init__(self, start_at: float):
        self.hist = new_histogram()
        self.reconnect_hist = new_histogram()
        self.timeline = Timeline(start_at)
        self.errors: dict[str, int] = {}
        self.sent = self.delivered = self.reconnects = self.redelivered = 0
        self.tasks: set[asyncio.Task] = set()

    def latency(self, us: int) -> None:
        self.hist.record_value(max(1, us))
        self.timeline.record(time.time(), us)

    def reconnected(self, seconds: float) -> None:
        self.reconnects += 1
        self.reconnect_hist.record_value(max(1, int(seconds * 1e6)))

    def error(self, code: str, n: int = 1) -> None:
        self.errors[code] = self.errors.get(code, 0) + n

    def spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


async def reconnect_part(plans: list[ClientPlan], common: dict, ctl) -> dict:
    p: Params = common["params"]
    part = Part(time.time())
    people = [Participant(plan, common["ports"][i % len(common["ports"])], common["host"], part)
              for i, plan in enumerate(plans)]
    for person in people:
        for attempt in range(20):
            try:
                await person.open()
                break
            except (OSError, ConnectionError):
                await asyncio.sleep(0.1 * (attempt + 1))
        else:
            raise ConnectionError("cannot connect")
        ctl.add("connected")
    # start barrier: nobody sends before every participant of every process is connected (an
    # agent connecting after a conversation's first message would never hear of it)
    await ctl.phase_at_least(1, poll=0.01)
    start_at = part.timeline.t0 = time.time()
    interval = p.shoppers / p.rate
    stop_at = start_at + p.duration

    async def shopper(person: Participant) -> None:
        await asyncio.sleep(random.random() * interval)
        next_at = time.monotonic()
        while time.time() < stop_at:
            person.send_next()
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def report() -> None:
        while True:
            ctl.set("sent", part.sent)
            ctl.set("delivered", part.delivered)
            ctl.set("reconnects", part.reconnects)
            await asyncio.sleep(0.25)

    reporter = asyncio.get_running_loop().create_task(report())
    try:
        await asyncio.gather(*(shopper(x) for x in people if x.plan.kind == "shopper"))
        # let reconnects finish and unacknowledged sends be answered
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (part.tasks or any(x.pending for x in people)):
            await asyncio.sleep(0.1)
        await asyncio.sleep(p.settle)
    finally:
        reporter.cancel()
        await asyncio.gather(reporter, return_exceptions=True)
    ctl.set("sent", part.sent)
    ctl.set("delivered", part.delivered)
    ctl.set("reconnects", part.reconnects)
    for person in people:
        person.stopping = True
        if person.sock is not None:
            person.sock.close()
    for task in list(part.tasks):
        task.cancel()
    await asyncio.gather(*part.tasks, return_exceptions=True)
    unacked = sum(len(x.pending) for x in people)
    if unacked:
        part.error("unacknowledged_sends", unacked)
    ctl.set("finished", 1)
    return {
        "sent": part.sent, "errors": part.errors, "histogram": part.hist.encode(),
        "reconnect_histogram": part.reconnect_hist.encode(), "timeline": part.timeline.encode(),
        "redelivered": part.redelivered,
        "people": [(x.plan.kind, x.plan.org, x.plan.subject, x.ids, x.dups, x.ooo, x.acked) for x in people],
    }


# ---- orchestration ---------------------------------------------------------------------------

def run(cfg, p: Params, services, *, quiet: bool = False) -> RunResult:
    from bench.seed import seed

    per_org = [p.shoppers // p.orgs + (1 if i < p.shoppers % p.orgs else 0) for i in range(p.orgs)]
    tenants = asyncio.run(seed(cfg.database.migrate_url, p.orgs, p.agents, per_org))
    plans = plan_clients(cfg, tenants, p)
    random.Random(5).shuffle(plans)
    common = {"params": p, "host": "127.0.0.1", "ports": [services.port("gateway-1")]}
    pool = PartPool(reconnect_part, split(plans, p.processes), common, FIELDS)
    last = {"t": time.monotonic(), "delivered": 0}
    start_at = time.time()

    def describe(t: dict) -> str:
        now = time.monotonic()
        rate = (t["delivered"] - last["delivered"]) / max(1e-3, now - last["t"])
        last.update(t=now, delivered=t["delivered"])
        clock = time.time() - start_at
        return (f"reconnect-storm: t={clock:5.1f}s sent {t['sent']:,} delivered {t['delivered']:,} (+{rate:,.0f}/s) "
                f"reconnects {t['reconnects']:,}")

    if not pool.wait(lambda t: t["connected"] == len(plans), 60 + len(plans) / 20,
                     lambda t: f"reconnect-storm: connected {t['connected']:,}/{len(plans):,}", quiet):
        pool.finish(quiet=quiet)
        raise RuntimeError("not every participant could connect")
    start_at = time.time()
    pool.set_phase(1)
    # every conversation carries a message before the restart (agents learn them live), then stop
    # gateway-1 and start it again under load
    interval = p.shoppers / p.rate
    restart_at = start_at + max(p.duration / 3, 2 * interval + 2.0)
    if not pool.wait(lambda t: time.time() >= restart_at, restart_at - time.time() + 120, describe, quiet):
        pool.finish(quiet=quiet)
    stopped = time.perf_counter()
    if p.kill:
        services.kill("gateway-1")
    else:
        services.terminate("gateway-1")
    down_s = time.perf_counter() - stopped
    services.start_one("gateway-1")
    restart_s = time.perf_counter() - stopped
    pool.wait(lambda t: t["finished"] == p.processes, p.duration + p.settle + 120, describe, quiet)
    parts = pool.finish(quiet=quiet)
    result = aggregate(p, parts)
    result.figures.update({"gateway_stop_s": round(down_s, 3), "gateway_stop_to_listening_s": round(restart_s, 3)})
    return result


def aggregate(p: Params, parts: list[dict]) -> RunResult:
    result = RunResult("reconnect-storm", p.__dict__.copy(), environment=environment())
    acked_by_org: dict[str, set[str]] = {}
    acked_by_shopper: dict[str, set[str]] = {}
    for part in parts:
        result.sent += part["sent"]
        for code, n in part["errors"].items():
            result.errors[code] = result.errors.get(code, 0) + n
        for kind, org, subject, _ids, _d, _o, acked in part["people"]:
            if kind == "shopper":
                acked_by_org.setdefault(org, set()).update(acked)
                acked_by_shopper.setdefault(subject, set()).update(acked)
    result.acked = sum(len(v) for v in acked_by_org.values())
    for part in parts:
        for kind, org, subject, ids, dups, ooo, _acked in part["people"]:
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
    result.timeline = merge_timelines([part["timeline"] for part in parts])
    result.duration_s = p.duration
    result.deliveries_per_s = round(result.delivered / p.duration, 1) if p.duration else 0.0
    rec = merge_encoded([part["reconnect_histogram"] for part in parts])
    result.figures = {"reconnects": rec.get_total_count(),
                      "redelivered_dropped_by_id": sum(part.get("redelivered", 0) for part in parts)}
    if rec.get_total_count():
        result.figures.update({"reconnect_p50_ms": rec.get_value_at_percentile(50) / 1000,
                               "reconnect_p99_ms": rec.get_value_at_percentile(99) / 1000,
                               "reconnect_max_ms": rec.get_max_value() / 1000})
    return result


def main(args) -> int:
    from bench.stack import EmbeddedServers, Services

    if args.gateways < 2:
        print("reconnect-storm needs --gateways 2 or more (clients move to the others)", file=sys.stderr)
        return 2
    p = Params(shoppers=args.shoppers, orgs=args.orgs, agents=args.agents, rate=args.rate, duration=args.duration,
               processes=args.processes, gateways=args.gateways, kill=args.kill)
    servers = EmbeddedServers()
    cfg = servers.start()
    services = Services(cfg, gateways=args.gateways, workers=args.workers)
    try:
        services.start()
        print(f"reconnect-storm: {p.shoppers} shoppers, {p.orgs} orgs x {p.agents} agents, {p.rate:g} msg/s, "
              f"{p.duration:g} s, {p.gateways} gateways, gateway-1 {'killed' if p.kill else 'drained'} and "
              f"restarted, {os.cpu_count()} CPUs", file=sys.stderr)
        result = run(cfg, p, services)
    finally:
        services.stop()
        servers.stop()
    ok = result.ok() and result.figures["reconnects"] > 0 and not result.errors.get("unacknowledged_sends")
    return finish(result, args, ok=ok)
