"""TurnBatcher: calls made during one event-loop turn answered by one round trip.

``submit(item)`` is synchronous and returns a future.  The first submit of a turn starts a
flush that yields once (so everything submitted in this turn can join), then hands the items
to ``run(items) -> results`` (one result per item, in order; an Exception instance fails just
that item).  While a flush is in flight new items wait for the next one, so batches grow
with load (a natural Nagle without a timer), and two items submitted in order are run in
that order.  Users: the append router (engine/router.py: one pipeline of ``append.lua`` calls
per flush), the gateway's authentication lookups (a connection storm costs one Redis and one
PostgreSQL round trip per loop turn instead of one each per socket), read positions, and
ephemeral publishes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence


class TurnBatcher:
    """``max_items``: at most this many items per run (None: all that are queued).
    ``cancelled``: when a run is cancelled (shutdown), its callers get this exception instead
    of a cancelled future."""

    def __init__(self, run: Callable[[list], Awaitable[Sequence]], *, max_items: int | None = 500,
                 cancelled: Callable[[], BaseException] | None = None):
        self._run = run
        self._max = max_items
        self._cancelled = cancelled
        self._pending: list[tuple[object, asyncio.Future]] = []
        self._task: asyncio.Task | None = None

    def submit(self, item) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._pending.append((item, fut))
        if self._task is None:
            self._task = loop.create_task(self._flush_loop())
        return fut

    async def _flush_loop(self) -> None:
        try:
            await asyncio.sleep(0)
            while self._pending:
                if self._max is None or len(self._pending) <= self._max:
                    batch, self._pending = self._pending, []
                else:
                    batch, self._pending = self._pending[:self._max], self._pending[self._max:]
                await self._flush(batch)
        finally:
            self._task = None
            if self._pending:
                self._task = asyncio.get_running_loop().create_task(self._flush_loop())

    async def _flush(self, batch: list[tuple[object, asyncio.Future]]) -> None:
        try:
            results = await self._run([item for item, _ in batch])
        except asyncio.CancelledError:
            for _, fut in batch:
                if not fut.done():
                    if self._cancelled is None:
                        fut.cancel()
                    else:
                        fut.set_exception(self._cancelled())
            raise
        except Exception as exc:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        if len(results) != len(batch):
            exc = RuntimeError(f"batch answered {len(results)} results for {len(batch)} items")
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(exc)
            return
        for (_, fut), result in zip(batch, results):
            if fut.done():
                continue
            if isinstance(result, Exception):
                fut.set_exception(result)
            else:
                fut.set_result(result)

    async def idle(self) -> None:
        """Wait until everything submitted so far has been run and answered (a cancelled run
        counts as answered; the caller's own cancellation still propagates)."""
        while self._task is not None:
            task = self._task
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                if not task.done():
                    raise
