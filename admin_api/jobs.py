"""Background work of the admin API: a bounded queue drained by one task.

Sign-up and password-reset requests are answered ``202`` at once and processed here, so the
answer (and its timing) is the same whether or not the email has an account.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from admin_api.errors import ApiError

log = logging.getLogger("convot.admin_api.jobs")

Job = Callable[[], Awaitable[None]]


class JobQueue:
    def __init__(self, maxsize: int = 1000) -> None:
        self._queue: asyncio.Queue[tuple[str, Job]] = asyncio.Queue(maxsize)
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="admin-api-jobs")

    def submit(self, kind: str, job: Job) -> None:
        """Queue a job, or answer 503 when the queue is full (the request is not silently lost)."""
        try:
            self._queue.put_nowait((kind, job))
        except asyncio.QueueFull:
            raise ApiError("service_unavailable", headers={"Retry-After": "5"}) from None

    async def _run(self) -> None:
        while True:
            kind, job = await self._queue.get()
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # one failed job never stops the others
                log.error("background job failed", extra={"job": kind, "error": type(exc).__name__})
            finally:
                self._queue.task_done()

    async def join(self) -> None:
        await self._queue.join()

    async def close(self, drain_timeout: float = 5.0) -> None:
        if self._task is None:
            return
        try:
            await asyncio.wait_for(self._queue.join(), drain_timeout)
        except asyncio.TimeoutError:
            log.warning("background jobs not finished at shutdown", extra={"pending": self._queue.qsize()})
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
        self._task = None
