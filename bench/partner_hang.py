"""A hanging Shopify Partner API for ``steady-chat --partner-api-hang`` (issue #8: a hanging
Partner API must not move chat latency).

:class:`HangingPartnerApi` is a real aiohttp server on 127.0.0.1, run on its own event loop in
a thread of the bench process. It serves the route the engine's client posts to
(``POST /{partner_org_id}/api/{version}/graphql.json``, engine/shopify/client.py), reads each
request whole and never answers it. A request stays held until its client gives up (the
engine's ``shopify.request_timeout``: the client closes the connection) or the server stops
(every held request then gets a 503 and its connection is closed). The server counts what it
saw and keeps the times at which the number of held requests changed, so a run can show that
the hang was in force while it measured (:func:`held_seconds`, :func:`hang_figures`).
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time
import urllib.request
from dataclasses import dataclass

from aiohttp import web


@dataclass(frozen=True)
class HangStats:
    received: int          # requests read whole (every one of them then held)
    bench_requests: int    # of those, for the bench's Partner organisation with the bench's token
    held: int              # held right now
    max_held: int          # most held at the same time
    abandoned: int         # closed by their client while held (the engine's request timeout)


class HangingPartnerApi:
    """``start()`` -> base URL for ``shopify.api_base``; ``stats()`` any time; ``stop()`` releases all."""

    def __init__(self) -> None:
        self.partner_org_id = "4040404040"       # the bench connections' Partner organisation id
        self.token = "bench-hang-" + secrets.token_hex(12)
        self.base_url = ""
        self._lock = threading.Lock()
        self._received = self._bench = self._held = self._max_held = self._abandoned = 0
        self._changes: list[tuple[float, int]] = []    # (time.time(), requests held from then on)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None
        self._error: BaseException | None = None

    # -- lifecycle (called from the bench's thread) -----------------------------------------------
    def start(self) -> str:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), name="partner-api-hang", daemon=True)
        self._thread.start()
        if not ready.wait(30) or self._error is not None:
            self.stop()
            raise RuntimeError(f"the hanging Partner API did not start: {self._error!r}")
        return self.base_url

    def stop(self) -> None:
        """Answer every held request (503), close the server, end its thread. Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(self._close(), loop).result(30)
            finally:
                loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(30)
        self._thread = None

    def stats(self) -> HangStats:
        with self._lock:
            return HangStats(self._received, self._bench, self._held, self._max_held, self._abandoned)

    def changes(self) -> list[tuple[float, int]]:
        with self._lock:
            return list(self._changes)

    # -- the server's own thread and loop ---------------------------------------------------------
    def _serve(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._open())
        except BaseException as exc:  # noqa: BLE001  reported to start()
            self._error = exc
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _open(self) -> None:
        self._closing = asyncio.Event()
        app = web.Application()
        app.router.add_post("/{org}/api/{version}/graphql.json", self._hold)
        # handler_cancellation: a client that gives up cancels its handler, so `held` falls at once
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"

    async def _close(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    def _count(self, delta: int, *, bench: bool = False, abandoned: bool = False) -> None:
        with self._lock:
            if delta > 0:
                self._received += 1
                self._bench += bench
            self._held += delta
            self._max_held = max(self._max_held, self._held)
            self._abandoned += abandoned
            self._changes.append((time.time(), self._held))

    async def _hold(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        bench = (request.match_info["org"] == self.partner_org_id
                 and request.headers.get("X-Shopify-Access-Token") == self.token)
        self._count(+1, bench=bench)
        abandoned = False
        try:
            await self._closing.wait()
        except asyncio.CancelledError:
            abandoned = not self._closing.is_set()     # the client closed its connection
            raise
        finally:
            self._count(-1, abandoned=abandoned)
        return web.Response(status=503, text="closing")


# ---- evidence that the hang was exercised (pure, but for the scrape) ----------------------------

def held_seconds(changes: list[tuple[float, int]], start: float, end: float) -> float:
    """Seconds of [start, end] during which at least one request was held; ``changes`` are
    (time, requests held from then on) in time order, none held before the first."""
    covered, held, since = 0.0, 0, start
    for t, n in changes:
        if held > 0:
            covered += max(0.0, min(t, end) - max(since, start))
        held, since = n, t
    if held > 0:
        covered += max(0.0, end - max(since, start))
    return covered


def scrape_engine_sync(metrics_ports: list[int]) -> dict | None:
    """The engine workers' Shopify sync metrics, summed over the workers (None if unreachable)."""
    from prometheus_client.parser import text_string_to_metric_families

    running = unavailable = failed_runs = 0.0
    try:
        for port in metrics_ports:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
            for family in text_string_to_metric_families(text):
                for s in family.samples:
                    if s.name == "convot_shopify_sync_running":
                        running += s.value
                    elif s.name == "convot_shopify_requests_total" and s.labels.get("outcome") == "shopify_unavailable":
                        unavailable += s.value
                    elif s.name == "convot_shopify_sync_runs_total" and s.labels.get("result") in ("failed", "stopped"):
                        failed_runs += s.value
    except OSError:
        return None
    return {"engine_shopify_syncs_running_at_end_of_sending": int(running),
            "engine_shopify_requests_timed_out": int(unavailable),
            "engine_shopify_sync_runs_failed": int(failed_runs)}


def hang_figures(stats: HangStats, covered_s: float, sending_s: float, engine: dict | None = None) -> tuple[dict, dict]:
    """(figures, errors) of a --partner-api-hang run. A run whose hanging server received no
    request did not test the hang: it is marked NOT EXERCISED and counted as an error."""
    figures: dict = {
        "partner_api_hang": "exercised" if stats.received else "NOT EXERCISED: the hanging server received no request",
        "partner_api_requests_received": stats.received,
        "partner_api_requests_for_bench_connections": stats.bench_requests,
        "partner_api_requests_max_held_at_once": stats.max_held,
        "partner_api_requests_given_up_by_client": stats.abandoned,
        "partner_api_hang_coverage_pct": round(100.0 * covered_s / sending_s, 1) if sending_s > 0 else 0.0,
    }
    figures.update(engine or {})
    errors = {} if stats.received else {"partner_api_hang_not_exercised": 1}
    return figures, errors
